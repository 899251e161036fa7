//! A connection handle that is passed on takes its read-ahead bytes along:
//! the copy receives them, exactly once, and the original gives them up
//! once the copy has arrived. (Across processes and forks:
//! `tests/forks.rs` here and mp-context's `tests/connections.rs`.)

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mp_conn::{Connection, Error, pipe};

const NOW: Option<Duration> = Some(Duration::ZERO);

/// A reader that has received "one" and holds "two" and "three" read
/// ahead, and the writer.
fn with_read_ahead() -> (Connection, Connection) {
    let (mut reader, writer) = pipe(true).unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        writer.send_bytes(m).unwrap();
    }
    assert_eq!(reader.recv_bytes().unwrap(), b"one");
    assert_eq!(
        reader.buffered_len(),
        2 * 4 + 3 + 5,
        "the test needs read-ahead"
    );
    assert!(!reader.exact_reads());
    (reader, writer)
}

/// Serializes `conn` as a process argument would be, without telling it
/// that the copy arrived yet.
fn serialize(conn: &Connection) -> (Vec<u8>, Vec<OwnedFd>, mp_reduction::Handoffs) {
    let (bytes, collected) = mp_reduction::collect(|| postcard::to_allocvec(conn));
    let (fds, handoffs) = collected.into_parts();
    (bytes.unwrap(), fds, handoffs)
}

fn deserialize(bytes: &[u8], fds: Vec<OwnedFd>) -> Connection {
    let (copy, unclaimed) =
        mp_reduction::provide_fds(fds, || postcard::from_bytes::<Connection>(bytes));
    assert!(unclaimed.is_empty());
    copy.unwrap()
}

#[test]
fn a_copy_takes_the_read_ahead_and_the_original_gives_it_up_once_delivered() {
    let (mut original, writer) = with_read_ahead();
    let (bytes, fds, handoffs) = serialize(&original);
    // Until the copy is delivered, the original keeps what it read ahead.
    assert_eq!(original.buffered_len(), 16);
    assert!(original.exact_reads(), "a serialized handle may be shared");
    handoffs.delivered();
    assert_eq!(original.buffered_len(), 0);
    assert!(!original.poll(NOW).unwrap());
    let mut copy = deserialize(&bytes, fds);
    assert!(copy.exact_reads());
    assert_eq!(copy.buffered_len(), 16);
    assert_eq!(copy.recv_bytes().unwrap(), b"two");
    assert_eq!(copy.recv_bytes().unwrap(), b"three");
    // Both handles read the fd now, one message each, exactly.
    writer.send_bytes(b"four").unwrap();
    writer.send_bytes(b"five").unwrap();
    assert_eq!(original.recv_bytes().unwrap(), b"four");
    assert_eq!(copy.recv_bytes().unwrap(), b"five");
    assert!(!original.poll(NOW).unwrap() && !copy.poll(NOW).unwrap());
}

#[test]
fn an_undelivered_copy_leaves_the_read_ahead_where_it_was() {
    let (mut original, _writer) = with_read_ahead();
    let (_bytes, _fds, handoffs) = serialize(&original);
    drop(handoffs);
    assert_eq!(original.recv_bytes().unwrap(), b"two");
    assert_eq!(original.recv_bytes().unwrap(), b"three");
}

#[test]
fn collect_fds_counts_as_delivered_at_once() {
    let (original, _writer) = with_read_ahead();
    let (bytes, fds) = mp_reduction::collect_fds(|| postcard::to_allocvec(&original));
    assert_eq!(original.buffered_len(), 0);
    let mut copy = deserialize(&bytes.unwrap(), fds);
    assert_eq!(copy.recv_bytes().unwrap(), b"two");
}

#[test]
fn read_ahead_that_ends_inside_a_message_leaves_the_rest_to_the_copy() {
    let (mut original, writer) = pipe(true).unwrap();
    let big = vec![7u8; 30_000];
    writer.send_bytes(b"small").unwrap();
    writer.send_bytes(&big).unwrap();
    writer.send_bytes(b"after").unwrap();
    assert_eq!(original.recv_bytes().unwrap(), b"small");
    let buffered = original.buffered_len();
    assert!(buffered > 0 && buffered < big.len(), "{buffered}");
    let (bytes, fds, handoffs) = serialize(&original);
    handoffs.delivered();
    // The fd is in the middle of the big message, which is the copy's.
    assert!(matches!(original.recv_bytes(), Err(Error::LostBoundary)));
    assert!(original.poll(NOW).unwrap(), "the failing receive is ready");
    assert!(matches!(original.recv::<u8>(), Err(Error::LostBoundary)));
    let mut copy = deserialize(&bytes, fds);
    assert_eq!(copy.recv_bytes().unwrap(), big);
    assert_eq!(copy.recv_bytes().unwrap(), b"after");
    // The original still sends.
    original.send_bytes(b"back").unwrap();
    let mut writer = writer;
    assert_eq!(writer.recv_bytes().unwrap(), b"back");
    // A copy of the original knows it lost track too.
    let (bytes, fds, _) = serialize(&original);
    let mut again = deserialize(&bytes, fds);
    assert!(matches!(again.recv_bytes(), Err(Error::LostBoundary)));
}

#[test]
fn fds_that_came_with_the_read_ahead_travel_too() {
    let (mut original, writer) = pipe(true).unwrap();
    let (x, mut x_peer) = UnixStream::pair().unwrap();
    writer.send_bytes(b"first").unwrap();
    writer.send_fds(&[std::os::fd::AsFd::as_fd(&x)]).unwrap();
    writer.send_bytes(b"after").unwrap();
    drop(x);
    assert_eq!(original.recv_bytes().unwrap(), b"first");
    assert!(original.buffered_len() > 0, "the fd byte was read ahead");
    let (bytes, fds, handoffs) = serialize(&original);
    assert_eq!(fds.len(), 2, "the connection's fd and the one that came");
    handoffs.delivered();
    let mut copy = deserialize(&bytes, fds);
    let got = copy.recv_fds(1).unwrap();
    assert_eq!(copy.recv_bytes().unwrap(), b"after");
    // The fd works, and only the copy's copy of it is open.
    let mut got = UnixStream::from(got.into_iter().next().unwrap());
    std::io::Write::write_all(&mut got, b"!").unwrap();
    let mut byte = [0u8];
    std::io::Read::read_exact(&mut x_peer, &mut byte).unwrap();
    assert_eq!(&byte, b"!");
    drop((got, original, copy));
    assert_eq!(std::io::Read::read(&mut x_peer, &mut byte).unwrap(), 0);
}

#[test]
fn a_connection_sent_with_send_takes_its_read_ahead_along() {
    let (original, writer) = with_read_ahead();
    let (carrier, mut receiver) = pipe(true).unwrap();
    carrier.send(&("the reader", &original)).unwrap();
    assert_eq!(original.buffered_len(), 0, "delivered: given up");
    let (label, mut copy): (String, Connection) = receiver.recv().unwrap();
    assert_eq!(label, "the reader");
    assert_eq!(copy.recv_bytes().unwrap(), b"two");
    assert_eq!(copy.recv_bytes().unwrap(), b"three");
    writer.send_bytes(b"four").unwrap();
    assert_eq!(copy.recv_bytes().unwrap(), b"four");
}

#[test]
fn a_failed_send_leaves_the_read_ahead_where_it_was() {
    let (mut original, _writer) = with_read_ahead();
    let (carrier, receiver) = pipe(true).unwrap();
    drop(receiver);
    assert!(carrier.send(&original).is_err());
    assert_eq!(original.recv_bytes().unwrap(), b"two");
}

#[test]
fn exact_reads_can_be_asked_for_and_given_up() {
    let (mut a, b) = pipe(true).unwrap();
    a.set_exact_reads(true);
    b.send_bytes(b"x").unwrap();
    b.send_bytes(b"y").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"x");
    assert_eq!(a.buffered_len(), 0, "exact: nothing read ahead");
    a.set_exact_reads(false);
    b.send_bytes(b"z").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"y");
    assert!(a.buffered_len() > 0, "read-ahead again");
    // try_clone: both handles exact; what was read ahead stays with `a`.
    let mut clone = a.try_clone().unwrap();
    assert!(a.exact_reads() && clone.exact_reads());
    assert_eq!(a.recv_bytes().unwrap(), b"z");
    assert!(!clone.poll(NOW).unwrap());
}

#[test]
fn read_ahead_promised_to_a_parcel_is_neither_received_nor_promised_twice() {
    let (mut original, _writer) = with_read_ahead();
    let first = mp_conn::Parcel::encode(&original).unwrap();
    // The read-ahead is the first parcel's until it is sent or dropped.
    assert!(matches!(
        original.recv_bytes(),
        Err(Error::InvalidArgument(_))
    ));
    let second = mp_conn::Parcel::encode(&original).unwrap();
    let (carrier, mut receiver) = pipe(true).unwrap();
    carrier.send_parcel(second).unwrap();
    carrier.send_parcel(first).unwrap();
    let mut second: Connection = receiver.recv().unwrap();
    let mut first: Connection = receiver.recv().unwrap();
    assert_eq!(second.buffered_len(), 0, "nothing promised twice");
    assert_eq!(first.recv_bytes().unwrap(), b"two");
    assert_eq!(first.recv_bytes().unwrap(), b"three");
    assert_eq!(original.buffered_len(), 0);
    assert!(!second.poll(NOW).unwrap() && !original.poll(NOW).unwrap());
    // A parcel dropped unsent gives the read-ahead back.
    let (mut other, writer) = with_read_ahead();
    drop(mp_conn::Parcel::encode(&other).unwrap());
    assert_eq!(other.recv_bytes().unwrap(), b"two");
    drop(writer);
}
