//! Values that hold fds through `send`/`recv`: SCM_RIGHTS beside the bytes
//! on unix sockets, a clear error elsewhere, nothing leaked, nothing lost,
//! and serde's own explanation in every encode and decode error. (Between
//! real processes: `tests/forks.rs`, and mp-context's
//! `tests/connections.rs`.)

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mp_conn::{Connection, Error, Parcel, pipe, pipe_pair};
use mp_reduction::Fd;

const NOW: Option<Duration> = Some(Duration::ZERO);

/// A socketpair end to send, and its peer: the peer reads EOF once every
/// copy of the end is closed, which is how these tests see a leak.
fn end_and_peer() -> (Fd, UnixStream) {
    let (end, peer) = UnixStream::pair().unwrap();
    (Fd::from(OwnedFd::from(end)), peer)
}

fn assert_closed_everywhere(mut peer: UnixStream) {
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut byte = [0u8];
    assert_eq!(peer.read(&mut byte).unwrap(), 0, "a copy of the fd leaked");
}

fn assert_works(fd: Fd, peer: &mut UnixStream) {
    let mut end = UnixStream::from(fd.into_inner());
    end.write_all(b"ok").unwrap();
    let mut got = [0u8; 2];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ok");
}

#[test]
fn a_message_without_fds_is_the_same_bytes_as_ever() {
    let (a, b) = pipe(true).unwrap();
    let value = (1u32, "two".to_string(), vec![3u8; 2000]);
    a.send(&value).unwrap();
    drop(a);
    let mut raw = std::fs::File::from(b.into_fd().unwrap());
    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).unwrap();
    let payload = postcard::to_allocvec(&value).unwrap();
    assert_eq!(&wire[..4], (payload.len() as u32).to_be_bytes());
    assert_eq!(&wire[4..], payload);
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Bundle {
    name: String,
    conn: Connection,
    fd: Fd,
    buffer: mp_heap::SharedBuffer,
    value: std::sync::Arc<mp_heap::Value<u64>>,
}

#[test]
fn a_struct_of_fd_values_arrives_working() {
    let (tx, mut rx) = pipe(true).unwrap();
    let (conn, mut conn_peer) = pipe(true).unwrap();
    let (fd, mut fd_peer) = end_and_peer();
    let mut buffer = mp_heap::SharedBuffer::zeroed(64).unwrap();
    buffer[..5].copy_from_slice(b"hello");
    let value = std::sync::Arc::new(mp_heap::Value::new(41u64).unwrap());
    let bundle = Bundle {
        name: "bundle".into(),
        conn,
        fd,
        buffer: buffer.share().unwrap(),
        value: value.clone(),
    };
    tx.send(&bundle).unwrap();
    drop(bundle);
    let mut got: Bundle = rx.recv().unwrap();
    assert_eq!(got.name, "bundle");
    conn_peer.send_bytes(b"over the sent end").unwrap();
    assert_eq!(got.conn.recv_bytes().unwrap(), b"over the sent end");
    got.conn.send_bytes(b"and back").unwrap();
    assert_eq!(conn_peer.recv_bytes().unwrap(), b"and back");
    assert_works(got.fd, &mut fd_peer);
    assert_eq!(&got.buffer[..5], b"hello");
    got.buffer[5] = b'!';
    assert_eq!(buffer[5], b'!', "the same shared bytes");
    got.value.lock().update(|n| n + 1);
    assert_eq!(value.get(), 42);
    // Nothing is left over on the carrier.
    assert!(!rx.poll(NOW).unwrap());
}

#[test]
fn values_with_fds_are_refused_where_fds_cannot_travel() {
    let (fd, _peer) = end_and_peer();
    let value = ("label", fd);
    let check = |result: mp_conn::Result<()>, what: &str| match result {
        Err(Error::FdsNeedUnixSocket {
            type_name,
            fds,
            connection,
        }) => {
            assert_eq!(type_name, std::any::type_name::<(&str, Fd)>());
            assert_eq!(fds, 1);
            assert!(connection.contains(what), "{connection}");
        }
        other => panic!("{what}: {other:?}"),
    };
    let (mut r, w) = pipe(false).unwrap();
    check(w.send(&value), "OS pipe");
    assert!(!r.poll(NOW).unwrap(), "nothing was sent");
    let (a, mut b) = pipe_pair().unwrap();
    check(a.send(&value), "pipe_pair");
    assert!(!b.poll(NOW).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let tcp = Connection::new(OwnedFd::from(tcp), true, true).unwrap();
    let err = tcp.send(&value).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TCP socket") && text.contains("Fd"), "{text}");
    check(Err(err), "TCP");
    // A value without fds still goes over all of them.
    w.send(&7u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 7);
}

#[test]
fn fds_that_nobody_claims_are_closed() {
    let (tx, mut rx) = pipe(true).unwrap();
    // Received as bytes: the fds that came with the message are closed.
    let (fd, peer) = end_and_peer();
    tx.send(&vec![fd]).unwrap();
    assert!(!rx.recv_bytes().unwrap().is_empty());
    assert_closed_everywhere(peer);
    // Decoded as a type that claims none of them.
    let (fd, peer) = end_and_peer();
    tx.send(&(5u8, fd)).unwrap();
    assert!(matches!(rx.recv::<(u8, u8, u8)>(), Err(Error::Decode(_))));
    assert_closed_everywhere(peer);
    // Decoded as a type that fails after claiming one.
    let (fd, peer) = end_and_peer();
    tx.send(&(fd, 300u16)).unwrap();
    assert!(matches!(rx.recv::<(Fd, u8)>(), Err(Error::Decode(_))));
    assert_closed_everywhere(peer);
    // The connection is fine afterwards.
    tx.send(&"next").unwrap();
    assert_eq!(rx.recv::<String>().unwrap(), "next");
}

/// One `sendmsg` of `bytes` with `fds` as `SCM_RIGHTS`, as a peer that
/// does not speak our encoding might send.
fn raw_send(sock: &UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)));
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(n, bytes.len());
}

#[test]
fn a_peer_sending_fds_with_garbage_loses_us_nothing_and_leaks_nothing() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut conn = Connection::new(OwnedFd::from(ours), true, true).unwrap();
    let (fd, peer) = end_and_peer();
    // A frame whose payload is no Connection, with an fd attached.
    let frame = [0, 0, 0, 3, 0xff, 0xff, 0xff];
    raw_send(&theirs, &frame, &[fd.as_fd()]);
    drop(fd);
    let err = conn.recv::<(Connection, u8)>().unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
    assert_closed_everywhere(peer);
    // Fds with a message that claims a slot it did not send.
    let (fd, peer) = end_and_peer();
    let slot_5 = postcard::to_allocvec(&mp_reduction::FdSlot(5)).unwrap();
    let mut frame = (slot_5.len() as u32).to_be_bytes().to_vec();
    frame.extend(&slot_5);
    raw_send(&theirs, &frame, &[fd.as_fd()]);
    drop(fd);
    let err = conn.recv::<Fd>().unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("fd slot 5 out of range"), "{text}");
    assert_closed_everywhere(peer);
    // And the next message is received as usual.
    let good = Connection::new(OwnedFd::from(theirs), true, true).unwrap();
    good.send(&"fine").unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "fine");
}

#[test]
fn more_fds_than_one_scm_rights_message_carries() {
    raise_fd_limit();
    let (tx, mut rx) = pipe(true).unwrap();
    let (fds, mut peers): (Vec<Fd>, Vec<UnixStream>) = (0..300).map(|_| end_and_peer()).unzip();
    tx.send(&fds).unwrap();
    drop(fds);
    let got: Vec<Fd> = rx.recv().unwrap();
    assert_eq!(got.len(), 300);
    for (fd, peer) in got.into_iter().zip(&mut peers) {
        assert_works(fd, peer);
    }
    for peer in peers {
        assert_closed_everywhere(peer);
    }
}

/// 300 fds, their peers, the copies in flight and the copies received
/// exceed a soft limit of 1024 with the other tests running beside.
fn raise_fd_limit() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
}

#[test]
fn parcels_encode_now_and_decode_later() {
    let (tx, mut rx) = pipe(true).unwrap();
    let (fd, mut peer) = end_and_peer();
    let parcel = Parcel::encode(&(9u32, fd)).unwrap();
    assert_eq!(parcel.fds().len(), 1);
    assert!(parcel.type_name().unwrap().contains("Fd"));
    tx.send_parcel(parcel).unwrap();
    let received = rx.recv_parcel().unwrap();
    assert_eq!(received.fds().len(), 1);
    assert_eq!(received.type_name(), None);
    // Forwarded as it came, fds included, then decoded.
    tx.send_parcel(received).unwrap();
    let (n, fd): (u32, Fd) = rx.recv_parcel().unwrap().decode().unwrap();
    assert_eq!(n, 9);
    assert_works(fd, &mut peer);
}

#[test]
fn encode_and_decode_errors_keep_serdes_explanation() {
    let (tx, mut rx) = pipe(true).unwrap();
    let (mut closed, _other) = pipe(true).unwrap();
    closed.close();
    let err = tx.send(&("x", &closed)).unwrap_err();
    let Error::Encode(serde) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(serde.message(), "handle is closed");
    assert_eq!(
        format!("{err:?}"),
        format!(
            "could not encode a value of type {}: handle is closed",
            std::any::type_name::<(&str, &Connection)>()
        )
    );
    // A message whose fd slot no fd backs (no fds came at all).
    tx.send_bytes(&[0]).unwrap();
    let err = rx.recv::<Fd>().unwrap_err();
    assert_eq!(
        format!("{err:?}"),
        "could not decode a message as a value of type mp_reduction::Fd: \
         fd slot 0 out of range: 0 fds were received"
    );
}

#[test]
fn errors_debug_as_their_message_and_causes() {
    let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe gone");
    assert_eq!(format!("{:?}", Error::Io(io)), "pipe gone");
    assert_eq!(
        format!("{:?}", Error::Closed),
        "handle is closed",
        "Debug is the message, not the variant's name"
    );
    let nested = std::io::Error::other(Error::Eof);
    assert_eq!(
        format!("{:?}", Error::Io(nested)),
        "end of file: the peer closed the connection"
    );
}
