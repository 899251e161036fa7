//! # mp-sync
//!
//! The synchronization primitives of CPython's `multiprocessing` in shared
//! memory: [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Condition`], [`Event`] and [`Barrier`], usable from every process that
//! holds one, with CPython's semantics (`acquire(block, timeout)`,
//! `release()` and its errors, `wait(timeout)`, `notify(n)`, ...).
//!
//! Each primitive is a handle on a few words in an mp-heap block (futex
//! words, waited on with shared, never `FUTEX_PRIVATE`, futexes). Clones
//! share the primitive, like an `Arc`, so one can be handed to many
//! children: a forked child inherits it, and under spawn or forkserver it
//! is a serde process argument (its arena fd travels through mp-reduction,
//! as `mp_heap::Value`'s does), as it is inside a message sent with
//! mp-conn's `send` over a unix-socket connection.
//!
//! Beyond CPython, which waits forever here: when a process dies holding a
//! `Lock` or `RLock`, the next acquisition gets the lock together with
//! [`SyncError::OwnerDied`], saying that what it protects may be
//! inconsistent (mp-heap's [`ProcessLock`](mp_heap::ProcessLock) explains
//! how, and its limits).
//!
//! For other shared structures (the process queues): [`RawSemaphore`] and
//! [`CondState`] embed in a `#[repr(C)]` structure of one's own, and
//! [`futex`] (mp-heap's) waits on and wakes any shared 32-bit word with a
//! [`Deadline`].
//!
//! Linux only for now (futex, `/proc`).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use mp_sync::{Condition, Event, Lock, RLock, Semaphore};
//!
//! let lock = Lock::new()?;
//! {
//!     let _held = lock.lock().unwrap(); // Err only if a holder died
//!     assert!(!lock.acquire(false, None)?); // a non-blocking try fails
//! }
//!
//! let sem = Semaphore::new(1)?;
//! assert!(sem.acquire(true, Some(Duration::from_secs(1))));
//! sem.release()?;
//! assert_eq!(sem.get_value(), 1);
//!
//! let ready = Event::new()?;
//! ready.set();
//! assert!(ready.wait(None));
//!
//! // A condition and a shared value guarded by one RLock (the value takes
//! // it with mp_heap::Value::with_lock, CPython's `lock=` argument).
//! let rlock = RLock::new()?;
//! let cond = Condition::with_lock(&rlock)?;
//! let counter = mp_heap::Value::with_lock(0_u32, &rlock)?;
//! let guard = cond.lock().unwrap();
//! counter.set(1).unwrap(); // re-enters the RLock
//! assert!(cond.wait_for(|| counter.get().unwrap() == 1, Some(Duration::from_secs(1)))?);
//! drop(guard);
//! # Ok::<(), mp_sync::SyncError>(())
//! ```

#![deny(unsafe_code)]

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod semaphore;
mod state;

pub use barrier::{Barrier, BarrierAction, BarrierState, NoAction};
pub use condition::{CondState, Condition};
pub use error::{ActionError, Result, SyncError};
pub use event::{Event, EventState};
pub use lock::{Lock, LockGuard, RLock};
pub use mp_heap::{
    Deadline, LockError, LockResult, OWNER_CHECK_INTERVAL, OwnerDied, SharedLock, TryLockError,
    TryLockResult, futex,
};
pub use semaphore::{BoundedSemaphore, RawSemaphore, SEM_VALUE_MAX, Semaphore, SemaphoreGuard};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
