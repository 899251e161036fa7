//! # mp-pool
//!
//! A process pool after CPython's `multiprocessing.Pool` (`pool.py`) that
//! never hangs on a dead worker.
//!
//! Tasks are plain functions with serde arguments and results, `fn(A) ->
//! R`, so the same code runs under every start method of `mp-context`
//! (fork, spawn, forkserver). CPython's calls are all here: [`Pool::apply`],
//! [`Pool::apply_async`] (an [`AsyncResult`] with `get(timeout)`, `wait`,
//! `ready`, `successful`), [`Pool::map`], [`Pool::map_async`],
//! [`Pool::imap`], [`Pool::imap_unordered`], [`Pool::starmap`],
//! [`Pool::starmap_async`], callbacks ([`Callbacks`]), `chunksize` with
//! CPython's default, [`Pool::close`], [`Pool::terminate`], [`Pool::join`];
//! dropping a pool terminates it, as leaving `with Pool() as p:` does.
//! [`Builder`] sets `processes`, the context, `initializer` + `initargs`
//! and `maxtasksperchild`.
//!
//! ## Never hang
//!
//! - A task that panics, or whose result cannot be serialized, fails alone
//!   ([`Error::Panicked`] carries the message and the location); the pool
//!   goes on.
//! - A worker that dies (killed, aborted, `exit` inside a task) fails the
//!   task it was running with [`Error::WorkerLost`], naming the exit code
//!   or signal; a replacement starts and the other tasks complete
//!   (CPython's `map` waits forever here, gh-66587). The pool knows which
//!   task that was exactly: each worker counts the tasks it starts in
//!   shared memory, and the pool reads the count once the worker is gone.
//!   Tasks it had been sent but not started go to other workers.
//! - An initializer that fails stops the pool with
//!   [`Error::InitializerFailed`] for every pending and later task, instead
//!   of starting workers forever (gh-87472).
//! - [`Builder::task_timeout`]: a task past the limit fails with
//!   [`Error::TaskTimeout`] and its worker is replaced (billiard's
//!   `timeout`).
//! - [`Builder::max_memory_per_child`]: a worker whose resident memory has
//!   grown past a limit is replaced between tasks (billiard's
//!   `max_memory_per_child`).
//! - [`Pool::terminate`] with tasks in flight returns promptly (the workers
//!   get `SIGKILL`) and leaves no child behind; its unfinished tasks fail
//!   with [`Error::Terminated`] rather than waiting forever.
//! - `imap` and `imap_unordered` read their input lazily, with a bound on
//!   the tasks in flight: an endless iterator works (CPython reads the
//!   whole input first, gh-64192).
//!
//! ## How it works
//!
//! Each worker has its own pair of pipes, and one supervisor loop in the
//! pool's process sends it units of work (one task, or one chunk of a
//! `map`) and reads their results, many per system call, in CPython's
//! framing. A caller that waits anyway (`apply`, `map`, `join`) drives that
//! loop on its own thread while it waits; the first call that returns
//! before its result is in (`apply_async`, `map_async`, `imap`, callbacks)
//! moves it to a supervisor thread for good. A worker finds a task's
//! function through [`mp_context::FnRef`]: its offset in the binary,
//! checked against the function's types once per function.
//!
//! ## Calling `mp_context::init()`
//!
//! Workers started with spawn or forkserver re-execute the program, so
//! `main` must call `mp_context::init()` first, as for any `Process`. Under
//! fork, workers are forked from the thread that builds the pool, and
//! their replacements from whichever thread drives the supervisor (a
//! waiting caller's, or the supervisor thread, as CPython forks them from
//! a handler thread): a lock another thread holds at that moment stays
//! held in the worker. Prefer forkserver, the default.
//!
//! # Examples
//!
//! ```
//! use mp_pool::Pool;
//!
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! fn add((a, b): (u64, u64)) -> u64 {
//!     a + b
//! }
//!
//! fn main() -> Result<(), mp_pool::Error> {
//!     mp_context::init();
//!     let pool = Pool::builder().processes(2).start_method("fork").build()?;
//!     assert_eq!(pool.map(square, 1..=4, None)?, [1, 4, 9, 16]);
//!     assert_eq!(pool.starmap(add, [(1, 2), (3, 4)], None)?, [3, 7]);
//!     let mut firsts = pool.imap(square, 10.., 1)?;
//!     assert_eq!(firsts.next().transpose()?, Some(100));
//!     drop(firsts);
//!     pool.close();
//!     pool.join()
//! }
//! ```

#![forbid(unsafe_code)]

#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
mod error;
mod imap;
mod job;
mod pool;
mod supervisor;
mod sys;
mod wire;
mod worker;

pub use error::{Error, PoolState, Result};
pub use imap::{IMap, IMapUnordered};
pub use job::{AsyncResult, Callbacks};
pub use pool::{Builder, Pool};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
