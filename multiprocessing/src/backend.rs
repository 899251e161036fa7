//! One line switches between processes and threads: the traits that the
//! process-backed types (mp-context's `Process`, mp-queue, mp-sync,
//! mp-pool) and the thread-backed ones (mp-dummy) both implement, and two
//! backends, [`Processes`] and [`Threads`], that make them.
//!
//! CPython gets this by duck typing (`import multiprocessing.dummy as mp`);
//! here code is written once against `B: Backend` and called with either
//! backend. The traits mirror the process APIs, method for method:
//!
//! | trait | process type | thread type |
//! |---|---|---|
//! | [`LockApi`] | `mp_sync::Lock`, `RLock` | `mp_dummy::Lock`, `RLock` |
//! | [`SemaphoreApi`] | `mp_sync::Semaphore`, `BoundedSemaphore` | `mp_dummy::Semaphore`, `BoundedSemaphore` |
//! | [`ConditionApi`] | `mp_sync::Condition` | `mp_dummy::Condition` |
//! | [`EventApi`] | `mp_sync::Event` | `mp_dummy::Event` |
//! | [`BarrierApi`] | `mp_sync::Barrier` | `mp_dummy::Barrier` |
//! | [`QueueApi`], [`JoinableQueueApi`], [`SimpleQueueApi`] | `mp_queue::Queue`, ... | `mp_dummy::Queue`, ... |
//! | [`ProcessApi`] | `mp_context::Process` | `mp_dummy::DummyProcess` |
//! | [`PoolApi`], [`AsyncResultApi`] | `mp_pool::Pool`, `AsyncResult` | `mp_dummy::Pool`, `AsyncResult` |
//!
//! What crosses to a process is serde data, so the bounds are the process
//! ones: items and arguments are [`Item`]s (serde + `Send + 'static`),
//! every object a [`Handle`] (a serde value too: a process argument), and
//! process targets and pool tasks plain `fn`s. The thread objects meet the
//! serde bound by refusing to be serialized (mp-dummy's `serde` feature,
//! as CPython refuses to pickle a `threading.Lock`); the thread backend
//! never serializes anything, it moves values.
//!
//! Errors are one [`Error`] for both backends: the cases generic code
//! acts on ([`Error::Empty`], [`Error::Full`], [`Error::BrokenBarrier`],
//! [`Error::Task`], ...) as variants, everything else as
//! [`Error::Other`] with the backend's own error inside.
//!
//! # Examples
//!
//! ```
//! use multiprocessing::backend::{Backend, EventApi, LockApi, ProcessApi, QueueApi, Threads};
//!
//! /// Sums squares in `workers` children: the same code for processes
//! /// and threads.
//! fn squares<B: Backend>(backend: &B, workers: u64) -> Result<u64, multiprocessing::backend::Error> {
//!     fn work<B: Backend>((n, results, lock, go): (u64, B::Queue<u64>, B::Lock, B::Event)) {
//!         go.wait(None);
//!         let _held = lock.acquire(true, None);
//!         results.put(n * n, true, None).unwrap();
//!         lock.release().unwrap();
//!     }
//!     let (results, lock, go) = (backend.queue(0)?, backend.lock()?, backend.event()?);
//!     let children: Vec<_> = (1..=workers)
//!         .map(|n| backend.process(work::<B>, (n, results.clone(), lock.clone(), go.clone())))
//!         .collect();
//!     for c in &children {
//!         c.start()?;
//!     }
//!     go.set();
//!     let total = (0..workers).map(|_| results.get(true, None)).sum::<Result<u64, _>>()?;
//!     for c in &children {
//!         c.join(None)?;
//!     }
//!     Ok(total)
//! }
//!
//! // The one line: `Threads` here, `Processes::default()` for processes
//! // (whose `main` calls `multiprocessing::init()` first).
//! assert_eq!(squares(&Threads, 3)?, 14);
//! # Ok::<(), multiprocessing::backend::Error>(())
//! ```

use std::{fmt, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use crate::{Context, StartMethod};

/// A boxed error of either backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Results of the backend traits.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of every backend trait: the cases generic code acts on as
/// variants (each backend's error of that meaning maps to it), everything
/// else as [`Error::Other`] (the backend's own error, with its message).
#[non_exhaustive]
pub enum Error {
    /// Nothing to get, without blocking or before the timeout.
    Empty,
    /// No room under `maxsize`, without blocking or before the timeout.
    Full,
    /// The queue was shut down.
    ShutDown,
    /// `task_done()` called more times than items were put.
    TaskDoneTooManyTimes,
    /// A lock released while unlocked, a bounded semaphore above its
    /// initial value.
    ReleasedTooManyTimes,
    /// An `RLock` released by a thread that does not hold it.
    NotOwner,
    /// A condition waited on or notified without its lock.
    WithoutLock,
    /// The lock was acquired, from a process that died holding it: what
    /// it protects may be inconsistent (processes only; the lock is held).
    OwnerDied,
    /// The barrier is broken (aborted, reset, timed out, its action
    /// failed).
    BrokenBarrier,
    /// A pool task failed (it panicked, its worker died, it timed out);
    /// the pool goes on.
    Task(BoxError),
    /// Any other error of the backend (creating an object, starting a
    /// process, a closed pool, ...); its message is the backend's.
    Other(BoxError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Empty => "the queue is empty",
            Error::Full => "the queue is full",
            Error::ShutDown => "the queue has been shut down",
            Error::TaskDoneTooManyTimes => "task_done() called too many times",
            Error::ReleasedTooManyTimes => "semaphore or lock released too many times",
            Error::NotOwner => "cannot release an RLock the calling thread does not hold",
            Error::WithoutLock => "a condition was waited on or notified without its lock",
            Error::OwnerDied => {
                "the lock was acquired from a process that died holding it: what it protects may be inconsistent"
            }
            Error::BrokenBarrier => "the barrier is broken; reset() it to use it again",
            Error::Task(_) => "a pool task failed",
            // Transparent: the backend's message is the message.
            Error::Other(e) => return fmt::Display::fmt(e, f),
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Task(e) => Some(&**e),
            Error::Other(e) => e.source(),
            _ => None,
        }
    }
}

/// The message, then each cause after `": "`, as
/// `main() -> Result<(), Box<dyn Error>>` prints it.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<crate::QueueError> for Error {
    fn from(e: crate::QueueError) -> Error {
        use crate::QueueError as Q;
        match e {
            Q::Empty => Error::Empty,
            Q::Full => Error::Full,
            Q::ShutDown => Error::ShutDown,
            Q::TaskDoneTooManyTimes => Error::TaskDoneTooManyTimes,
            other => Error::Other(other.into()),
        }
    }
}

impl From<crate::SyncError> for Error {
    fn from(e: crate::SyncError) -> Error {
        use crate::SyncError as S;
        match e {
            S::ReleasedTooManyTimes => Error::ReleasedTooManyTimes,
            S::NotOwner => Error::NotOwner,
            S::WaitWithoutLock | S::NotifyWithoutLock => Error::WithoutLock,
            S::OwnerDied { .. } => Error::OwnerDied,
            S::BrokenBarrier => Error::BrokenBarrier,
            other => Error::Other(other.into()),
        }
    }
}

impl From<mp_dummy::Error> for Error {
    fn from(e: mp_dummy::Error) -> Error {
        use mp_dummy::Error as D;
        match e {
            D::Empty => Error::Empty,
            D::Full => Error::Full,
            D::ShutDown => Error::ShutDown,
            D::TaskDoneTooManyTimes => Error::TaskDoneTooManyTimes,
            D::ReleasedTooManyTimes => Error::ReleasedTooManyTimes,
            D::NotOwner => Error::NotOwner,
            D::WaitWithoutLock | D::NotifyWithoutLock => Error::WithoutLock,
            D::BrokenBarrier => Error::BrokenBarrier,
            other => Error::Other(other.into()),
        }
    }
}

impl From<mp_pool::Error> for Error {
    fn from(e: mp_pool::Error) -> Error {
        if e.is_task_error() {
            Error::Task(e.into())
        } else {
            Error::Other(e.into())
        }
    }
}

impl From<mp_dummy::PoolError> for Error {
    fn from(e: mp_dummy::PoolError) -> Error {
        if e.is_task_error() {
            Error::Task(e.into())
        } else {
            Error::Other(e.into())
        }
    }
}

impl From<mp_context::Error> for Error {
    fn from(e: mp_context::Error) -> Error {
        Error::Other(e.into())
    }
}

/// What a queue carries and a process or pool task takes or returns:
/// serde data (it may cross to a process) that may move to a thread.
pub trait Item: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Item for T {}

/// What every shared object is: a cheap handle (clones share the object)
/// that can be a process argument (serde) or move to a thread.
pub trait Handle:
    Clone + fmt::Debug + Send + Sync + Serialize + DeserializeOwned + 'static
{
}

impl<T: Clone + fmt::Debug + Send + Sync + Serialize + DeserializeOwned + 'static> Handle for T {}

/// `Lock` and `RLock` (mp-sync's and mp-dummy's methods of those names).
pub trait LockApi: Handle {
    /// `acquire(block, timeout)`: whether the lock was taken.
    ///
    /// # Errors
    ///
    /// [`Error::OwnerDied`] (processes: taken, from a dead owner).
    fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool>;

    /// `release()`.
    ///
    /// # Errors
    ///
    /// [`Error::ReleasedTooManyTimes`] (a `Lock` not held),
    /// [`Error::NotOwner`] (an `RLock` another thread holds).
    fn release(&self) -> Result<()>;
}

/// `Semaphore` and `BoundedSemaphore`.
pub trait SemaphoreApi: Handle {
    /// `acquire(block, timeout)`: whether a unit was taken.
    fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool;

    /// `release()`.
    ///
    /// # Errors
    ///
    /// [`Error::ReleasedTooManyTimes`] above a bounded semaphore's initial
    /// value; [`Error::Other`] past the largest value.
    fn release(&self) -> Result<()>;

    /// `get_value()`.
    fn get_value(&self) -> u32;
}

/// `Condition` (over its default `RLock`).
pub trait ConditionApi: Handle {
    /// Acquires the condition's lock.
    ///
    /// # Errors
    ///
    /// As [`LockApi::acquire`].
    fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool>;

    /// Releases the condition's lock.
    ///
    /// # Errors
    ///
    /// As [`LockApi::release`].
    fn release(&self) -> Result<()>;

    /// `wait(timeout)`: whether it was notified.
    ///
    /// # Errors
    ///
    /// [`Error::WithoutLock`].
    fn wait(&self, timeout: Option<Duration>) -> Result<bool>;

    /// `notify(n)`.
    ///
    /// # Errors
    ///
    /// [`Error::WithoutLock`].
    fn notify(&self, n: u32) -> Result<()>;

    /// `notify_all()`.
    ///
    /// # Errors
    ///
    /// [`Error::WithoutLock`].
    fn notify_all(&self) -> Result<()>;
}

/// `Event`.
pub trait EventApi: Handle {
    /// `is_set()`.
    fn is_set(&self) -> bool;
    /// `set()`.
    fn set(&self);
    /// `clear()`.
    fn clear(&self);
    /// `wait(timeout)`: whether the flag is set.
    fn wait(&self, timeout: Option<Duration>) -> bool;
}

/// `Barrier` (without an action: an action is a type of the backend).
pub trait BarrierApi: Handle {
    /// `wait(timeout)`: this party's index.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`].
    fn wait(&self, timeout: Option<Duration>) -> Result<u32>;
    /// `reset()`.
    fn reset(&self);
    /// `abort()`.
    fn abort(&self);
    /// `parties`.
    fn parties(&self) -> u32;
    /// `n_waiting`.
    fn n_waiting(&self) -> u32;
    /// `broken`.
    fn broken(&self) -> bool;
}

/// `Queue`: mp-queue's methods; `put` takes the item by value (the
/// process queue encodes it, the thread queue moves it).
pub trait QueueApi<T: Item>: Handle {
    /// `put(item, block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Full`], [`Error::ShutDown`], or the backend's.
    fn put(&self, item: T, block: bool, timeout: Option<Duration>) -> Result<()>;

    /// `get(block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], [`Error::ShutDown`], or the backend's.
    fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T>;

    /// `put_nowait(item)`.
    ///
    /// # Errors
    ///
    /// As [`put`](QueueApi::put).
    fn put_nowait(&self, item: T) -> Result<()> {
        self.put(item, false, None)
    }

    /// `get_nowait()`.
    ///
    /// # Errors
    ///
    /// As [`get`](QueueApi::get).
    fn get_nowait(&self) -> Result<T> {
        self.get(false, None)
    }

    /// `qsize()`.
    fn qsize(&self) -> usize;
    /// `empty()`.
    fn empty(&self) -> bool;
    /// `full()`.
    fn full(&self) -> bool;
    /// `shutdown(immediate)` (CPython 3.13).
    fn shutdown(&self, immediate: bool);
}

/// `JoinableQueue`.
pub trait JoinableQueueApi<T: Item>: QueueApi<T> {
    /// `task_done()`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskDoneTooManyTimes`].
    fn task_done(&self) -> Result<()>;

    /// `join()`: waits until every item put is done.
    ///
    /// # Errors
    ///
    /// The backend's.
    fn join(&self) -> Result<()>;

    /// `join()` waiting at most `timeout`: whether every item is done.
    ///
    /// # Errors
    ///
    /// The backend's.
    fn join_timeout(&self, timeout: Duration) -> Result<bool>;
}

/// `SimpleQueue`.
pub trait SimpleQueueApi<T: Item>: Handle {
    /// `put(item)`.
    ///
    /// # Errors
    ///
    /// The backend's.
    fn put(&self, item: T) -> Result<()>;

    /// `get()`, waiting at most `timeout` (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] after the timeout, or the backend's.
    fn get_timeout(&self, timeout: Option<Duration>) -> Result<T>;

    /// `empty()`.
    fn empty(&self) -> bool;
}

/// `Process` (mp-context's) and `DummyProcess` (mp-dummy's).
pub trait ProcessApi: Send + Sync + fmt::Debug {
    /// `start()`.
    ///
    /// # Errors
    ///
    /// The backend's (mp-context's start errors; mp-dummy's
    /// `WrongThread`, ...).
    fn start(&self) -> Result<()>;

    /// `join(timeout)`.
    ///
    /// # Errors
    ///
    /// The backend's (joining before `start`, ...).
    fn join(&self, timeout: Option<Duration>) -> Result<()>;

    /// `is_alive()`.
    ///
    /// # Errors
    ///
    /// The backend's.
    fn is_alive(&self) -> Result<bool>;

    /// `exitcode`: `None` before the end.
    ///
    /// # Errors
    ///
    /// The backend's.
    fn exitcode(&self) -> Result<Option<i32>>;

    /// `name`.
    fn name(&self) -> String;
}

/// The result of a pool's `apply_async`/`map_async`.
pub trait AsyncResultApi<R>: Send {
    /// `get(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Task`] when the task failed; [`Error::Other`] for a
    /// timeout or a stopped pool.
    fn get(&self, timeout: Option<Duration>) -> Result<R>;
    /// `wait(timeout)`: whether it is ready.
    fn wait(&self, timeout: Option<Duration>) -> bool;
    /// `ready()`.
    fn ready(&self) -> bool;
    /// `successful()`.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] before it is ready.
    fn successful(&self) -> Result<bool>;
}

/// A boxed `imap`/`imap_unordered` iterator.
pub type ResultIter<R> = Box<dyn Iterator<Item = Result<R>> + Send>;

/// The pool (mp-pool's `Pool` method for method; tasks are `fn`s, which
/// the thread pool takes as well as closures).
pub trait PoolApi: Send + Sync + fmt::Debug {
    /// The result of `apply_async` and `map_async`.
    type AsyncResult<R: Item>: AsyncResultApi<R>;

    /// `apply(f, args)`.
    ///
    /// # Errors
    ///
    /// [`Error::Task`] when the task failed, [`Error::Other`] when the
    /// pool is not running.
    fn apply<A: Item, R: Item>(&self, f: fn(A) -> R, args: A) -> Result<R>;

    /// `apply_async(f, args)`.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] when the pool is not running.
    fn apply_async<A: Item, R: Item>(&self, f: fn(A) -> R, args: A)
    -> Result<Self::AsyncResult<R>>;

    /// `map(f, iterable, chunksize)`: the results in input order.
    ///
    /// # Errors
    ///
    /// As [`apply`](PoolApi::apply) (the first failed task's).
    fn map<A: Item, R: Item, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>;

    /// `map_async(f, iterable, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](PoolApi::apply_async).
    fn map_async<A: Item, R: Item, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<Self::AsyncResult<Vec<R>>>;

    /// `starmap(f, iterable, chunksize)`: `f` takes each item (a tuple)
    /// whole, as mp-pool's.
    ///
    /// # Errors
    ///
    /// As [`map`](PoolApi::map).
    fn starmap<A: Item, R: Item, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>> {
        self.map(f, iterable, chunksize)
    }

    /// `imap(f, iterable, chunksize)`: results in input order, as they
    /// come.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] when the pool is not running or `chunksize` is 0.
    fn imap<A: Item, R: Item, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: usize,
    ) -> Result<ResultIter<R>>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static;

    /// `imap_unordered(f, iterable, chunksize)`: results as they finish.
    ///
    /// # Errors
    ///
    /// As [`imap`](PoolApi::imap).
    fn imap_unordered<A: Item, R: Item, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: usize,
    ) -> Result<ResultIter<R>>
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static;

    /// `close()`.
    fn close(&self);
    /// `terminate()`.
    fn terminate(&self);
    /// `join()` (after `close` or `terminate`).
    ///
    /// # Errors
    ///
    /// [`Error::Other`] while the pool is still running.
    fn join(&self) -> Result<()>;
}

/// A backend: where the objects live and what runs the targets. Generic
/// code takes `B: Backend` (or `&impl Backend`) and makes everything
/// through it.
pub trait Backend: Clone + Send + Sync + fmt::Debug + 'static {
    /// `Lock`.
    type Lock: LockApi;
    /// `RLock`.
    type RLock: LockApi;
    /// `Semaphore`.
    type Semaphore: SemaphoreApi;
    /// `BoundedSemaphore`.
    type BoundedSemaphore: SemaphoreApi;
    /// `Condition`.
    type Condition: ConditionApi;
    /// `Event`.
    type Event: EventApi;
    /// `Barrier`.
    type Barrier: BarrierApi;
    /// `Queue`.
    type Queue<T: Item>: QueueApi<T>;
    /// `JoinableQueue`.
    type JoinableQueue<T: Item>: JoinableQueueApi<T>;
    /// `SimpleQueue`.
    type SimpleQueue<T: Item>: SimpleQueueApi<T>;
    /// `Process`.
    type Process: ProcessApi;

    /// What runs the targets, for messages: `threads`, `processes (fork)`.
    fn name(&self) -> String;

    /// `Lock()`.
    ///
    /// # Errors
    ///
    /// The backend's (processes: shared memory).
    fn lock(&self) -> Result<Self::Lock>;
    /// `RLock()`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn rlock(&self) -> Result<Self::RLock>;
    /// `Semaphore(value)`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn semaphore(&self, value: u32) -> Result<Self::Semaphore>;
    /// `BoundedSemaphore(value)`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn bounded_semaphore(&self, value: u32) -> Result<Self::BoundedSemaphore>;
    /// `Condition()`, over a new `RLock`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn condition(&self) -> Result<Self::Condition>;
    /// `Event()`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn event(&self) -> Result<Self::Event>;
    /// `Barrier(parties, timeout)`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock); zero parties.
    fn barrier(&self, parties: u32, timeout: Option<Duration>) -> Result<Self::Barrier>;
    /// `Queue(maxsize)` (0: no bound).
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn queue<T: Item>(&self, maxsize: usize) -> Result<Self::Queue<T>>;
    /// `JoinableQueue(maxsize)`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn joinable_queue<T: Item>(&self, maxsize: usize) -> Result<Self::JoinableQueue<T>>;
    /// `SimpleQueue()`.
    ///
    /// # Errors
    ///
    /// As [`lock`](Backend::lock).
    fn simple_queue<T: Item>(&self) -> Result<Self::SimpleQueue<T>>;
    /// `Process(target, args)`, not started.
    fn process<A: Item>(&self, target: fn(A), args: A) -> Self::Process;
}

/// A backend with a pool: generic code that needs one takes
/// `B: PoolBackend`. (A trait of its own so that code without a pool does
/// not depend on one.)
pub trait PoolBackend: Backend {
    /// `Pool`.
    type Pool: PoolApi;

    /// `Pool(processes)` (`None`: one worker per CPU).
    ///
    /// # Errors
    ///
    /// The backend's (starting workers, zero processes).
    fn pool(&self, processes: Option<usize>) -> Result<Self::Pool>;
}

/// The process backend: everything in shared memory, targets in child
/// processes started by a [`Context`]'s start method (its `main` calls
/// [`init`](crate::init) first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processes {
    ctx: Context,
}

impl Processes {
    /// Processes started with `method`.
    pub fn new(method: StartMethod) -> Processes {
        Processes {
            ctx: Context::new(method),
        }
    }

    /// The context it starts processes with.
    pub fn context(&self) -> Context {
        self.ctx
    }
}

/// The default context's start method.
impl Default for Processes {
    fn default() -> Self {
        Processes {
            ctx: Context::from(
                mp_context::get_context(None)
                    .unwrap_or_else(|_| mp_context::Context::new(crate::DEFAULT_START_METHOD)),
            ),
        }
    }
}

impl From<Context> for Processes {
    fn from(ctx: Context) -> Processes {
        Processes { ctx }
    }
}

/// The thread backend (mp-dummy): every object in this process, targets
/// in threads, nothing serialized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Threads;

// ---- The process backend. ----

impl Backend for Processes {
    type Lock = mp_sync::Lock;
    type RLock = mp_sync::RLock;
    type Semaphore = mp_sync::Semaphore;
    type BoundedSemaphore = mp_sync::BoundedSemaphore;
    type Condition = mp_sync::Condition;
    type Event = mp_sync::Event;
    type Barrier = mp_sync::Barrier;
    type Queue<T: Item> = mp_queue::Queue<T>;
    type JoinableQueue<T: Item> = mp_queue::JoinableQueue<T>;
    type SimpleQueue<T: Item> = mp_queue::SimpleQueue<T>;
    type Process = mp_context::Process;

    fn name(&self) -> String {
        format!("processes ({})", self.ctx.start_method().name())
    }

    fn lock(&self) -> Result<Self::Lock> {
        Ok(self.ctx.lock()?)
    }

    fn rlock(&self) -> Result<Self::RLock> {
        Ok(self.ctx.rlock()?)
    }

    fn semaphore(&self, value: u32) -> Result<Self::Semaphore> {
        Ok(self.ctx.semaphore(value)?)
    }

    fn bounded_semaphore(&self, value: u32) -> Result<Self::BoundedSemaphore> {
        Ok(self.ctx.bounded_semaphore(value)?)
    }

    fn condition(&self) -> Result<Self::Condition> {
        Ok(self.ctx.condition(None)?)
    }

    fn event(&self) -> Result<Self::Event> {
        Ok(self.ctx.event()?)
    }

    fn barrier(&self, parties: u32, timeout: Option<Duration>) -> Result<Self::Barrier> {
        Ok(self.ctx.barrier(parties, timeout)?)
    }

    fn queue<T: Item>(&self, maxsize: usize) -> Result<Self::Queue<T>> {
        Ok(self.ctx.queue(maxsize)?)
    }

    fn joinable_queue<T: Item>(&self, maxsize: usize) -> Result<Self::JoinableQueue<T>> {
        Ok(self.ctx.joinable_queue(maxsize)?)
    }

    fn simple_queue<T: Item>(&self) -> Result<Self::SimpleQueue<T>> {
        Ok(self.ctx.simple_queue()?)
    }

    fn process<A: Item>(&self, target: fn(A), args: A) -> Self::Process {
        self.ctx.process(target, args)
    }
}

impl PoolBackend for Processes {
    type Pool = mp_pool::Pool;

    fn pool(&self, processes: Option<usize>) -> Result<Self::Pool> {
        Ok(self.ctx.pool(processes)?)
    }
}

// ---- The thread backend. ----

impl Backend for Threads {
    type Lock = mp_dummy::Lock;
    type RLock = mp_dummy::RLock;
    type Semaphore = mp_dummy::Semaphore;
    type BoundedSemaphore = mp_dummy::BoundedSemaphore;
    type Condition = mp_dummy::Condition;
    type Event = mp_dummy::Event;
    type Barrier = mp_dummy::Barrier;
    type Queue<T: Item> = mp_dummy::Queue<T>;
    type JoinableQueue<T: Item> = mp_dummy::JoinableQueue<T>;
    type SimpleQueue<T: Item> = mp_dummy::SimpleQueue<T>;
    type Process = mp_dummy::DummyProcess;

    fn name(&self) -> String {
        "threads".to_owned()
    }

    fn lock(&self) -> Result<Self::Lock> {
        Ok(mp_dummy::Lock::new())
    }

    fn rlock(&self) -> Result<Self::RLock> {
        Ok(mp_dummy::RLock::new())
    }

    fn semaphore(&self, value: u32) -> Result<Self::Semaphore> {
        Ok(mp_dummy::Semaphore::new(value))
    }

    fn bounded_semaphore(&self, value: u32) -> Result<Self::BoundedSemaphore> {
        Ok(mp_dummy::BoundedSemaphore::new(value))
    }

    fn condition(&self) -> Result<Self::Condition> {
        Ok(mp_dummy::Condition::new())
    }

    fn event(&self) -> Result<Self::Event> {
        Ok(mp_dummy::Event::new())
    }

    fn barrier(&self, parties: u32, timeout: Option<Duration>) -> Result<Self::Barrier> {
        Ok(mp_dummy::Barrier::new(parties, timeout)?)
    }

    fn queue<T: Item>(&self, maxsize: usize) -> Result<Self::Queue<T>> {
        Ok(mp_dummy::Queue::new(maxsize))
    }

    fn joinable_queue<T: Item>(&self, maxsize: usize) -> Result<Self::JoinableQueue<T>> {
        Ok(mp_dummy::JoinableQueue::new(maxsize))
    }

    fn simple_queue<T: Item>(&self) -> Result<Self::SimpleQueue<T>> {
        Ok(mp_dummy::SimpleQueue::new())
    }

    fn process<A: Item>(&self, target: fn(A), args: A) -> Self::Process {
        mp_dummy::DummyProcess::new(target, args)
    }
}

impl PoolBackend for Threads {
    type Pool = mp_dummy::Pool;

    fn pool(&self, processes: Option<usize>) -> Result<Self::Pool> {
        Ok(mp_dummy::Pool::new(processes)?)
    }
}

// ---- What both backends' types share method for method. ----

/// `PoolApi` and `AsyncResultApi` for a pool and its result type, whose
/// inherent methods have mp-pool's names and arguments.
macro_rules! pool_api {
    ($pool:ty, $result:ident) => {
        impl<R: Item> AsyncResultApi<R> for $result<R> {
            fn get(&self, timeout: Option<Duration>) -> Result<R> {
                Ok($result::get(self, timeout)?)
            }

            fn wait(&self, timeout: Option<Duration>) -> bool {
                $result::wait(self, timeout)
            }

            fn ready(&self) -> bool {
                $result::ready(self)
            }

            fn successful(&self) -> Result<bool> {
                Ok($result::successful(self)?)
            }
        }

        impl PoolApi for $pool {
            type AsyncResult<R: Item> = $result<R>;

            fn apply<A: Item, R: Item>(&self, f: fn(A) -> R, args: A) -> Result<R> {
                Ok(<$pool>::apply(self, f, args)?)
            }

            fn apply_async<A: Item, R: Item>(
                &self,
                f: fn(A) -> R,
                args: A,
            ) -> Result<Self::AsyncResult<R>> {
                Ok(<$pool>::apply_async(self, f, args)?)
            }

            fn map<A: Item, R: Item, I: IntoIterator<Item = A>>(
                &self,
                f: fn(A) -> R,
                iterable: I,
                chunksize: Option<usize>,
            ) -> Result<Vec<R>> {
                Ok(<$pool>::map(self, f, iterable, chunksize)?)
            }

            fn map_async<A: Item, R: Item, I: IntoIterator<Item = A>>(
                &self,
                f: fn(A) -> R,
                iterable: I,
                chunksize: Option<usize>,
            ) -> Result<Self::AsyncResult<Vec<R>>> {
                Ok(<$pool>::map_async(self, f, iterable, chunksize)?)
            }

            fn imap<A: Item, R: Item, I>(
                &self,
                f: fn(A) -> R,
                iterable: I,
                chunksize: usize,
            ) -> Result<ResultIter<R>>
            where
                I: IntoIterator<Item = A>,
                I::IntoIter: Send + 'static,
            {
                let results = <$pool>::imap(self, f, iterable, chunksize)?;
                Ok(Box::new(results.map(|r| r.map_err(Error::from))))
            }

            fn imap_unordered<A: Item, R: Item, I>(
                &self,
                f: fn(A) -> R,
                iterable: I,
                chunksize: usize,
            ) -> Result<ResultIter<R>>
            where
                I: IntoIterator<Item = A>,
                I::IntoIter: Send + 'static,
            {
                let results = <$pool>::imap_unordered(self, f, iterable, chunksize)?;
                Ok(Box::new(results.map(|r| r.map_err(Error::from))))
            }

            fn close(&self) {
                <$pool>::close(self);
            }

            fn terminate(&self) {
                <$pool>::terminate(self);
            }

            fn join(&self) -> Result<()> {
                Ok(<$pool>::join(self)?)
            }
        }
    };
}

mod process_pool {
    use super::*;
    use mp_pool::AsyncResult;

    pool_api!(mp_pool::Pool, AsyncResult);
}

mod thread_pool {
    use super::*;
    use mp_dummy::AsyncResult;

    pool_api!(mp_dummy::Pool, AsyncResult);
}

/// `LockApi`; `$acquired` turns the type's `acquire` result into a
/// `Result<bool>` (mp-sync's can report a dead owner, mp-dummy's cannot).
macro_rules! lock_api {
    ($acquired:expr => $($t:ty),*) => {$(
        impl LockApi for $t {
            fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
                $acquired(<$t>::acquire(self, block, timeout))
            }

            fn release(&self) -> Result<()> {
                Ok(<$t>::release(self)?)
            }
        }
    )*};
}

lock_api!(|r: mp_sync::Result<bool>| Ok(r?) => mp_sync::Lock, mp_sync::RLock);
lock_api!(|r: bool| Ok(r) => mp_dummy::Lock, mp_dummy::RLock);

/// `ProcessApi`; `$alive` and `$code` turn the type's `is_alive` and
/// `exitcode` answers into `Result`s (mp-context's ask the system and can
/// fail, mp-dummy's cannot).
macro_rules! process_api {
    ($t:ty, $alive:expr, $code:expr) => {
        impl ProcessApi for $t {
            fn start(&self) -> Result<()> {
                Ok(<$t>::start(self)?)
            }

            fn join(&self, timeout: Option<Duration>) -> Result<()> {
                Ok(<$t>::join(self, timeout)?)
            }

            fn is_alive(&self) -> Result<bool> {
                $alive(<$t>::is_alive(self))
            }

            fn exitcode(&self) -> Result<Option<i32>> {
                $code(<$t>::exitcode(self))
            }

            fn name(&self) -> String {
                <$t>::name(self)
            }
        }
    };
}

process_api!(
    mp_context::Process,
    |r: mp_context::Result<bool>| Ok(r?),
    |r: mp_context::Result<Option<i32>>| Ok(r?)
);
process_api!(
    mp_dummy::DummyProcess,
    |r: bool| Ok(r),
    |r: Option<i32>| Ok(r)
);

/// `SemaphoreApi` for a semaphore type whose `acquire` returns `bool`.
macro_rules! semaphore_api {
    ($($t:ty),*) => {$(
        impl SemaphoreApi for $t {
            fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool {
                <$t>::acquire(self, block, timeout)
            }

            fn release(&self) -> Result<()> {
                Ok(<$t>::release(self)?)
            }

            fn get_value(&self) -> u32 {
                <$t>::get_value(self)
            }
        }
    )*};
}

semaphore_api!(
    mp_sync::Semaphore,
    mp_sync::BoundedSemaphore,
    mp_dummy::Semaphore,
    mp_dummy::BoundedSemaphore
);

/// `ConditionApi`; `$acquired` turns the type's `acquire` result into a
/// `Result<bool>`.
macro_rules! condition_api {
    ($t:ty, $acquired:expr) => {
        impl ConditionApi for $t {
            fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
                $acquired(<$t>::acquire(self, block, timeout))
            }

            fn release(&self) -> Result<()> {
                Ok(<$t>::release(self)?)
            }

            fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
                Ok(<$t>::wait(self, timeout)?)
            }

            fn notify(&self, n: u32) -> Result<()> {
                Ok(<$t>::notify(self, n)?)
            }

            fn notify_all(&self) -> Result<()> {
                Ok(<$t>::notify_all(self)?)
            }
        }
    };
}

condition_api!(mp_sync::Condition, |r: mp_sync::Result<bool>| Ok(r?));
condition_api!(mp_dummy::Condition, |r: bool| Ok(r));

macro_rules! event_api {
    ($($t:ty),*) => {$(
        impl EventApi for $t {
            fn is_set(&self) -> bool {
                <$t>::is_set(self)
            }

            fn set(&self) {
                <$t>::set(self);
            }

            fn clear(&self) {
                <$t>::clear(self);
            }

            fn wait(&self, timeout: Option<Duration>) -> bool {
                <$t>::wait(self, timeout)
            }
        }
    )*};
}

event_api!(mp_sync::Event, mp_dummy::Event);

macro_rules! barrier_api {
    ($($t:ty),*) => {$(
        impl BarrierApi for $t {
            fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
                Ok(<$t>::wait(self, timeout)?)
            }

            fn reset(&self) {
                <$t>::reset(self);
            }

            fn abort(&self) {
                <$t>::abort(self);
            }

            fn parties(&self) -> u32 {
                <$t>::parties(self)
            }

            fn n_waiting(&self) -> u32 {
                <$t>::n_waiting(self)
            }

            fn broken(&self) -> bool {
                <$t>::broken(self)
            }
        }
    )*};
}

barrier_api!(mp_sync::Barrier, mp_dummy::Barrier);

/// `QueueApi` and `JoinableQueueApi` for a queue and its joinable kind;
/// `$item` turns the item given into what the type's `put` takes (a
/// reference for the process queue, which encodes it; the item itself for
/// the thread queue, which moves it).
macro_rules! queue_api {
    // `QueueApi` for `$for`, through `$queue`'s inherent methods (named
    // by path: the joinable queue derefs to its queue, and `self.put(..)`
    // there would call this trait's method, itself).
    (@queue $for:ident, $queue:ident, |$i:ident| $item:expr) => {
        impl<T: Item> QueueApi<T> for $for<T> {
            fn put(&self, $i: T, block: bool, timeout: Option<Duration>) -> Result<()> {
                Ok($queue::put(self, $item, block, timeout)?)
            }

            fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
                Ok($queue::get(self, block, timeout)?)
            }

            fn qsize(&self) -> usize {
                $queue::qsize(self)
            }

            fn empty(&self) -> bool {
                $queue::empty(self)
            }

            fn full(&self) -> bool {
                $queue::full(self)
            }

            fn shutdown(&self, immediate: bool) {
                $queue::shutdown(self, immediate);
            }
        }
    };
    ($queue:ident, $joinable:ident, $simple:ident, |$i:ident| $item:expr) => {
        queue_api!(@queue $queue, $queue, |$i| $item);
        queue_api!(@queue $joinable, $queue, |$i| $item);

        impl<T: Item> JoinableQueueApi<T> for $joinable<T> {
            fn task_done(&self) -> Result<()> {
                Ok($joinable::task_done(self)?)
            }

            fn join(&self) -> Result<()> {
                Ok($joinable::join(self)?)
            }

            fn join_timeout(&self, timeout: Duration) -> Result<bool> {
                Ok($joinable::join_timeout(self, timeout)?)
            }
        }

        impl<T: Item> SimpleQueueApi<T> for $simple<T> {
            fn put(&self, $i: T) -> Result<()> {
                Ok($simple::put(self, $item)?)
            }

            fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
                Ok($simple::get_timeout(self, timeout)?)
            }

            fn empty(&self) -> bool {
                $simple::empty(self)
            }
        }
    };
}

mod process_queues {
    use super::*;
    use mp_queue::{JoinableQueue, Queue, SimpleQueue};

    queue_api!(Queue, JoinableQueue, SimpleQueue, |item| &item);
}

mod thread_queues {
    use super::*;
    use mp_dummy::{JoinableQueue, Queue, SimpleQueue};

    queue_api!(Queue, JoinableQueue, SimpleQueue, |item| item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_message_and_its_causes() {
        assert_eq!(format!("{:?}", Error::Empty), "the queue is empty");
        // Other is transparent: the backend's message, then its causes.
        let e = Error::from(mp_dummy::Error::Spawn {
            name: "Thread-1".into(),
            source: std::io::Error::other("no threads left"),
        });
        assert_eq!(
            format!("{e:?}"),
            "cannot start a thread for Thread-1: no threads left"
        );
        assert_eq!(e.to_string(), "cannot start a thread for Thread-1");
        // Task names the failure, its cause says which.
        let e = Error::Task("the task panicked".into());
        assert_eq!(format!("{e:?}"), "a pool task failed: the task panicked");
        assert_eq!(e.to_string(), "a pool task failed");
    }

    #[test]
    fn each_backend_maps_its_errors_to_the_same_variants() {
        assert!(matches!(Error::from(mp_dummy::Error::Full), Error::Full));
        assert!(matches!(Error::from(crate::QueueError::Full), Error::Full));
        assert!(matches!(
            Error::from(mp_dummy::Error::NotOwner),
            Error::NotOwner
        ));
        assert!(matches!(
            Error::from(crate::SyncError::NotOwner),
            Error::NotOwner
        ));
        assert!(matches!(
            Error::from(crate::SyncError::BrokenBarrier),
            Error::BrokenBarrier
        ));
        assert!(matches!(
            Error::from(mp_dummy::Error::BrokenBarrier),
            Error::BrokenBarrier
        ));
    }
}
