//! Property tests: heap.py's invariants over random malloc/free sequences.

use mp_heap::Heap;
use proptest::prelude::*;

use crate::common::{check_empty, check_heap};

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![0usize..64, 0usize..5000, 0usize..70_000].prop_map(Op::Malloc),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(ops in prop::collection::vec(op(), 1..120), discard_all in any::<bool>()) {
        let heap = if discard_all { Heap::with_discard_threshold(0) } else { Heap::new() };
        let mut alive = Vec::new();
        for op in ops {
            match op {
                Op::Malloc(n) => {
                    let buf = heap.malloc(n).unwrap();
                    prop_assert_eq!(buf.len(), n);
                    prop_assert_eq!(buf.block().unwrap().stop - buf.block().unwrap().start, n.max(1).div_ceil(8) * 8);
                    alive.push(buf);
                }
                Op::Free(i) if !alive.is_empty() => {
                    let i = i % alive.len();
                    alive.swap_remove(i).free().unwrap();
                }
                Op::Free(_) => {}
            }
            check_heap(&heap, &alive);
        }
        let mallocs = heap.stats().mallocs;
        alive.clear();
        let st = heap.stats();
        prop_assert_eq!(st.frees, mallocs);
        prop_assert_eq!(st.free_bytes, st.arena_bytes);
        prop_assert_eq!(st.free_blocks, st.arenas);
        if discard_all {
            check_empty(&heap);
        }
    }

    #[test]
    fn blocks_never_overlap_and_keep_their_bytes(sizes in prop::collection::vec(1usize..3000, 1..60)) {
        let heap = Heap::new();
        let mut bufs: Vec<_> = sizes.iter().map(|&n| heap.malloc(n).unwrap()).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fill(i as u8);
        }
        // Free every other one and allocate again: survivors are untouched.
        let mut i = 0;
        bufs.retain(|_| { i += 1; i % 2 == 0 });
        let again: Vec<_> = sizes.iter().map(|&n| heap.malloc_zeroed(n).unwrap()).collect();
        for (k, b) in bufs.iter().enumerate() {
            let tag = (2 * k + 1) as u8;
            prop_assert!(b.iter().all(|&x| x == tag));
        }
        prop_assert!(again.iter().all(|b| b.iter().all(|&x| x == 0)));
    }
}
