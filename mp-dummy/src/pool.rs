//! A pool of worker threads with the calls of the process pool (CPython's
//! `multiprocessing.pool.ThreadPool`, which `multiprocessing.dummy.Pool`
//! returns).
//!
//! [`Pool`] has every call of mp-pool's `Pool`, with the same names and
//! argument order: [`apply`](Pool::apply), [`apply_async`](Pool::apply_async)
//! (an [`AsyncResult`] with `get(timeout)`, `wait`, `ready`, `successful`),
//! [`map`](Pool::map), [`map_async`](Pool::map_async), [`imap`](Pool::imap),
//! [`imap_unordered`](Pool::imap_unordered), [`starmap`](Pool::starmap),
//! [`starmap_async`](Pool::starmap_async), [`Callbacks`], `chunksize` with
//! CPython's default, [`close`](Pool::close), [`terminate`](Pool::terminate),
//! [`join`](Pool::join); [`PoolBuilder`] sets `processes` (threads),
//! `initializer` + `initargs`, `maxtasksperchild` and the `imap` window.
//! The difference: tasks are closures (`Fn(A) -> R + Send + Sync`, plain
//! `fn`s too) whose arguments and results only need `Send + 'static`:
//! nothing is serialized.
//!
//! ## Errors instead of hangs
//!
//! - A task that panics fails alone: its result is [`PoolError::Panicked`]
//!   with the message and the location, and the pool goes on. As in
//!   mp-pool's workers, a panic hook keeps a task's panic off stderr (the
//!   error carries it; CPython's `ThreadPool` prints nothing either); other
//!   panics go to the hook that was installed before.
//! - Using a closed or terminated pool is [`PoolError::NotRunning`], naming
//!   the state.
//! - An initializer that panics breaks the pool
//!   ([`PoolError::InitializerFailed`] for every queued and later task)
//!   instead of starting threads forever (CPython's gh-87472).
//! - Dropping the pool terminates it, as leaving CPython's `with
//!   ThreadPool() as p:` block does.
//!
//! ## What `terminate` can do with threads
//!
//! A thread cannot be killed, so [`terminate`](Pool::terminate) does what
//! can be done at once and says so: queued tasks are dropped and fail with
//! [`PoolError::Terminated`]; running tasks go on in the background, but
//! their results fail with [`PoolError::Terminated`] at once and what they
//! return later is discarded; `terminate` returns without waiting. A
//! [`join`](Pool::join) after it waits for the running tasks to return.
//! CPython's `ThreadPool.terminate` also cannot stop a running task: it
//! blocks until the running tasks return, and leaves the results of the
//! dropped ones waiting forever.
//!
//! ## How it is fast
//!
//! One submission is one allocation (the task, its input and its result
//! slot together, shared by the queue and its [`AsyncResult`]), sent over
//! a std `mpsc` channel: submitters and workers never take the same lock
//! (a submitter takes only a read lock that `close` and `terminate` write,
//! so a submission is queued before them or refused), and the channel
//! wakes a parked worker only when one is parked. Idle workers take turns
//! at the channel's receiving end, as in the plain pool of std threads a
//! Rust programmer writes. A `map` sends one *share* of its chunks per
//! worker at most, and a worker holding a share takes the next chunk with
//! one atomic step, in order. A worker writes a result straight into its
//! slot, and wakes the waiter only if one waits. (Measured before: the
//! queue as one `Mutex<VecDeque>` that submitters and workers both took
//! made the submitter wait for the workers' lock on every task, at 0.4 to
//! 0.7 times the plain pool's `apply_async` rate; the channel, with what
//! each thread writes for every task on cache lines of its own, makes
//! 0.7 to 1.1.)
//!
//! `cargo xtask bench threadpool` compares it with CPython's `ThreadPool`,
//! with a plain pool of std threads over a channel and with the
//! `threadpool` crate.
//!
//! # Examples
//!
//! ```
//! use mp_dummy::pool::Pool;
//!
//! fn main() -> Result<(), mp_dummy::pool::PoolError> {
//!     let pool = Pool::new(Some(2))?;
//!     let offset = 10;
//!     assert_eq!(pool.map(move |n: u64| n + offset, 1..=4, None)?, [11, 12, 13, 14]);
//!     assert_eq!(pool.starmap(|(a, b): (u64, u64)| a * b, [(2, 3), (4, 5)], None)?, [6, 20]);
//!     let pending = pool.apply_async(|s: &str| s.len(), "four")?;
//!     assert_eq!(pending.get(None)?, 4);
//!     let failed = pool.apply(|n: u32| -> u32 { panic!("no {n}") }, 7);
//!     assert!(failed.unwrap_err().to_string().contains("no 7"));
//!     pool.close();
//!     pool.join()
//! }
//! ```

mod error;
mod imap;
mod result;
mod task;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::thread::JoinHandle;

pub use error::{PoolError, PoolState, Result};
pub use imap::{IMap, IMapUnordered};
pub use result::{AsyncResult, Callbacks};

use result::{HasSlot, Slot, lock};
use task::{ApplyTask, Batch, MapTask, Queued, Unit, guarded};

/// An initializer with its arguments bound.
type Initializer = Arc<dyn Fn() + Send + Sync>;

/// The configuration a pool and its threads run with.
struct Config {
    threads: usize,
    initializer: Option<Initializer>,
    maxtasksperchild: Option<u64>,
    /// Chunks in flight for one `imap`.
    imap_window: usize,
}

/// `T` alone on its cache lines (two: x86 fetches lines in pairs): the
/// submitters' read lock, the workers' receiving end and each worker's
/// `Running` are written by different threads for every task, and on one
/// line they would slow each other down for nothing (false sharing).
#[derive(Default)]
#[repr(align(128))]
struct CacheLine<T>(T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A message of the job channel.
enum Job {
    /// One unit: an `apply_async`, a chunk of an `imap`.
    One(Queued),
    /// A share of a `map`'s chunks: its holder takes chunks until none
    /// are left (a `map` sends one share per worker at most).
    Share(Arc<Batch>),
}

impl Job {
    /// Fails what this message holds that has not run.
    fn cancel(&self, error: &PoolError) {
        match self {
            Job::One(q) => q.cancel(error),
            Job::Share(batch) => batch.cancel_rest(error),
        }
    }
}

/// What one worker is at, for `terminate`.
#[derive(Default)]
struct Running {
    /// The unit it runs.
    unit: Option<Queued>,
    /// The share of a `map` it takes chunks from.
    share: Option<Arc<Batch>>,
}

/// What the pool's submitters share: the job channel's sender while the
/// pool takes tasks, and why it stopped taking them.
struct Intake {
    status: PoolState,
    /// The error that broke the pool.
    broken: Option<PoolError>,
    /// `None` once the pool stops taking tasks: the workers then drain
    /// the channel and see it end.
    sender: Option<mpsc::Sender<Job>>,
}

/// The part of a pool that its threads and iterators hold on to.
///
/// Submitters and workers meet only in the channel: a submitter takes
/// `intake`'s read lock (shared with other submitters, never with a
/// worker) and sends; workers take turns at `jobs`. Closing, terminating
/// or breaking takes the write lock, so a submission is in the channel
/// before it, or refused.
pub(crate) struct Shared {
    intake: CacheLine<RwLock<Intake>>,
    /// The receiving end, taken in turns by the idle workers (one waits
    /// in `recv`, the others for the lock).
    jobs: CacheLine<Mutex<mpsc::Receiver<Job>>>,
    /// Set (under `intake`'s write lock) when the pool is terminated or
    /// broken: a worker that has just taken a task checks it before it
    /// runs the task.
    stopped: AtomicBool,
    /// What each worker (by number) is running, for `terminate`.
    running: Box<[CacheLine<Mutex<Running>>]>,
    /// The worker threads to join (a replacement adds itself here before
    /// the thread it replaces ends).
    threads: Mutex<Vec<JoinHandle<()>>>,
    config: Config,
}

impl Shared {
    fn intake(&self) -> RwLockReadGuard<'_, Intake> {
        self.intake.read().unwrap_or_else(|e| e.into_inner())
    }

    fn intake_mut(&self) -> RwLockWriteGuard<'_, Intake> {
        self.intake.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The error that broke the pool, if it is broken.
    fn broken(intake: &Intake) -> Option<PoolError> {
        match (&intake.status, &intake.broken) {
            (PoolState::Broken, Some(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// The error for a submission to a pool in state `intake`.
    fn not_running(intake: &Intake) -> PoolError {
        Self::broken(intake).unwrap_or(PoolError::NotRunning(intake.status))
    }

    /// What a task of a stopped pool fails with.
    fn stop_error(&self) -> PoolError {
        Self::broken(&self.intake()).unwrap_or(PoolError::Terminated)
    }

    /// Queues one unit.
    pub(crate) fn submit(&self, unit: Queued) -> Result<()> {
        self.send(std::iter::once(Job::One(unit)))
    }

    /// Queues the `chunks` chunks of `unit`, to be run in order by as
    /// many workers as are free.
    fn submit_chunks(&self, unit: Arc<dyn Unit>, chunks: usize) -> Result<()> {
        if chunks == 1 {
            return self.submit(Queued { unit, index: 0 });
        }
        let batch = Arc::new(Batch::new(unit, chunks));
        let shares = chunks.min(self.config.threads);
        self.send((0..shares).map(|_| Job::Share(batch.clone())))
    }

    /// Sends `jobs` (all or none).
    fn send(&self, jobs: impl Iterator<Item = Job>) -> Result<()> {
        let intake = self.intake();
        let (PoolState::Running, Some(sender)) = (intake.status, &intake.sender) else {
            return Err(Self::not_running(&intake));
        };
        for job in jobs {
            // A send fails only once the receiver is gone, and `self`
            // holds it: the job fails rather than vanish.
            if let Err(mpsc::SendError(job)) = sender.send(job) {
                job.cancel(&PoolError::NotRunning(intake.status));
            }
        }
        Ok(())
    }

    /// Stops taking tasks and moves to `status`: `Closed` lets the
    /// workers finish what is queued; `Terminated` and `Broken` (with the
    /// error) fail the queued and running tasks. Nothing happens if the
    /// pool is already past that point.
    fn stop(&self, status: PoolState, error: Option<PoolError>) {
        let mut intake = self.intake_mut();
        let allowed = match status {
            PoolState::Running => false,
            PoolState::Closed => intake.status == PoolState::Running,
            PoolState::Terminated => intake.status != PoolState::Terminated,
            PoolState::Broken => {
                matches!(intake.status, PoolState::Running | PoolState::Closed)
            }
        };
        if !allowed {
            return;
        }
        intake.status = status;
        if status == PoolState::Broken {
            intake.broken = error;
        }
        // Dropping the sender wakes every worker waiting in `recv`.
        let sender = intake.sender.take();
        let failing = status != PoolState::Closed;
        if failing {
            self.stopped.store(true, Ordering::SeqCst);
        }
        drop(intake);
        drop(sender);
        if failing {
            let error = self.stop_error();
            // The queued tasks: none can be added now. A worker that took
            // one just before has registered it in `running` (below) or
            // will see `stopped` (it checks after registering).
            let queued: Vec<Job> = lock(&self.jobs).try_iter().collect();
            let running: Vec<(Option<Queued>, Option<Arc<Batch>>)> = self
                .running
                .iter()
                .map(|r| {
                    let r = lock(r);
                    (r.unit.clone(), r.share.clone())
                })
                .collect();
            for job in &queued {
                job.cancel(&error);
            }
            for (unit, share) in &running {
                if let Some(q) = unit {
                    q.cancel(&error);
                }
                if let Some(batch) = share {
                    batch.cancel_rest(&error);
                }
            }
        }
    }

    /// Starts worker number `slot`, holding `share` (a replaced worker's
    /// share of a `map`) to begin with.
    fn spawn(
        self: &Arc<Self>,
        slot: usize,
        share: Option<Arc<Batch>>,
    ) -> std::io::Result<JoinHandle<()>> {
        let shared = self.clone();
        std::thread::Builder::new()
            .name(format!("mp-dummy-pool-{slot}"))
            .spawn(move || shared.work_loop(slot, share))
    }

    /// A worker thread: its initializer, then tasks until the pool stops
    /// (or `maxtasksperchild`, when a replacement takes its place).
    fn work_loop(self: Arc<Self>, slot: usize, inherited: Option<Arc<Batch>>) {
        if let Some(init) = &self.config.initializer
            && let Err(e) = guarded(|| init())
        {
            let message = match e {
                PoolError::Panicked {
                    message,
                    location: Some(at),
                } => format!("panicked at {at}: {message}"),
                PoolError::Panicked { message, .. } => format!("panicked: {message}"),
                other => other.to_string(),
            };
            self.stop(
                PoolState::Broken,
                Some(PoolError::InitializerFailed { message }),
            );
            return;
        }
        let mut done = 0u64;
        let mut share = inherited;
        loop {
            if self.config.maxtasksperchild == Some(done) {
                // Added before this thread ends, so that `join` waits for
                // the replacement too; it goes on with this thread's share
                // of a `map`.
                match self.spawn(slot, share.take()) {
                    Ok(handle) => lock(&self.threads).push(handle),
                    Err(e) => {
                        self.stop(PoolState::Broken, Some(PoolError::ThreadStart(Arc::new(e))));
                    }
                }
                return;
            }
            let next = match share.as_ref().and_then(|b| b.claim()) {
                Some(q) => q,
                None => {
                    if share.take().is_some() {
                        let done_with = lock(&self.running[slot]).share.take();
                        drop(done_with);
                    }
                    // The channel ends once the pool stops taking tasks
                    // and what was queued has been taken.
                    match lock(&self.jobs).recv() {
                        Ok(Job::One(q)) => q,
                        Ok(Job::Share(batch)) => {
                            lock(&self.running[slot]).share = Some(batch.clone());
                            share = Some(batch);
                            continue;
                        }
                        Err(_) => return,
                    }
                }
            };
            lock(&self.running[slot]).unit = Some(next.clone());
            if self.stopped.load(Ordering::SeqCst) {
                let error = self.stop_error();
                next.cancel(&error);
                if let Some(batch) = &share {
                    batch.cancel_rest(&error);
                }
                let entry = std::mem::take(&mut *lock(&self.running[slot]));
                drop(entry);
                return;
            }
            next.run();
            // The entry may hold the last reference to the user's values,
            // so it is dropped unlocked (their `Drop` may use the pool).
            let entry = lock(&self.running[slot]).unit.take();
            drop(entry);
            drop(next);
            done += 1;
        }
    }
}

/// Builds a [`Pool`]: the number of threads, an initializer, and the limit
/// that replaces threads.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
///
/// thread_local!(static BASE: Cell<u64> = const { Cell::new(0) });
///
/// # fn main() -> Result<(), mp_dummy::pool::PoolError> {
/// let pool = mp_dummy::pool::Pool::builder()
///     .processes(2)
///     // Runs once in each worker thread before its first task.
///     .initializer(|base: u64| BASE.with(|b| b.set(base)), 10)
///     .maxtasksperchild(100)
///     .build()?;
/// assert_eq!(pool.apply(|n: u64| BASE.with(Cell::get) + n, 1)?, 11);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Initializer>,
    maxtasksperchild: Option<u64>,
    imap_window: Option<usize>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .field("maxtasksperchild", &self.maxtasksperchild)
            .field("imap_window", &self.imap_window)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder::new()
    }
}

impl PoolBuilder {
    /// The defaults: one thread per usable CPU, no initializer, threads
    /// that live as long as the pool.
    pub fn new() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            maxtasksperchild: None,
            imap_window: None,
        }
    }

    /// The number of worker threads (CPython's `processes`; default: the
    /// CPUs this process may use, as CPython's `os.process_cpu_count()`:
    /// `std::thread::available_parallelism`, which also honours a cgroup
    /// CPU quota).
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args.clone())` in each worker thread before its first task
    /// (CPython's `initializer` and `initargs`). If it panics in any
    /// thread, the pool stops and reports [`PoolError::InitializerFailed`]
    /// instead of starting threads forever.
    pub fn initializer<I>(mut self, f: impl Fn(I) + Send + Sync + 'static, args: I) -> PoolBuilder
    where
        I: Clone + Send + Sync + 'static,
    {
        self.initializer = Some(Arc::new(move || f(args.clone())));
        self
    }

    /// Replaces each worker thread with a new one (which runs the
    /// initializer again) after it has run `n` tasks (CPython's
    /// `maxtasksperchild`, which its `ThreadPool` does not take; a `map`
    /// chunk counts as one task, as there).
    pub fn maxtasksperchild(mut self, n: u64) -> PoolBuilder {
        self.maxtasksperchild = Some(n);
        self
    }

    /// How many chunks one `imap` or `imap_unordered` keeps in flight,
    /// reading its input no further ahead (default: 64 per thread).
    pub fn imap_window(mut self, chunks: usize) -> PoolBuilder {
        self.imap_window = Some(chunks);
        self
    }

    /// Starts the threads and returns the pool.
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidArgument`] for zero processes,
    /// `maxtasksperchild` or `imap_window`; [`PoolError::ThreadStart`] if a
    /// thread cannot be started.
    pub fn build(self) -> Result<Pool> {
        let threads = match self.processes {
            Some(0) => {
                return Err(PoolError::InvalidArgument(
                    "Number of processes must be at least 1",
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.maxtasksperchild == Some(0) {
            return Err(PoolError::InvalidArgument(
                "maxtasksperchild must be at least 1",
            ));
        }
        if self.imap_window == Some(0) {
            return Err(PoolError::InvalidArgument("imap_window must be at least 1"));
        }
        task::install_panic_hook();
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            intake: CacheLine(RwLock::new(Intake {
                status: PoolState::Running,
                broken: None,
                sender: Some(sender),
            })),
            jobs: CacheLine(Mutex::new(receiver)),
            stopped: AtomicBool::new(false),
            running: (0..threads).map(|_| CacheLine::default()).collect(),
            threads: Mutex::new(Vec::with_capacity(threads)),
            config: Config {
                threads,
                initializer: self.initializer,
                maxtasksperchild: self.maxtasksperchild,
                imap_window: self.imap_window.unwrap_or(64 * threads),
            },
        });
        let pool = Pool { shared };
        for slot in 0..threads {
            match pool.shared.spawn(slot, None) {
                Ok(handle) => lock(&pool.shared.threads).push(handle),
                // Dropping the pool stops the threads started so far.
                Err(e) => return Err(PoolError::ThreadStart(Arc::new(e))),
            }
        }
        Ok(pool)
    }
}

/// CPython's default `chunksize` for `map`: `len / (4 * processes)`,
/// rounded up.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = 4 * processes.max(1);
    len / per + usize::from(!len.is_multiple_of(per))
}

/// `items` in chunks of `size` (the last one shorter).
fn cut<A>(mut items: impl Iterator<Item = A>, size: usize) -> Vec<Vec<A>> {
    std::iter::from_fn(|| {
        let chunk: Vec<A> = items.by_ref().take(size).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
    .collect()
}

fn check_chunksize(chunksize: usize) -> Result<usize> {
    if chunksize == 0 {
        return Err(PoolError::InvalidArgument("chunksize must be at least 1"));
    }
    Ok(chunksize)
}

/// A pool of worker threads that run closures (CPython's `ThreadPool`).
///
/// Submissions take `&self`, so one pool can serve many threads. Dropping
/// the pool terminates it, as leaving CPython's `with ThreadPool() as p:`
/// block does: call [`close`](Pool::close) and [`join`](Pool::join) first
/// to let submitted tasks finish.
///
/// See the [module docs](crate::pool) for what `terminate` can do with
/// threads.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), mp_dummy::pool::PoolError> {
/// let pool = mp_dummy::pool::Pool::new(Some(2))?;
/// assert_eq!(pool.map(|n: u64| n * n, 0..5, None)?, [0, 1, 4, 9, 16]);
/// let pending = pool.apply_async(|n: u64| n * n, 12)?;
/// assert_eq!(pending.get(None)?, 144);
/// pool.close();
/// pool.join()?;
/// # Ok(()) }
/// ```
pub struct Pool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.threads)
            .field("state", &self.state())
            .finish()
    }
}

impl Pool {
    /// A pool of `processes` threads (`None`: one per usable CPU);
    /// [`Pool::builder`] sets the rest.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: Option<usize>) -> Result<Pool> {
        let mut b = PoolBuilder::new();
        b.processes = processes;
        b.build()
    }

    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// The number of worker threads.
    pub fn processes(&self) -> usize {
        self.shared.config.threads
    }

    /// What the pool is doing.
    pub fn state(&self) -> PoolState {
        self.shared.intake().status
    }

    fn check_open(&self) -> Result<()> {
        let intake = self.shared.intake();
        match intake.status {
            PoolState::Running => Ok(()),
            _ => Err(Shared::not_running(&intake)),
        }
    }

    /// Runs `f(args)` on a worker thread and waits for its result
    /// (CPython's `apply`).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async) and [`AsyncResult::get`].
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: FnOnce(A) -> R + Send + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.apply_async(f, args)?.get(None)
    }

    /// Submits `f(args)` and returns at once (CPython's `apply_async`).
    ///
    /// # Errors
    ///
    /// [`PoolError::NotRunning`] after `close` or `terminate`, or the error
    /// that broke the pool.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>>
    where
        F: FnOnce(A) -> R + Send + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.apply_async_with(f, args, Callbacks::new())
    }

    /// [`apply_async`](Pool::apply_async) with a `callback` and an
    /// `error_callback`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); no callback runs then.
    pub fn apply_async_with<F, A, R>(
        &self,
        f: F,
        args: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        F: FnOnce(A) -> R + Send + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        let task = Arc::new(ApplyTask::new(f, args, callbacks));
        self.shared.submit(Queued {
            unit: task.clone(),
            index: 0,
        })?;
        Ok(AsyncResult::new(task))
    }

    /// Runs `f` on every item and returns the results in order (CPython's
    /// `map`). The input is read whole first and cut into chunks of
    /// `chunksize` items (`None`: CPython's default, `len / (4 *
    /// processes)` rounded up), each run by one thread as one task.
    ///
    /// # Errors
    ///
    /// The error of the first item (by position) that failed, once every
    /// chunk has finished (CPython's `map` does not fail fast either: a
    /// chunk stops at its first failure, the others run); the submission
    /// errors of [`apply_async`](Pool::apply_async);
    /// [`PoolError::InvalidArgument`] for a `chunksize` of 0.
    pub fn map<F, A, R, I>(&self, f: F, iterable: I, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, iterable, chunksize)?.get(None)
    }

    /// [`map`](Pool::map) without waiting (CPython's `map_async`).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async), and
    /// [`PoolError::InvalidArgument`] for a `chunksize` of 0.
    pub fn map_async<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, iterable, chunksize, Callbacks::new())
    }

    /// [`map_async`](Pool::map_async) with a `callback` (given the whole
    /// result list) and an `error_callback`.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async); no callback runs then.
    pub fn map_async_with<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        if let Some(c) = chunksize {
            check_chunksize(c)?;
        }
        // Checked before the input is read, as a closed pool reads nothing.
        self.check_open()?;
        let chunks = match chunksize {
            Some(size) => cut(iterable.into_iter(), size),
            None => {
                let all: Vec<A> = iterable.into_iter().collect();
                let size = default_chunksize(all.len(), self.processes()).max(1);
                cut(all.into_iter(), size)
            }
        };
        if chunks.is_empty() {
            // Nothing to run: ready now, callbacks run here (as CPython's
            // MapResult does for an empty input).
            let slot: Arc<dyn HasSlot<Vec<R>>> = Arc::new(callbacks.run_now(Ok(Vec::new())));
            return Ok(AsyncResult::new(slot));
        }
        let task = Arc::new(MapTask::new(f, chunks, Slot::new(callbacks)));
        self.shared
            .submit_chunks(task.clone(), task.chunk_count())?;
        Ok(AsyncResult::new(task))
    }

    /// CPython's `starmap`: `f` takes its arguments as one tuple, which a
    /// closure destructures (`|(a, b): (u32, u32)| a + b`), so this is
    /// [`map`](Pool::map) over tuples.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<F, A, R, I>(&self, f: F, iterable: I, chunksize: Option<usize>) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map(f, iterable, chunksize)
    }

    /// CPython's `starmap_async`: [`map_async`](Pool::map_async) over
    /// tuples (see [`starmap`](Pool::starmap)).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, iterable, chunksize)
    }

    /// [`starmap_async`](Pool::starmap_async) with callbacks.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async_with<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, iterable, chunksize, callbacks)
    }

    /// Runs `f` on every item of `iterable` and yields the results in
    /// order, as they come (CPython's `imap`). The input is read lazily,
    /// `chunksize` items a chunk, with at most the pool's
    /// [`imap_window`](PoolBuilder::imap_window) chunks in flight: an
    /// endless iterator works (CPython reads the whole input first,
    /// gh-64192).
    ///
    /// Each item yields its own `Result`: a panicking item gives an error
    /// at its place and the rest go on. Chunks are submitted as the input
    /// is read, so after [`close`](Pool::close) the chunks not yet read
    /// end the iteration with [`PoolError::NotRunning`] (as mp-pool's).
    /// A panic of the input iterator itself is raised again in the
    /// consumer once the results read before it have been yielded.
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidArgument`] for a `chunksize` of 0,
    /// [`PoolError::NotRunning`] or the error that broke the pool.
    pub fn imap<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<IMap<A, R, I::IntoIter>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let chunksize = check_chunksize(chunksize)?;
        self.check_open()?;
        Ok(IMap::new(
            self.shared.clone(),
            Box::new(f),
            iterable.into_iter(),
            chunksize,
        ))
    }

    /// [`imap`](Pool::imap), yielding results in the order they finish
    /// (CPython's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<IMapUnordered<A, R, I::IntoIter>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let chunksize = check_chunksize(chunksize)?;
        self.check_open()?;
        Ok(IMapUnordered::new(
            self.shared.clone(),
            Box::new(f),
            iterable.into_iter(),
            chunksize,
        ))
    }

    /// Takes no new tasks; the threads exit once every submitted task is
    /// done (CPython's `close`). Harmless on a pool that is not running.
    pub fn close(&self) {
        self.shared.stop(PoolState::Closed, None);
    }

    /// Stops the pool at once (CPython's `terminate`): queued tasks are
    /// dropped and fail with [`PoolError::Terminated`]; running tasks
    /// cannot be stopped (they are threads), so their results fail with
    /// [`PoolError::Terminated`] now and what they return is discarded.
    /// Returns without waiting for them; [`join`](Pool::join) waits.
    /// Harmless to call again.
    pub fn terminate(&self) {
        self.shared.stop(PoolState::Terminated, None);
    }

    /// Waits for the worker threads to exit (CPython's `join`): after
    /// [`close`](Pool::close), once every task is done; after
    /// [`terminate`](Pool::terminate), once the tasks that were running
    /// have returned. Called from a callback on a worker thread, it waits
    /// for the other threads.
    ///
    /// # Errors
    ///
    /// [`PoolError::StillRunning`] if neither was called.
    pub fn join(&self) -> Result<()> {
        let me = std::thread::current().id();
        loop {
            if self.state() == PoolState::Running {
                return Err(PoolError::StillRunning);
            }
            let mut threads = lock(&self.shared.threads);
            let (own, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
                .into_iter()
                .partition(|h| h.thread().id() == me);
            threads.extend(own);
            drop(threads);
            if others.is_empty() {
                return Ok(());
            }
            for handle in others {
                // A worker catches every task's and callback's panic, so
                // a join error has nothing left to report.
                let _ = handle.join();
            }
        }
    }
}

/// Terminates the pool, as leaving CPython's `with` block does (without
/// waiting for running tasks: see [`Pool::terminate`]).
impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunksize_is_cpythons() {
        // divmod(len, 4 * processes), rounded up.
        assert_eq!(default_chunksize(0, 2), 0);
        assert_eq!(default_chunksize(1, 2), 1);
        assert_eq!(default_chunksize(8, 2), 1);
        assert_eq!(default_chunksize(9, 2), 2);
        assert_eq!(default_chunksize(1_000_000, 2), 125_000);
        assert_eq!(default_chunksize(1_000_001, 2), 125_001);
    }

    #[test]
    fn bad_builder_arguments_are_errors() {
        for b in [
            Pool::builder().processes(0),
            Pool::builder().maxtasksperchild(0),
            Pool::builder().imap_window(0),
        ] {
            let e = b.build().unwrap_err();
            assert!(matches!(e, PoolError::InvalidArgument(_)), "{e:?}");
        }
    }
}
