//! HEAP-02: a free while the heap's lock is held never deadlocks; it is
//! deferred and drained later. And many threads at once.

use std::sync::{Arc, mpsc};

use mp_heap::{Heap, HeapError};

use crate::common::{Rng, check_empty, check_heap};

#[test]
fn a_free_inside_the_lock_is_deferred_then_drained() {
    let heap = Heap::with_discard_threshold(0);
    let a = heap.malloc(100).unwrap();
    let b = heap.malloc(200).unwrap();
    let seen = heap
        .with_lock_held(|| {
            drop(a); // would deadlock if free() waited for the lock
            let pending = heap.pending_frees();
            let nested = heap.malloc(8);
            drop(b);
            (pending, nested, heap.pending_frees())
        })
        .unwrap();
    assert_eq!(seen.0, 1);
    assert!(
        matches!(seen.1, Err(HeapError::WouldDeadlock)),
        "{:?}",
        seen.1
    );
    assert_eq!(seen.2, 2);
    // Releasing the lock drained both.
    assert_eq!(heap.pending_frees(), 0);
    let st = heap.stats();
    assert_eq!((st.mallocs, st.frees), (2, 2));
    check_empty(&heap);
}

#[test]
fn nested_with_lock_held_is_an_error() {
    let heap = Heap::new();
    let r = heap.with_lock_held(|| heap.with_lock_held(|| ()).map(|_| ()));
    assert!(matches!(r, Ok(Err(HeapError::WouldDeadlock))));
    // And the lock is usable afterwards, also after a panic inside.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        heap.with_lock_held(|| panic!("boom"))
    }));
    assert!(caught.is_err());
    drop(heap.malloc(1).unwrap());
}

/// The panic message of `view` called inside `with_lock_held`.
fn panic_inside_lock(heap: &Heap, view: impl Fn(&Heap)) -> String {
    let caught = heap
        .with_lock_held(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| view(heap))))
        .unwrap();
    let payload = caught.expect_err("the view returned inside with_lock_held");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_views_panic_inside_with_lock_held_rather_than_deadlock() {
    let heap = Heap::new();
    let msg = panic_inside_lock(&heap, |h| {
        let _ = h.stats();
    });
    assert!(
        msg.starts_with("Heap::stats called inside Heap::with_lock_held"),
        "{msg}"
    );
    let msg = panic_inside_lock(&heap, |h| {
        let _ = h.snapshot();
    });
    assert!(
        msg.starts_with("Heap::snapshot called inside Heap::with_lock_held"),
        "{msg}"
    );
    // The heap is still usable.
    assert_eq!(heap.stats().allocated_blocks, 0);
}

#[test]
fn thousands_of_deferred_frees_are_all_drained() {
    // As CPython's test_free_from_gc: many frees land while the lock is
    // held; none is lost and nothing deadlocks.
    let heap = Heap::with_discard_threshold(0);
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        let bufs: Vec<_> = (0..100)
            .map(|_| heap.malloc(rng.below(300)).unwrap())
            .collect();
        heap.with_lock_held(|| drop(bufs)).unwrap();
        let keep: Vec<_> = (0..10)
            .map(|_| heap.malloc(rng.below(300)).unwrap())
            .collect();
        check_heap(&heap, &keep);
    }
    check_empty(&heap);
}

#[test]
fn many_threads_malloc_and_free_at_once() {
    let heap = Arc::new(Heap::with_discard_threshold(0));
    let threads = 8;
    // Each thread sends some of its blocks to the next thread, which frees
    // them: frees race with mallocs and with each other.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| mpsc::channel::<mp_heap::SharedBuffer>())
        .unzip();
    let mut handles = Vec::new();
    for (t, rx) in rxs.into_iter().enumerate() {
        let heap = Arc::clone(&heap);
        let tx = txs[(t + 1) % threads].clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(100 + t as u64);
            let mut mine = Vec::new();
            for i in 0..3000 {
                let mut b = heap.malloc(rng.below(2000)).unwrap();
                b.fill(t as u8);
                mine.push(b);
                if mine.len() > 20 {
                    let b = mine.swap_remove(rng.below(mine.len()));
                    assert!(
                        b.iter().all(|&x| x == t as u8),
                        "another thread wrote into my block"
                    );
                    if i % 3 == 0 {
                        let _ = tx.send(b);
                    }
                }
                while let Ok(b) = rx.try_recv() {
                    drop(b);
                }
            }
            drop(tx);
            mine.clear();
            rx
        }));
    }
    drop(txs);
    let rxs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for rx in rxs {
        while let Ok(b) = rx.recv() {
            drop(b);
        }
    }
    assert_eq!(heap.pending_frees(), 0, "a deferred free was left behind");
    let st = heap.stats();
    assert_eq!(st.mallocs, 8 * 3000);
    check_empty(&heap);
}
