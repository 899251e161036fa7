//! Connection behaviour: CONN-01..09, 13, 20..23, 35, 37..40.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use mp_conn::{Connection, Error, pipe};

use crate::core_support::{
    install_sigalrm_handler, pester, round_trips_then_a_slow_one, run_child,
};

/// A duplex connection whose peer is a raw socket we write bytes to.
fn raw_peer() -> (Connection, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    (Connection::new(OwnedFd::from(a), true, true).unwrap(), b)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut h = [0; 12];
    let mut v = mp_conn::encode_header(payload.len() as u64, &mut h).to_vec();
    v.extend_from_slice(payload);
    v
}

fn echo_thread(mut conn: Connection) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        loop {
            match conn.recv_bytes() {
                Ok(m) => conn.send_bytes(&m).unwrap(),
                Err(Error::Eof) => break,
                Err(e) => panic!("echo: {e}"),
            }
        }
    })
}

#[test]
fn conn01_objects_and_bytes_round_trip() {
    let (mut a, b) = pipe(true).unwrap();
    let echo = echo_thread(b);
    let value = (vec![1i64, 2], 2.25f64, None::<u8>);
    a.send(&value).unwrap();
    assert_eq!(a.recv::<(Vec<i64>, f64, Option<u8>)>().unwrap(), value);
    a.send_bytes(b"hello world").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"hello world");
    // A long string does not fit the read-ahead buffer: decoded from a Vec.
    let long = "x".repeat(100_000);
    a.send(&long).unwrap();
    assert_eq!(a.recv::<String>().unwrap(), long);
    drop(a);
    echo.join().unwrap();
}

#[test]
fn typed_recv_rejects_garbage_and_trailing_bytes() {
    let (mut a, b) = pipe(true).unwrap();
    b.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(a.recv::<u32>(), Err(Error::Decode(_))));
    b.send_bytes(&[1, 2]).unwrap();
    assert!(matches!(a.recv::<u8>(), Err(Error::Decode(_))));
    b.send(&7u8).unwrap();
    assert_eq!(
        a.recv::<u8>().unwrap(),
        7,
        "the stream stays in sync after decode errors"
    );
}

#[test]
fn conn02_recv_bytes_into_and_offset() {
    let (mut a, b) = pipe(true).unwrap();
    let ints: Vec<u8> = [1i32, 2, 3, 4]
        .iter()
        .flat_map(|i| i.to_ne_bytes())
        .collect();
    b.send_bytes(&ints).unwrap();
    let mut buf = [0u8; 40];
    assert_eq!(a.recv_bytes_into(&mut buf).unwrap(), 16);
    assert_eq!(&buf[..16], &ints[..]);
    assert!(buf[16..].iter().all(|&x| x == 0));

    b.send_bytes(&ints).unwrap();
    let mut buf = [0u8; 40];
    assert_eq!(a.recv_bytes_into_at(&mut buf, 12).unwrap(), 16);
    assert!(buf[..12].iter().all(|&x| x == 0));
    assert_eq!(&buf[12..28], &ints[..]);
    assert!(buf[28..].iter().all(|&x| x == 0));
}

#[test]
fn conn03_buffer_too_short_hands_back_the_whole_message() {
    let (mut a, b) = pipe(true).unwrap();
    let msg: Vec<u8> = (0..110u8).collect();
    b.send_bytes(&msg).unwrap();
    b.send_bytes(b"next").unwrap();
    let mut buf = [0u8; 40];
    match a.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, msg),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    // Also for a message far larger than the read-ahead buffer.
    let big = vec![9u8; 100_000];
    let writer = {
        let big = big.clone();
        let b2 = b;
        thread::spawn(move || {
            b2.send_bytes(&big).unwrap();
            b2
        })
    };
    assert_eq!(a.recv_bytes().unwrap(), b"next");
    match a.recv_bytes_into_at(&mut buf, 39) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, big),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    writer.join().unwrap();
}

#[test]
fn conn04_poll_timeouts_and_never_consumes() {
    let (mut a, b) = pipe(true).unwrap();
    let t = Instant::now();
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(1));
    let t = Instant::now();
    assert!(!a.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(95),
        "{:?}",
        t.elapsed()
    );
    b.send_bytes(b"x").unwrap();
    let t = Instant::now();
    assert!(a.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(a.poll(None).unwrap());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(a.recv_bytes().unwrap(), b"x");
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn conn05_large_messages_16_and_64_mib() {
    let (mut a, b) = pipe(true).unwrap();
    let sender = thread::spawn(move || {
        for size in [16usize << 20, 64 << 20, 64 << 20] {
            let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            b.send_bytes(&msg).unwrap();
        }
        b
    });
    let m16 = a.recv_bytes().unwrap();
    assert_eq!(m16.len(), 16 << 20);
    assert!(m16.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8));
    let mut reused = Vec::new();
    for _ in 0..2 {
        assert_eq!(a.recv_bytes_into_vec(&mut reused).unwrap(), 64 << 20);
        assert!(
            reused
                .iter()
                .enumerate()
                .all(|(i, &x)| x == (i % 251) as u8)
        );
    }
    let capacity = reused.capacity();
    let _b = sender.join().unwrap();
    // A shorter message reuses the same allocation.
    _b.send_bytes(b"short").unwrap();
    assert_eq!(a.recv_bytes_into_vec(&mut reused).unwrap(), 5);
    assert_eq!(reused, b"short");
    assert_eq!(reused.capacity(), capacity);
}

#[test]
fn conn05_large_message_over_a_one_way_pipe() {
    let (mut r, w) = pipe(false).unwrap();
    let msg: Vec<u8> = (0..(16usize << 20)).map(|i| (i % 253) as u8).collect();
    let expected = msg.clone();
    let sender = thread::spawn(move || w.send_bytes(&msg).unwrap());
    assert_eq!(r.recv_bytes().unwrap(), expected);
    sender.join().unwrap();
}

#[test]
fn conn06_eof_after_peer_close() {
    let (mut a, b) = pipe(true).unwrap();
    b.send_bytes(b"last").unwrap();
    drop(b);
    assert_eq!(a.recv_bytes().unwrap(), b"last");
    assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
    assert!(matches!(a.recv::<u8>(), Err(Error::Eof)));
    assert!(a.readable() && a.writable());
    assert!(a.poll(Some(Duration::ZERO)).unwrap(), "EOF counts as ready");
}

#[test]
fn conn08_child_keeps_working_after_parent_closes_its_end() {
    let (mut parent, child_end) = pipe(true).unwrap();
    let result = run_child("echo", child_end.into_fd().unwrap(), || {
        for size in [0usize, 5, 20_000, 1 << 20] {
            let msg = vec![size as u8; size];
            parent.send_bytes(&msg).unwrap();
            assert_eq!(parent.recv_bytes().unwrap(), msg);
        }
        parent.close();
    });
    assert!(result.success, "child failed: {}", result.stderr);
}

#[test]
fn conn09_send_bytes_range() {
    let (mut a, b) = pipe(true).unwrap();
    let data = b"abcdefghijklmnopqrstuvwxyz";
    b.send_bytes_range(data, 7, None).unwrap();
    b.send_bytes_range(data, 7, Some(8)).unwrap();
    b.send_bytes_range(data, 26, None).unwrap();
    b.send_bytes_range(data, 26, Some(0)).unwrap();
    assert_eq!(a.recv_bytes().unwrap(), &data[7..]);
    assert_eq!(a.recv_bytes().unwrap(), &data[7..15]);
    assert_eq!(a.recv_bytes().unwrap(), b"");
    assert_eq!(a.recv_bytes().unwrap(), b"");
    for (offset, size) in [
        (27, None),
        (26, Some(1)),
        (20, Some(7)),
        (1, Some(usize::MAX)),
    ] {
        assert!(matches!(
            b.send_bytes_range(data, offset, size),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(
        !a.poll(Some(Duration::from_millis(50))).unwrap(),
        "nothing was sent"
    );
}

#[test]
fn conn13_closed_connection_errors() {
    let (mut a, mut b) = pipe(true).unwrap();
    a.close();
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.recv_bytes(), Err(Error::Closed)));
    assert!(matches!(a.send_bytes(b"x"), Err(Error::Closed)));
    assert!(matches!(a.poll(Some(Duration::ZERO)), Err(Error::Closed)));
    assert!(matches!(a.try_clone(), Err(Error::Closed)));
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
    b.close();
    assert!(matches!(b.recv::<u8>(), Err(Error::Closed)));
}

#[test]
fn conn20_to_23_empty_messages_order_and_no_merging() {
    let (mut a, b) = pipe(true).unwrap();
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    b.send_bytes(b"").unwrap();
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"");

    let strings: [&[u8]; 7] = [b"hello", b"", b"a", b"b", b"cd", b"", b"world"];
    let sender = thread::spawn(move || {
        for s in strings {
            b.send_bytes(s).unwrap();
            thread::sleep(Duration::from_millis(10));
        }
        b
    });
    for s in strings {
        assert_eq!(a.recv_bytes().unwrap(), s);
    }
    let b = sender.join().unwrap();

    for s in [&b"a"[..], b"b", b"cd"] {
        b.send_bytes(s).unwrap();
    }
    thread::sleep(Duration::from_millis(20));
    for expected in [&b"a"[..], b"b", b"cd"] {
        for _ in 0..3 {
            assert!(a.poll(Some(Duration::ZERO)).unwrap());
            assert!(a.poll(Some(Duration::from_secs(1))).unwrap());
        }
        assert_eq!(a.recv_bytes().unwrap(), expected);
    }
    assert!(!a.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn conn22_a_polling_process_never_pulls_in_a_partial_message() {
    let (mut reader, writer) = pipe(false).unwrap();
    let child_fd = reader.try_clone().unwrap().into_fd().unwrap();
    // Half a message: the header and part of the payload.
    let full = frame(&[5u8; 1000]);
    let writer_fd = writer.into_fd().unwrap();
    let mut raw = std::fs::File::from(writer_fd);
    raw.write_all(&full[..500]).unwrap();
    let result = run_child("poll_only", child_fd, || {});
    assert!(result.success, "child failed: {}", result.stderr);
    raw.write_all(&full[500..]).unwrap();
    assert_eq!(reader.recv_bytes().unwrap(), vec![5u8; 1000]);
}

#[test]
fn conn35_signals_never_surface_during_recv_or_send() {
    let signals = install_sigalrm_handler();
    let before = signals.load(Ordering::SeqCst);
    let (mut a, b) = pipe(true).unwrap();
    let me = unsafe_pthread_self();

    // A blocked recv, interrupted several times, then the data arrives.
    let helper = thread::spawn(move || {
        pester(me, 5, Duration::from_millis(20));
        b.send_bytes(b"after signals").unwrap();
        b
    });
    assert_eq!(a.recv_bytes().unwrap(), b"after signals");
    let b = helper.join().unwrap();
    // Standard signals do not queue: on a loaded machine several of the
    // five may merge into one delivery, so count deliveries, not sends.
    let after_recv = signals.load(Ordering::SeqCst);
    assert!(after_recv > before, "no SIGALRM reached the blocked recv");

    // A large send that fills the socket buffer, interrupted while blocked.
    let msg: Vec<u8> = (0..(32usize << 20)).map(|i| (i % 249) as u8).collect();
    let expected = msg.clone();
    let me = unsafe_pthread_self();
    let receiver = thread::spawn(move || {
        pester(me, 5, Duration::from_millis(20));
        let got = a.recv_bytes().unwrap();
        assert!(got == expected, "payload corrupted");
    });
    b.send_bytes(&msg).unwrap();
    receiver.join().unwrap();
    assert!(
        signals.load(Ordering::SeqCst) > after_recv,
        "no SIGALRM reached the blocked send"
    );
}

/// `pthread_self()` of the calling thread.
fn unsafe_pthread_self() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

#[test]
fn conn37_split_and_coalesced_headers_from_a_raw_peer() {
    let (mut conn, mut raw) = raw_peer();
    let mut wire = frame(b"first");
    wire.extend(frame(b""));
    wire.extend(frame(&vec![3u8; 20_000]));
    wire.extend(frame(b"last"));
    let writer = thread::spawn(move || {
        // Byte by byte for the first two frames, then everything coalesced.
        for &byte in &wire[..13] {
            raw.write_all(&[byte]).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        raw.write_all(&wire[13..]).unwrap();
        raw
    });
    assert_eq!(conn.recv_bytes().unwrap(), b"first");
    assert_eq!(conn.recv_bytes().unwrap(), b"");
    assert_eq!(conn.recv_bytes().unwrap(), vec![3u8; 20_000]);
    assert_eq!(conn.recv_bytes().unwrap(), b"last");
    let _raw = writer.join().unwrap();
}

#[test]
fn conn37_long_header_is_accepted_above_2_gib_only() {
    // A well-formed long header for a small length is refused.
    let (mut conn, mut raw) = raw_peer();
    let mut wire = vec![0xff; 4];
    wire.extend(16u64.to_be_bytes());
    raw.write_all(&wire).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::BadLength(_))));
    assert!(!conn.readable(), "boundaries are lost after a bad header");

    // A negative length other than -1.
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&(-2i32).to_be_bytes()).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::BadLength(_))));
}

#[test]
fn conn38_eof_at_boundary_vs_inside_a_message() {
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&[0, 0]).unwrap();
    drop(raw);
    assert!(matches!(conn.recv_bytes(), Err(Error::TruncatedMessage)));

    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
    drop(raw);
    assert!(matches!(conn.recv_bytes(), Err(Error::TruncatedMessage)));

    // Inside a payload read straight into the destination.
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&frame(&[1; 100])[..50]).unwrap();
    drop(raw);
    let mut v = Vec::new();
    assert!(matches!(
        conn.recv_bytes_into_vec(&mut v),
        Err(Error::TruncatedMessage)
    ));

    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&frame(b"ok")).unwrap();
    drop(raw);
    assert_eq!(conn.recv_bytes().unwrap(), b"ok");
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn conn38_huge_length_then_eof_is_truncation_without_waiting_for_2_gib() {
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    drop(raw);
    let t = Instant::now();
    assert!(matches!(conn.recv_bytes(), Err(Error::TruncatedMessage)));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn conn39_too_long_message_is_refused_and_connection_unreadable() {
    let (mut a, b) = pipe(true).unwrap();
    b.send_bytes(&[0u8; 300]).unwrap();
    match a.recv_bytes_max(256) {
        Err(Error::MessageTooLong { len: 300, max: 256 }) => {}
        other => panic!("expected MessageTooLong, got {other:?}"),
    }
    assert!(!a.readable());
    assert!(!a.is_closed(), "still writable, so not closed");
    assert!(matches!(a.recv_bytes(), Err(Error::NotReadable)));
    a.send_bytes(b"still writable").unwrap();

    // A read-only end is closed.
    let (mut r, w) = pipe(false).unwrap();
    w.send_bytes(&[0u8; 300]).unwrap();
    assert!(matches!(
        r.recv_bytes_max(10),
        Err(Error::MessageTooLong { .. })
    ));
    assert!(r.is_closed());
    assert!(matches!(r.recv_bytes(), Err(Error::Closed)));

    // A 2 GiB header is refused before anything is read or allocated.
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(
        conn.recv_bytes_max(1024),
        Err(Error::MessageTooLong {
            len: 0x7fff_ffff,
            ..
        })
    ));
    // The same with a reused buffer: refused, nothing allocated.
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    let mut reused = Vec::new();
    assert!(matches!(
        conn.recv_bytes_into_vec_max(&mut reused, 1024),
        Err(Error::MessageTooLong { .. })
    ));
    assert_eq!(reused.capacity(), 0);
    let (mut a, b) = pipe(true).unwrap();
    b.send_bytes(b"fits").unwrap();
    assert_eq!(a.recv_bytes_into_vec_max(&mut reused, 4).unwrap(), 4);
    assert_eq!(reused, b"fits");
    let mut long = vec![0xff; 4];
    long.extend((5u64 << 30).to_be_bytes());
    let (mut conn, mut raw) = raw_peer();
    raw.write_all(&long).unwrap();
    assert!(
        matches!(conn.recv_bytes_max(1 << 20), Err(Error::MessageTooLong { len, .. }) if len == 5 << 30)
    );
}

#[test]
fn conn40_misuse() {
    let (mut a, b) = pipe(true).unwrap();
    let mut buf = [0u8; 4];
    assert!(matches!(
        a.recv_bytes_into_at(&mut buf, 5),
        Err(Error::InvalidArgument(_))
    ));
    // offset == len is allowed (as in CPython); any non-empty message is then too long.
    b.send_bytes(b"").unwrap();
    assert_eq!(a.recv_bytes_into_at(&mut buf, 4).unwrap(), 0);
    b.send_bytes(b"x").unwrap();
    assert!(
        matches!(a.recv_bytes_into_at(&mut buf, 4), Err(Error::BufferTooShort(m)) if m == b"x")
    );
    let fd = OwnedFd::from(UnixStream::pair().unwrap().0);
    assert!(matches!(
        Connection::new(fd, false, false),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn try_clone_shares_the_stream_with_exact_reads() {
    let (mut a, b) = pipe(true).unwrap();
    let mut clone = a.try_clone().unwrap();
    for m in [&b"one"[..], b"two", b"three", b"four"] {
        b.send_bytes(m).unwrap();
    }
    // Neither end reads past its message, so the two can take turns.
    assert_eq!(a.recv_bytes().unwrap(), b"one");
    assert_eq!(clone.recv_bytes().unwrap(), b"two");
    assert_eq!(a.recv_bytes().unwrap(), b"three");
    assert_eq!(clone.recv_bytes().unwrap(), b"four");
    clone.send_bytes(b"from clone").unwrap();
    let mut b = b;
    assert_eq!(b.recv_bytes().unwrap(), b"from clone");
}

#[test]
fn read_ahead_reads_several_messages_at_once_and_into_fd_refuses() {
    let (mut a, b) = pipe(true).unwrap();
    for m in [&b"one"[..], b"two"] {
        b.send_bytes(m).unwrap();
    }
    thread::sleep(Duration::from_millis(20));
    assert_eq!(a.recv_bytes().unwrap(), b"one");
    assert!(a.buffered_len() > 0, "the second message was read ahead");
    let (mut a, e) = a.into_fd().unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    assert_eq!(a.recv_bytes().unwrap(), b"two");
    assert!(a.into_fd().is_ok());
}

#[test]
fn low_latency_mode_round_trips_over_socketpair_and_pipes() {
    for duplex in [true, false] {
        let (mut a_in, a_out, mut b_in, b_out) = if duplex {
            let (a, b) = pipe(true).unwrap();
            let a2 = {
                let mut a = a;
                let c = a.try_clone().unwrap();
                (a, c)
            };
            let b2 = {
                let mut b = b;
                let c = b.try_clone().unwrap();
                (b, c)
            };
            (a2.0, a2.1, b2.0, b2.1)
        } else {
            let (r1, w1) = pipe(false).unwrap();
            let (r2, w2) = pipe(false).unwrap();
            (r1, w2, r2, w1)
        };
        a_in.set_low_latency(Some(Duration::from_micros(50)));
        b_in.set_low_latency(Some(Duration::from_micros(50)));
        let mut a = (a_in, a_out);
        drop(round_trips_then_a_slow_one(&mut a, (b_in, b_out)));
        let (mut a_in, _a_out) = a;
        a_in.set_low_latency(None);
        assert!(a_in.into_fd().is_ok());
    }
}

#[test]
fn auth_handshake_runs_over_connections() {
    let (a, b) = pipe(true).unwrap();
    let client = thread::spawn(move || {
        let mut b = b;
        mp_auth::answer_challenge(&mut b, b"key").map(|_| b)
    });
    let mut a = a;
    mp_auth::deliver_challenge(&mut a, b"key", mp_auth::Digest::Sha256).unwrap();
    let b = client.join().unwrap().unwrap();
    b.send_bytes(b"authenticated").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"authenticated");

    // A wrong key fails on both sides; the converted error is recognisable.
    let (a, b) = pipe(true).unwrap();
    let client = thread::spawn(move || {
        let mut b = b;
        mp_auth::answer_challenge(&mut b, b"wrong").map(|_| ())
    });
    let mut a = a;
    let err = mp_auth::deliver_challenge(&mut a, b"key", mp_auth::Digest::Sha256).unwrap_err();
    assert!(matches!(Error::from(err), Error::Authentication(_)));
    assert!(client.join().unwrap().is_err());
}
