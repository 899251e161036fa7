//! CPython's `multiprocessing.connection.Client` against our `Listener`:
//! both families, every size and digest, wrong keys, legacy peers, pickles,
//! and fd passing with `reduction.sendfds`/`recvfds`/`send_handle`/
//! `recv_handle` in both directions.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

use mp_conn::{Connection, Digest, Error, Family, Listener, Policy};

use crate::interop_listener::{BIG, SIZES};
use crate::python::{Peer, cpython_tests, find, hex};

const KEY: &[u8] = b"another interop secret";

fn listener(family: Family) -> mp_conn::ListenerBuilder {
    Listener::builder().family(family).authkey(KEY)
}

/// Accepts one client on a thread and runs `then` on its connection.
fn accept_one<T: Send + 'static>(
    mut listener: Listener,
    then: impl FnOnce(Connection) -> T + Send + 'static,
) -> (mp_conn::Address, JoinHandle<mp_conn::Result<T>>) {
    let address = listener.address().clone();
    let handle = std::thread::spawn(move || listener.accept().map(then));
    (address, handle)
}

/// Echoes until the client closes; the number of messages.
fn echo(mut conn: Connection) -> usize {
    let mut buf = Vec::new();
    let mut count = 0;
    loop {
        match conn.recv_bytes_into_vec(&mut buf) {
            Ok(n) => conn.send_bytes(&buf[..n]).unwrap(),
            Err(Error::Eof) => return count,
            Err(e) => panic!("echo: {e}"),
        }
        count += 1;
    }
}

/// Sends `command`, which CPython must fail with `AuthenticationError`,
/// and returns how our listener's accept failed.
fn refused(
    peer: &mut Peer,
    command: &str,
    server: JoinHandle<mp_conn::Result<usize>>,
) -> mp_auth::AuthenticationError {
    peer.send(command);
    peer.expect_authentication_error();
    match server.join().unwrap() {
        Err(Error::Authentication(e)) => e,
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).unwrap();
    out
}

fn run(minor: u32) {
    let Some(python) = find(minor) else { return };
    let mut peer = Peer::start(&python);
    let key = hex(KEY);

    for family in [Family::Unix, Family::Inet] {
        let (address, server) = accept_one(listener(family).bind().unwrap(), echo);
        let mut sizes: Vec<String> = SIZES.iter().map(usize::to_string).collect();
        if family == Family::Unix {
            sizes.push(BIG.to_string());
        }
        peer.send(&format!(
            "op=connect address={address} authkey={key} sizes={}",
            sizes.join(",")
        ));
        assert_eq!(peer.result(), Ok(sizes.len().to_string()), "{family}");
        assert_eq!(server.join().unwrap().unwrap(), sizes.len());
    }

    // Pickles made by CPython travel through us as opaque bytes.
    let (address, server) = accept_one(listener(Family::Unix).bind().unwrap(), echo);
    peer.send(&format!(
        "op=connect address={address} authkey={key} action=pickle"
    ));
    assert_eq!(peer.result(), Ok("6".into()));
    assert_eq!(server.join().unwrap().unwrap(), 6);

    // A wrong key fails on both sides.
    let (address, server) = accept_one(listener(Family::Inet).bind().unwrap(), echo);
    let command = format!("op=connect address={address} authkey=00ff action=echo");
    let e = refused(&mut peer, &command, server);
    assert!(
        matches!(e, mp_auth::AuthenticationError::DigestReceivedWrong),
        "{e:?}"
    );

    // The empty key is a real key.
    let builder = Listener::builder().family(Family::Unix).authkey(Vec::new());
    let (address, server) = accept_one(builder.bind().unwrap(), echo);
    peer.send(&format!(
        "op=connect address={address} authkey= digest=default sizes=3"
    ));
    assert_eq!(peer.result(), Ok("1".into()));
    assert_eq!(server.join().unwrap().unwrap(), 1);

    if python.legacy() {
        // A 3.11 client answers our {sha256} challenge with bare HMAC-MD5
        // (accepted above); a listener that refuses MD5 turns it away.
        let builder = listener(Family::Unix).policy(Policy::refuse_md5());
        let (address, server) = accept_one(builder.bind().unwrap(), echo);
        let command = format!("op=connect address={address} authkey={key} sizes=1");
        let e = refused(&mut peer, &command, server);
        assert!(
            matches!(e, mp_auth::AuthenticationError::DigestRefused { .. }),
            "{e:?}"
        );
    } else {
        for digest in Digest::ALL {
            let builder = listener(Family::Inet).digest(digest);
            let (address, server) = accept_one(builder.bind().unwrap(), echo);
            peer.send(&format!(
                "op=connect address={address} authkey={key} digest={digest} sizes=5"
            ));
            assert_eq!(peer.result(), Ok("1".into()), "{digest}");
            assert_eq!(server.join().unwrap().unwrap(), 1, "{digest}");
        }
    }

    // fd passing: CPython's sendfds to our recv_fds. CPython 3.14 and newer
    // acknowledge fds (a b"A" back to the sender), older ones on Linux not.
    let acks = python.minor >= 14;
    let (address, server) = accept_one(listener(Family::Unix).bind().unwrap(), move |mut conn| {
        let fds = if acks {
            conn.recv_fds_acked(3).unwrap()
        } else {
            conn.recv_fds(3).unwrap()
        };
        let contents: Vec<Vec<u8>> = fds.into_iter().map(read_all).collect();
        conn.send_bytes(b"thanks").unwrap();
        contents
    });
    peer.send(&format!(
        "op=connect address={address} authkey={key} sendfds=3"
    ));
    assert_eq!(peer.result(), Ok("thanks".into()));
    let contents = server.join().unwrap().unwrap();
    for (i, content) in contents.iter().enumerate() {
        assert_eq!(content, format!("python pipe {i}").as_bytes());
    }

    // Our send_fds to CPython's recvfds: it writes into our pipes.
    let (address, server) = accept_one(listener(Family::Unix).bind().unwrap(), move |mut conn| {
        let (r1, w1) = rustix::pipe::pipe().unwrap();
        let (r2, w2) = rustix::pipe::pipe().unwrap();
        let ends = [w1.as_fd(), w2.as_fd()];
        if acks {
            conn.send_fds_acked(&ends).unwrap()
        } else {
            conn.send_fds(&ends).unwrap()
        }
        drop((w1, w2));
        assert_eq!(conn.recv_bytes().unwrap(), b"done");
        (read_all(r1), read_all(r2))
    });
    peer.send(&format!(
        "op=connect address={address} authkey={key} recvfds=2"
    ));
    assert_eq!(peer.result(), Ok("2".into()));
    let (a, b) = server.join().unwrap().unwrap();
    assert_eq!(
        (a.as_slice(), b.as_slice()),
        (&b"python wrote 0"[..], &b"python wrote 1"[..])
    );

    // send_handle / recv_handle, CPython's one-fd wrappers.
    let (address, server) = accept_one(listener(Family::Unix).bind().unwrap(), move |mut conn| {
        let fds = if acks {
            conn.recv_fds_acked(1).unwrap()
        } else {
            conn.recv_fds(1).unwrap()
        };
        let fd = fds.into_iter().next().unwrap();
        let content = read_all(fd);
        conn.send_bytes(b"got it").unwrap();
        content
    });
    peer.send(&format!(
        "op=connect address={address} authkey={key} action=send_handle"
    ));
    assert_eq!(peer.result(), Ok("got it".into()));
    assert_eq!(server.join().unwrap().unwrap(), b"python handle");
    let (address, server) = accept_one(listener(Family::Unix).bind().unwrap(), move |mut conn| {
        let (r, w) = rustix::pipe::pipe().unwrap();
        if acks {
            conn.send_fds_acked(&[w.as_fd()]).unwrap()
        } else {
            conn.send_fds(&[w.as_fd()]).unwrap()
        }
        drop(w);
        assert_eq!(conn.recv_bytes().unwrap(), b"done");
        read_all(r)
    });
    peer.send(&format!(
        "op=connect address={address} authkey={key} action=recv_handle"
    ));
    assert_eq!(peer.result(), Ok("1".into()));
    assert_eq!(server.join().unwrap().unwrap(), b"python handle");

    peer.finish();
}

cpython_tests!(run);
