//! Listener and client behaviour without CPython: families, addresses in
//! use, close and unlink, abstract names, IPv6, last_accepted, wait(),
//! accept_timeout and serving from an event loop, signals during accept.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mp_conn::{
    Address, ClientBuilder, Error, Family, Interest, Listener, Waitable, arbitrary_address, client,
    wait,
};

use crate::core_support::{install_sigalrm_handler, pester};

fn echo_once(mut listener: Listener) -> std::thread::JoinHandle<(Listener, mp_conn::Result<()>)> {
    std::thread::spawn(move || {
        let r = listener.accept().and_then(|mut c| {
            let m = c.recv_bytes()?;
            c.send_bytes(&m)
        });
        (listener, r)
    })
}

fn round_trip(address: &Address, key: Option<&[u8]>) {
    let mut c = client(address, key).unwrap();
    c.send_bytes(b"ping").unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"ping");
}

#[test]
fn every_family_round_trips_with_and_without_a_key() {
    let abstract_name = format!("@mp-conn-test-{}", std::process::id());
    let address_of = |i: usize| -> Address {
        match i {
            // A fresh one each time: closing removes its private directory.
            0 => arbitrary_address(Family::Unix).unwrap(),
            1 => abstract_name.parse().unwrap(),
            2 => "127.0.0.1:0".parse().unwrap(),
            _ => "[::1]:0".parse().unwrap(),
        }
    };
    for i in 0..4 {
        for key in [None, Some(&b"k"[..]), Some(&b""[..])] {
            let address = address_of(i);
            let mut builder = Listener::builder().address(address.clone());
            if let Some(key) = key {
                builder = builder.authkey(key);
            }
            let listener = match builder.bind() {
                Ok(l) => l,
                // A machine without IPv6 on loopback.
                Err(Error::Io(e)) if address.to_string().starts_with('[') => {
                    eprintln!("skipping IPv6: {e}");
                    continue;
                }
                Err(e) => panic!("{address}: {e}"),
            };
            let bound = listener.address().clone();
            let server = echo_once(listener);
            round_trip(&bound, key);
            let (listener, r) = server.join().unwrap();
            r.unwrap();
            if bound.family() == Family::Inet {
                let Some(Address::Inet(peer)) = listener.last_accepted() else {
                    panic!("no peer address")
                };
                assert!(peer.ip().is_loopback());
            }
        }
    }
}

#[test]
fn a_listener_handed_to_another_owner_serves_and_unlinks_there() {
    let key = b"handed over".to_vec();
    let first = Listener::builder()
        .family(Family::Unix)
        .authkey(key.clone())
        .bind()
        .unwrap();
    let (socket, address) = first.into_socket().unwrap();
    let Address::Unix(path) = address.clone() else {
        panic!()
    };
    // Given away: the first owner is gone, the path stays.
    assert!(path.exists());
    // A client may connect before the new owner accepts (the backlog).
    let early = {
        let address = address.clone();
        let key = key.clone();
        std::thread::spawn(move || round_trip(&address, Some(&key)))
    };
    let adopted = Listener::builder()
        .authkey(key.clone())
        .adopt(socket, address.clone())
        .unwrap();
    assert_eq!(adopted.address(), &address);
    let (mut adopted, served) = echo_once(adopted).join().unwrap();
    served.unwrap();
    early.join().unwrap();
    adopted.close();
    assert!(!path.exists() && !path.parent().unwrap().exists());
    // Only a listening socket is taken.
    let (a, _b) = UnixStream::pair().unwrap();
    let err = Listener::builder()
        .adopt(
            a.into(),
            Address::Abstract(b"mp-conn-not-listening".to_vec()),
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadAddress(_)), "{err:?}");
}

#[test]
fn second_bind_fails_and_close_unlinks() {
    // CONN-14: an address in use.
    for family in [Family::Unix, Family::Inet] {
        let first = Listener::builder().family(family).bind().unwrap();
        let err = Listener::bind(first.address()).unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{family}: {err:?}");
    }
    // CONN-15 and CONN-42: close unlinks the path and its private dir;
    // accept afterwards fails.
    let mut listener = Listener::builder().family(Family::Unix).bind().unwrap();
    let Address::Unix(path) = listener.address().clone() else {
        panic!()
    };
    assert!(path.exists());
    listener.close();
    listener.close();
    assert!(!path.exists() && !path.parent().unwrap().exists());
    assert!(matches!(listener.accept(), Err(Error::Closed)));
    // A closed listener is "ready" for wait(), so a waiter finds out.
    assert_eq!(
        wait(&[&listener as &dyn Waitable], Some(Duration::ZERO)).unwrap(),
        vec![0]
    );
    // Nothing listens there any more.
    assert!(client(&Address::Unix(path), None).is_err());
}

#[test]
fn wait_reports_a_listener_with_a_client_waiting() {
    let mut listener = Listener::builder()
        .family(Family::Inet)
        .authkey(*b"w")
        .bind()
        .unwrap();
    assert!(
        wait(&[&listener as &dyn Waitable], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    let address = listener.address().clone();
    let client = std::thread::spawn(move || {
        let mut c = ClientBuilder::new()
            .authkey(*b"w")
            .connect(&address)
            .unwrap();
        c.recv_bytes().unwrap()
    });
    assert_eq!(
        wait(&[&listener as &dyn Waitable], Some(Duration::from_secs(30))).unwrap(),
        vec![0]
    );
    let conn = listener.accept().unwrap();
    conn.send_bytes(b"hi").unwrap();
    assert_eq!(client.join().unwrap(), b"hi");
}

#[test]
fn family_and_address_must_agree() {
    let err = Listener::builder()
        .address("127.0.0.1:0".parse().unwrap())
        .family(Family::Unix)
        .bind()
        .unwrap_err();
    assert!(matches!(err, Error::BadAddress(_)));
    // CONN-33: an AF_PIPE address on POSIX.
    assert!(matches!(
        r"\\.\test".parse::<Address>(),
        Err(Error::BadAddress(_))
    ));
}

#[test]
fn a_client_that_connects_and_leaves_before_accept_is_still_read() {
    // CONN-18.
    let mut listener = Listener::builder().family(Family::Unix).bind().unwrap();
    let c = client(listener.address(), None).unwrap();
    c.send_bytes(b"early").unwrap();
    drop(c);
    let mut conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"early");
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn client_handshake_times_out_on_a_silent_listener() {
    // A listener that accepts but never speaks: bounded by accept_timeout.
    let mut listener = Listener::builder().family(Family::Unix).bind().unwrap();
    let address = listener.address().clone();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        drop(conn);
    });
    let err = ClientBuilder::new()
        .authkey(*b"k")
        .accept_timeout(Some(Duration::from_millis(200)))
        .connect(&address)
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    holder.join().unwrap();
}

#[test]
fn wrong_key_fails_on_both_sides_and_the_listener_serves_on() {
    // The client sends its challenge together with its reply; the listener
    // rejects the reply and drops the socket with that challenge unread
    // (over TCP, a reset), but its #FAILURE# arrives first.
    for family in [Family::Inet, Family::Unix] {
        let mut listener = Listener::builder()
            .family(family)
            .authkey(*b"right")
            .bind()
            .unwrap();
        let bound = listener.address().clone();
        let server = std::thread::spawn(move || {
            let first = listener.accept().map(drop);
            let second = listener.accept().and_then(|mut c| {
                let m = c.recv_bytes()?;
                c.send_bytes(&m)
            });
            (first, second)
        });
        let err = client(&bound, Some(b"wrong")).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Authentication(mp_auth::AuthenticationError::DigestSentRejected)
            ),
            "{bound}: {err:?}"
        );
        round_trip(&bound, Some(b"right"));
        let (first, second) = server.join().unwrap();
        assert!(
            matches!(
                first,
                Err(Error::Authentication(
                    mp_auth::AuthenticationError::DigestReceivedWrong
                ))
            ),
            "{bound}: {first:?}"
        );
        second.unwrap();
    }
}

/// A client that connects to a unix listener and never says a word.
fn silent_client(listener: &Listener) -> UnixStream {
    let Address::Unix(path) = listener.address() else {
        panic!("not a unix listener")
    };
    UnixStream::connect(path).unwrap()
}

#[test]
fn accept_timeout_without_a_key() {
    let mut listener = Listener::builder().family(Family::Unix).bind().unwrap();
    assert!(
        listener
            .accept_timeout(Some(Duration::ZERO))
            .unwrap()
            .is_none()
    );
    let t0 = Instant::now();
    assert!(
        listener
            .accept_timeout(Some(Duration::from_millis(50)))
            .unwrap()
            .is_none()
    );
    // Not cut short: it waited for its whole timeout.
    assert!(t0.elapsed() >= Duration::from_millis(50));
    let c = client(listener.address(), None).unwrap();
    c.send_bytes(b"queued").unwrap();
    // A client already queued is taken without waiting.
    let mut conn = listener
        .accept_timeout(Some(Duration::ZERO))
        .unwrap()
        .expect("the queued client");
    assert_eq!(conn.recv_bytes().unwrap(), b"queued");
    assert_eq!(listener.poll_fds().len(), 1);
    assert_eq!(listener.next_handshake_deadline(), None);
    listener.close();
    assert!(matches!(
        listener.accept_timeout(Some(Duration::ZERO)),
        Err(Error::Closed)
    ));
}

#[test]
fn a_silent_client_does_not_hold_up_accept_timeout() {
    const HANDSHAKE: Duration = Duration::from_secs(1);
    let mut listener = Listener::builder()
        .family(Family::Unix)
        .authkey(*b"k")
        .handshake_timeout(HANDSHAKE)
        .bind()
        .unwrap();
    let listening_fd = listener.as_fd().as_raw_fd();
    assert_eq!(
        listener.poll_fds()[..]
            .iter()
            .map(|(fd, i)| (fd.as_raw_fd(), *i))
            .collect::<Vec<_>>(),
        vec![(listening_fd, Interest::Readable)]
    );
    let silent = silent_client(&listener);
    // Taken, challenged, and left waiting for the reply: no connection yet.
    let t0 = Instant::now();
    assert!(
        listener
            .accept_timeout(Some(Duration::from_millis(100)))
            .unwrap()
            .is_none()
    );
    assert!(t0.elapsed() < HANDSHAKE, "returned late");
    assert_eq!(listener.pending_handshakes(), 1);
    let fds = listener.poll_fds();
    assert_eq!(fds.len(), 2, "the listening socket and the handshake");
    assert_eq!(fds[0].0.as_raw_fd(), listening_fd);
    assert_eq!(fds[1].1, Interest::Readable, "waiting for the reply");
    drop(fds);
    let deadline = listener.next_handshake_deadline().expect("a deadline");
    assert!(deadline >= t0 + HANDSHAKE && deadline <= Instant::now() + HANDSHAKE);
    assert!(
        listener
            .accept_timeout(Some(Duration::ZERO))
            .unwrap()
            .is_none()
    );

    // Another client is served while the silent one is still pending.
    let address = listener.address().clone();
    let good = std::thread::spawn(move || {
        let c = ClientBuilder::new()
            .authkey(*b"k")
            .connect(&address)
            .unwrap();
        c.send_bytes(b"served").unwrap();
        c
    });
    let mut conn = listener
        .accept_timeout(Some(Duration::from_secs(30)))
        .unwrap()
        .expect("the good client");
    assert_eq!(conn.recv_bytes().unwrap(), b"served");
    let _c = good.join().unwrap();

    // The silent client's deadline passes: it is dropped and reported,
    // whether the call was waiting (a bounded call wakes for it) or not.
    let err = listener
        .accept_timeout(Some(Duration::from_secs(30)))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(Instant::now() >= deadline);
    assert_eq!(listener.pending_handshakes(), 0);
    assert_eq!(listener.next_handshake_deadline(), None);
    let mut byte = [0u8; 64];
    // What it was sent was the challenge; then the listener hung up.
    let mut silent = silent;
    let mut total = 0;
    loop {
        match std::io::Read::read(&mut silent, &mut byte) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(total > 0, "no challenge was sent");
}

#[test]
fn a_full_listener_asks_not_to_be_polled_for_new_clients() {
    let mut listener = Listener::builder()
        .family(Family::Unix)
        .authkey(*b"k")
        .max_pending_handshakes(1)
        .handshake_timeout(Duration::from_secs(30))
        .bind()
        .unwrap();
    let listening_fd = listener.as_fd().as_raw_fd();
    let _first = silent_client(&listener);
    let _second = silent_client(&listener);
    assert!(
        listener
            .accept_timeout(Some(Duration::ZERO))
            .unwrap()
            .is_none()
    );
    assert!(
        listener
            .accept_timeout(Some(Duration::from_millis(20)))
            .unwrap()
            .is_none()
    );
    // The second waits in the backlog: only the handshake is to be polled
    // (polling the listening socket would spin, as it stays readable).
    assert_eq!(listener.pending_handshakes(), 1);
    let fds = listener.poll_fds();
    assert_eq!(fds.len(), 1);
    assert_ne!(fds[0].0.as_raw_fd(), listening_fd);
    drop(fds);
    // Once closed, the placeholder is what there is to poll: readable, so
    // that a loop calls accept_timeout and hears of it.
    listener.close();
    let fds = listener.poll_fds();
    assert_eq!(fds.len(), 1);
    assert_eq!(fds[0].1, Interest::Readable);
    assert!(
        wait(&[&fds[0].0 as &dyn Waitable], Some(Duration::ZERO))
            .unwrap()
            .len()
            == 1
    );
    drop(fds);
    assert!(matches!(listener.accept_timeout(None), Err(Error::Closed)));
}

#[test]
fn conn36_signals_during_accept_are_retried() {
    let signals = install_sigalrm_handler();
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };

    // Without a key: blocked in poll for the listening socket.
    let mut listener = Listener::builder().family(Family::Unix).bind().unwrap();
    let address = listener.address().clone();
    let before = signals.load(Ordering::SeqCst);
    let peer = std::thread::spawn(move || {
        pester(me, 5, Duration::from_millis(20));
        let c = client(&address, None).unwrap();
        c.send_bytes(b"after signals").unwrap();
        c
    });
    let mut conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"after signals");
    drop(peer.join().unwrap());
    assert!(signals.load(Ordering::SeqCst) >= before + 5);

    // With a key and a silent client pending: blocked in the poll over the
    // listening socket and the handshakes.
    let mut listener = Listener::builder()
        .family(Family::Unix)
        .authkey(*b"k")
        .handshake_timeout(Duration::from_secs(30))
        .bind()
        .unwrap();
    let silent = silent_client(&listener);
    let address = listener.address().clone();
    let before = signals.load(Ordering::SeqCst);
    let peer = std::thread::spawn(move || {
        pester(me, 5, Duration::from_millis(20));
        let c = ClientBuilder::new()
            .authkey(*b"k")
            .connect(&address)
            .unwrap();
        c.send_bytes(b"authenticated after signals").unwrap();
        c
    });
    let mut conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"authenticated after signals");
    drop(peer.join().unwrap());
    assert!(signals.load(Ordering::SeqCst) >= before + 5);
    assert_eq!(
        listener.pending_handshakes(),
        1,
        "the silent one still waits"
    );

    // A bounded accept interrupted by signals keeps waiting for the time
    // that remains, then reports that nothing came.
    let before = signals.load(Ordering::SeqCst);
    let pesterer = std::thread::spawn(move || pester(me, 3, Duration::from_millis(30)));
    let t0 = Instant::now();
    let got = listener.accept_timeout(Some(Duration::from_millis(300)));
    pesterer.join().unwrap();
    assert!(matches!(got, Ok(None)), "{got:?}");
    assert!(t0.elapsed() >= Duration::from_millis(300), "cut short");
    assert!(signals.load(Ordering::SeqCst) >= before + 3);
    drop(silent);
}
