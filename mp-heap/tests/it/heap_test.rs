//! HEAP-01, CPython's `_TestHeap.test_heap` in our words: thousands of
//! blocks of log-normal sizes (median about 1 KB), at most 50 alive, with
//! the discard threshold forced to 0.

use mp_heap::Heap;

use crate::common::{Rng, check_empty, check_heap};

#[test]
fn random_sizes_tile_the_arenas_and_free_everything() {
    let heap = Heap::with_discard_threshold(0);
    let mut rng = Rng::new(0x5eed_0001);
    let mut alive = Vec::new();
    for i in 0..5000 {
        let size = (rng.lognormal() * 1000.0) as usize;
        alive.push(heap.malloc(size).unwrap());
        if alive.len() > 50 {
            let victim = rng.below(alive.len());
            drop(alive.swap_remove(victim));
        }
        if i % 97 == 0 {
            check_heap(&heap, &alive);
        }
    }
    check_heap(&heap, &alive);
    let st = heap.stats();
    assert_eq!(st.mallocs, 5000);
    assert_eq!(st.frees, 5000 - 50);

    // Free the rest in random order.
    while !alive.is_empty() {
        let victim = rng.below(alive.len());
        drop(alive.swap_remove(victim));
        check_heap(&heap, &alive);
    }
    check_empty(&heap);
    assert_eq!(heap.stats().mallocs, 5000);
}

#[test]
fn default_threshold_keeps_small_arenas_for_reuse() {
    let heap = Heap::new();
    let mut rng = Rng::new(7);
    let mut alive = Vec::new();
    for _ in 0..2000 {
        alive.push(heap.malloc((rng.lognormal() * 1000.0) as usize).unwrap());
        if alive.len() > 50 {
            let victim = rng.below(alive.len());
            alive.swap_remove(victim);
        }
    }
    alive.clear();
    let snap = heap.snapshot();
    // Every arena is one free block now; none is 4 MiB or more, so all stay.
    assert!(!snap.arenas.is_empty());
    assert_eq!(snap.free_blocks.len(), snap.arenas.len());
    assert_eq!(snap.stats.free_bytes, snap.stats.arena_bytes);
    assert_eq!(snap.stats.mallocs, snap.stats.frees);
}
