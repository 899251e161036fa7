//! `pipe()`: CONN-07, CONN-41.

use std::os::fd::AsFd;
use std::time::Duration;

use mp_conn::{Error, pipe};

#[test]
fn conn07_one_way_pipe_directions() {
    let (mut reader, mut writer) = pipe(false).unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(!writer.readable() && writer.writable());
    assert!(matches!(reader.send_bytes(b"x"), Err(Error::NotWritable)));
    assert!(matches!(reader.send(&1u8), Err(Error::NotWritable)));
    assert!(matches!(writer.recv_bytes(), Err(Error::NotReadable)));
    assert!(matches!(
        writer.poll(Some(Duration::ZERO)),
        Err(Error::NotReadable)
    ));
    assert!(matches!(writer.recv::<u8>(), Err(Error::NotReadable)));
    writer.send_bytes(b"one way").unwrap();
    assert_eq!(reader.recv_bytes().unwrap(), b"one way");
}

#[test]
fn conn41_duplex_is_a_socketpair_and_simplex_an_os_pipe() {
    let (a, b) = pipe(true).unwrap();
    assert!(a.is_unix_socket() && b.is_unix_socket());
    let stat = rustix::fs::fstat(a.as_fd()).unwrap();
    assert_eq!(
        rustix::fs::FileType::from_raw_mode(stat.st_mode),
        rustix::fs::FileType::Socket
    );
    let (r, w) = pipe(false).unwrap();
    assert!(!r.is_unix_socket() && !w.is_unix_socket());
    let stat = rustix::fs::fstat(r.as_fd()).unwrap();
    assert_eq!(
        rustix::fs::FileType::from_raw_mode(stat.st_mode),
        rustix::fs::FileType::Fifo
    );
    for conn in [&a, &b, &r, &w] {
        let flags = rustix::io::fcntl_getfd(conn.as_fd()).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }
}
