//! HEAP-13 and HEAP-14: sizes, rounding, arena growth, best fit,
//! coalescing and discarding.

use mp_heap::{DOUBLE_ARENA_SIZE_UNTIL, Heap, HeapError};

fn page() -> usize {
    rustix::param::page_size()
}

#[test]
fn sizes_round_up_to_eight_and_zero_counts_as_one() {
    let heap = Heap::new();
    for (asked, rounded) in [
        (0, 8),
        (1, 8),
        (8, 8),
        (9, 16),
        (13, 16),
        (1000, 1000),
        (1001, 1008),
    ] {
        let b = heap.malloc(asked).unwrap();
        assert_eq!(b.len(), asked);
        let info = b.block().unwrap();
        assert_eq!(info.stop - info.start, rounded, "malloc({asked})");
        assert_eq!(info.start % 8, 0);
        assert_eq!(b.as_ptr() as usize % 8, 0);
    }
}

#[test]
fn absurd_sizes_are_errors_not_panics() {
    let heap = Heap::new();
    for size in [isize::MAX as usize, isize::MAX as usize + 1, usize::MAX] {
        match heap.malloc(size) {
            Err(HeapError::TooLarge { size: s }) => assert_eq!(s, size),
            other => panic!("malloc({size}) gave {other:?}"),
        }
    }
    assert!(mp_heap::RawArray::<u64>::zeroed(usize::MAX / 4).is_err());
    assert_eq!(heap.stats().mallocs, 0, "failed mallocs are not counted");
}

#[test]
fn the_tail_of_a_larger_block_goes_back_to_the_free_list() {
    let heap = Heap::new();
    let a = heap.malloc(100).unwrap();
    let snap = heap.snapshot();
    assert_eq!(snap.arenas.len(), 1);
    assert_eq!(snap.arenas[0].size, page());
    assert_eq!(snap.free_blocks.len(), 1);
    assert_eq!(
        (snap.free_blocks[0].start, snap.free_blocks[0].stop),
        (104, page())
    );
    drop(a);
}

#[test]
fn arenas_start_at_a_page_and_double_until_4_mib() {
    let heap = Heap::new();
    let mut expected = page();
    let mut held = Vec::new();
    let mut sizes = Vec::new();
    loop {
        assert_eq!(heap.stats().next_arena_size, expected);
        // Ask for exactly the next arena's size, so each takes a whole arena.
        let b = heap.malloc(expected).unwrap();
        let info = b.block().unwrap();
        let arena = heap
            .snapshot()
            .arenas
            .into_iter()
            .find(|a| a.id == info.arena)
            .unwrap();
        sizes.push(arena.size);
        assert_eq!(arena.size, expected);
        held.push(b);
        if expected == DOUBLE_ARENA_SIZE_UNTIL {
            break;
        }
        expected *= 2;
    }
    // It stays at 4 MiB from then on.
    assert_eq!(heap.stats().next_arena_size, DOUBLE_ARENA_SIZE_UNTIL);
    assert_eq!(sizes.first(), Some(&page()));
}

#[test]
fn a_large_request_gets_its_own_page_rounded_arena_which_is_unmapped_when_free() {
    let heap = Heap::new();
    let small = heap.malloc(10).unwrap();
    let big_size = 5 * 1024 * 1024 + 3;
    let big = heap.malloc(big_size).unwrap();
    let info = big.block().unwrap();
    assert_eq!(info.start, 0);
    let snap = heap.snapshot();
    let arena = snap.arenas.iter().find(|a| a.id == info.arena).unwrap();
    assert_eq!(arena.size, big_size.div_ceil(page()) * page());
    assert_eq!(snap.arenas.len(), 2);
    drop(big);
    // At least 4 MiB and wholly free: handed back to the OS.
    assert_eq!(heap.stats().arenas, 1);
    drop(small);
    // The small arena is kept for reuse.
    assert_eq!(heap.stats().arenas, 1);
    assert_eq!(heap.stats().free_bytes, heap.stats().arena_bytes);
}

#[test]
fn best_fit_takes_the_smallest_block_that_fits() {
    let heap = Heap::new();
    let sizes = [128, 8, 32, 8, 64, 8];
    let mut bufs: Vec<_> = sizes
        .iter()
        .map(|&n| Some(heap.malloc(n).unwrap()))
        .collect();
    let start_of = |b: &Option<mp_heap::SharedBuffer>| b.as_ref().unwrap().block().unwrap().start;
    let (s128, s32, s64) = (start_of(&bufs[0]), start_of(&bufs[2]), start_of(&bufs[4]));
    // Free the 128, 32 and 64 blocks; the 8-byte ones keep them apart.
    bufs[0] = None;
    bufs[2] = None;
    bufs[4] = None;
    assert_eq!(heap.snapshot().free_lengths[..3], [32, 64, 128]);
    assert_eq!(heap.malloc(30).unwrap().block().unwrap().start, s32);
    let c = heap.malloc(40).unwrap();
    assert_eq!(
        c.block().unwrap().start,
        s64,
        "40 fits best in the 64 block"
    );
    // The 24-byte tail of the 64 block went back to the free list.
    assert!(heap.snapshot().free_lengths.contains(&24));
    let d = heap.malloc(100).unwrap();
    assert_eq!(d.block().unwrap().start, s128);
}

#[test]
fn freed_blocks_merge_with_both_neighbours() {
    let heap = Heap::with_discard_threshold(usize::MAX);
    let a = heap.malloc(64).unwrap();
    let b = heap.malloc(64).unwrap();
    let c = heap.malloc(64).unwrap();
    let guard = heap.malloc(64).unwrap();
    let start = a.block().unwrap().start;
    drop(a);
    drop(c);
    assert_eq!(heap.stats().free_blocks, 3, "a, c and the arena's tail");
    drop(b);
    let snap = heap.snapshot();
    assert_eq!(snap.free_blocks.len(), 2);
    assert_eq!(
        (snap.free_blocks[0].start, snap.free_blocks[0].stop),
        (start, start + 192)
    );
    drop(guard);
    let snap = heap.snapshot();
    assert_eq!(snap.free_blocks.len(), 1);
    assert_eq!(
        (snap.free_blocks[0].start, snap.free_blocks[0].stop),
        (0, page())
    );
}

#[test]
fn the_global_heap_serves_shared_buffers() {
    let before = Heap::global().stats().mallocs;
    let mut b = mp_heap::SharedBuffer::new(3).unwrap();
    b.copy_from_slice(b"abc");
    assert!(Heap::global().stats().mallocs > before);
    assert_eq!(&*b, b"abc");
    assert_eq!(b.owner_pid(), Some(std::process::id()));
    b.free().unwrap();
}
