//! # mp-queue
//!
//! The process queues of CPython's `multiprocessing` (`queues.py`):
//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`], for serde items
//! between any number of producer and consumer processes.
//!
//! - **A shared-memory ring.** Small items are copied into a ring in an
//!   mp-heap block that every process holding the queue maps, under a
//!   robust lock (mp-heap's `ProcessLock`), with waiters asleep on shared
//!   futexes, woken after the lock is released: an item costs no system
//!   call while the consumer is awake, and one wake-up when it sleeps
//!   (CPython's pipe costs a write, a read and a feeder-thread hand-off).
//! - **A side channel** for items that hold fds (a `Connection`, a
//!   `SharedBuffer`, a `Value`, an `mp_reduction::Fd`, an `mp_sync::Lock`,
//!   ...) and items too big for the ring: one datagram each on a unix
//!   socketpair, the fds as `SCM_RIGHTS`, a big payload in a memfd (from
//!   a small pool the producer reuses, or a fresh sealed one); a marker in
//!   the ring keeps every item in order.
//! - **CPython's semantics**: `put(item, block, timeout)` with
//!   [`QueueError::Full`], `get(block, timeout)` with
//!   [`QueueError::Empty`], `qsize`, `empty`, `full`, `close`,
//!   `join_thread`, `cancel_join_thread`; `task_done`/`join`; CPython
//!   3.13's `shutdown(immediate)` across processes. `put` never waits for
//!   consumers: when the ring is full the item goes to this process's
//!   feeder thread, and a process that ends flushes it first (every way
//!   out: returning from a target or `main`, `mp_context::exit`,
//!   `std::process::exit`).
//! - **Every item exactly once**, items from one producer in the order it
//!   put them; a process killed inside `put` or `get` leaves the queue
//!   usable by the others (the lock's next owner undoes its operation).
//! - **Anywhere a value goes**: clones share the queue; it is a process
//!   argument under fork, spawn and forkserver, and an item of mp-conn
//!   messages (its blocks' arena fds and its socketpair travel beside the
//!   bytes).
//!
//! Linux only for now (futex, memfd, `/proc`).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use mp_queue::{JoinableQueue, Queue, QueueError, SimpleQueue};
//!
//! let q: Queue<(u32, String)> = Queue::new(0)?;
//! q.put(&(1, "one".into()), true, None)?;
//! assert_eq!(q.get(true, Some(Duration::from_secs(1)))?, (1, "one".into()));
//! assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
//!
//! // Bytes of any size; items that hold fds.
//! let blobs = SimpleQueue::new()?;
//! blobs.put(&vec![7_u8; 1 << 20])?;
//! assert_eq!(blobs.get()?.len(), 1 << 20);
//! let (a, b) = mp_conn::pipe(true)?;
//! let ends: Queue<mp_conn::Connection> = Queue::new(0)?;
//! ends.put(&b, true, None)?; // a duplicate of the end travels
//! drop(b);
//! let b = ends.get(true, None)?;
//! a.send(&"through an end that went through a queue")?;
//! # let mut b = b;
//! assert_eq!(b.recv::<String>()?, "through an end that went through a queue");
//!
//! let jobs = JoinableQueue::new(0)?;
//! jobs.put(&"job".to_string(), true, None)?;
//! let _job = jobs.get(true, None)?;
//! jobs.task_done()?;
//! jobs.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Between processes, pass the queue as a process argument (mp-context,
//! whose `init()` goes first in `main`):
//!
//! ```no_run
//! use mp_queue::Queue;
//!
//! fn produce(q: Queue<u64>) {
//!     for i in 0..1000 {
//!         q.put(&i, true, None).unwrap();
//!     }
//! } // the child flushes what its feeder holds before it exits
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     mp_context::init();
//!     let q = Queue::new(0)?;
//!     let p = mp_context::Process::new(produce, q.clone());
//!     p.start()?;
//!     let sum: u64 = (0..1000).map(|_| q.get(true, None).unwrap()).sum();
//!     assert_eq!(sum, 499_500);
//!     p.join(None)?;
//!     Ok(())
//! }
//! ```

#![deny(unsafe_code)]

mod core;
mod encode;
mod error;
mod feeder;
mod handle;
mod pool;
mod queue;
mod ring;
mod shm;
mod side;
mod wake;

#[doc(hidden)]
pub mod __fuzz;
#[doc(hidden)]
#[path = "hooks.rs"]
pub mod __hooks;

pub use error::{QueueError, Result};
pub use handle::{DEFAULT_RING_BYTES, INLINE_LIMIT, MAX_RING_BYTES, MIN_RING_BYTES, SEM_VALUE_MAX};
pub use queue::{Item, JoinableQueue, Queue, QueueBuilder, SimpleQueue};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
