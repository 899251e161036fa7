//! # mp-heap
//!
//! Shared memory for processes: the arenas and best-fit allocator of
//! CPython's `multiprocessing.heap`, and the typed values and arrays of
//! `multiprocessing.sharedctypes` built on them.
//!
//! - [`Arena`]: a `memfd` (or, failing that, an unlinked file in `/dev/shm`
//!   or the temp dir) mapped `MAP_SHARED`; share it by its fd, inherited
//!   across `fork` or sent with `SCM_RIGHTS`, and map it elsewhere with
//!   [`Arena::from_fd`].
//! - [`Heap`]: heap.py's allocator: arenas doubling from a page to 4 MiB,
//!   best fit over sorted free lengths, coalescing with both neighbours,
//!   8-byte alignment, big empty arenas unmapped, frees that never deadlock
//!   (deferred while the lock is held), a fresh heap in a forked child.
//!   [`Heap::global`] is the process-wide one.
//! - [`SharedBuffer`]: an owned block (CPython's `BufferWrapper`) that derefs
//!   to `[u8]`, frees itself on drop, and can reach another process.
//! - [`RawValue`], [`RawArray`], [`Value`], [`Array`]: [`Pod`] data in shared
//!   memory, zero-filled; the last two guarded by a [`ProcessLock`] that
//!   lives in the block and works across processes.
//!
//! Linux only for now (memfd, futex, `MADV_WIPEONFORK`).
//!
//! # Examples
//!
//! A counter that a forked child and its parent could both update:
//!
//! ```
//! use mp_heap::{Array, SharedBuffer, Value};
//!
//! let counter = Value::new(0_u64)?;
//! for _ in 0..3 {
//!     let mut g = counter.lock();
//!     g.update(|n| n + 1);
//! }
//! assert_eq!(counter.get(), 3);
//!
//! let squares = Array::from_slice(&[1_i32, 4, 9])?;
//! assert_eq!(squares.to_vec(), [1, 4, 9]);
//!
//! // Raw bytes, and what another process needs to map them.
//! let mut buf = SharedBuffer::new(64)?;
//! buf[0] = 42;
//! let (size, offset, len) = (buf.arena().size(), buf.offset(), buf.len());
//! assert!(offset + len <= size);
//! # Ok::<(), mp_heap::HeapError>(())
//! ```

#![deny(unsafe_code)]

mod arena;
mod buffer;
mod error;
mod heap;
mod lock;
mod sys;
mod typed;

pub use arena::{Arena, ArenaBacking};
pub use buffer::SharedBuffer;
pub use error::HeapError;
pub use heap::{
    ALIGNMENT, ArenaInfo, BlockInfo, DEFAULT_DISCARD_THRESHOLD, DOUBLE_ARENA_SIZE_UNTIL, Heap,
    HeapSnapshot, HeapStats,
};
pub use lock::{ProcessLock, ProcessLockGuard};
pub use typed::{Array, ArrayGuard, Pod, RawArray, RawValue, Value, ValueGuard};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
