//! # multiprocessing
//!
//! CPython's `multiprocessing` in Rust, from one place: the whole
//! `BaseContext` surface (`ctx.lock()`, `ctx.queue(0)`, `ctx.value(0)`,
//! `ctx.pipe(true)`, `ctx.process(target, args)`, ...) as inherent methods of
//! [`Context`], the same as free functions on the default context
//! ([`lock()`], [`queue()`], ...), and every type re-exported.
//!
//! This crate is a facade: the work is done by the crates it re-exports,
//! each usable on its own, and none of which depends on this one.
//!
//! | CPython | here | crate |
//! |---|---|---|
//! | `Process`, `get_context`, `set_start_method`, `current_process`, ... | [`Process`], [`get_context`], ... | mp-context |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier` | [`Lock`], ... | mp-sync |
//! | `Queue`, `JoinableQueue`, `SimpleQueue` | [`Queue`], ... | mp-queue |
//! | `Value`, `Array`, `RawValue`, `RawArray` | [`Value`], ... | mp-heap |
//! | `Pipe`, `connection.Listener`, `connection.Client`, `connection.wait` | [`pipe()`], [`connection`] | mp-conn |
//! | `Pool`, `pool.AsyncResult` | [`Pool`], [`Context::pool`], [`pool()`] | mp-pool |
//! | `Manager`, `managers.BaseManager`, `managers.SyncManager` | [`SyncManager`], [`Context::manager`], [`manager()`] | mp-manager |
//! | `multiprocessing.dummy` (threads) | [`dummy`] | mp-dummy |
//!
//! [`backend`] switches generic code between processes and threads in one
//! line: traits that both kinds of object implement, and the backends
//! [`Processes`](backend::Processes) and [`Threads`](backend::Threads).
//!
//! Start methods re-execute this binary (spawn, forkserver): call
//! [`init()`] first thing in `main`. Everything made here works under every
//! start method, whichever context made it (CPython ties a lock or queue to
//! its context's start method; these are plain shared memory and fds).
//!
//! # Examples
//!
//! ```
//! use multiprocessing::{Queue, Value};
//!
//! fn work((jobs, done, total): (Queue<u32>, Queue<u32>, std::sync::Arc<Value<u64>>)) {
//!     while let Ok(n) = jobs.get(true, None) {
//!         if n == 0 {
//!             return;
//!         }
//!         total.lock().unwrap().update(|t| t + u64::from(n));
//!         done.put(&(n * n), true, None).unwrap();
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocessing::init(); // first thing: serves spawned children and the fork server
//!     let ctx = multiprocessing::get_context(Some("spawn"))?;
//!     let (jobs, done) = (ctx.queue(0)?, ctx.queue(0)?);
//!     let total = std::sync::Arc::new(ctx.value(0_u64)?);
//!     let workers: Vec<_> = (0..2)
//!         .map(|_| ctx.process(work, (jobs.clone(), done.clone(), total.clone())))
//!         .collect();
//!     for w in &workers {
//!         w.start()?;
//!     }
//!     for n in 1..=10 {
//!         jobs.put(&n, true, None)?;
//!     }
//!     let squares: u32 = (0..10).map(|_| done.get(true, None).unwrap()).sum();
//!     for _ in &workers {
//!         jobs.put(&0, true, None)?; // one stop sign each
//!     }
//!     for w in &workers {
//!         w.join(None)?;
//!     }
//!     assert_eq!((squares, total.get().unwrap()), (385, 55));
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod backend;

/// `multiprocessing.connection`: connections, listeners, clients, `wait`.
pub use mp_conn as connection;
/// The process machinery (`context.py`, `process.py`, the start methods).
pub use mp_context as process;
/// `multiprocessing.dummy`: the same API on threads (see [`backend`] for
/// code that runs on either).
pub use mp_dummy as dummy;
/// Shared memory (`heap.py`, `sharedctypes.py`).
pub use mp_heap as heap;
/// `multiprocessing.managers`.
pub use mp_manager as managers;
/// `multiprocessing.pool`: the process pool.
pub use mp_pool as pool;
/// `multiprocessing.queues`.
pub use mp_queue as queues;
/// Fds inside values (`reduction.py`).
pub use mp_reduction as reduction;
/// `multiprocessing.synchronize`.
pub use mp_sync as synchronize;

pub use mp_conn::{Connection, Listener, client, wait};
pub use mp_context::{
    DEFAULT_START_METHOD, Finalizer, ParentProcess, Process, ProcessInfo, StartMethod,
    active_children, current_process, exit, get_all_start_methods, get_executable, get_logger,
    get_start_method, log_to_stderr, parent_process, register_finalizer, register_target,
    set_executable, set_forkserver_preload, set_start_method, shutdown,
};
pub use mp_heap::{Array, HeapError, Pod, RawArray, RawValue, SharedBuffer, SharedLock, Value};
pub use mp_manager::{BaseManager, SyncManager};
pub use mp_pool::{AsyncResult, Pool};
pub use mp_queue::{Item, JoinableQueue, Queue, QueueBuilder, QueueError, SimpleQueue};
pub use mp_sync::{
    Barrier, BarrierAction, BoundedSemaphore, Condition, Event, Lock, NoAction, RLock, Semaphore,
    SyncError,
};

/// Serves this binary's role when it was started as a child or as the
/// fork server (spawn and forkserver re-execute it), and returns in any
/// other process: call it first thing in `main` (see `mp_context::init`).
pub fn init() {
    mp_context::init();
}

/// A context: processes made through it use its start method (CPython's
/// `ForkContext`, `SpawnContext`, `ForkServerContext`), and it makes every
/// object `BaseContext` makes.
///
/// ```
/// let ctx = multiprocessing::get_context(Some("fork"))?;
/// let lock = ctx.lock()?;
/// let q = ctx.queue::<String>(10)?;
/// let (a, mut b) = ctx.pipe(true)?;
/// a.send(&"over a pipe")?;
/// assert_eq!(b.recv::<String>()?, "over a pipe");
/// assert!(lock.acquire(false, None)? && q.empty());
/// assert!(ctx.cpu_count()? >= 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    inner: mp_context::Context,
}

impl From<mp_context::Context> for Context {
    fn from(inner: mp_context::Context) -> Context {
        Context { inner }
    }
}

impl From<Context> for mp_context::Context {
    fn from(ctx: Context) -> mp_context::Context {
        ctx.inner
    }
}

impl Context {
    /// The context of `method`.
    pub fn new(method: StartMethod) -> Context {
        mp_context::Context::new(method).into()
    }

    /// The mp-context context inside.
    pub fn as_inner(&self) -> &mp_context::Context {
        &self.inner
    }

    /// The start method of processes made through this context.
    pub fn start_method(&self) -> StartMethod {
        self.inner.start_method()
    }

    /// CPython's `ctx.get_context(method)`: `None` gives this context back.
    ///
    /// # Errors
    ///
    /// An unknown method name.
    pub fn get_context(&self, method: Option<&str>) -> mp_context::Result<Context> {
        self.inner.get_context(method).map(Context::from)
    }

    /// CPython's `ctx.Process(target=..., args=...)`: a process that runs
    /// `target(args)` under this context's start method.
    pub fn process<A>(&self, target: fn(A), args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        self.inner.process(target, args)
    }

    /// CPython's `ctx.set_executable(path)` (spawn and forkserver only).
    ///
    /// # Errors
    ///
    /// As `mp_context::Context::set_executable`.
    pub fn set_executable(&self, path: impl AsRef<Path>) -> mp_context::Result<()> {
        self.inner.set_executable(path)
    }

    /// CPython's `ctx.cpu_count()`.
    ///
    /// # Errors
    ///
    /// When the count cannot be determined.
    pub fn cpu_count(&self) -> mp_context::Result<usize> {
        mp_context::cpu_count()
    }

    /// CPython's `ctx.current_process()`.
    pub fn current_process(&self) -> ProcessInfo {
        mp_context::current_process()
    }

    /// CPython's `ctx.parent_process()`.
    pub fn parent_process(&self) -> Option<std::sync::Arc<ParentProcess>> {
        mp_context::parent_process()
    }

    /// CPython's `ctx.active_children()`.
    pub fn active_children(&self) -> Vec<Process> {
        mp_context::active_children()
    }

    /// CPython's `ctx.Pipe(duplex=True)`.
    ///
    /// # Errors
    ///
    /// The system's error (`socketpair(2)`, `pipe2(2)`).
    pub fn pipe(&self, duplex: bool) -> mp_conn::Result<(Connection, Connection)> {
        mp_conn::pipe(duplex)
    }

    /// CPython's `ctx.Lock()`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Heap`] when shared memory cannot be allocated.
    pub fn lock(&self) -> Result<Lock, SyncError> {
        Lock::new()
    }

    /// CPython's `ctx.RLock()`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Context::lock).
    pub fn rlock(&self) -> Result<RLock, SyncError> {
        RLock::new()
    }

    /// CPython's `ctx.Semaphore(value)`.
    ///
    /// # Errors
    ///
    /// A value above `SEM_VALUE_MAX`, or as [`lock`](Context::lock).
    pub fn semaphore(&self, value: u32) -> Result<Semaphore, SyncError> {
        Semaphore::new(value)
    }

    /// CPython's `ctx.BoundedSemaphore(value)`.
    ///
    /// # Errors
    ///
    /// As [`semaphore`](Context::semaphore).
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore, SyncError> {
        BoundedSemaphore::new(value)
    }

    /// CPython's `ctx.Condition(lock=None)`: over `lock` (a [`Lock`]'s or
    /// [`RLock`]'s, as `lock.as_shared().clone()` or `(&lock).into()`), or a
    /// new `RLock` for `None`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Context::lock).
    pub fn condition(&self, lock: Option<SharedLock>) -> Result<Condition, SyncError> {
        match lock {
            Some(lock) => Condition::with_lock(lock),
            None => Condition::new(),
        }
    }

    /// CPython's `ctx.Event()`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Context::lock).
    pub fn event(&self) -> Result<Event, SyncError> {
        Event::new()
    }

    /// CPython's `ctx.Barrier(parties, timeout=timeout)`, without an action.
    ///
    /// # Errors
    ///
    /// 0 parties, or as [`lock`](Context::lock).
    pub fn barrier(&self, parties: u32, timeout: Option<Duration>) -> Result<Barrier, SyncError> {
        Barrier::new(parties, timeout)
    }

    /// CPython's `ctx.Barrier(parties, action, timeout)`.
    ///
    /// # Errors
    ///
    /// As [`barrier`](Context::barrier).
    pub fn barrier_with_action<A: BarrierAction>(
        &self,
        parties: u32,
        action: A,
        timeout: Option<Duration>,
    ) -> Result<Barrier<A>, SyncError> {
        Barrier::with_action(parties, action, timeout)
    }

    /// CPython's `ctx.Queue(maxsize=0)`.
    ///
    /// # Errors
    ///
    /// A `maxsize` above `SEM_VALUE_MAX`; the shared memory or socketpair
    /// cannot be made.
    pub fn queue<T: Item>(&self, maxsize: usize) -> Result<Queue<T>, QueueError> {
        Queue::new(maxsize)
    }

    /// CPython's `ctx.JoinableQueue(maxsize=0)`.
    ///
    /// # Errors
    ///
    /// As [`queue`](Context::queue).
    pub fn joinable_queue<T: Item>(&self, maxsize: usize) -> Result<JoinableQueue<T>, QueueError> {
        JoinableQueue::new(maxsize)
    }

    /// CPython's `ctx.SimpleQueue()`.
    ///
    /// # Errors
    ///
    /// As [`queue`](Context::queue).
    pub fn simple_queue<T: Item>(&self) -> Result<SimpleQueue<T>, QueueError> {
        SimpleQueue::new()
    }

    /// CPython's `ctx.Value(typecode, value)` (with its default `RLock`).
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn value<T: Pod>(&self, value: T) -> Result<Value<T>, HeapError> {
        Value::new(value)
    }

    /// CPython's `ctx.Array(typecode, sequence)` (with its default `RLock`).
    ///
    /// # Errors
    ///
    /// As [`value`](Context::value).
    pub fn array<T: Pod>(&self, items: &[T]) -> Result<Array<T>, HeapError> {
        Array::from_slice(items)
    }

    /// CPython's `ctx.RawValue(typecode, value)`: no lock.
    ///
    /// # Errors
    ///
    /// As [`value`](Context::value).
    pub fn raw_value<T: Pod>(&self, value: T) -> Result<RawValue<T>, HeapError> {
        RawValue::new(value)
    }

    /// CPython's `ctx.RawArray(typecode, sequence)`: no lock.
    ///
    /// # Errors
    ///
    /// As [`value`](Context::value).
    pub fn raw_array<T: Pod>(&self, items: &[T]) -> Result<RawArray<T>, HeapError> {
        RawArray::from_slice(items)
    }

    /// CPython's `ctx.Pool(processes)`: a process pool whose workers use
    /// this context's start method (`None`: one per usable CPU). For
    /// `initializer`, `maxtasksperchild` and the limits beyond CPython's,
    /// use [`pool_builder`](Self::pool_builder).
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let ctx = multiprocessing::get_context(Some("fork"))?;
    /// let pool = ctx.pool(Some(2))?;
    /// assert_eq!(pool.map(square, 1..=4, None)?, [1, 4, 9, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`mp_pool::Builder::build`]: a worker that cannot be started.
    pub fn pool(&self, processes: Option<usize>) -> mp_pool::Result<Pool> {
        let builder = self.pool_builder();
        match processes {
            Some(n) => builder.processes(n),
            None => builder,
        }
        .build()
    }

    /// A [`mp_pool::Builder`] on this context, for CPython's other `Pool`
    /// arguments (`initializer`, `initargs`, `maxtasksperchild`) and
    /// mp-pool's own (a task timeout, a memory limit per worker).
    pub fn pool_builder(&self) -> mp_pool::Builder {
        Pool::builder().context(self.inner)
    }

    /// CPython's `ctx.Manager()`: a started [`SyncManager`] whose server
    /// process uses this context's start method; it shuts down when
    /// dropped.
    ///
    /// ```
    /// let ctx = multiprocessing::get_context(Some("fork"))?;
    /// let manager = ctx.manager()?;
    /// let scores = manager.dict::<String, u32>()?;
    /// scores.set_item(&"ada".to_string(), &36)?;
    /// assert_eq!(scores.get(&"ada".to_string())?, Some(36));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SyncManager::started`]: the server process cannot be started
    /// or does not answer.
    pub fn manager(&self) -> mp_manager::Result<SyncManager> {
        SyncManager::started(&self.inner)
    }
}

/// CPython's `multiprocessing.get_context(method)`: `None` is the default
/// context (its method fixed to the default if unset).
///
/// # Errors
///
/// An unknown method name.
pub fn get_context(method: Option<&str>) -> mp_context::Result<Context> {
    mp_context::get_context(method).map(Context::from)
}

/// The default context (its method fixed to the default if unset, as
/// CPython's `DefaultContext` does on first use).
fn default_context() -> Context {
    Context::new(mp_context::get_start_method(false).unwrap_or(DEFAULT_START_METHOD))
}

/// CPython's `multiprocessing.cpu_count()`.
///
/// # Errors
///
/// When the count cannot be determined.
pub fn cpu_count() -> mp_context::Result<usize> {
    mp_context::cpu_count()
}

/// CPython's `multiprocessing.Pipe(duplex=True)`.
///
/// # Errors
///
/// As [`Context::pipe`].
pub fn pipe(duplex: bool) -> mp_conn::Result<(Connection, Connection)> {
    mp_conn::pipe(duplex)
}

/// `multiprocessing.Pool(processes)`: [`Context::pool`] on the default
/// context.
///
/// # Errors
///
/// As [`Context::pool`].
pub fn pool(processes: Option<usize>) -> mp_pool::Result<Pool> {
    default_context().pool(processes)
}

/// `multiprocessing.Manager()`: [`Context::manager`] on the default
/// context.
///
/// # Errors
///
/// As [`Context::manager`].
pub fn manager() -> mp_manager::Result<SyncManager> {
    default_context().manager()
}

/// `multiprocessing.Lock()`: [`Context::lock`] on the default context.
///
/// # Errors
///
/// As [`Context::lock`].
pub fn lock() -> Result<Lock, SyncError> {
    default_context().lock()
}

/// `multiprocessing.RLock()`.
///
/// # Errors
///
/// As [`Context::rlock`].
pub fn rlock() -> Result<RLock, SyncError> {
    default_context().rlock()
}

/// `multiprocessing.Semaphore(value)`.
///
/// # Errors
///
/// As [`Context::semaphore`].
pub fn semaphore(value: u32) -> Result<Semaphore, SyncError> {
    default_context().semaphore(value)
}

/// `multiprocessing.BoundedSemaphore(value)`.
///
/// # Errors
///
/// As [`Context::bounded_semaphore`].
pub fn bounded_semaphore(value: u32) -> Result<BoundedSemaphore, SyncError> {
    default_context().bounded_semaphore(value)
}

/// `multiprocessing.Condition(lock)`.
///
/// # Errors
///
/// As [`Context::condition`].
pub fn condition(lock: Option<SharedLock>) -> Result<Condition, SyncError> {
    default_context().condition(lock)
}

/// `multiprocessing.Event()`.
///
/// # Errors
///
/// As [`Context::event`].
pub fn event() -> Result<Event, SyncError> {
    default_context().event()
}

/// `multiprocessing.Barrier(parties, timeout=timeout)`.
///
/// # Errors
///
/// As [`Context::barrier`].
pub fn barrier(parties: u32, timeout: Option<Duration>) -> Result<Barrier, SyncError> {
    default_context().barrier(parties, timeout)
}

/// `multiprocessing.Queue(maxsize)`.
///
/// # Errors
///
/// As [`Context::queue`].
pub fn queue<T: Item>(maxsize: usize) -> Result<Queue<T>, QueueError> {
    default_context().queue(maxsize)
}

/// `multiprocessing.JoinableQueue(maxsize)`.
///
/// # Errors
///
/// As [`Context::joinable_queue`].
pub fn joinable_queue<T: Item>(maxsize: usize) -> Result<JoinableQueue<T>, QueueError> {
    default_context().joinable_queue(maxsize)
}

/// `multiprocessing.SimpleQueue()`.
///
/// # Errors
///
/// As [`Context::simple_queue`].
pub fn simple_queue<T: Item>() -> Result<SimpleQueue<T>, QueueError> {
    default_context().simple_queue()
}

/// `multiprocessing.Value(typecode, value)`.
///
/// # Errors
///
/// As [`Context::value`].
pub fn value<T: Pod>(value: T) -> Result<Value<T>, HeapError> {
    default_context().value(value)
}

/// `multiprocessing.Array(typecode, sequence)`.
///
/// # Errors
///
/// As [`Context::array`].
pub fn array<T: Pod>(items: &[T]) -> Result<Array<T>, HeapError> {
    default_context().array(items)
}

/// `multiprocessing.RawValue(typecode, value)`.
///
/// # Errors
///
/// As [`Context::raw_value`].
pub fn raw_value<T: Pod>(value: T) -> Result<RawValue<T>, HeapError> {
    default_context().raw_value(value)
}

/// `multiprocessing.RawArray(typecode, sequence)`.
///
/// # Errors
///
/// As [`Context::raw_array`].
pub fn raw_array<T: Pod>(items: &[T]) -> Result<RawArray<T>, HeapError> {
    default_context().raw_array(items)
}

/// This crate's README examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
