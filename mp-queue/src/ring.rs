//! The shared ring: a header of atomics (the lock, three wait lists,
//! the counters, the producers' slots, an undo log) and a
//! power-of-two byte area holding entries, in mp-heap blocks that every
//! process holding the queue maps.
//!
//! # Entries
//!
//! Every entry starts on a multiple of 8 bytes and never wraps around the
//! end of the area; positions (`head`, `tail`) are byte counts that only
//! grow, taken modulo the capacity.
//!
//! ```text
//! offset  size  field
//! 0       4     len: payload bytes (little-endian u32)
//! 4       4     tag: INLINE (1), MARKER (2) or PAD (3)
//! 8       len   payload, then zeros up to the next multiple of 8
//! ```
//!
//! - INLINE: the item's postcard bytes.
//! - MARKER: 8 bytes, the sequence number of the item's datagram on the
//!   side channel (items that hold fds, and items too big for the ring).
//! - PAD: fills the area's end when the next entry does not fit there;
//!   its `len` is ignored and readers skip to the area's start.
//!
//! # Crash consistency
//!
//! Everything but the wait lists changes only under the lock, in
//! a [`Txn`]: the fields it may change are first copied into `shadow` and
//! `txn` set; the changes follow; `txn` is cleared. A process that dies
//! inside leaves `txn` set, and the next one to take the lock (which then
//! reports `OwnerDied`) copies the shadow back ([`Ring::recover`]): the
//! dead process's operation never happened. Bytes it wrote beyond `tail`
//! are ignored. The side channel's sequence number is outside the undo log
//! on purpose (it only grows, so a datagram the dead process sent is older
//! than any later marker and is discarded as stale). After the rollback
//! the ring is checked as a peer's input: indices, entry by entry, counts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use mp_heap::{ProcessLock, ProcessStamp};

use crate::shm::RingBytes;
use crate::wake::Waiters;

/// `b"MPQ1"`: a header that does not start with it is no queue of ours.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"MPQ1");

/// What kind of queue a ring serves (CPython's three classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Queue = 1,
    Joinable = 2,
    Simple = 3,
}

impl Kind {
    pub(crate) fn from_u32(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Queue),
            2 => Some(Kind::Joinable),
            3 => Some(Kind::Simple),
            _ => None,
        }
    }

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Kind::Queue => "Queue",
            Kind::Joinable => "JoinableQueue",
            Kind::Simple => "SimpleQueue",
        }
    }
}

/// `flags`: no more puts; gets drain what is left, then fail.
pub(crate) const SHUTDOWN: u32 = 1;
/// `flags`: shut down with `immediate`: what was left is discarded, and
/// feeders discard what they still hold.
pub(crate) const IMMEDIATE: u32 = 2;

/// Entry tags.
const INLINE: u32 = 1;
const MARKER: u32 = 2;
const PAD: u32 = 3;

/// Bytes in front of every entry's payload.
pub(crate) const ENTRY_HEADER: usize = 8;

/// How many producer processes can hold items in their feeders at once
/// and be accounted for by name; beyond that their items are counted in
/// `orphans`, which a dead producer's share cannot be taken back from.
pub(crate) const SLOTS: usize = 64;
const NO_SLOT: u32 = u32::MAX;

/// One producer process's share of the items accepted and not yet in the
/// ring (those waiting in its feeder thread).
#[repr(C)]
pub(crate) struct Slot {
    /// The owner's [`ProcessStamp`] bits; 0 when free.
    stamp: AtomicU64,
    pending: AtomicU32,
    _reserved: AtomicU32,
}

/// The undo log's copy of the fields a [`Txn`] may change.
#[repr(C)]
pub(crate) struct Shadow {
    head: AtomicU64,
    tail: AtomicU64,
    slot_stamp: AtomicU64,
    items: AtomicU32,
    accepted: AtomicU32,
    unfinished: AtomicU32,
    orphans: AtomicU32,
    flags: AtomicU32,
    slot_pending: AtomicU32,
}

/// The ring's header, in a block of its own.
#[repr(C)]
pub(crate) struct Header {
    /// Everything below but the wait lists changes under it.
    pub(crate) lock: ProcessLock,
    /// Woken when an item arrives (and on shutdown).
    pub(crate) not_empty: Waiters,
    /// Woken when an item leaves: room under `maxsize`, bytes in the ring,
    /// datagram space (and on shutdown).
    pub(crate) not_full: Waiters,
    /// Woken when `unfinished` reaches 0 (and on shutdown).
    pub(crate) all_done: Waiters,
    magic: AtomicU32,
    kind: AtomicU32,
    capacity: AtomicU64,
    /// A hash of the item type's name, to refuse a queue received as a
    /// queue of another type.
    type_hash: AtomicU64,
    maxsize: AtomicU32,
    flags: AtomicU32,
    head: AtomicU64,
    tail: AtomicU64,
    /// The next side-channel sequence number (outside the undo log).
    side_seq: AtomicU64,
    /// Entries in the ring (INLINE and MARKER).
    items: AtomicU32,
    /// Items put and not yet got: in the ring, or in some feeder thread
    /// (CPython's `maxsize - sem.get_value()`).
    accepted: AtomicU32,
    /// JoinableQueue: items put and not yet `task_done`.
    unfinished: AtomicU32,
    /// Items in feeders of producers that found no free slot.
    orphans: AtomicU32,
    txn: AtomicU32,
    shadow_slot: AtomicU32,
    shadow: Shadow,
    /// The largest INLINE payload (every process reads and writes by it).
    inline_max: AtomicU32,
    _reserved: AtomicU32,
    slots: [Slot; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 16);
const _: () = assert!(std::mem::size_of::<Shadow>() == 48);
const _: () = assert!(std::mem::offset_of!(Header, not_empty) == 32);
const _: () = assert!(std::mem::offset_of!(Header, not_full) == 48);
const _: () = assert!(std::mem::offset_of!(Header, all_done) == 64);
const _: () = assert!(std::mem::offset_of!(Header, magic) == 80);
const _: () = assert!(std::mem::offset_of!(Header, head) == 112);
const _: () = assert!(std::mem::offset_of!(Header, side_seq) == 128);
const _: () = assert!(std::mem::offset_of!(Header, txn) == 152);
const _: () = assert!(std::mem::offset_of!(Header, shadow) == 160);
const _: () = assert!(std::mem::offset_of!(Header, inline_max) == 208);
const _: () = assert!(std::mem::offset_of!(Header, slots) == 216);
const _: () = assert!(std::mem::size_of::<Header>() == 216 + 16 * SLOTS);
const _: () = assert!(std::mem::align_of::<Header>() == 8);

impl Header {
    /// A fresh header for a ring of `capacity` bytes.
    pub(crate) fn new(
        kind: Kind,
        maxsize: u32,
        capacity: usize,
        inline_max: u32,
        type_hash: u64,
    ) -> Header {
        Header {
            lock: ProcessLock::new(false),
            not_empty: Waiters::new(),
            not_full: Waiters::new(),
            all_done: Waiters::new(),
            magic: AtomicU32::new(MAGIC),
            kind: AtomicU32::new(kind as u32),
            capacity: AtomicU64::new(capacity as u64),
            type_hash: AtomicU64::new(type_hash),
            maxsize: AtomicU32::new(maxsize),
            flags: AtomicU32::new(0),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            side_seq: AtomicU64::new(1),
            items: AtomicU32::new(0),
            accepted: AtomicU32::new(0),
            unfinished: AtomicU32::new(0),
            orphans: AtomicU32::new(0),
            txn: AtomicU32::new(0),
            shadow_slot: AtomicU32::new(NO_SLOT),
            shadow: Shadow {
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                slot_stamp: AtomicU64::new(0),
                items: AtomicU32::new(0),
                accepted: AtomicU32::new(0),
                unfinished: AtomicU32::new(0),
                orphans: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                slot_pending: AtomicU32::new(0),
            },
            inline_max: AtomicU32::new(inline_max),
            _reserved: AtomicU32::new(0),
            slots: std::array::from_fn(|_| Slot {
                stamp: AtomicU64::new(0),
                pending: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            }),
        }
    }

    /// Whether a header that arrived from another process describes a
    /// queue of `kind` over `capacity` bytes with items of `type_hash`;
    /// the reason if not.
    pub(crate) fn check(&self, kind: Kind, capacity: usize, type_hash: u64) -> Result<(), String> {
        if self.magic.load(Relaxed) != MAGIC {
            return Err("its shared memory is not a queue's".into());
        }
        match Kind::from_u32(self.kind.load(Relaxed)) {
            Some(k) if k == kind => {}
            Some(k) => {
                return Err(format!(
                    "it is a {}, received as a {}",
                    k.name(),
                    kind.name()
                ));
            }
            None => return Err("its kind is unknown".into()),
        }
        if self.capacity.load(Relaxed) != capacity as u64 {
            return Err("its ring is not the size its header says".into());
        }
        if self.type_hash.load(Relaxed) != type_hash {
            return Err("its items are of another type".into());
        }
        if self.inline_max.load(Relaxed) as usize > Ring::inline_max_for(capacity, usize::MAX) {
            return Err("its entries may be longer than its ring allows".into());
        }
        Ok(())
    }

    /// The largest INLINE payload, as the queue's maker set it.
    pub(crate) fn inline_max(&self) -> usize {
        self.inline_max.load(Relaxed) as usize
    }

    pub(crate) fn kind(&self) -> Option<Kind> {
        Kind::from_u32(self.kind.load(Relaxed))
    }

    pub(crate) fn maxsize(&self) -> u32 {
        self.maxsize.load(Relaxed)
    }

    pub(crate) fn flags(&self) -> u32 {
        self.flags.load(Relaxed)
    }

    pub(crate) fn set_flags(&self, flags: u32) {
        self.flags.store(flags, Relaxed);
    }

    /// Entries in the ring (a hint outside the lock).
    pub(crate) fn items(&self) -> u32 {
        self.items.load(Relaxed)
    }

    /// Items put and not yet got (a hint outside the lock).
    pub(crate) fn accepted(&self) -> u32 {
        self.accepted.load(Relaxed)
    }

    pub(crate) fn unfinished(&self) -> u32 {
        self.unfinished.load(Relaxed)
    }

    pub(crate) fn set_unfinished(&self, n: u32) {
        self.unfinished.store(n, Relaxed);
    }

    pub(crate) fn set_accepted(&self, n: u32) {
        self.accepted.store(n, Relaxed);
    }

    /// Takes the next side-channel sequence number.
    pub(crate) fn next_side_seq(&self) -> u64 {
        let seq = self.side_seq.load(Relaxed);
        self.side_seq.store(seq.wrapping_add(1), Relaxed);
        seq
    }

    /// Slots with items pending, and whose: `(index, stamp bits)`, read
    /// without the lock (to judge their owners outside it).
    pub(crate) fn pending_owners(&self) -> Vec<(usize, u64)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pending.load(Relaxed) > 0)
            .map(|(i, s)| (i, s.stamp.load(Relaxed)))
            .filter(|&(_, stamp)| stamp != 0)
            .collect()
    }

    /// The sum of the slots' pending counts.
    fn pending_total(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| u64::from(s.pending.load(Relaxed)))
            .sum()
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("kind", &self.kind())
            .field("maxsize", &self.maxsize())
            .field("items", &self.items())
            .field("accepted", &self.accepted())
            .field("flags", &self.flags())
            .finish()
    }
}

/// Writes `bytes` over the header's fields (not its lock or condition
/// variables), as a corrupt or hostile peer could: the fuzz target's way
/// in. Fields are taken 8 bytes at a time, in declaration order; what the
/// bytes do not cover is left as it is.
pub(crate) fn scribble(h: &Header, bytes: &[u8]) {
    let mut words = bytes.chunks(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    });
    let mut next = || words.next();
    macro_rules! put {
        ($($field:expr),* $(,)?) => {$(
            match next() {
                Some(w) => $field.store(w as _, Relaxed),
                None => return,
            }
        )*};
    }
    let s = &h.shadow;
    put!(
        h.head,
        h.tail,
        h.items,
        h.accepted,
        h.unfinished,
        h.orphans,
        h.flags,
        h.maxsize,
        h.side_seq,
        h.txn,
        h.shadow_slot,
        s.head,
        s.tail,
        s.items,
        s.accepted,
        s.unfinished,
        s.orphans,
        s.flags,
        s.slot_stamp,
        s.slot_pending,
    );
    for slot in &h.slots {
        put!(slot.stamp, slot.pending);
    }
}

/// An operation on the ring under its lock, with the undo log armed (see
/// the module docs). Dropping it clears the log: the operation is done.
pub(crate) struct Txn<'a> {
    h: &'a Header,
}

impl<'a> Txn<'a> {
    /// Copies the fields into the shadow and arms the log; the caller
    /// holds the lock.
    pub(crate) fn begin(h: &'a Header) -> Txn<'a> {
        let s = &h.shadow;
        s.head.store(h.head.load(Relaxed), Relaxed);
        s.tail.store(h.tail.load(Relaxed), Relaxed);
        s.items.store(h.items.load(Relaxed), Relaxed);
        s.accepted.store(h.accepted.load(Relaxed), Relaxed);
        s.unfinished.store(h.unfinished.load(Relaxed), Relaxed);
        s.orphans.store(h.orphans.load(Relaxed), Relaxed);
        s.flags.store(h.flags.load(Relaxed), Relaxed);
        h.shadow_slot.store(NO_SLOT, Relaxed);
        h.txn.store(1, Relaxed);
        Txn { h }
    }

    /// Copies slot `i` into the shadow before the operation changes it
    /// (an operation changes at most one slot).
    fn save_slot(&self, i: usize) {
        let (h, slot) = (self.h, &self.h.slots[i]);
        h.shadow.slot_stamp.store(slot.stamp.load(Relaxed), Relaxed);
        h.shadow
            .slot_pending
            .store(slot.pending.load(Relaxed), Relaxed);
        h.shadow_slot.store(i as u32, Relaxed);
    }

    /// Finds (or claims) the slot of process `me` and adds `n` to its
    /// pending count; an index hint from an earlier call is tried first.
    /// Without a slot to be had, counts them in `orphans` (and returns
    /// `None`).
    pub(crate) fn add_pending(
        &self,
        me: ProcessStamp,
        hint: Option<usize>,
        n: u32,
    ) -> Option<usize> {
        let h = self.h;
        let mine = me.bits();
        let found = hint
            .filter(|&i| i < SLOTS && h.slots[i].stamp.load(Relaxed) == mine)
            .or_else(|| h.slots.iter().position(|s| s.stamp.load(Relaxed) == mine))
            .or_else(|| {
                // A free slot, or one whose owner holds nothing pending.
                h.slots.iter().position(|s| s.pending.load(Relaxed) == 0)
            });
        match found {
            Some(i) => {
                self.save_slot(i);
                let slot = &h.slots[i];
                if slot.stamp.load(Relaxed) != mine {
                    slot.stamp.store(mine, Relaxed);
                    slot.pending.store(0, Relaxed);
                }
                let p = slot.pending.load(Relaxed);
                slot.pending.store(p.saturating_add(n), Relaxed);
                Some(i)
            }
            None => {
                h.orphans
                    .store(h.orphans.load(Relaxed).saturating_add(n), Relaxed);
                None
            }
        }
    }

    /// Takes `n` off the pending count of process `me` (its slot `hint`,
    /// wherever it is now, or the orphans).
    pub(crate) fn sub_pending(&self, me: ProcessStamp, hint: Option<usize>, n: u32) {
        let h = self.h;
        let mine = me.bits();
        let found = hint
            .filter(|&i| i < SLOTS && h.slots[i].stamp.load(Relaxed) == mine)
            .or_else(|| h.slots.iter().position(|s| s.stamp.load(Relaxed) == mine));
        match found {
            Some(i) => {
                self.save_slot(i);
                let slot = &h.slots[i];
                let p = slot.pending.load(Relaxed);
                slot.pending.store(p.saturating_sub(n), Relaxed);
            }
            None => {
                let o = h.orphans.load(Relaxed);
                h.orphans.store(o.saturating_sub(n), Relaxed);
            }
        }
    }

    /// Frees slot `i` if it still belongs to `stamp` (a process found dead
    /// outside the lock); returns how many items it had pending, which are
    /// lost: they no longer count as accepted, nor as unfinished tasks.
    pub(crate) fn reclaim(&self, i: usize, stamp: u64) -> u32 {
        let h = self.h;
        let Some(slot) = h.slots.get(i) else {
            return 0;
        };
        if stamp == 0 || slot.stamp.load(Relaxed) != stamp {
            return 0;
        }
        self.save_slot(i);
        let lost = slot.pending.load(Relaxed);
        slot.pending.store(0, Relaxed);
        slot.stamp.store(0, Relaxed);
        let a = h.accepted.load(Relaxed);
        h.accepted.store(a.saturating_sub(lost), Relaxed);
        let u = h.unfinished.load(Relaxed);
        h.unfinished.store(u.saturating_sub(lost), Relaxed);
        lost
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        self.h.txn.store(0, Relaxed);
    }
}

/// Why the ring could not be read: bytes no queue of ours writes (a
/// corrupt or hostile peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// An entry taken from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The payload was appended to the caller's buffer.
    Inline,
    /// The item is on the side channel, under this sequence number.
    Marker(u64),
}

/// The ring as seen by a process: its header and bytes.
pub(crate) struct Ring<'a> {
    pub(crate) h: &'a Header,
    bytes: &'a RingBytes,
    cap: u64,
    /// The largest INLINE payload this process writes or accepts.
    inline_max: usize,
}

/// Round `n` up to a multiple of 8.
fn align8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

impl<'a> Ring<'a> {
    /// `bytes.len()` must be a power of two of at least 64 bytes (the
    /// queue checks it when it makes or receives a ring).
    pub(crate) fn new(h: &'a Header, bytes: &'a RingBytes, inline_max: usize) -> Ring<'a> {
        debug_assert!(bytes.len().is_power_of_two() && bytes.len() >= 64);
        Ring {
            h,
            bytes,
            cap: bytes.len() as u64,
            inline_max,
        }
    }

    /// The largest payload an INLINE entry may have in a ring of `cap`
    /// bytes: a quarter of the ring, so that an empty ring always has
    /// room for one (however the wrap falls), within `limit`.
    pub(crate) fn inline_max_for(cap: usize, limit: usize) -> usize {
        (cap / 4).saturating_sub(ENTRY_HEADER).min(limit)
    }

    fn pos(&self, at: u64) -> usize {
        (at & (self.cap - 1)) as usize
    }

    /// `(head, tail)`, checked: aligned, in order, at most a ring apart.
    fn indices(&self) -> Result<(u64, u64), Corrupt> {
        let head = self.h.head.load(Relaxed);
        let tail = self.h.tail.load(Relaxed);
        if !head.is_multiple_of(8) || !tail.is_multiple_of(8) {
            return Err(Corrupt("misaligned ring positions"));
        }
        match tail.checked_sub(head) {
            Some(used) if used <= self.cap => Ok((head, tail)),
            _ => Err(Corrupt("ring positions out of order")),
        }
    }

    /// Where an entry with a `payload`-byte payload can be written, after
    /// padding the area's end if it must wrap; `None` if the ring has no
    /// room for it now.
    fn make_room(&self, payload: usize) -> Result<Option<u64>, Corrupt> {
        let (head, tail) = self.indices()?;
        let need = ENTRY_HEADER as u64 + align8(payload as u64);
        let free = self.cap - (tail - head);
        let end_room = self.cap - self.pos(tail) as u64;
        if need <= end_room {
            return Ok((need <= free).then_some(tail));
        }
        if end_room + need > free {
            return Ok(None);
        }
        self.write_header(tail, 0, PAD);
        let tail = tail + end_room;
        self.h.tail.store(tail, Relaxed);
        Ok(Some(tail))
    }

    fn write_header(&self, at: u64, len: u32, tag: u32) {
        let mut h = [0u8; ENTRY_HEADER];
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..].copy_from_slice(&tag.to_le_bytes());
        // In bounds: `at` is aligned and at least 8 bytes from the end.
        let _ = self.bytes.write(self.pos(at), &h);
    }

    /// Appends an INLINE entry whose payload is `parts` one after the
    /// other; `Ok(false)` if the ring has no room now. Payloads above the
    /// inline limit are the caller's to route elsewhere.
    pub(crate) fn push_inline(&self, parts: &[&[u8]]) -> Result<bool, Corrupt> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(len <= self.inline_max);
        let Some(at) = self.make_room(len)? else {
            return Ok(false);
        };
        let mut offset = self.pos(at) + ENTRY_HEADER;
        for part in parts {
            let _ = self.bytes.write(offset, part);
            offset += part.len();
        }
        self.write_header(at, len as u32, INLINE);
        self.commit_push(at, len);
        Ok(true)
    }

    /// Whether a MARKER entry fits now (checked before its datagram goes
    /// out, so that a datagram sent always gets its marker).
    pub(crate) fn marker_room(&self) -> Result<Option<u64>, Corrupt> {
        self.make_room(8)
    }

    /// Writes a MARKER entry for datagram `seq` at `at` (from
    /// [`marker_room`](Ring::marker_room), in the same critical section).
    pub(crate) fn push_marker(&self, at: u64, seq: u64) {
        let _ = self
            .bytes
            .write(self.pos(at) + ENTRY_HEADER, &seq.to_le_bytes());
        self.write_header(at, 8, MARKER);
        self.commit_push(at, 8);
    }

    fn commit_push(&self, at: u64, len: usize) {
        let h = self.h;
        h.tail
            .store(at + ENTRY_HEADER as u64 + align8(len as u64), Relaxed);
        h.items
            .store(h.items.load(Relaxed).saturating_add(1), Relaxed);
    }

    /// Takes the entry at the head: an INLINE payload is appended to
    /// `out`. `Ok(None)` when the ring holds no entry.
    pub(crate) fn pop(&self, out: &mut Vec<u8>) -> Result<Option<Entry>, Corrupt> {
        let h = self.h;
        loop {
            let (head, tail) = self.indices()?;
            if head == tail {
                return Ok(None);
            }
            let p = self.pos(head);
            let room = (self.cap - p as u64).min(tail - head);
            let (len, tag) = self.read_header(p)?;
            let next = match tag {
                PAD => {
                    // Skip to the start of the area.
                    let next = head + (self.cap - p as u64);
                    if next > tail {
                        return Err(Corrupt("a pad entry runs past the tail"));
                    }
                    h.head.store(next, Relaxed);
                    continue;
                }
                INLINE | MARKER => {
                    let need = ENTRY_HEADER as u64 + align8(u64::from(len));
                    if need > room || (tag == INLINE && len as usize > self.inline_max) {
                        return Err(Corrupt("an entry longer than the ring allows"));
                    }
                    if tag == MARKER && len != 8 {
                        return Err(Corrupt("a marker entry of the wrong length"));
                    }
                    head + need
                }
                _ => return Err(Corrupt("an entry of unknown kind")),
            };
            let entry = if tag == INLINE {
                if !self
                    .bytes
                    .read_into_vec(p + ENTRY_HEADER, len as usize, out)
                {
                    return Err(Corrupt("an entry outside the ring"));
                }
                Entry::Inline
            } else {
                let mut seq = [0u8; 8];
                if !self.bytes.read(p + ENTRY_HEADER, &mut seq) {
                    return Err(Corrupt("an entry outside the ring"));
                }
                Entry::Marker(u64::from_le_bytes(seq))
            };
            h.head.store(next, Relaxed);
            h.items
                .store(h.items.load(Relaxed).saturating_sub(1), Relaxed);
            return Ok(Some(entry));
        }
    }

    fn read_header(&self, p: usize) -> Result<(u32, u32), Corrupt> {
        let mut hdr = [0u8; ENTRY_HEADER];
        if !self.bytes.read(p, &mut hdr) {
            return Err(Corrupt("an entry outside the ring"));
        }
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let tag = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        Ok((len, tag))
    }

    /// Drops every entry (an immediate shutdown, or a ring found corrupt):
    /// the head jumps to the tail; returns the sequence numbers of the
    /// markers that were in it, whose datagrams the caller discards (as
    /// far as the entries could be read).
    pub(crate) fn clear(&self) -> Vec<u64> {
        let mut markers = Vec::new();
        let mut scratch = Vec::new();
        loop {
            scratch.clear();
            match self.pop(&mut scratch) {
                Ok(Some(Entry::Marker(seq))) => markers.push(seq),
                Ok(Some(Entry::Inline)) => {}
                Ok(None) => break,
                Err(_) => {
                    self.reset();
                    break;
                }
            }
        }
        markers
    }

    /// Empties the ring without reading it (its bytes could not be
    /// trusted): head and tail meet at an aligned position.
    fn reset(&self) {
        let h = self.h;
        let at = h.tail.load(Relaxed) & !7;
        h.tail.store(at, Relaxed);
        h.head.store(at, Relaxed);
        h.items.store(0, Relaxed);
    }

    /// After taking the lock from a process that died holding it: rolls its
    /// operation back (see the module docs), then checks the ring as a
    /// peer's input and repairs the counts. Returns `false` if the ring's
    /// contents had to be dropped.
    pub(crate) fn recover(&self) -> bool {
        let h = self.h;
        if h.txn.load(Relaxed) != 0 {
            let s = &h.shadow;
            h.head.store(s.head.load(Relaxed), Relaxed);
            h.tail.store(s.tail.load(Relaxed), Relaxed);
            h.items.store(s.items.load(Relaxed), Relaxed);
            h.accepted.store(s.accepted.load(Relaxed), Relaxed);
            h.unfinished.store(s.unfinished.load(Relaxed), Relaxed);
            h.orphans.store(s.orphans.load(Relaxed), Relaxed);
            h.flags.store(s.flags.load(Relaxed), Relaxed);
            let i = h.shadow_slot.load(Relaxed) as usize;
            if let Some(slot) = h.slots.get(i) {
                slot.stamp.store(s.slot_stamp.load(Relaxed), Relaxed);
                slot.pending.store(s.slot_pending.load(Relaxed), Relaxed);
            }
            h.txn.store(0, Relaxed);
        }
        self.repair()
    }

    /// Walks the entries from head to tail, counting them; cuts the ring
    /// at the first entry that cannot be read; recomputes `items` and
    /// `accepted`. Returns `false` if anything had to be dropped.
    pub(crate) fn repair(&self) -> bool {
        let h = self.h;
        let Ok((head, tail)) = self.indices() else {
            self.reset();
            self.recount_accepted();
            return false;
        };
        let mut at = head;
        let mut count = 0u32;
        let mut intact = true;
        while at < tail {
            let p = self.pos(at);
            let room = (self.cap - p as u64).min(tail - at);
            let Ok((len, tag)) = self.read_header(p) else {
                intact = false;
                break;
            };
            let need = match tag {
                PAD => self.cap - p as u64,
                INLINE if len as usize <= self.inline_max => {
                    ENTRY_HEADER as u64 + align8(u64::from(len))
                }
                MARKER if len == 8 => 16,
                _ => {
                    intact = false;
                    break;
                }
            };
            if (need > room && tag != PAD) || at + need > tail {
                intact = false;
                break;
            }
            if tag != PAD {
                count += 1;
            }
            at += need;
        }
        if !intact {
            h.tail.store(at, Relaxed);
        }
        h.items.store(count, Relaxed);
        self.recount_accepted();
        intact
    }

    /// `accepted` = entries in the ring + items pending in feeders.
    fn recount_accepted(&self) {
        let h = self.h;
        let total = u64::from(h.items.load(Relaxed))
            + h.pending_total()
            + u64::from(h.orphans.load(Relaxed));
        h.accepted
            .store(total.min(u64::from(u32::MAX)) as u32, Relaxed);
    }
}

#[cfg(test)]
mod tests;
