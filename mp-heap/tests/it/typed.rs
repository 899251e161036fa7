//! HEAP-04, -07, -08, -11, -12: typed shared memory in one process.

use std::time::Duration;

use mp_heap::{
    Array, Heap, HeapError, Pod, ProcessLock, RawArray, RawValue, Shared, SharedBuffer, SharedLock,
    TryLockError, Value,
};

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Point3 {
    x: f64,
    y: f64,
    n: i64,
}
const _: () = assert!(std::mem::size_of::<Point3>() == 24);
const _: () = assert!(std::mem::align_of::<Point3>() == 8);
// SAFETY: repr(C), three 8-byte fields, no padding, every bit pattern valid.
unsafe impl Pod for Point3 {}

#[test]
fn values_keep_their_initial_values() {
    assert_eq!(Value::new(-5_i32).unwrap().get().unwrap(), -5);
    assert_eq!(Value::new(1.25_f64).unwrap().get().unwrap(), 1.25);
    assert_eq!(Value::new(-7_i16).unwrap().get().unwrap(), -7);
    assert_eq!(Value::new(1_i64 << 33).unwrap().get().unwrap(), 1 << 33);
    assert_eq!(Value::new(b'x').unwrap().get().unwrap(), b'x');
    assert_eq!(RawValue::new(1_i64 << 33).unwrap().get(), 1 << 33);
    let p = Point3 {
        x: 1.0,
        y: -2.0,
        n: 3,
    };
    assert_eq!(Value::new(p).unwrap().get().unwrap(), p);
    assert_eq!(Value::new([1_u16, 2, 3]).unwrap().get().unwrap(), [1, 2, 3]);
    assert_eq!(Value::new([7_u8; 3]).unwrap().get().unwrap(), [7; 3]);
}

#[test]
fn set_and_update_under_the_lock() {
    let v = Value::new(10_u64).unwrap();
    v.set(11).unwrap();
    {
        let mut g = v.lock().unwrap();
        assert_eq!(g.update(|n| n * 2), 22);
        // Recursive, like CPython's default RLock: the holder re-enters.
        assert!(v.get_lock().is_recursive());
        assert_eq!(v.get().unwrap(), 22);
        let mut inner = v.lock().unwrap();
        inner.set(23);
        drop(inner);
        assert_eq!(g.get(), 23);
        let other =
            std::thread::scope(|s| s.spawn(|| v.get_lock().try_lock().is_ok()).join().unwrap());
        assert!(!other, "another thread got the lock while we hold it");
    }
    assert!(v.get_lock().try_lock().is_ok());
}

#[test]
fn arrays_have_the_same_recursive_lock_and_never_panic_on_reentry() {
    let a = Array::<i32>::from_slice(&[1, 2, 3]).unwrap();
    assert!(a.get_lock().is_recursive());
    let g = a.lock().unwrap();
    let timed_out = std::thread::scope(|s| {
        s.spawn(|| {
            matches!(
                a.get_lock().lock_timeout(Duration::from_millis(50)),
                Err(TryLockError::WouldBlock)
            )
        })
        .join()
        .unwrap()
    });
    assert!(timed_out);
    // The holder takes it again (a guard, then the convenience methods).
    let mut again = a.lock().unwrap();
    assert!(again.set(0, 10));
    assert_eq!(a.get(0).unwrap(), Some(10));
    assert_eq!(a.to_vec().unwrap(), [10, 2, 3]);
    assert_eq!(a.get_lock().held_count(), 2);
    drop((again, g));
    assert!(!a.get_lock().is_locked());
}

#[test]
fn an_endless_lock_timeout_waits_instead_of_panicking() {
    let a = Array::<i32>::from_slice(&[1]).unwrap();
    let g = a.get_lock().lock_timeout(Duration::MAX);
    assert!(g.is_ok(), "a free lock is taken at once");
    drop(g);
    let got = std::thread::scope(|s| {
        let held = a.lock().unwrap();
        let waiter = s.spawn(|| a.get_lock().lock_timeout(Duration::MAX).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        waiter.join().unwrap()
    });
    assert!(got, "the waiter gets the lock once it is released");
}

#[test]
fn several_values_share_a_callers_lock() {
    // HEAP-05/-09: lock=<Lock> reuses that exact lock; a plain one works.
    let lock = SharedLock::plain().unwrap();
    let v = Value::with_lock(1_u32, lock.clone()).unwrap();
    let a = Array::with_lock(&[1_u8, 2], lock.clone()).unwrap();
    assert!(Shared::ptr_eq(v.get_lock(), &lock));
    assert!(Shared::ptr_eq(a.get_lock(), v.get_lock()));
    assert!(!v.get_lock().is_recursive());
    let g = v.lock().unwrap();
    // Holding the value's lock holds the array's: nobody else gets it.
    let others =
        std::thread::scope(|s| s.spawn(|| a.get_lock().try_lock().is_err()).join().unwrap());
    assert!(others);
    drop(g);
    assert_eq!(a.to_vec().unwrap(), [1, 2]);
    // A lock released by another thread while a guard lives (allowed for a
    // plain lock, as in CPython) leaves two guards; both only copy.
    let g = a.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            lock.release().unwrap();
            a.set(0, 9).unwrap();
        });
    });
    assert_eq!(g.get(0), Some(9));
    drop(g);
    // lock=False: the raw objects.
    let raw: RawValue<u32> = Value::without_lock(4).unwrap();
    assert_eq!(raw.get(), 4);
    let raw: RawArray<u32> = Array::without_lock(&[4, 5]).unwrap();
    assert_eq!(&*raw, &[4, 5]);
    // And an RLock made by hand.
    let r = SharedLock::new(ProcessLock::new(true)).unwrap();
    assert!(Value::with_lock(0_u8, r).unwrap().get_lock().is_recursive());
}

#[test]
fn arrays_index_slice_and_assign() {
    let a = Array::from_slice(&[5_i32, 6, 7, 8, 9]).unwrap();
    assert_eq!(a.len(), 5);
    assert_eq!(a.get(0).unwrap(), Some(5));
    assert_eq!(a.get(5).unwrap(), None);
    assert!(a.set(4, 90).unwrap());
    assert!(!a.set(5, 1).unwrap());
    {
        let mut g = a.lock().unwrap();
        let mut two = [0; 2];
        assert!(g.read(1, &mut two));
        assert_eq!(two, [6, 7]);
        assert!(!g.read(4, &mut two), "past the end");
        assert!(g.write(0, &[50, 60]));
        assert!(!g.write(4, &[1, 2]), "past the end: nothing written");
        // In-place prefix sum, as the CPython test's child does.
        for i in 1..g.len() {
            let prev = g.get(i - 1).unwrap();
            g.update(i, |x| x + prev);
        }
        assert_eq!(g.update(9, |x| x), None);
    }
    assert_eq!(a.to_vec().unwrap(), [50, 110, 117, 125, 215]);
    let mut r = RawArray::from_slice(&[1.5_f64, 2.5]).unwrap();
    r[1] *= 2.0;
    assert_eq!(&*r, &[1.5, 5.0]);
}

#[test]
fn arrays_from_a_size_are_zeroed_even_on_reused_memory() {
    // HEAP-08: three times, each time in the memory the last one dirtied.
    let heap = Heap::new();
    let mut last = None;
    for round in 0..3 {
        let a = Array::<i32>::zeroed_in(&heap, 10).unwrap();
        assert_eq!(a.to_vec().unwrap(), [0; 10], "round {round}");
        let (lock, block) = a.into_parts();
        if let Some(prev) = last {
            assert_eq!(block.block().unwrap().start, prev, "memory was not reused");
        }
        last = Some(block.block().unwrap().start);
        let mut a = Array::<i32>::from_parts(lock, block).unwrap();
        assert!(a.lock().unwrap().write(0, &[7; 10]));
        assert_eq!(a.to_vec().unwrap(), [7; 10]);
        let (lock, block) = a.into_parts();
        a = Array::from_parts(lock, block).unwrap();
        drop(a);
    }
    for _ in 0..3 {
        let mut r = RawArray::<u64>::zeroed_in(&heap, 16).unwrap();
        assert!(r.iter().all(|&x| x == 0));
        r.fill(u64::MAX);
        let v = RawValue::<u64>::new_in(&heap, 0).unwrap();
        assert_eq!(v.get(), 0);
        drop(v);
    }
    // A raw buffer is not cleared (like BufferWrapper), a zeroed one is.
    let mut b = heap.malloc(64).unwrap();
    b.fill(1);
    drop(b);
    assert!(heap.malloc_zeroed(64).unwrap().iter().all(|&x| x == 0));
}

#[test]
fn a_copy_in_shared_memory_is_independent() {
    // HEAP-12.
    let mut original = Point3 {
        x: 1.0,
        y: 2.0,
        n: 3,
    };
    let copy = RawValue::new(original).unwrap();
    original.n = 99;
    assert_eq!(copy.get().n, 3);
    let mut copy = copy;
    copy.set(Point3 {
        x: 2.0,
        y: 4.0,
        n: 6,
    });
    assert_eq!(original.x, 1.0);
    assert_eq!(
        copy.get(),
        Point3 {
            x: 2.0,
            y: 4.0,
            n: 6
        }
    );
}

#[test]
fn from_buffer_checks_the_layout() {
    let b = SharedBuffer::new(12).unwrap();
    assert!(matches!(
        RawValue::<u64>::from_buffer(b),
        Err(HeapError::BadLayout {
            need: 8,
            have: 12,
            ..
        })
    ));
    let b = SharedBuffer::new(12).unwrap();
    assert!(matches!(
        RawArray::<u64>::from_buffer(b),
        Err(HeapError::BadLayout { .. })
    ));
    let lock = || SharedLock::recursive().unwrap();
    let b = SharedBuffer::new(4).unwrap();
    assert!(matches!(
        Value::<u64>::from_parts(lock(), b),
        Err(HeapError::BadLayout { need: 8, .. })
    ));
    let b = SharedBuffer::new(4).unwrap();
    assert!(matches!(
        Array::<u64>::from_parts(lock(), b),
        Err(HeapError::BadLayout { .. })
    ));
    assert!(matches!(
        SharedLock::from_buffer(SharedBuffer::new(16).unwrap()),
        Err(HeapError::BadLayout { need: 32, .. })
    ));
    let v = Value::new(3_u32).unwrap();
    let (l, b) = v.into_parts();
    let v = Value::<u32>::from_parts(l, b).unwrap();
    assert_eq!(v.get().unwrap(), 3);
    assert_eq!(
        RawArray::<u16>::from_buffer(SharedBuffer::zeroed(6).unwrap())
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn locked_increments_from_threads_add_up() {
    let v = Value::new(0_u64).unwrap();
    let a = Array::<u64>::zeroed(2).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5000 {
                    v.lock().unwrap().update(|n| n + 1);
                    let mut g = a.lock().unwrap();
                    g.update(0, |n| n + 1);
                    g.update(1, |n| n + 2);
                }
            });
        }
    });
    assert_eq!(v.get().unwrap(), 20_000);
    assert_eq!(a.to_vec().unwrap(), [20_000, 40_000]);
}
