//! # mp-dummy
//!
//! The API of CPython's `multiprocessing` backed by threads, after
//! `multiprocessing.dummy`: code written against the process API runs in
//! one process, and values move between threads as they are, never
//! serialized.
//!
//! - [`DummyProcess`] (a thread with the process API, and the seed's
//!   rules), [`current_process`], [`active_children`],
//!   [`freeze_support`];
//! - [`pipe`], [`Listener`] and [`client`] (`dummy/connection.py`): typed
//!   [`Connection`]s over in-process queues, with `poll(timeout)`,
//!   `close`, and EOF when the other end is gone;
//! - [`Queue`], [`JoinableQueue`], [`SimpleQueue`], [`Lock`], [`RLock`],
//!   [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`],
//!   [`Barrier`], with the method names, arguments and errors of mp-queue
//!   and mp-sync (`put(item, block, timeout)`, [`Error::Full`],
//!   `acquire(block, timeout)`, [`Error::ReleasedTooManyTimes`], ...);
//! - [`Value`], [`Array`], [`Namespace`], and [`Manager`], whose
//!   [`DictProxy`] and [`ListProxy`] have mp-manager's proxy method names;
//! - the thread [`Pool`] (CPython's `ThreadPool`) with every call of
//!   mp-pool's `Pool`, whose tasks are closures (see [`pool`]).
//!
//! Every error is an [`Error`] value; nothing here panics on a caller's
//! mistake, and a poisoned mutex is recovered from.
//!
//! The `multiprocessing` crate's `backend` module names the traits these
//! types and the process-backed ones share, so that generic code switches
//! between threads and processes by changing one type.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use mp_dummy::{DummyProcess, Event, Lock, Queue, Value};
//!
//! let (jobs, done) = (Queue::new(0), Queue::new(0));
//! let total = Value::new(0_u64);
//! let (lock, ready) = (Lock::new(), Event::new());
//! let workers: Vec<_> = (0..2)
//!     .map(|_| {
//!         let (jobs, done, total, lock, ready) =
//!             (jobs.clone(), done.clone(), total.clone(), lock.clone(), ready.clone());
//!         // Any closure: nothing is serialized.
//!         DummyProcess::new(
//!             move |()| {
//!                 ready.wait(None);
//!                 while let Ok(n) = jobs.get(true, None) {
//!                     if n == 0 {
//!                         return;
//!                     }
//!                     let _held = lock.lock();
//!                     total.update(|t| t + n);
//!                     done.put(n * n, true, None).unwrap();
//!                 }
//!             },
//!             (),
//!         )
//!     })
//!     .collect();
//! for w in &workers {
//!     w.start()?;
//! }
//! ready.set();
//! for n in 1..=10 {
//!     jobs.put(n, true, None)?;
//! }
//! let squares: u64 = (0..10).map(|_| done.get(true, Some(Duration::from_secs(60))).unwrap()).sum();
//! for _ in &workers {
//!     jobs.put(0, true, None)?; // one stop sign each
//! }
//! for w in &workers {
//!     w.join(None)?;
//!     assert_eq!(w.exitcode(), Some(0));
//! }
//! assert_eq!((squares, total.get()), (385, 55));
//!
//!
//! // The thread pool: closures as tasks.
//! let pool = mp_dummy::Pool::new(Some(2))?;
//! assert_eq!(pool.map(|n: u64| n + 1, [1, 2, 3], None)?, [2, 3, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod connection;
mod error;
mod manager;
pub mod pool;
mod process;
mod queue;
#[cfg(feature = "serde")]
mod refuse_serde;
mod sync;
mod value;
mod wait;

pub use connection::{Address, Connection, Listener, client, pipe};
pub use error::{ActionError, Error, Result};
pub use manager::{DictProxy, ListProxy, Manager, manager};
pub use pool::{AsyncResult, Pool, PoolBuilder, PoolError, PoolState};
pub use process::{DummyProcess, active_children, current_process, freeze_support};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use sync::{
    Barrier, BarrierActionFn, BoundedSemaphore, Condition, ConditionLock, Event, Lock, LockGuard,
    RLock, SEM_VALUE_MAX, Semaphore, SemaphoreGuard,
};
pub use value::{Array, Namespace, Value, ValueGuard};

/// CPython's name for it (`multiprocessing.dummy.Process`).
pub type Process = DummyProcess;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
