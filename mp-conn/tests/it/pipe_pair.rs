//! `pipe_pair()`: the opt-in duplex pair made of two OS pipes.

use std::os::fd::{AsFd, BorrowedFd};
use std::thread;
use std::time::{Duration, Instant};

use mp_conn::{Connection, Error, Waiter, pipe, pipe_pair, wait};

use crate::core_support::round_trips_then_a_slow_one;

fn file_type(fd: BorrowedFd<'_>) -> rustix::fs::FileType {
    rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(fd).unwrap().st_mode)
}

fn is_nonblocking(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(rustix::fs::OFlags::NONBLOCK)
}

/// The fds a connection holds, from its serde form (the only public way
/// to see the write fd): duplicates, in (read, write) order.
fn fds_of(conn: &Connection) -> Vec<std::os::fd::OwnedFd> {
    let (bytes, fds) = mp_reduction::collect_fds(|| postcard::to_allocvec(conn));
    bytes.unwrap();
    fds
}

/// Same open file description: duplicates share their status flags.
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    let (sa, sb) = (rustix::fs::fstat(a).unwrap(), rustix::fs::fstat(b).unwrap());
    (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
}

fn echo_thread(mut conn: Connection, rounds: usize) -> thread::JoinHandle<Connection> {
    thread::spawn(move || {
        for _ in 0..rounds {
            let m = conn.recv_bytes().unwrap();
            conn.send_bytes(&m).unwrap();
        }
        conn
    })
}

#[test]
fn ends_are_duplex_over_two_cloexec_pipes() {
    let (a, b) = pipe_pair().unwrap();
    for conn in [&a, &b] {
        assert!(conn.readable() && conn.writable());
        assert!(!conn.is_unix_socket());
        assert!(conn.has_write_fd());
        let fds = fds_of(conn);
        assert_eq!(fds.len(), 2, "a read fd and a write fd");
        for fd in &fds {
            assert_eq!(file_type(fd.as_fd()), rustix::fs::FileType::Fifo);
        }
        // The connection's own fds are close-on-exec (the read fd is what
        // AsFd shows).
        let flags = rustix::io::fcntl_getfd(conn.as_fd()).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        assert!(same_file(conn.as_fd(), fds[0].as_fd()));
    }
    // a's write fd is b's read pipe, and the other way round.
    let (fa, fb) = (fds_of(&a), fds_of(&b));
    assert!(same_file(fa[1].as_fd(), fb[0].as_fd()));
    assert!(same_file(fb[1].as_fd(), fa[0].as_fd()));
    assert!(!same_file(fa[0].as_fd(), fb[0].as_fd()));
    let (s, _) = pipe(true).unwrap();
    assert!(!s.has_write_fd() && s.is_unix_socket());
}

#[test]
fn round_trips_bytes_and_typed() {
    let (mut a, b) = pipe_pair().unwrap();
    let peer = echo_thread(b, 1001);
    for i in 0..1000u32 {
        let msg = i.to_le_bytes().repeat(16);
        a.send_bytes(&msg).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), msg);
    }
    a.send(&(7u64, "seven".to_string())).unwrap();
    let back = a.recv_bytes().unwrap();
    let (n, s): (u64, String) = postcard::from_bytes(&back).unwrap();
    assert_eq!((n, s.as_str()), (7, "seven"));
    let mut b = peer.join().unwrap();
    b.send(&vec![1i32, 2, 3]).unwrap();
    assert_eq!(a.recv::<Vec<i32>>().unwrap(), [1, 2, 3]);
    // Messages in both directions at once never mix.
    a.send_bytes(b"to b").unwrap();
    b.send_bytes(b"to a").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"to b");
    assert_eq!(a.recv_bytes().unwrap(), b"to a");
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn large_messages_64_mib_both_ways_at_once_without_deadlock() {
    const SIZE: usize = 64 << 20;
    let (mut a, mut b) = pipe_pair().unwrap();
    let a_send = a.try_clone().unwrap();
    let b_send = b.try_clone().unwrap();
    let pattern =
        |seed: usize| -> Vec<u8> { (0..SIZE).map(|i| ((i + seed) % 251) as u8).collect() };
    let started = Instant::now();
    let senders = [(a_send, 1usize), (b_send, 2usize)].map(|(conn, seed)| {
        let msg = pattern(seed);
        thread::spawn(move || conn.send_bytes(&msg).unwrap())
    });
    let b_recv = thread::spawn(move || {
        let got = b.recv_bytes().unwrap();
        (b, got)
    });
    let got_a = a.recv_bytes().unwrap();
    let (_b, got_b) = b_recv.join().unwrap();
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(got_a.len(), SIZE);
    assert_eq!(got_b.len(), SIZE);
    assert!(
        got_a
            .iter()
            .enumerate()
            .all(|(i, &x)| x == ((i + 2) % 251) as u8)
    );
    assert!(
        got_b
            .iter()
            .enumerate()
            .all(|(i, &x)| x == ((i + 1) % 251) as u8)
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn poll_wait_and_waiter_watch_the_read_fd() {
    let (mut a, b) = pipe_pair().unwrap();
    let (c, _d) = pipe_pair().unwrap();
    // Our own sends never make us readable (they fill the peer's pipe).
    a.send_bytes(b"to b").unwrap();
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    assert!(wait(&[&a, &c], Some(Duration::ZERO)).unwrap().is_empty());
    let t0 = Instant::now();
    assert!(!a.poll(Some(Duration::from_millis(50))).unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(40));

    let mut waiter = Waiter::new().unwrap();
    waiter.add(&a, 1).unwrap();
    waiter.add(&c, 2).unwrap();
    let mut ready = Vec::new();
    waiter.wait(Some(Duration::ZERO), &mut ready).unwrap();
    assert!(ready.is_empty());

    b.send_bytes(b"to a").unwrap();
    assert!(a.poll(Some(Duration::from_secs(5))).unwrap());
    assert_eq!(wait(&[&a, &c], Some(Duration::from_secs(5))).unwrap(), [0]);
    waiter
        .wait(Some(Duration::from_secs(5)), &mut ready)
        .unwrap();
    assert_eq!(ready, [1]);
    assert_eq!(a.recv_bytes().unwrap(), b"to a");
    waiter.wait(Some(Duration::ZERO), &mut ready).unwrap();
    assert!(ready.is_empty());
    waiter.remove(&a).unwrap();
    waiter.remove(&c).unwrap();
}

#[test]
fn eof_when_the_peer_drops() {
    let (mut a, b) = pipe_pair().unwrap();
    b.send_bytes(b"last").unwrap();
    drop(b);
    assert!(a.poll(Some(Duration::from_secs(5))).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"last");
    assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
    assert!(a.poll(Some(Duration::ZERO)).unwrap(), "EOF counts as ready");
    assert_eq!(wait(&[&a], Some(Duration::ZERO)).unwrap(), [0]);
    // Sending to a peer that is gone is an error (EPIPE), not a hang.
    match a.send_bytes(b"anyone?") {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe),
        other => panic!("expected EPIPE, got {other:?}"),
    }
}

#[test]
fn eof_waits_for_every_clone_of_the_peer() {
    let (mut a, mut b) = pipe_pair().unwrap();
    let b2 = b.try_clone().unwrap();
    drop(b);
    assert!(!a.poll(Some(Duration::ZERO)).unwrap(), "a clone is alive");
    b2.send_bytes(b"from the clone").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"from the clone");
    drop(b2);
    assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn try_clone_duplicates_both_fds() {
    let (mut a, mut b) = pipe_pair().unwrap();
    let mut a2 = a.try_clone().unwrap();
    assert!(a2.has_write_fd() && a2.readable() && a2.writable());
    let (fa, fa2) = (fds_of(&a), fds_of(&a2));
    assert!(same_file(fa[0].as_fd(), fa2[0].as_fd()));
    assert!(same_file(fa[1].as_fd(), fa2[1].as_fd()));
    // Either may send, either may receive.
    a2.send_bytes(b"from the clone").unwrap();
    a.send_bytes(b"from the original").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"from the clone");
    assert_eq!(b.recv_bytes().unwrap(), b"from the original");
    b.send_bytes(b"one").unwrap();
    b.send_bytes(b"two").unwrap();
    assert_eq!(a2.recv_bytes().unwrap(), b"one");
    assert_eq!(a.recv_bytes().unwrap(), b"two");
    // Closing one leaves the other working.
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.send_bytes(b"x"), Err(Error::Closed)));
    a2.send_bytes(b"still here").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still here");
}

#[test]
fn into_fd_refuses_and_hands_the_connection_back() {
    let (a, mut b) = pipe_pair().unwrap();
    let (a, e) = a.into_fd().unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(e.to_string().contains("pipe_pair"), "{e}");
    a.send_bytes(b"still works").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still works");
    let mut a = a;
    a.close();
    assert!(matches!(a.into_fd(), Err((_, Error::Closed))));
}

#[test]
fn fd_passing_is_refused_with_a_clear_error() {
    let (mut a, b) = pipe_pair().unwrap();
    let (r, _w) = pipe(false).unwrap();
    let not_a_socket = |e: Error| {
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains("unix-socket"), "{e}");
    };
    not_a_socket(a.send_fds(&[r.as_fd()]).unwrap_err());
    not_a_socket(a.recv_fds(1).unwrap_err());
    let (x, _y) = pipe(true).unwrap();
    not_a_socket(a.send_connection(x).unwrap_err());
    not_a_socket(a.recv_connection().unwrap_err());
    // Nothing was written: the peer has nothing to read.
    let mut b = b;
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    // A pipe_pair end travels over a socket connection (both its fds).
    let (s1, mut s2) = pipe(true).unwrap();
    s1.send_connection(b).unwrap();
    let mut b = s2.recv_connection().unwrap();
    assert!(b.has_write_fd());
    a.send_bytes(b"to the passed end").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"to the passed end");
    drop(b);
    assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn low_latency_spins_on_the_nonblocking_read_fd() {
    let (mut a, mut b) = pipe_pair().unwrap();
    a.set_low_latency(Some(Duration::from_micros(50)));
    b.set_low_latency(Some(Duration::from_micros(50)));
    assert!(is_nonblocking(a.as_fd()), "the read fd spins");
    assert!(
        !is_nonblocking(fds_of(&a)[1].as_fd()),
        "the write fd stays blocking"
    );
    let b = round_trips_then_a_slow_one(&mut a, b);
    a.set_low_latency(None);
    assert!(!is_nonblocking(a.as_fd()), "blocking again");
    // A big message through a spinning end, larger than the pipe buffer.
    let msg: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 253) as u8).collect();
    let expected = msg.clone();
    a.set_low_latency(Some(Duration::from_micros(50)));
    let sender = thread::spawn(move || b.send_bytes(&msg).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), expected);
    sender.join().unwrap();
}

#[test]
fn serde_carries_both_fds() {
    let (a, mut b) = pipe_pair().unwrap();
    let (bytes, fds) = mp_reduction::collect_fds(|| postcard::to_allocvec(&a));
    let bytes = bytes.unwrap();
    assert_eq!(fds.len(), 2);
    drop(a);
    let (back, left) =
        mp_reduction::provide_fds(fds, || postcard::from_bytes::<Connection>(&bytes));
    assert!(left.is_empty(), "both fds claimed");
    let mut a = back.unwrap();
    assert!(a.has_write_fd() && a.readable() && a.writable());
    a.send_bytes(b"after the trip").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"after the trip");
    b.send_bytes(b"and back").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"and back");
    // A plain connection still has one fd.
    let (s, _t) = pipe(true).unwrap();
    assert_eq!(fds_of(&s).len(), 1);
    // Bad peer input: a write-fd slot the table does not back.
    let (bytes, fds) = mp_reduction::collect_fds(|| postcard::to_allocvec(&a));
    let bytes = bytes.unwrap();
    let mut short = fds;
    short.pop();
    let (back, _) = mp_reduction::provide_fds(short, || postcard::from_bytes::<Connection>(&bytes));
    assert!(back.is_err());
}

#[test]
fn from_fd_pair_over_plain_pipes_talks_to_a_simplex_pipe() {
    // A pipe_pair end is two one-way pipes framed as CPython frames: it
    // interoperates with pipe(false) ends on the other side.
    let (mut r1, w1) = pipe(false).unwrap();
    let (r2, w2) = pipe(false).unwrap();
    let w1 = w1.into_fd().unwrap();
    let r2 = r2.into_fd().unwrap();
    let mut duplex = Connection::from_fd_pair(r2, w1).unwrap();
    duplex.send_bytes(b"out").unwrap();
    assert_eq!(r1.recv_bytes().unwrap(), b"out");
    w2.send_bytes(b"in").unwrap();
    assert_eq!(duplex.recv_bytes().unwrap(), b"in");
}
