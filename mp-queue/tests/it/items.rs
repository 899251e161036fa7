//! Items of every shape: 0 bytes and 64 MiB, byte vectors and structs,
//! items that hold fds, items of the wrong type.

use std::os::fd::OwnedFd;
use std::time::Duration;

use mp_queue::{Queue, QueueError, SimpleQueue};

const PATIENCE: Option<Duration> = Some(Duration::from_secs(60));

#[test]
fn zero_byte_and_huge_items_travel() {
    let q: Queue<Vec<u8>> = Queue::new(0).unwrap();
    q.put(&Vec::new(), true, None).unwrap();
    let mut big = vec![0u8; 64 << 20];
    for (i, page) in big.chunks_mut(4096).enumerate() {
        page.fill((i % 251) as u8);
    }
    q.put(&big, true, None).unwrap();
    q.put(&vec![1; 70_000], true, None).unwrap(); // above the inline limit
    assert_eq!(q.get(true, PATIENCE).unwrap(), Vec::<u8>::new());
    assert!(q.get(true, PATIENCE).unwrap() == big);
    assert_eq!(q.get(true, PATIENCE).unwrap(), vec![1; 70_000]);
    let units: Queue<()> = Queue::new(0).unwrap();
    units.put(&(), true, None).unwrap();
    units.get(true, PATIENCE).unwrap();
    let strings: Queue<String> = Queue::new(0).unwrap();
    strings.put(&"x".repeat(3 << 20), true, None).unwrap();
    assert_eq!(strings.get(true, PATIENCE).unwrap().len(), 3 << 20);
}

#[test]
fn items_with_fds_work_where_they_arrive() {
    let (a, b) = mp_conn::pipe(true).unwrap();
    let q: Queue<(String, mp_conn::Connection)> = Queue::new(0).unwrap();
    q.put(&("end".into(), b), true, None).unwrap(); // a duplicate travels
    let (name, mut b) = q.get(true, PATIENCE).unwrap();
    assert_eq!(name, "end");
    a.send(&42u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 42);
    // A shared buffer, a Value and a raw fd, with a big payload beside.
    let mut buf = mp_heap::SharedBuffer::zeroed(16).unwrap();
    let value = mp_heap::Value::new(5u64).unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    type Kit = (
        mp_heap::SharedBuffer,
        mp_heap::Value<u64>,
        mp_reduction::Fd,
        Vec<u8>,
    );
    let kit: Queue<Kit> = Queue::new(0).unwrap();
    let w = mp_reduction::Fd::from(w);
    kit.put(
        &(buf.share().unwrap(), value, w, vec![3; 1 << 20]),
        true,
        None,
    )
    .unwrap();
    let (mut got_buf, got_value, got_w, bulk) = kit.get(true, PATIENCE).unwrap();
    assert_eq!(bulk.len(), 1 << 20);
    got_buf[0] = 9;
    assert_eq!(buf[0], 9);
    buf[1] = 8;
    assert_eq!(got_buf[1], 8);
    assert_eq!(got_value.get().unwrap(), 5);
    rustix::io::write(&got_w, b"!").unwrap();
    let mut one = [0u8];
    rustix::io::read(&r, &mut one).unwrap();
    assert_eq!(&one, b"!");
    let locks: SimpleQueue<mp_sync::Lock> = SimpleQueue::new().unwrap();
    let lock = mp_sync::Lock::new().unwrap();
    locks.put(&lock).unwrap();
    let got = locks.get().unwrap();
    assert!(got.acquire(false, None).unwrap());
    assert!(lock.is_locked());
    got.release().unwrap();
}

#[test]
fn an_item_that_cannot_be_encoded_is_refused() {
    // A closed connection refuses to serialize.
    let (mut a, _b) = mp_conn::pipe(true).unwrap();
    a.close();
    let q: Queue<mp_conn::Connection> = Queue::new(0).unwrap();
    let e = q.put(&a, true, None).unwrap_err();
    assert!(matches!(e, QueueError::Encode(_)), "{e:?}");
    assert!(format!("{e:?}").contains("closed"), "{e:?}");
    assert_eq!(q.qsize(), 0);
}

#[test]
fn too_many_fds_is_an_error() {
    let fds: Vec<mp_reduction::Fd> = (0..300)
        .map(|_| mp_reduction::Fd::from(OwnedFd::from(std::fs::File::open("/dev/null").unwrap())))
        .collect();
    let q: Queue<Vec<mp_reduction::Fd>> = Queue::new(0).unwrap();
    let e = q.put(&fds, true, None).unwrap_err();
    assert!(
        matches!(e, QueueError::TooManyFds { fds: 300, .. }),
        "{e:?}"
    );
    let fds: Vec<mp_reduction::Fd> = fds.into_iter().take(200).collect();
    q.put(&fds, true, None).unwrap();
    assert_eq!(q.get(true, PATIENCE).unwrap().len(), 200);
}

#[test]
fn a_queue_travels_inside_a_message_and_is_refused_as_another_type() {
    let (a, mut b) = mp_conn::pipe(true).unwrap();
    let q: Queue<u32> = Queue::new(0).unwrap();
    a.send(&q).unwrap();
    let again: Queue<u32> = b.recv().unwrap();
    again.put(&5, true, None).unwrap();
    assert_eq!(q.get(true, PATIENCE).unwrap(), 5);
    a.send(&q).unwrap();
    let e = b.recv::<Queue<String>>().unwrap_err();
    assert!(format!("{e:?}").contains("another type"), "{e:?}");
    a.send(&q).unwrap();
    let e = b.recv::<SimpleQueue<u32>>().unwrap_err();
    assert!(
        format!("{e:?}").contains("it is a Queue, received as a SimpleQueue"),
        "{e:?}"
    );
}
