//! `wait()` and `Waiter`: CONN-27..32 and more.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mp_conn::{Connection, Error, Waitable, Waiter, pipe, wait};

#[test]
fn conn27_wait_collects_every_message_until_eof() {
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for id in 0..4u32 {
        let (r, w) = pipe(false).unwrap();
        readers.push(r);
        senders.push(thread::spawn(move || {
            for i in 0..10u32 {
                w.send(&(i, id)).unwrap();
            }
        }));
    }
    let mut got = Vec::new();
    while !readers.is_empty() {
        let objects: Vec<&dyn Waitable> = readers.iter().map(|r| r as &dyn Waitable).collect();
        let ready = wait(&objects, Some(Duration::from_secs(30))).unwrap();
        assert!(!ready.is_empty());
        for &i in ready.iter().rev() {
            match readers[i].recv::<(u32, u32)>() {
                Ok(m) => got.push(m),
                Err(Error::Eof) => {
                    readers.remove(i);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    got.sort();
    let mut expected: Vec<(u32, u32)> = (0..10)
        .flat_map(|i| (0..4).map(move |id| (i, id)))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn conn28_29_plain_sockets_with_slow_senders() {
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for k in 0..4u64 {
        let (r, mut w) = UnixStream::pair().unwrap();
        readers.push((r, Vec::new()));
        senders.push(thread::spawn(move || {
            for i in 0..10u64 {
                // 0-40 ms gaps, varied per sender.
                thread::sleep(Duration::from_millis((i * 7 + k * 13) % 41));
                w.write_all(format!("{i}\n").as_bytes()).unwrap();
            }
        }));
    }
    let mut open = readers.len();
    while open > 0 {
        let objects: Vec<&dyn Waitable> = readers
            .iter()
            .filter(|(_, v)| v.last() != Some(&b'$'))
            .map(|(r, _)| r as &dyn Waitable)
            .collect();
        let idx: Vec<usize> = readers
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.last() != Some(&b'$'))
            .map(|(i, _)| i)
            .collect();
        let ready = wait(&objects, Some(Duration::from_secs(30))).unwrap();
        assert!(!ready.is_empty(), "wait must not miss wake-ups");
        for i in ready {
            let (r, v) = &mut readers[idx[i]];
            let mut buf = [0u8; 64];
            let n = rustix::io::read(r.as_fd(), &mut buf).unwrap();
            if n == 0 {
                v.push(b'$');
                open -= 1;
            } else {
                v.extend_from_slice(&buf[..n]);
            }
        }
    }
    let expected: String = (0..10).map(|i| format!("{i}\n")).collect::<String>() + "$";
    for (_, v) in &readers {
        assert_eq!(String::from_utf8_lossy(v), expected);
    }
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn conn30_timeout_then_exactly_the_receiving_end() {
    let (a, b) = pipe(true).unwrap();
    let t = Instant::now();
    assert!(
        wait(&[&a, &b], Some(Duration::from_millis(500)))
            .unwrap()
            .is_empty()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    b.send(&()).unwrap();
    let t = Instant::now();
    assert_eq!(wait(&[&a, &b], Some(Duration::from_secs(20))).unwrap(), [0]);
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn conn31_a_raw_fd_sentinel_alongside_connections() {
    let mut child = Command::new("sh")
        .args(["-c", "sleep 1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sentinel = child.stdout.take().unwrap();
    let (a, b) = pipe(true).unwrap();
    let (c, d) = pipe(true).unwrap();
    let t = Instant::now();
    let ready = wait(&[&sentinel.as_fd(), &b, &d], Some(Duration::from_secs(20))).unwrap();
    assert_eq!(ready, [0]);
    assert!(t.elapsed() >= Duration::from_millis(500) && t.elapsed() < Duration::from_secs(15));
    a.send_bytes(b"1").unwrap();
    let t = Instant::now();
    assert_eq!(
        wait(&[&sentinel.as_fd(), &b, &d], Some(Duration::from_secs(20))).unwrap(),
        [0, 1]
    );
    c.send_bytes(b"2").unwrap();
    assert_eq!(
        wait(&[&sentinel.as_fd(), &b, &d], Some(Duration::from_secs(20))).unwrap(),
        [0, 1, 2]
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    child.wait().unwrap();
}

#[test]
fn conn32_zero_timeout_never_blocks() {
    let (a, _b) = pipe(true).unwrap();
    let t = Instant::now();
    assert!(wait(&[&a], Some(Duration::ZERO)).unwrap().is_empty());
    assert!(wait(&[], Some(Duration::ZERO)).unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn eof_and_buffered_read_ahead_count_as_ready() {
    let (mut a, b) = pipe(true).unwrap();
    let (c, d) = pipe(true).unwrap();
    b.send_bytes(b"1").unwrap();
    b.send_bytes(b"2").unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(a.recv_bytes().unwrap(), b"1");
    // "2" is in a's read-ahead buffer, not in the socket any more.
    assert!(a.buffered_len() > 0);
    assert_eq!(wait(&[&c, &a], None).unwrap(), [1]);
    assert_eq!(a.recv_bytes().unwrap(), b"2");
    drop(d);
    assert_eq!(wait(&[&a, &c], Some(Duration::from_secs(10))).unwrap(), [1]);
    let mut c = c;
    assert!(matches!(c.recv_bytes(), Err(Error::Eof)));
    c.close();
    assert!(matches!(
        wait(&[&c], Some(Duration::ZERO)),
        Err(Error::Closed)
    ));
}

#[test]
fn waiter_over_1000_pipes() {
    // 2000 fds plus the test harness's own: raise the soft limit if needed.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.current.is_some_and(|c| c < 4096) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum.map(|m| m.min(8192)),
            maximum: limit.maximum,
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
    }
    let pairs: Vec<(Connection, Connection)> = (0..1000).map(|_| pipe(false).unwrap()).collect();
    let mut waiter = Waiter::new().unwrap();
    for (i, (r, _)) in pairs.iter().enumerate() {
        waiter.add(r, i).unwrap();
    }
    assert_eq!(waiter.len(), 1000);
    let mut ready = Vec::new();
    waiter.wait(Some(Duration::ZERO), &mut ready).unwrap();
    assert!(ready.is_empty());
    let t = Instant::now();
    waiter
        .wait(Some(Duration::from_millis(100)), &mut ready)
        .unwrap();
    assert!(ready.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(90));

    let mut pairs = pairs;
    for round in 0..50usize {
        let k = (round * 397) % 1000;
        pairs[k].1.send_bytes(&round.to_le_bytes()).unwrap();
        waiter
            .wait(Some(Duration::from_secs(10)), &mut ready)
            .unwrap();
        assert_eq!(ready, [k]);
        // Level-triggered: still ready until received.
        waiter.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert_eq!(ready, [k]);
        assert_eq!(pairs[k].0.recv_bytes().unwrap(), round.to_le_bytes());
    }
    // Two messages at once: registered connections read exactly, so the
    // second one still wakes the waiter.
    pairs[5].1.send_bytes(b"a").unwrap();
    pairs[5].1.send_bytes(b"b").unwrap();
    for expected in [b"a", b"b"] {
        waiter
            .wait(Some(Duration::from_secs(10)), &mut ready)
            .unwrap();
        assert_eq!(ready, [5]);
        assert_eq!(pairs[5].0.recv_bytes().unwrap(), expected);
    }
    waiter.remove(&pairs[7].0).unwrap();
    assert_eq!(waiter.len(), 999);
    pairs[7].1.send_bytes(b"unwatched").unwrap();
    drop(pairs.remove(9));
    waiter
        .wait(Some(Duration::from_millis(50)), &mut ready)
        .unwrap();
    assert!(
        ready.is_empty(),
        "a removed reader is not reported; a closed writer is: {ready:?}"
    );
}

#[test]
fn waiter_reports_eof_and_already_buffered_connections() {
    let (mut a, b) = pipe(true).unwrap();
    b.send_bytes(b"1").unwrap();
    b.send_bytes(b"2").unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(a.recv_bytes().unwrap(), b"1");
    assert!(a.buffered_len() > 0);
    let mut waiter = Waiter::new().unwrap();
    waiter.add(&a, 1).unwrap();
    let mut ready = Vec::new();
    waiter.wait(None, &mut ready).unwrap();
    assert_eq!(ready, [1], "bytes buffered before add are reported");
    assert_eq!(a.recv_bytes().unwrap(), b"2");
    drop(b);
    waiter
        .wait(Some(Duration::from_secs(10)), &mut ready)
        .unwrap();
    assert_eq!(ready, [1], "EOF is ready");
    assert!(matches!(
        waiter.add(&a, usize::MAX),
        Err(Error::InvalidArgument(_))
    ));
}
