//! SharedBuffer, Arena and the typed wrappers as serde values whose arena
//! fd travels beside the bytes (mp-reduction), as process arguments do.

use std::os::fd::{AsFd, OwnedFd};

use mp_heap::{Arena, Array, Heap, SharedBuffer, Value};
use mp_reduction::{collect_fds, provide_fds};
use serde::{Serialize, de::DeserializeOwned};

/// Serializes `value` as a process starter does, and rebuilds it from the
/// bytes and the collected fds.
fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> (Result<T, postcard::Error>, usize) {
    let (bytes, fds) = collect_fds(|| postcard::to_allocvec(value));
    let bytes = bytes.unwrap();
    let n = fds.len();
    let (back, unclaimed) = provide_fds(fds, || postcard::from_bytes::<T>(&bytes));
    assert!(unclaimed.is_empty());
    (back, n)
}

#[test]
fn a_received_buffer_sees_the_same_bytes_and_frees_nothing() {
    let heap = Heap::with_discard_threshold(0);
    let mut buf = heap.malloc(100).unwrap();
    buf[..5].copy_from_slice(b"hello");
    let (back, nfds) = round_trip(&buf);
    let mut back = back.unwrap();
    assert_eq!(nfds, 1);
    assert_eq!(back.len(), 100);
    assert_eq!(&back[..5], b"hello");
    assert_eq!(
        back.owner_pid(),
        None,
        "rebuilt from parts, not a heap block"
    );
    // A separate mapping of the same memory: writes go both ways.
    assert_ne!(back.as_ptr(), buf.as_ptr());
    back[0] = b'J';
    assert_eq!(&buf[..5], b"Jello");
    let used = heap.stats().used_bytes;
    drop(back);
    assert_eq!(heap.stats().used_bytes, used, "the receiver freed nothing");
    drop(buf);
    assert_eq!(heap.stats().arenas, 0);
}

#[test]
fn share_is_a_second_view() {
    let mut buf = SharedBuffer::zeroed(16).unwrap();
    let view = buf.share().unwrap();
    buf[3] = 9;
    assert_eq!(view[3], 9);
    assert_eq!(view.offset(), buf.offset());
}

#[test]
fn arenas_and_typed_values_travel() {
    let arena = Arena::new(8192).unwrap();
    let (back, nfds) = round_trip(&arena);
    assert_eq!(nfds, 1);
    let back = back.unwrap();
    assert_eq!(back.size(), 8192);
    assert_eq!(back.identity().unwrap(), arena.identity().unwrap());

    let v = Value::new(41_u64).unwrap();
    let (w, nfds) = round_trip(&v);
    let w = w.unwrap();
    assert_eq!(nfds, 2, "the lock's block and the value's");
    w.lock().unwrap().update(|n| n + 1);
    assert_eq!(v.get().unwrap(), 42);
    // The receiver shares the lock itself.
    let g = v.lock().unwrap();
    assert!(w.get_lock().is_locked());
    drop(g);

    let a = Array::from_slice(&[1_i32, 2, 3]).unwrap();
    let b = round_trip(&a).0.unwrap();
    b.set(1, 20).unwrap();
    assert_eq!(a.to_vec().unwrap(), [1, 20, 3]);

    // A caller's lock shared by two values stays one lock on arrival.
    let lock = mp_heap::SharedLock::plain().unwrap();
    let pair = (
        Value::with_lock(1_u8, lock.clone()).unwrap(),
        Value::with_lock(2_u8, lock.clone()).unwrap(),
    );
    let (x, y) = round_trip(&pair).0.unwrap();
    let g = x.lock().unwrap();
    assert!(y.get_lock().is_locked() && lock.is_locked());
    drop(g);
    assert!(!lock.is_locked());
    // The layout is checked: three i32 are no u64 value.
    let wrong = {
        let (bytes, fds) = collect_fds(|| postcard::to_allocvec(&a));
        provide_fds(fds, || postcard::from_bytes::<Value<u64>>(&bytes.unwrap())).0
    };
    assert!(wrong.is_err());
}

#[test]
fn bad_input_is_an_error() {
    let buf = SharedBuffer::new(8).unwrap();
    // Outside collect_fds, and outside provide_fds.
    assert!(postcard::to_allocvec(&buf).is_err());
    let (bytes, _fds) = collect_fds(|| postcard::to_allocvec(&buf));
    assert!(postcard::from_bytes::<SharedBuffer>(&bytes.unwrap()).is_err());
    // Bounds beyond the arena, and an arena size the file does not have:
    // the wire form is ((fd slot, arena size), offset, len).
    let size = buf.arena().size() as u64;
    for (arena_size, offset, len) in [(size, size, 8), (size, 0, size + 1), (size * 4, 0, 8)] {
        let fd: OwnedFd = buf.arena().as_fd().try_clone_to_owned().unwrap();
        let bytes =
            postcard::to_allocvec(&((mp_reduction::FdSlot(0), arena_size), offset, len)).unwrap();
        let (back, _) = provide_fds(vec![fd], || postcard::from_bytes::<SharedBuffer>(&bytes));
        assert!(back.is_err(), "{arena_size} {offset} {len}");
    }
}
