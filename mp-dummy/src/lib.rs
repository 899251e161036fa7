//! # mp-dummy
//!
//! The API of `multiprocessing` backed by threads, after CPython's
//! `multiprocessing.dummy`. So far: the thread [`Pool`] (CPython's
//! `ThreadPool`), whose tasks are closures (see [`pool`]).
//!
//! ```
//! let pool = mp_dummy::Pool::new(Some(2))?;
//! assert_eq!(pool.map(|n: u32| n + 1, [1, 2, 3], None)?, [2, 3, 4]);
//! # Ok::<(), mp_dummy::PoolError>(())
//! ```

#![forbid(unsafe_code)]

pub mod pool;

pub use pool::{AsyncResult, Pool, PoolBuilder, PoolError, PoolState};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
