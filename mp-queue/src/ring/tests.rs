//! The ring against a model (a `VecDeque` of entries), through many
//! wrap-arounds of a small ring; the undo log; and bytes no queue writes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use mp_heap::{Shared, SharedBuffer};
use proptest::prelude::*;

use super::*;

const CAP: usize = 4096;

struct Fixture {
    header: Shared<Header>,
    bytes: RingBytes,
}

impl Fixture {
    fn new() -> Fixture {
        let inline_max = Ring::inline_max_for(CAP, usize::MAX);
        Fixture {
            header: Shared::new(Header::new(Kind::Queue, 1000, CAP, inline_max as u32, 7)).unwrap(),
            bytes: RingBytes::new(SharedBuffer::new(CAP).unwrap()),
        }
    }

    fn ring(&self) -> Ring<'_> {
        Ring::new(&self.header, &self.bytes, self.header.inline_max())
    }
}

/// What the model holds: an INLINE payload or a marker's sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Model {
    Inline(Vec<u8>),
    Marker(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Inline(usize, u8),
    Marker(u64),
    Pop,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0usize..1100, any::<u8>()).prop_map(|(len, b)| Op::Inline(len, b)),
        1 => any::<u64>().prop_map(Op::Marker),
        4 => Just(Op::Pop),
    ];
    proptest::collection::vec(op, 1..400)
}

/// Bytes the model's entries take, pads not counted.
fn used(model: &VecDeque<Model>) -> u64 {
    model
        .iter()
        .map(|e| match e {
            Model::Inline(p) => 8 + align8(p.len() as u64),
            Model::Marker(_) => 16,
        })
        .sum()
}

fn apply(f: &Fixture, model: &mut VecDeque<Model>, op: &Op) {
    let ring = f.ring();
    match op {
        Op::Inline(len, b) => {
            let len = (*len).min(f.header.inline_max());
            let payload = vec![*b; len];
            let (a, c) = payload.split_at(len / 2);
            let (head, tail) = ring.indices().unwrap();
            let pushed = ring.push_inline(&[a, c]).unwrap();
            if pushed {
                model.push_back(Model::Inline(payload));
            } else {
                // Refused only when it fits neither before the area's end
                // nor, after a pad, at its start.
                assert!(!model.is_empty(), "an empty ring refused {len} bytes");
                let need = 8 + align8(len as u64);
                let free = CAP as u64 - (tail - head);
                let end_room = CAP as u64 - tail % CAP as u64;
                let fits_here = need <= end_room && need <= free;
                let fits_after_pad = need > end_room && end_room + need <= free;
                assert!(
                    !fits_here && !fits_after_pad,
                    "refused {need} bytes with room"
                );
            }
        }
        Op::Marker(seq) => {
            if let Some(at) = ring.marker_room().unwrap() {
                ring.push_marker(at, *seq);
                model.push_back(Model::Marker(*seq));
            } else {
                assert!(!model.is_empty(), "an empty ring refused a marker");
            }
        }
        Op::Pop => {
            let mut out = Vec::new();
            let got = ring.pop(&mut out).unwrap();
            let want = model.pop_front();
            match (got, want) {
                (None, None) => {}
                (Some(Entry::Inline), Some(Model::Inline(p))) => assert_eq!(out, p),
                (Some(Entry::Marker(s)), Some(Model::Marker(w))) => assert_eq!(s, w),
                (got, want) => panic!("popped {got:?}, the model has {want:?}"),
            }
        }
    }
    assert_eq!(f.header.items() as usize, model.len());
    let (head, tail) = ring.indices().unwrap();
    assert!(tail - head <= CAP as u64);
    assert!(tail - head >= used(model), "entries overlap");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Pops give back exactly what was pushed, in order; an empty ring
    /// takes any entry; the indices stay a ring apart at most.
    #[test]
    fn the_ring_is_a_fifo_through_wrap_arounds(ops in ops()) {
        let f = Fixture::new();
        let mut model = VecDeque::new();
        for op in &ops {
            apply(&f, &mut model, op);
            // Walking the ring agrees with the count.
            prop_assert!(f.ring().repair());
            prop_assert_eq!(f.header.items() as usize, model.len());
        }
        // Drain: everything left comes out in order.
        while !model.is_empty() {
            apply(&f, &mut model, &Op::Pop);
        }
        prop_assert_eq!(f.header.tail.load(Relaxed), f.header.head.load(Relaxed));
    }

    /// An operation interrupted anywhere (its process died) is undone by
    /// the recovery: the ring reads as before it began. (One operation is
    /// one push or one pop, with its counters and slot: no critical
    /// section of the queue does more.)
    #[test]
    fn recovery_undoes_a_half_done_operation(
        before in ops(),
        during in ops().prop_map(|mut v| v.split_off(v.len() - 1)),
        slot_pending in 0u32..5,
    ) {
        let f = Fixture::new();
        let mut model = VecDeque::new();
        for op in &before {
            apply(&f, &mut model, op);
        }
        let h = &*f.header;
        let me = ProcessStamp::current();
        // As puts and gets keep them: accepted = entries + pending.
        h.set_accepted(h.items());
        let accepted = h.accepted();
        let items = h.items();
        {
            let txn = Txn::begin(h);
            h.set_accepted(accepted + 9);
            txn.add_pending(me, None, slot_pending);
            let mut scratch = model.clone();
            for op in &during {
                apply(&f, &mut scratch, op);
            }
            // The process dies here: the log stays armed.
            std::mem::forget(txn);
        }
        prop_assert!(f.ring().recover());
        prop_assert_eq!(h.items(), items);
        prop_assert_eq!(h.accepted(), accepted);
        prop_assert!(h.pending_owners().is_empty());
        while !model.is_empty() {
            apply(&f, &mut model, &Op::Pop);
        }
    }

    /// Whatever a peer writes into the header's indices and the ring's
    /// bytes, reading and repairing never panic, and leave a ring that
    /// works.
    #[test]
    fn garbage_never_panics_and_repair_leaves_a_working_ring(
        head in any::<u64>(),
        tail in any::<u64>(),
        items in any::<u32>(),
        junk in proptest::collection::vec(any::<u8>(), CAP),
    ) {
        let f = Fixture::new();
        f.bytes.write(0, &junk);
        f.header.head.store(head, Relaxed);
        f.header.tail.store(tail, Relaxed);
        f.header.items.store(items, Relaxed);
        let ring = f.ring();
        let mut out = Vec::new();
        for _ in 0..(CAP / 8) {
            out.clear();
            match ring.pop(&mut out) {
                Ok(Some(_)) => prop_assert!(out.len() <= f.header.inline_max()),
                Ok(None) | Err(_) => break,
            }
        }
        ring.repair();
        let _ = ring.clear();
        // A working ring again.
        let mut model = VecDeque::new();
        apply(&f, &mut model, &Op::Inline(100, 1));
        apply(&f, &mut model, &Op::Pop);
    }
}

#[test]
fn a_dead_producers_slot_is_reclaimed_once() {
    let f = Fixture::new();
    let h = &*f.header;
    // A stamp no live process has: pid of an exited child.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let dead = ProcessStamp::from_bits(u64::from(pid) << 42 | 5).unwrap();
    h.set_accepted(3);
    h.set_unfinished(3);
    {
        let txn = Txn::begin(h);
        assert_eq!(txn.add_pending(dead, None, 2), Some(0));
    }
    let owners = h.pending_owners();
    assert_eq!(owners, [(0, dead.bits())]);
    assert!(!dead.is_alive());
    let txn = Txn::begin(h);
    assert_eq!(txn.reclaim(0, dead.bits()), 2);
    assert_eq!(txn.reclaim(0, dead.bits()), 0);
    drop(txn);
    assert_eq!((h.accepted(), h.unfinished()), (1, 1));
    assert!(h.pending_owners().is_empty());
}

#[test]
fn a_full_slot_table_counts_orphans() {
    let f = Fixture::new();
    let h = &*f.header;
    let me = ProcessStamp::current();
    for i in 0..SLOTS as u64 {
        let other = ProcessStamp::from_bits((i + 1) << 42 | 1).unwrap();
        let txn = Txn::begin(h);
        assert!(txn.add_pending(other, None, 1).is_some());
    }
    let txn = Txn::begin(h);
    assert_eq!(txn.add_pending(me, None, 4), None);
    assert_eq!(h.orphans.load(Relaxed), 4);
    txn.sub_pending(me, None, 4);
    assert_eq!(h.orphans.load(Relaxed), 0);
}
