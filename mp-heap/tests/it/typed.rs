//! HEAP-04, -07, -08, -11, -12: typed shared memory in one process.

use std::time::Duration;

use mp_heap::{Array, Heap, HeapError, Pod, RawArray, RawValue, SharedBuffer, Value};

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
    assert_eq!(Value::new(-5_i32).unwrap().get(), -5);
    assert_eq!(Value::new(1.25_f64).unwrap().get(), 1.25);
    assert_eq!(Value::new(-7_i16).unwrap().get(), -7);
    assert_eq!(Value::new(1_i64 << 33).unwrap().get(), 1 << 33);
    assert_eq!(Value::new(b'x').unwrap().get(), b'x');
    assert_eq!(RawValue::new(1_i64 << 33).unwrap().get(), 1 << 33);
    let p = Point3 {
        x: 1.0,
        y: -2.0,
        n: 3,
    };
    assert_eq!(Value::new(p).unwrap().get(), p);
    assert_eq!(Value::new([1_u16, 2, 3]).unwrap().get(), [1, 2, 3]);
}

#[test]
fn set_and_update_under_the_lock() {
    let v = Value::new(10_u64).unwrap();
    v.set(11);
    {
        let mut g = v.lock();
        assert_eq!(g.update(|n| n * 2), 22);
        // Recursive, like CPython's default RLock.
        assert!(v.get_lock().is_recursive());
        assert_eq!(v.get(), 22);
        let other = std::thread::scope(|s| {
            s.spawn(|| v.get_lock().try_acquire().is_some())
                .join()
                .unwrap()
        });
        assert!(!other, "another thread got the lock while we hold it");
    }
    assert!(v.get_lock().try_acquire().is_some());
}

#[test]
fn array_lock_is_plain_and_times_out_for_others() {
    let a = Array::<i32>::from_slice(&[1, 2, 3]).unwrap();
    assert!(!a.get_lock().is_recursive());
    let g = a.lock();
    let timed_out = std::thread::scope(|s| {
        s.spawn(|| {
            a.get_lock()
                .acquire_timeout(Duration::from_millis(50))
                .is_none()
        })
        .join()
        .unwrap()
    });
    assert!(timed_out);
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _second = a.get_lock().acquire();
    }));
    assert!(again.is_err(), "re-acquiring a plain lock must not hang");
    drop(g);
    assert_eq!(a.to_vec(), [1, 2, 3]);
}

#[test]
fn an_endless_lock_timeout_waits_instead_of_panicking() {
    let a = Array::<i32>::from_slice(&[1]).unwrap();
    let g = a.get_lock().acquire_timeout(Duration::MAX);
    assert!(g.is_some(), "a free lock is taken at once");
    drop(g);
    let got = std::thread::scope(|s| {
        let held = a.lock();
        let waiter = s.spawn(|| a.get_lock().acquire_timeout(Duration::MAX).is_some());
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        waiter.join().unwrap()
    });
    assert!(got, "the waiter gets the lock once it is released");
}

#[test]
fn arrays_index_slice_and_assign() {
    let a = Array::from_slice(&[5_i32, 6, 7, 8, 9]).unwrap();
    assert_eq!(a.len(), 5);
    assert_eq!(a.get(0), Some(5));
    assert_eq!(a.get(5), None);
    assert!(a.set(4, 90));
    assert!(!a.set(5, 1));
    {
        let mut g = a.lock();
        assert_eq!(&g[1..3], &[6, 7]);
        g[..2].copy_from_slice(&[50, 60]);
        // In-place prefix sum, as the CPython test's child does.
        for i in 1..g.len() {
            g[i] += g[i - 1];
        }
    }
    assert_eq!(a.to_vec(), [50, 110, 117, 125, 215]);
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
        assert_eq!(a.to_vec(), [0; 10], "round {round}");
        let block = a.into_buffer();
        if let Some(prev) = last {
            assert_eq!(block.block().unwrap().start, prev, "memory was not reused");
        }
        last = Some(block.block().unwrap().start);
        let mut a = Array::<i32>::from_buffer(block).unwrap();
        a.lock().copy_from_slice(&[7; 10]);
        assert_eq!(a.to_vec(), [7; 10]);
        a = Array::from_buffer(a.into_buffer()).unwrap();
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
    let b = SharedBuffer::new(8).unwrap();
    assert!(matches!(
        Value::<u64>::from_buffer(b),
        Err(HeapError::BadLayout { need: 24, .. })
    ));
    let b = SharedBuffer::new(4).unwrap();
    assert!(matches!(
        Array::<u64>::from_buffer(b),
        Err(HeapError::BadLayout { .. })
    ));
    let v = Value::new(3_u32).unwrap();
    let v = Value::<u32>::from_buffer(v.into_buffer()).unwrap();
    assert_eq!(v.get(), 3);
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
                    v.lock().update(|n| n + 1);
                    let mut g = a.lock();
                    g[0] += 1;
                    g[1] += 2;
                }
            });
        }
    });
    assert_eq!(v.get(), 20_000);
    assert_eq!(a.to_vec(), [20_000, 40_000]);
}
