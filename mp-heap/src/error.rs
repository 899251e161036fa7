//! The errors of mp-heap, named after the exceptions CPython raises.

use std::io;

/// What can go wrong when allocating, freeing or rebuilding shared memory.
///
/// CPython raises `OverflowError` for absurd sizes and `ValueError` for a
/// free from the wrong process; the variants say which they stand for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeapError {
    /// A request of `isize::MAX` bytes or more (CPython: `OverflowError`,
    /// "Size … too large").
    #[error("Size {size} too large")]
    TooLarge {
        /// The size asked for.
        size: usize,
    },
    /// A block was freed by a process other than the one that allocated it,
    /// as happens after `fork` (CPython: `ValueError`, "My pid … is not last
    /// pid …"). The block is left alone; the child never frees the parent's
    /// memory.
    #[error("My pid ({current}) is not last pid {owner}")]
    WrongProcess {
        /// The process that allocated the block.
        owner: u32,
        /// The calling process.
        current: u32,
    },
    /// `malloc` was called while this thread holds the heap's lock (inside
    /// [`Heap::with_lock_held`](crate::Heap::with_lock_held)); going on would
    /// deadlock.
    #[error("the heap lock is held by this thread, so allocating here would deadlock")]
    WouldDeadlock,
    /// An offset and length that do not lie inside the arena.
    #[error(
        "block at offset {offset} of {len} bytes does not fit in an arena of {arena_size} bytes"
    )]
    OutOfBounds {
        /// Offset of the block in the arena.
        offset: usize,
        /// Length of the block.
        len: usize,
        /// Size of the arena.
        arena_size: usize,
    },
    /// A buffer that cannot hold the typed value or array asked for (wrong
    /// length, or an offset that is not 8-byte aligned).
    #[error("a {what} needs {need} bytes at an 8-byte aligned offset, the buffer has {have}")]
    BadLayout {
        /// What was being rebuilt.
        what: &'static str,
        /// The number of bytes it needs.
        need: usize,
        /// The number of bytes the buffer has.
        have: usize,
    },
    /// Creating, sizing or mapping an arena failed.
    #[error("cannot create or map a shared-memory arena")]
    Io(#[from] io::Error),
}
