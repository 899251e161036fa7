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
//!   to `[u8]`, frees itself on drop, and can reach another process: it is
//!   a serde type whose arena fd travels beside the bytes (`mp-reduction`),
//!   as are [`Arena`] and the typed wrappers, so all of them can be process
//!   arguments of `mp-context` under every start method.
//! - [`RawValue`], [`RawArray`], [`Value`], [`Array`]: [`Pod`] data in shared
//!   memory, zero-filled; the last two guarded by a [`SharedLock`], a
//!   recursive one of their own by default (CPython's `RLock`) or a lock
//!   the caller shares between several values.
//! - [`ProcessLock`]: the lock word all of mp-heap's and mp-sync's locks are
//!   made of: a futex word naming its owner's pid, so that a process dying
//!   with the lock held does not leave the others waiting forever (the next
//!   acquisition gets the lock and [`LockError::OwnerDied`]).
//! - [`Shared<T>`]: a structure of atomics ([`SharedState`]) in a heap
//!   block, shared by clones and across processes; [`SharedLock`] is
//!   `Shared<ProcessLock>`.
//! - [`futex`]: waiting on a shared 32-bit word with a [`Deadline`], and
//!   waking its waiters, from any process.
//! - [`ProcessStamp`] and [`current_pid`]: a process's identity (pid and
//!   start time) for shared structures that record who holds a share of
//!   them, and whether that process still lives; [`ForkCell`], per-process
//!   state that a forked child replaces without taking a lock.
//!
//! Linux only for now (memfd, futex, `MADV_WIPEONFORK`, `/proc`).
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
//!     // `Err` only when a process died holding the lock.
//!     let mut g = counter.lock().unwrap();
//!     g.update(|n| n + 1);
//! }
//! assert_eq!(counter.get().unwrap(), 3);
//!
//! let squares = Array::from_slice(&[1_i32, 4, 9])?;
//! assert_eq!(squares.to_vec().unwrap(), [1, 4, 9]);
//!
//! // Raw bytes, and what another process needs to map them (serializing
//! // the buffer inside `mp_reduction::collect_fds` does this).
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
pub mod futex;
mod heap;
mod lock;
mod shared;
mod stamp;
mod sys;
mod typed;

pub use arena::{Arena, ArenaBacking};
pub use buffer::SharedBuffer;
pub use error::HeapError;
pub use futex::Deadline;
pub use heap::{
    ALIGNMENT, ArenaInfo, BlockInfo, DEFAULT_DISCARD_THRESHOLD, DOUBLE_ARENA_SIZE_UNTIL, Heap,
    HeapSnapshot, HeapStats,
};
pub use lock::{
    LockError, LockResult, OWNER_CHECK_INTERVAL, OwnerDied, ProcessLock, ProcessLockGuard,
    SavedOwnership, TryLockError, TryLockResult,
};
pub use shared::{Shared, SharedLock, SharedState};
pub use stamp::{ProcessStamp, current_pid};
pub use sys::ForkCell;
pub use typed::{Array, ArrayGuard, Pod, RawArray, RawValue, Value, ValueGuard};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
