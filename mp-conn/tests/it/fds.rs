//! fd passing: CONN-10, 11, 12, 24, 25 and MSG_CTRUNC.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use mp_conn::{Connection, Error, pipe};

use crate::core_support::run_child;

fn temp_file() -> std::fs::File {
    let path = std::env::temp_dir().join(format!(
        "mp-conn-fds-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn conn10_an_open_file_travels_and_is_cloexec() {
    let (a, mut b) = pipe(true).unwrap();
    let mut file = temp_file();
    a.send_fds(&[file.as_fd()]).unwrap();
    let fds = b.recv_fds(1).unwrap();
    assert_eq!(fds.len(), 1);
    let flags = rustix::io::fcntl_getfd(&fds[0]).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    let mut received = std::fs::File::from(fds.into_iter().next().unwrap());
    received.write_all(b"foo").unwrap();
    file.rewind().unwrap();
    let mut s = String::new();
    file.read_to_string(&mut s).unwrap();
    assert_eq!(s, "foo");
}

#[test]
fn several_fds_and_fds_after_messages_with_read_ahead() {
    let (a, mut b) = pipe(true).unwrap();
    let files: Vec<std::fs::File> = (0..3).map(|_| temp_file()).collect();
    let borrowed: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
    // A message, then fds, then a message: one read-ahead may take all three.
    a.send_bytes(b"before").unwrap();
    a.send_fds(&borrowed).unwrap();
    a.send_bytes(b"after").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(b.recv_bytes().unwrap(), b"before");
    let fds = b.recv_fds(3).unwrap();
    assert_eq!(fds.len(), 3);
    for (got, original) in fds.iter().zip(&files) {
        let s1 = rustix::fs::fstat(got).unwrap();
        let s2 = rustix::fs::fstat(original).unwrap();
        assert_eq!((s1.st_dev, s1.st_ino), (s2.st_dev, s2.st_ino));
    }
    assert_eq!(b.recv_bytes().unwrap(), b"after");
}

#[test]
fn conn11_fd_numbers_above_256() {
    let (a, mut b) = pipe(true).unwrap();
    let file = temp_file();
    // The sender's fd is above 256, and the receiver has 0..=256 occupied.
    let high = rustix::io::fcntl_dupfd_cloexec(&file, 300).unwrap();
    assert!(high.as_raw_fd() >= 300);
    let mut fillers = Vec::new();
    loop {
        let fd = rustix::io::fcntl_dupfd_cloexec(&file, 0).unwrap();
        let n = fd.as_raw_fd();
        fillers.push(fd);
        if n > 256 {
            break;
        }
    }
    a.send_fds(&[high.as_fd()]).unwrap();
    let fds = b.recv_fds(1).unwrap();
    let got = &fds[0];
    let (s1, s2) = (
        rustix::fs::fstat(got).unwrap(),
        rustix::fs::fstat(&file).unwrap(),
    );
    assert_eq!((s1.st_dev, s1.st_ino), (s2.st_dev, s2.st_ino));
    drop(fillers);
}

#[test]
fn conn12_missing_fds_are_an_error() {
    let (a, mut b) = pipe(true).unwrap();
    a.send_bytes(b"no fds here").unwrap();
    assert!(matches!(b.recv_fds(1), Err(Error::FdTransfer(_))));
    // A raw byte without ancillary data, as a misbehaving peer would send.
    let (raw, conn) = UnixStream::pair().unwrap();
    let mut conn = Connection::new(OwnedFd::from(conn), true, true).unwrap();
    (&raw).write_all(&[1]).unwrap();
    assert!(matches!(conn.recv_fds(1), Err(Error::FdTransfer(_))));
    drop(raw);
    assert!(matches!(conn.recv_fds(1), Err(Error::Eof)));
}

#[test]
fn more_fds_than_expected_are_refused() {
    let (a, mut b) = pipe(true).unwrap();
    let file = temp_file();
    a.send_fds(&[file.as_fd(), file.as_fd()]).unwrap();
    // (That the refused fds are closed is checked in a single-threaded
    // child by `msg_ctrunc_is_detected_and_arrived_fds_closed`.)
    assert!(matches!(b.recv_fds(1), Err(Error::FdTransfer(_))));
}

#[test]
fn fd_passing_needs_a_unix_socket() {
    let (mut r, w) = pipe(false).unwrap();
    let file = temp_file();
    assert!(matches!(
        w.send_fds(&[file.as_fd()]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(r.recv_fds(1), Err(Error::InvalidArgument(_))));
    let (c, _d) = pipe(true).unwrap();
    let too_many: Vec<_> = (0..254).map(|_| file.as_fd()).collect();
    assert!(matches!(
        c.send_fds(&too_many),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn msg_ctrunc_is_detected_and_arrived_fds_closed() {
    let (parent, child_end) = pipe(true).unwrap();
    let mut parent = parent;
    let files: Vec<std::fs::File> = (0..3).map(|_| temp_file()).collect();
    let result = run_child("ctrunc", child_end.into_fd().unwrap(), || {
        let borrowed: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        parent.send_fds(&borrowed).unwrap();
        assert_eq!(parent.recv_bytes().unwrap(), b"checked");
    });
    assert!(result.success, "child failed: {}", result.stderr);
}

#[test]
fn conn24_25_connections_travel_with_their_directions() {
    let (parent, child_end) = pipe(true).unwrap();
    let mut parent = parent;
    let (child_reader, parent_writer) = pipe(false).unwrap();
    let (mut parent_reader, child_writer) = pipe(false).unwrap();
    let result = run_child("recv_connections", child_end.into_fd().unwrap(), || {
        parent.send_connection(child_reader).unwrap();
        parent.send_connection(child_writer).unwrap();
        parent_writer.send_bytes(b"all is well").unwrap();
        assert_eq!(parent_reader.recv_bytes().unwrap(), b"");
        assert_eq!(parent_reader.recv_bytes().unwrap(), b"foobar".repeat(2));
        assert_eq!(parent.recv_bytes().unwrap(), b"done");
    });
    assert!(result.success, "child failed: {}", result.stderr);
}

#[test]
fn send_connection_in_process_keeps_socket_kind() {
    let (a, mut b) = pipe(true).unwrap();
    let (x, mut y) = pipe(true).unwrap();
    a.send_connection(x).unwrap();
    let x2 = b.recv_connection().unwrap();
    assert!(x2.readable() && x2.writable() && x2.is_unix_socket());
    x2.send_bytes(b"through a passed connection").unwrap();
    assert_eq!(y.recv_bytes().unwrap(), b"through a passed connection");
}

/// CPython 3.14's form of fd passing: the receiver acknowledges with b"A",
/// which the sender waits for; anything else is refused, and the stream
/// stays in step for the messages after it.
#[test]
fn acknowledged_fd_passing_as_cpython_3_14() {
    let (mut a, mut b) = pipe(true).unwrap();
    let file = temp_file();
    let receiver = std::thread::spawn(move || {
        let fds = b.recv_fds_acked(1).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"after");
        b.send_bytes(b"not an ack").unwrap();
        (fds, b)
    });
    a.send_fds_acked(&[file.as_fd()]).unwrap();
    a.send_bytes(b"after").unwrap();
    let (fds, mut b) = receiver.join().unwrap();
    assert_eq!(fds.len(), 1);
    // A peer that answers with anything but the ack byte (here a frame).
    let err = a.send_fds_acked(&[file.as_fd()]).unwrap_err();
    assert!(matches!(err, Error::FdTransfer(_)), "{err:?}");
    assert!(err.to_string().contains("acknowledgement"), "{err}");
    drop(b.recv_fds(1).unwrap());
}
