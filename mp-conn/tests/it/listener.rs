//! Listener and client behaviour without CPython: families, addresses in
//! use, close and unlink, abstract names, IPv6, last_accepted, wait().

use std::time::Duration;

use mp_conn::{
    Address, ClientBuilder, Error, Family, Listener, Waitable, arbitrary_address, client, wait,
};

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
