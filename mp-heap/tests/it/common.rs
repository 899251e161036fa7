//! Helpers shared by the test modules: a small deterministic RNG and the
//! heap invariant checks.

use std::collections::BTreeMap;

use mp_heap::{Heap, SharedBuffer};

/// xorshift64*: deterministic, good enough to pick sizes and victims.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// `random.lognormvariate(0, 1)`: exp of a standard normal (Box-Muller).
    pub(crate) fn lognormal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        z.exp()
    }
}

/// Checks heap.py's invariants against the blocks the test holds:
/// free and allocated blocks tile each arena exactly (first at 0, last at
/// the arena's size, neighbours touching), no two free blocks touch (they
/// would have merged), the free lengths list is right, and the counters
/// add up (`free + used == total`).
pub(crate) fn check_heap(heap: &Heap, alive: &[SharedBuffer]) {
    let snap = heap.snapshot();
    let st = &snap.stats;
    let mut per_arena: BTreeMap<u32, Vec<(usize, usize, bool)>> = BTreeMap::new();
    for b in &snap.free_blocks {
        per_arena
            .entry(b.arena)
            .or_default()
            .push((b.start, b.stop, true));
    }
    let mut used = 0;
    for buf in alive {
        let b = buf.block().expect("a heap block");
        assert!(b.stop - b.start >= buf.len().max(1));
        assert_eq!((b.stop - b.start) % 8, 0, "8-byte rounded");
        assert_eq!(b.start % 8, 0, "8-byte aligned");
        used += b.stop - b.start;
        per_arena
            .entry(b.arena)
            .or_default()
            .push((b.start, b.stop, false));
    }
    let sizes: BTreeMap<u32, usize> = snap.arenas.iter().map(|a| (a.id, a.size)).collect();
    assert_eq!(
        per_arena.keys().collect::<Vec<_>>(),
        sizes.keys().collect::<Vec<_>>(),
        "blocks of unknown arenas, or empty arenas"
    );
    let mut total = 0;
    let mut free = 0;
    for (arena, blocks) in &mut per_arena {
        blocks.sort_unstable();
        let size = sizes[arena];
        total += size;
        assert_eq!(blocks[0].0, 0, "arena {arena} does not start with a block");
        assert_eq!(
            blocks.last().unwrap().1,
            size,
            "arena {arena} does not end with a block"
        );
        for w in blocks.windows(2) {
            assert_eq!(w[0].1, w[1].0, "gap or overlap in arena {arena}: {w:?}");
            assert!(
                !(w[0].2 && w[1].2),
                "free neighbours not merged in arena {arena}: {w:?}"
            );
        }
        free += blocks
            .iter()
            .filter(|b| b.2)
            .map(|b| b.1 - b.0)
            .sum::<usize>();
        let info = snap.arenas.iter().find(|a| a.id == *arena).unwrap();
        assert_eq!(
            info.allocated_blocks,
            blocks.iter().filter(|b| !b.2).count()
        );
    }
    let mut lengths: Vec<usize> = snap.free_blocks.iter().map(|b| b.stop - b.start).collect();
    lengths.sort_unstable();
    lengths.dedup();
    assert_eq!(snap.free_lengths, lengths);
    assert_eq!(st.free_bytes, free);
    assert_eq!(st.used_bytes, used);
    assert_eq!(st.arena_bytes, total);
    assert_eq!(st.free_bytes + st.used_bytes, st.arena_bytes);
    assert_eq!(st.allocated_blocks, alive.len());
    assert_eq!(st.free_blocks, snap.free_blocks.len());
    assert_eq!(st.arenas, snap.arenas.len());
}

/// After everything was freed with a discard threshold of 0: nothing left.
pub(crate) fn check_empty(heap: &Heap) {
    let snap = heap.snapshot();
    assert_eq!(snap.stats.pending_frees, 0);
    assert_eq!(snap.stats.mallocs, snap.stats.frees);
    assert!(snap.arenas.is_empty(), "arenas left: {:?}", snap.arenas);
    assert!(snap.free_blocks.is_empty());
    assert!(snap.free_lengths.is_empty());
    assert_eq!(snap.stats.allocated_blocks, 0);
    assert_eq!(snap.stats.arena_bytes, 0);
}
