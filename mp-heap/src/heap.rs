//! The best-fit allocator of CPython's `multiprocessing/heap.py`.
//!
//! The algorithm is heap.py's, step for step: a sorted list of the distinct
//! free lengths searched with a binary search (`bisect_left`), one LIFO list
//! of free blocks per length, and two maps from `(arena, offset)` to the
//! free block that starts or stops there, so that a freed block merges with
//! both neighbours in O(1). Only the containers differ: the free blocks live
//! in a slab with intrusive per-length lists, and the maps use a cheap hash,
//! so that a `malloc`/`free` pair allocates nothing once warm.

use std::{
    cell::Cell,
    collections::HashMap,
    fmt,
    hash::{BuildHasherDefault, Hasher},
    ptr::{self, NonNull},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, TryLockError,
        atomic::{AtomicUsize, Ordering, fence},
    },
};

use once_cell::sync::OnceCell;

use crate::{
    Arena, HeapError, SharedBuffer,
    sys::{self, ForkCell},
};

/// Every block starts and ends on a multiple of this many bytes
/// (heap.py's `Heap._alignment`).
pub const ALIGNMENT: usize = 8;

/// heap.py's `_DISCARD_FREE_SPACE_LARGER_THAN`: a wholly free arena of at
/// least this many bytes is unmapped; smaller ones are kept for reuse,
/// since reusing an arena is faster than making one.
pub const DEFAULT_DISCARD_THRESHOLD: usize = 4 * 1024 * 1024;

/// heap.py's `_DOUBLE_ARENA_SIZE_UNTIL`: arena sizes start at one page and
/// double with each new arena until they reach this (roughly an L3 cache).
pub const DOUBLE_ARENA_SIZE_UNTIL: usize = 4 * 1024 * 1024;

static GLOBAL: OnceCell<Heap> = OnceCell::new();

thread_local! {
    /// The address of the `Inner` whose lock this thread holds inside
    /// `with_lock_held`, or 0.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// A best-fit allocator of blocks in shared-memory [`Arena`]s: heap.py's
/// `Heap`.
///
/// - Arena sizes start at the page size and double up to 4 MiB; a request
///   larger than the current size gets an arena of its own, rounded up to
///   whole pages.
/// - A request takes the smallest free block that fits (best fit); the
///   unused tail goes back to the free lists. A freed block merges with the
///   free blocks on both sides.
/// - Sizes are rounded up to 8 bytes; size 0 gives an 8-byte block; a size of
///   `isize::MAX` or more is [`HeapError::TooLarge`].
/// - A wholly free arena of at least the discard threshold (4 MiB by
///   default) is unmapped.
/// - A free that finds the lock taken (another thread, or a drop inside
///   [`Heap::with_lock_held`]) never blocks: the block waits on a pending
///   list that the next `malloc` or `free`, or the lock holder on its way
///   out, drains.
/// - After `fork` the child's first use starts a fresh heap; blocks the
///   parent allocated stay mapped in the child and are never freed there.
///
/// Most code uses the process-wide [`Heap::global`] through
/// [`SharedBuffer::new`], as CPython's `BufferWrapper._heap`; a private
/// heap from [`Heap::new`] suits tests and isolated pools.
///
/// # Examples
///
/// ```
/// use mp_heap::Heap;
///
/// let heap = Heap::with_discard_threshold(0);
/// let mut a = heap.malloc(100)?;
/// a[..5].copy_from_slice(b"hello");
/// assert_eq!(heap.stats().used_bytes, 104); // rounded up to 8 bytes
/// drop(a);
/// assert_eq!(heap.stats().arenas, 0); // wholly free and over the threshold
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
pub struct Heap {
    core: Arc<HeapCore>,
}

/// A reference to the heap a block came from, cheap for the global heap.
pub(crate) enum HeapRef {
    Static(&'static HeapCore),
    Shared(Arc<HeapCore>),
}

impl std::ops::Deref for HeapRef {
    type Target = HeapCore;
    fn deref(&self) -> &HeapCore {
        match self {
            HeapRef::Static(c) => c,
            HeapRef::Shared(c) => c,
        }
    }
}

/// A block as the heap tracks it: `[start, stop)` in arena slot `arena`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub(crate) arena: u32,
    pub(crate) start: usize,
    pub(crate) stop: usize,
}

/// The shared part of a heap: the per-process state and the settings.
pub(crate) struct HeapCore {
    cell: ForkCell<Inner>,
    discard_threshold: usize,
}

/// A heap's state in one process; a forked child makes a new one.
struct Inner {
    pid: u32,
    state: Mutex<State>,
    pending: Mutex<Vec<BlockRef>>,
    n_pending: AtomicUsize,
}

/// Counters of a heap, taken under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapStats {
    /// Successful `malloc` calls (heap.py's `_n_mallocs`).
    pub mallocs: u64,
    /// Blocks returned to the free lists, deferred ones included once
    /// drained (heap.py's `_n_frees`).
    pub frees: u64,
    /// Arenas currently mapped.
    pub arenas: usize,
    /// Total bytes of those arenas.
    pub arena_bytes: usize,
    /// Bytes in free blocks.
    pub free_bytes: usize,
    /// Bytes in allocated blocks (rounded sizes); `free + used == arena`.
    pub used_bytes: usize,
    /// Blocks allocated and not yet freed.
    pub allocated_blocks: usize,
    /// Blocks on the free lists.
    pub free_blocks: usize,
    /// Frees deferred because the lock was held, not yet drained.
    pub pending_frees: usize,
    /// The size the next new arena will have (at least).
    pub next_arena_size: usize,
}

/// One arena of a [`HeapSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaInfo {
    /// The arena's id within the heap (as in [`BlockInfo::arena`]).
    pub id: u32,
    /// Its size in bytes.
    pub size: usize,
    /// Blocks allocated from it.
    pub allocated_blocks: usize,
    /// Bytes allocated from it.
    pub used_bytes: usize,
}

/// A block `[start, stop)` of arena `arena`, free or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockInfo {
    /// The arena's id within the heap.
    pub arena: u32,
    /// First byte of the block.
    pub start: usize,
    /// One past its last byte (the rounded size).
    pub stop: usize,
}

/// Everything a heap knows, for tests and diagnostics ([`Heap::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapSnapshot {
    /// The counters.
    pub stats: HeapStats,
    /// The arenas, by id.
    pub arenas: Vec<ArenaInfo>,
    /// The free blocks, sorted.
    pub free_blocks: Vec<BlockInfo>,
    /// The distinct free lengths, ascending (heap.py's `_lengths`).
    pub free_lengths: Vec<usize>,
}

impl Heap {
    /// A new private heap with heap.py's settings: first arena one page,
    /// discard threshold 4 MiB.
    pub fn new() -> Self {
        Self::with_discard_threshold(DEFAULT_DISCARD_THRESHOLD)
    }

    /// A new private heap that unmaps wholly free arenas of at least
    /// `threshold` bytes (0: all of them, as CPython's heap test sets it).
    pub fn with_discard_threshold(threshold: usize) -> Self {
        let pid = sys::current_pid();
        Self {
            core: Arc::new(HeapCore {
                cell: ForkCell::new(Inner::new(pid)),
                discard_threshold: threshold,
            }),
        }
    }

    /// The process-wide heap that [`SharedBuffer::new`] and the typed
    /// values use (CPython's `BufferWrapper._heap`).
    pub fn global() -> &'static Heap {
        GLOBAL.get_or_init(Heap::new)
    }

    /// Allocates a block of at least `size` bytes (rounded up to 8, 0 counted
    /// as 1) and returns it as a [`SharedBuffer`] of exactly `size` bytes,
    /// freed when dropped. The bytes are whatever the block last held; see
    /// [`Heap::malloc_zeroed`].
    ///
    /// # Errors
    ///
    /// [`HeapError::TooLarge`] for `size >= isize::MAX`;
    /// [`HeapError::WouldDeadlock`] inside [`Heap::with_lock_held`];
    /// [`HeapError::Io`] when a new arena cannot be made.
    pub fn malloc(&self, size: usize) -> Result<SharedBuffer, HeapError> {
        let (pid, block, arena) = self.core.malloc(size)?;
        Ok(SharedBuffer::from_heap(
            self.heap_ref(),
            pid,
            block,
            arena,
            size,
        ))
    }

    /// As [`Heap::malloc`], with every byte set to zero.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn malloc_zeroed(&self, size: usize) -> Result<SharedBuffer, HeapError> {
        let mut buf = self.malloc(size)?;
        buf.fill(0);
        Ok(buf)
    }

    /// The heap's counters.
    ///
    /// # Panics
    ///
    /// When called inside [`Heap::with_lock_held`] on the same heap, where
    /// taking the lock again would deadlock.
    pub fn stats(&self) -> HeapStats {
        self.core.inspect("Heap::stats", State::stats)
    }

    /// The heap's arenas, free blocks and counters, for tests and
    /// diagnostics. Allocated blocks are the ones your [`SharedBuffer`]s
    /// hold ([`SharedBuffer::block`]).
    ///
    /// # Panics
    ///
    /// As [`Heap::stats`].
    pub fn snapshot(&self) -> HeapSnapshot {
        self.core.inspect("Heap::snapshot", State::snapshot)
    }

    /// Frees deferred because the lock was held and not yet drained.
    pub fn pending_frees(&self) -> usize {
        self.core.inner().n_pending.load(Ordering::SeqCst)
    }

    /// Runs `f` while this thread holds the heap's lock, as a finalizer or
    /// signal handler that interrupts an allocation would.
    ///
    /// Blocks dropped inside `f` are not freed at once but deferred (see
    /// [`Heap::pending_frees`]) and drained when the lock is released;
    /// `malloc` inside `f` returns [`HeapError::WouldDeadlock`] instead of
    /// hanging. This exists to test and demonstrate that frees never
    /// deadlock (CPython issue #12352).
    ///
    /// # Errors
    ///
    /// [`HeapError::WouldDeadlock`] when already inside `with_lock_held` of
    /// this heap.
    pub fn with_lock_held<R>(&self, f: impl FnOnce() -> R) -> Result<R, HeapError> {
        struct Reset(usize);
        impl Drop for Reset {
            fn drop(&mut self) {
                HELD.with(|h| h.set(self.0));
            }
        }
        let inner = self.core.inner();
        let guard = self.core.lock(inner)?;
        let r = {
            let _reset = Reset(HELD.with(|h| h.replace(inner as *const Inner as usize)));
            f()
        };
        drop(guard);
        self.core.after_unlock(inner);
        Ok(r)
    }

    fn heap_ref(&self) -> HeapRef {
        match GLOBAL.get() {
            Some(g) if ptr::eq(g, self) => HeapRef::Static(&g.core),
            _ => HeapRef::Shared(Arc::clone(&self.core)),
        }
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.core.inner();
        f.debug_struct("Heap")
            .field("pid", &inner.pid)
            .field("discard_threshold", &self.core.discard_threshold)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn new(pid: u32) -> Self {
        Self {
            pid,
            state: Mutex::new(State::new()),
            pending: Mutex::new(Vec::new()),
            n_pending: AtomicUsize::new(0),
        }
    }

    /// Parks a block for a later drain. The pending lock is a leaf: it is
    /// never held while anything else is taken or any user code runs.
    fn defer(&self, block: BlockRef) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.push(block);
        self.n_pending.fetch_add(1, Ordering::SeqCst);
    }

    /// Frees every parked block; called with the state lock held
    /// (heap.py's `_free_pending_blocks`).
    fn drain(&self, st: &mut State, threshold: usize) {
        let mut batch = std::mem::take(&mut st.scratch);
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *pending, &mut batch);
            self.n_pending.fetch_sub(batch.len(), Ordering::SeqCst);
        }
        for block in batch.drain(..) {
            st.free(block, threshold);
        }
        st.scratch = batch;
    }
}

impl HeapCore {
    /// This process's state, made afresh after a fork (heap.py's
    /// `self.__init__()` when `os.getpid() != self._lastpid`).
    fn inner(&self) -> &Inner {
        let pid = sys::current_pid();
        self.cell.replace_if(|i| i.pid != pid, || Inner::new(pid))
    }

    fn lock<'a>(&self, inner: &'a Inner) -> Result<MutexGuard<'a, State>, HeapError> {
        match inner.state.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                if HELD.with(Cell::get) == inner as *const Inner as usize {
                    return Err(HeapError::WouldDeadlock);
                }
                Ok(inner.state.lock().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }

    /// Runs `f` on this process's state under the lock, for the read-only
    /// views ([`Heap::stats`], [`Heap::snapshot`]).
    ///
    /// # Panics
    ///
    /// Inside [`Heap::with_lock_held`] on this heap, naming `caller`: taking
    /// the lock again would deadlock.
    #[track_caller]
    fn inspect<R>(&self, caller: &str, f: impl FnOnce(&State, &Inner) -> R) -> R {
        let inner = self.inner();
        match self.lock(inner) {
            Ok(st) => f(&st, inner),
            Err(e) => panic!("{caller} called inside Heap::with_lock_held: {e:?}"),
        }
    }

    pub(crate) fn malloc(&self, size: usize) -> Result<(u32, BlockRef, NonNull<Arena>), HeapError> {
        if size >= isize::MAX as usize {
            return Err(HeapError::TooLarge { size });
        }
        let inner = self.inner();
        let mut st = self.lock(inner)?;
        if inner.n_pending.load(Ordering::Relaxed) != 0 {
            inner.drain(&mut st, self.discard_threshold);
        }
        let size = roundup(size.max(1), ALIGNMENT);
        let r = st.malloc(size);
        drop(st);
        self.after_unlock(inner);
        let (block, arena) = r?;
        Ok((inner.pid, block, arena))
    }

    /// Frees a block that process `pid` allocated (heap.py's `free`).
    pub(crate) fn free(&self, pid: u32, block: BlockRef) -> Result<(), HeapError> {
        let current = sys::current_pid();
        if current != pid {
            return Err(HeapError::WrongProcess {
                owner: pid,
                current,
            });
        }
        // The block was allocated in this process, so this process already
        // has its own state, and it is the current one.
        let inner = self.cell.get();
        debug_assert_eq!(inner.pid, pid);
        match inner.state.try_lock() {
            Ok(mut st) => {
                Self::free_locked(inner, &mut st, block, self.discard_threshold);
            }
            Err(TryLockError::Poisoned(p)) => {
                let mut st = p.into_inner();
                Self::free_locked(inner, &mut st, block, self.discard_threshold);
            }
            Err(TryLockError::WouldBlock) => {
                // Somebody (maybe this very thread) holds the lock: park the
                // block rather than wait, then try once more in case the
                // holder left before it could see the block.
                inner.defer(block);
                fence(Ordering::SeqCst);
                if let Ok(mut st) = inner.state.try_lock() {
                    inner.drain(&mut st, self.discard_threshold);
                }
            }
        }
        self.after_unlock(inner);
        Ok(())
    }

    fn free_locked(inner: &Inner, st: &mut State, block: BlockRef, threshold: usize) {
        if inner.n_pending.load(Ordering::Relaxed) != 0 {
            inner.drain(st, threshold);
        }
        st.free(block, threshold);
    }

    /// Drains blocks parked while we held the lock. A free that parks a
    /// block issues a fence and then tries the lock; we released the lock
    /// and then fence and look: one of the two sees the other, so no block
    /// stays parked once everybody is done.
    fn after_unlock(&self, inner: &Inner) {
        loop {
            fence(Ordering::SeqCst);
            if inner.n_pending.load(Ordering::Relaxed) == 0 {
                return;
            }
            match inner.state.try_lock() {
                Ok(mut st) => inner.drain(&mut st, self.discard_threshold),
                Err(_) => return,
            }
        }
    }
}

fn roundup(n: usize, alignment: usize) -> usize {
    let mask = alignment - 1;
    (n + mask) & !mask
}

/// A hash for `(arena, offset)` keys: one folded multiply, instead of
/// SipHash, since the keys come from the heap itself, never from a peer.
#[derive(Default, Clone, Copy)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        // The 64-bit golden-ratio constant; folding the 128-bit product
        // mixes the high bits into the low ones that pick the bucket.
        let p = u128::from(self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

/// `(arena, offset)`, hashed as one word: offsets are multiples of 8 and
/// arena ids small, so moving the id to the top bits keeps keys apart
/// before the multiply mixes them (equality still compares both fields).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    arena: u32,
    offset: usize,
}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((self.offset as u64) ^ u64::from(self.arena).rotate_right(16));
    }
}

fn key(arena: u32, offset: usize) -> Key {
    Key { arena, offset }
}

type BlockMap = HashMap<Key, u32, BuildHasherDefault<BlockHasher>>;

const NIL: u32 = u32::MAX;

struct ArenaSlot {
    arena: Arc<Arena>,
    blocks: usize,
    used: usize,
}

/// A free block, linked into the list of free blocks of its length.
#[derive(Clone, Copy)]
struct FreeNode {
    arena: u32,
    start: usize,
    stop: usize,
    prev: u32,
    next: u32,
}

/// The allocator proper; every method runs under the heap's lock.
struct State {
    /// heap.py's `_size`: the size of the next arena.
    size: usize,
    /// The arenas by id; a discarded one leaves `None`, its id waiting in
    /// `vacant_arenas` for reuse (so `arenas.len() - vacant_arenas.len()`
    /// arenas are live).
    arenas: Vec<Option<ArenaSlot>>,
    vacant_arenas: Vec<u32>,
    /// heap.py's `_lengths` and `_len_to_seq`: the distinct free lengths,
    /// sorted, each with the head of its list (the newest block, which
    /// is what `seq.pop()` takes).
    lengths: Vec<(usize, u32)>,
    nodes: Vec<FreeNode>,
    vacant_nodes: Vec<u32>,
    /// heap.py's `_start_to_block` and `_stop_to_block`.
    start_to_block: BlockMap,
    stop_to_block: BlockMap,
    mallocs: u64,
    frees: u64,
    arena_bytes: usize,
    used_bytes: usize,
    /// The sum of the free blocks' lengths, kept apart from `used_bytes` so
    /// that `free + used == arena` is a check, not a definition.
    free_bytes: usize,
    allocated_blocks: usize,
    /// Reused by `Inner::drain`, so that draining allocates nothing.
    scratch: Vec<BlockRef>,
}

impl State {
    fn new() -> Self {
        Self {
            size: sys::page_size(),
            arenas: Vec::new(),
            vacant_arenas: Vec::new(),
            lengths: Vec::new(),
            nodes: Vec::new(),
            vacant_nodes: Vec::new(),
            start_to_block: BlockMap::default(),
            stop_to_block: BlockMap::default(),
            mallocs: 0,
            frees: 0,
            arena_bytes: 0,
            used_bytes: 0,
            free_bytes: 0,
            allocated_blocks: 0,
            scratch: Vec::new(),
        }
    }

    /// heap.py's `malloc` body, `size` already rounded.
    fn malloc(&mut self, size: usize) -> Result<(BlockRef, NonNull<Arena>), HeapError> {
        let (arena, start, stop) = match self.take_free(size) {
            Some(b) => b,
            None => self.new_arena(size)?,
        };
        let real_stop = start + size;
        if real_stop < stop {
            // The block is larger than necessary: the tail goes back.
            self.add_free_block(arena, real_stop, stop);
        }
        let slot = self.slot_mut(arena);
        slot.blocks += 1;
        slot.used += size;
        let ptr = NonNull::from(&*slot.arena);
        self.used_bytes += size;
        self.allocated_blocks += 1;
        self.mallocs += 1;
        Ok((
            BlockRef {
                arena,
                start,
                stop: real_stop,
            },
            ptr,
        ))
    }

    /// heap.py's `free` body: back to the free lists, then maybe discard
    /// the arena.
    fn free(&mut self, b: BlockRef, threshold: usize) {
        self.frees += 1;
        self.add_free_block(b.arena, b.start, b.stop);
        let len = b.stop - b.start;
        let slot = self.slot_mut(b.arena);
        slot.blocks -= 1;
        slot.used -= len;
        let now_empty = slot.blocks == 0;
        self.used_bytes -= len;
        self.allocated_blocks -= 1;
        if now_empty {
            self.discard_arena(b.arena, threshold);
        }
    }

    fn slot_mut(&mut self, arena: u32) -> &mut ArenaSlot {
        match self.arenas.get_mut(arena as usize) {
            Some(Some(slot)) => slot,
            _ => unreachable!("block of a discarded arena"),
        }
    }

    /// heap.py's `_malloc` when a free block fits: the smallest length that
    /// is at least `size`, newest block of that length.
    fn take_free(&mut self, size: usize) -> Option<(u32, usize, usize)> {
        let i = self.lengths.partition_point(|&(len, _)| len < size);
        let &(_, head) = self.lengths.get(i)?;
        let node = self.nodes[head as usize];
        self.unlink(head);
        self.release_node(head);
        self.start_to_block.remove(&key(node.arena, node.start));
        self.stop_to_block.remove(&key(node.arena, node.stop));
        self.free_bytes -= node.stop - node.start;
        Some((node.arena, node.start, node.stop))
    }

    /// heap.py's `_new_arena`.
    fn new_arena(&mut self, size: usize) -> Result<(u32, usize, usize), HeapError> {
        let length = roundup(self.size.max(size), sys::page_size());
        if self.size < DOUBLE_ARENA_SIZE_UNTIL {
            self.size *= 2;
        }
        let arena = Arc::new(Arena::new(length)?);
        let slot = ArenaSlot {
            arena,
            blocks: 0,
            used: 0,
        };
        let id = match self.vacant_arenas.pop() {
            Some(id) => {
                self.arenas[id as usize] = Some(slot);
                id
            }
            None => {
                self.arenas.push(Some(slot));
                (self.arenas.len() - 1) as u32
            }
        };
        self.arena_bytes += length;
        // The new arena is handed out whole, so it is neither free nor used
        // until `malloc` files its tail and counts its head.
        Ok((id, 0, length))
    }

    /// heap.py's `_discard_arena`, called when an arena has no block left.
    fn discard_arena(&mut self, arena: u32, threshold: usize) {
        let length = self.slot_mut(arena).arena.size();
        if length < threshold {
            return;
        }
        let Some(&whole) = self.start_to_block.get(&key(arena, 0)) else {
            unreachable!("a wholly free arena is one free block");
        };
        debug_assert_eq!(self.nodes[whole as usize].stop, length);
        self.absorb(whole);
        self.arenas[arena as usize] = None;
        self.vacant_arenas.push(arena);
        self.arena_bytes -= length;
    }

    /// heap.py's `_add_free_block`: merge with both neighbours, then file.
    fn add_free_block(&mut self, arena: u32, mut start: usize, mut stop: usize) {
        if let Some(&prev) = self.stop_to_block.get(&key(arena, start)) {
            start = self.absorb(prev).0;
        }
        if let Some(&next) = self.start_to_block.get(&key(arena, stop)) {
            stop = self.absorb(next).1;
        }
        let node = FreeNode {
            arena,
            start,
            stop,
            prev: NIL,
            next: NIL,
        };
        let idx = match self.vacant_nodes.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let len = stop - start;
        self.free_bytes += len;
        match self.lengths.binary_search_by_key(&len, |&(l, _)| l) {
            Ok(i) => {
                let head = self.lengths[i].1;
                self.nodes[idx as usize].next = head;
                self.nodes[head as usize].prev = idx;
                self.lengths[i].1 = idx;
            }
            Err(i) => self.lengths.insert(i, (len, idx)),
        }
        self.start_to_block.insert(key(arena, start), idx);
        self.stop_to_block.insert(key(arena, stop), idx);
    }

    /// heap.py's `_absorb`: takes a free block off every list and map.
    fn absorb(&mut self, idx: u32) -> (usize, usize) {
        let node = self.nodes[idx as usize];
        self.start_to_block.remove(&key(node.arena, node.start));
        self.stop_to_block.remove(&key(node.arena, node.stop));
        self.unlink(idx);
        self.release_node(idx);
        self.free_bytes -= node.stop - node.start;
        (node.start, node.stop)
    }

    /// Removes a node from its length's list, and the length from
    /// `lengths` when the list becomes empty.
    fn unlink(&mut self, idx: u32) {
        let FreeNode {
            start,
            stop,
            prev,
            next,
            ..
        } = self.nodes[idx as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            let len = stop - start;
            let i = self.lengths.partition_point(|&(l, _)| l < len);
            debug_assert_eq!(self.lengths.get(i).map(|e| e.1), Some(idx));
            if next == NIL {
                self.lengths.remove(i);
            } else {
                self.lengths[i].1 = next;
            }
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn release_node(&mut self, idx: u32) {
        self.vacant_nodes.push(idx);
    }

    fn stats(&self, inner: &Inner) -> HeapStats {
        HeapStats {
            mallocs: self.mallocs,
            frees: self.frees,
            arenas: self.arenas.len() - self.vacant_arenas.len(),
            arena_bytes: self.arena_bytes,
            free_bytes: self.free_bytes,
            used_bytes: self.used_bytes,
            allocated_blocks: self.allocated_blocks,
            free_blocks: self.start_to_block.len(),
            pending_frees: inner.n_pending.load(Ordering::SeqCst),
            next_arena_size: self.size,
        }
    }

    fn snapshot(&self, inner: &Inner) -> HeapSnapshot {
        let arenas = self
            .arenas
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| {
                slot.as_ref().map(|s| ArenaInfo {
                    id: id as u32,
                    size: s.arena.size(),
                    allocated_blocks: s.blocks,
                    used_bytes: s.used,
                })
            })
            .collect();
        let mut free_blocks: Vec<BlockInfo> = self
            .start_to_block
            .values()
            .map(|&i| {
                let n = self.nodes[i as usize];
                BlockInfo {
                    arena: n.arena,
                    start: n.start,
                    stop: n.stop,
                }
            })
            .collect();
        free_blocks.sort_unstable();
        HeapSnapshot {
            stats: self.stats(inner),
            arenas,
            free_blocks,
            free_lengths: self.lengths.iter().map(|&(l, _)| l).collect(),
        }
    }
}
