//! Our client against CPython's `multiprocessing.connection.Listener`:
//! both families, every message size, every digest, wrong keys, legacy
//! (3.11) peers, and pickles carried as opaque bytes.

use std::time::Duration;

use mp_conn::{ClientBuilder, Digest, Error, Policy};

use crate::python::{Peer, cpython_tests, find, hex};

const KEY: &[u8] = b"interop secret";
/// Sizes around the 16 KiB boundary where CPython switches from one write
/// to two, and big ones.
pub(crate) const SIZES: [usize; 6] = [0, 1, 16383, 16384, 16385, 1 << 20];
pub(crate) const BIG: usize = 64 << 20;

/// Content that differs from byte to byte and from size to size.
pub(crate) fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i ^ size).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A client builder with `key` that never waits forever for a peer that
/// does not start.
fn client(key: &[u8]) -> ClientBuilder {
    ClientBuilder::new()
        .authkey(key)
        .accept_timeout(Some(Duration::from_secs(30)))
}

/// `client()`, but never waiting forever for a peer that does not start.
pub(crate) fn connect(
    address: &mp_conn::Address,
    key: &[u8],
) -> mp_conn::Result<mp_conn::Connection> {
    client(key).connect(address)
}

fn is_auth(e: &Error) -> bool {
    matches!(e, Error::Authentication(_))
}

fn run(minor: u32) {
    let Some(python) = find(minor) else { return };
    let mut peer = Peer::start(&python);

    for family in ["AF_UNIX", "AF_INET"] {
        let address = peer.serve(&format!("family={family} authkey={} action=echo", hex(KEY)));
        let mut conn = connect(&address, KEY).expect("authenticate with CPython");
        let mut sizes = SIZES.to_vec();
        if family == "AF_UNIX" {
            sizes.push(BIG);
        }
        let mut back = Vec::new();
        for &size in &sizes {
            let data = pattern(size);
            conn.send_bytes(&data).unwrap();
            let n = conn.recv_bytes_into_vec(&mut back).unwrap();
            assert!(
                back[..n] == data[..],
                "{family}: echo of {size} bytes differs"
            );
        }
        drop(conn);
        assert_eq!(peer.result(), Ok(sizes.len().to_string()), "{family}");
    }

    // CPython pickles; we carry the bytes back untouched. The first one is
    // (1, 'a'), whose bytes section A of wire_conn.txt shows.
    let address = peer.serve(&format!(
        "family=AF_UNIX authkey={} action=pickle",
        hex(KEY)
    ));
    let mut conn = connect(&address, KEY).unwrap();
    let mut first = None;
    loop {
        match conn.recv_bytes() {
            Ok(msg) => {
                first.get_or_insert_with(|| msg.clone());
                conn.send_bytes(&msg).unwrap();
            }
            Err(Error::Eof) => break,
            Err(e) => panic!("pickle echo: {e}"),
        }
    }
    assert_eq!(peer.result(), Ok("6".into()));
    // `conn.send((1, "a"))` pickles with the default protocol: 4 up to
    // CPython 3.13, 5 from 3.14 on (the rest of these bytes is the same).
    let protocol = if python.minor >= 14 { 5 } else { 4 };
    let mut expected =
        b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00K\x01\x8c\x01a\x94\x86\x94.".to_vec();
    expected[1] = protocol;
    assert_eq!(first.unwrap(), expected);

    // The empty key is a real key (CPython's Listener takes it as one only
    // from 3.13 on, bpo-43952, so the peer calls the handshake itself).
    let address = peer.serve("family=AF_INET authkey= digest=default action=echo");
    let mut conn = connect(&address, b"").unwrap();
    conn.send_bytes(b"x").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"x");
    drop(conn);
    assert_eq!(peer.result(), Ok("1".into()));

    // A wrong key fails on both sides. Our client has sent its challenge
    // together with its reply, so CPython closes the socket with that
    // challenge unread (over TCP, a reset): the #FAILURE# verdict before
    // it must still be what we read.
    for family in ["AF_UNIX", "AF_INET"] {
        let address = peer.serve(&format!("family={family} authkey={} action=echo", hex(KEY)));
        let err = connect(&address, b"wrong key").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Authentication(mp_auth::AuthenticationError::DigestSentRejected)
            ),
            "{family}: {err:?}"
        );
        peer.expect_authentication_error();
    }

    if python.legacy() {
        // A 3.11 Listener only speaks HMAC-MD5: our default client follows
        // (above); one that refuses MD5 fails cleanly on both sides.
        let address = peer.serve(&format!("family=AF_UNIX authkey={} action=echo", hex(KEY)));
        let err = client(KEY)
            .policy(Policy::refuse_md5())
            .connect(&address)
            .unwrap_err();
        assert!(is_auth(&err), "{err:?}");
        peer.expect_authentication_error();
    } else {
        // Every digest, chosen by CPython's deliver_challenge(digest_name=)
        // one way and by our challenge the other way.
        for digest in Digest::ALL {
            let address = peer.serve(&format!(
                "family=AF_UNIX authkey={} digest={digest} action=echo",
                hex(KEY)
            ));
            let mut conn = client(KEY)
                .digest(digest)
                .connect(&address)
                .unwrap_or_else(|e| panic!("{digest}: {e}"));
            conn.send_bytes(digest.name().as_bytes()).unwrap();
            assert_eq!(conn.recv_bytes().unwrap(), digest.name().as_bytes());
            drop(conn);
            assert_eq!(peer.result(), Ok("1".into()), "{digest}");
        }
        // Our MD5-refusing client against an {md5} challenge: we refuse,
        // CPython sees the connection close.
        let address = peer.serve(&format!(
            "family=AF_INET authkey={} digest=md5 action=echo",
            hex(KEY)
        ));
        let err = client(KEY)
            .policy(Policy::refuse_md5())
            .connect(&address)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Authentication(mp_auth::AuthenticationError::DigestRefused { .. })
            ),
            "{err:?}"
        );
        assert!(peer.result().is_err());
    }
    peer.finish();
}

cpython_tests!(run);
