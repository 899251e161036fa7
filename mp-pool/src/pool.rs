//! `Pool`, its builder, and the calls that submit work (`pool.py`'s
//! `Pool`).

use std::any::TypeId;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mp_context::{Context, FnRef, Process, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, PoolState, Result};
use crate::imap::{IMap, IMapRaw, IMapUnordered};
use crate::job::{
    self, AsyncResult, Callbacks, Decode, Job, Notifier, Raw, Sink, Typed, Unit, lock,
};
use crate::supervisor::{self, Driver, Supervisor};
use crate::sys::EventFd;
use crate::wire::{ArgError, UnitRecord};

/// The configuration a pool and its workers run with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) context: Context,
    /// The initializer and its encoded arguments.
    pub(crate) initializer: Option<(FnRef, Vec<u8>)>,
    pub(crate) maxtasksperchild: Option<u64>,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_memory_per_child: Option<u64>,
    /// Units in flight for one `imap`.
    pub(crate) imap_window: usize,
}

/// Functions by number, as the workers know them.
#[derive(Debug, Default)]
pub(crate) struct FnTable {
    ids: HashMap<(usize, TypeId), u32>,
    /// The functions submitted as an `FnRef` (the raw calls).
    raw_ids: HashMap<FnRef, u32>,
    /// The postcard encoding of each function's `FnRef`.
    pub(crate) refs: Vec<Arc<[u8]>>,
}

impl FnTable {
    fn intern<A, R>(&mut self, f: fn(A) -> R) -> Result<u32>
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        // The type is part of the key: two functions of different types
        // may share an address once identical code is folded.
        let key = (f as usize, TypeId::of::<fn(A) -> R>());
        if let Some(&id) = self.ids.get(&key) {
            return Ok(id);
        }
        let id = self.push(&FnRef::new(f))?;
        self.ids.insert(key, id);
        Ok(id)
    }

    /// The number of a function given as an [`FnRef`] (made in another
    /// process, say), checked here first: the workers run this binary, so
    /// a reference this process cannot resolve would fail in every one.
    pub(crate) fn intern_raw(&mut self, f: &FnRef) -> Result<u32> {
        if let Some(&id) = self.raw_ids.get(f) {
            return Ok(id);
        }
        f.resolve().map_err(|e| Error::BadFunction {
            message: e.to_string(),
        })?;
        let id = self.push(f)?;
        self.raw_ids.insert(f.clone(), id);
        Ok(id)
    }

    fn push(&mut self, f: &FnRef) -> Result<u32> {
        let bytes = postcard::to_allocvec(f).map_err(Error::ArgsNotSerializable)?;
        let id = self.refs.len() as u32;
        self.refs.push(bytes.into());
        Ok(id)
    }
}

/// What the pool's threads share, under [`Shared::state`].
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) status: PoolState,
    /// The error that broke the pool.
    pub(crate) broken: Option<Error>,
    /// Units submitted and not yet taken by the supervisor.
    pub(crate) pending: VecDeque<Unit>,
    pub(crate) fns: FnTable,
    next_id: u64,
    /// The live workers (for `terminate`, which kills them itself so that
    /// it returns promptly, and for `worker_pids`).
    pub(crate) workers: Vec<Process>,
    /// An async submission waits to move the supervisor from the caller
    /// that drives it to the supervisor thread (see [`Engine`]).
    pub(crate) wants_thread: bool,
}

/// The part of a pool that its supervisor, results and iterators
/// hold on to.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) config: Config,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) wake: EventFd,
    /// Set by the supervisor before it sleeps; a submitter that clears it
    /// wakes the supervisor.
    pub(crate) sleeping: AtomicBool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Wakes the supervisor if it sleeps.
    fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake.signal();
        }
    }

    /// Queues `units` (all or none), calling `f`.
    pub(crate) fn submit<A, R>(
        &self,
        f: fn(A) -> R,
        units: impl IntoIterator<Item = (UnitRecord, Sink)>,
    ) -> Result<()>
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.submit_to(|fns| fns.intern(f), units)
    }

    /// Queues `units` (all or none), calling the function `intern` numbers.
    pub(crate) fn submit_to(
        &self,
        intern: impl FnOnce(&mut FnTable) -> Result<u32>,
        units: impl IntoIterator<Item = (UnitRecord, Sink)>,
    ) -> Result<()> {
        let mut state = self.lock();
        match state.status {
            PoolState::Running => {}
            PoolState::Broken => {
                return Err(state
                    .broken
                    .clone()
                    .unwrap_or(Error::NotRunning(PoolState::Broken)));
            }
            other => return Err(Error::NotRunning(other)),
        }
        let fn_id = intern(&mut state.fns)?;
        for (record, sink) in units {
            let id = state.next_id;
            state.next_id += 1;
            let items = record.count();
            state.pending.push_back(Unit {
                id,
                fn_id,
                items,
                record: record.finish(id, fn_id),
                sink,
            });
        }
        drop(state);
        self.wake();
        Ok(())
    }
}

/// The error for arguments a unit could not take.
pub(crate) fn arg_error(e: ArgError) -> Error {
    match e {
        ArgError::Encode(e) => Error::ArgsNotSerializable(e),
        ArgError::TooLong => Error::InvalidArgument(
            "a task's serialized arguments are over 4 GiB; pass them through shared memory",
        ),
    }
}

/// Whether spawn and forkserver children would run another file than this
/// process ([`mp_context::set_executable`]).
fn children_run_another_binary() -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let theirs = id(&mp_context::get_executable());
    theirs.is_some() && theirs != id(std::path::Path::new("/proc/self/exe"))
}

/// CPython's default `chunksize` for `map`: `len / (4 * processes)`,
/// rounded up.
pub(crate) fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = 4 * processes.max(1);
    len / per + usize::from(!len.is_multiple_of(per))
}

fn check_chunksize(chunksize: usize) -> Result<usize> {
    if chunksize == 0 {
        return Err(Error::InvalidArgument("chunksize must be at least 1"));
    }
    Ok(chunksize)
}

/// Builds a [`Pool`]: the number of workers, the start method, an
/// initializer, and the limits that recycle workers.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// fn set_up(base: u64) {
///     // Runs once in each worker before its first task.
///     let _ = base;
/// }
///
/// fn work(n: u64) -> u64 {
///     n + 1
/// }
///
/// # fn main() -> Result<(), mp_pool::Error> {
/// mp_context::init();
/// let pool = mp_pool::Pool::builder()
///     .processes(2)
///     .start_method("fork")
///     .initializer(set_up, 10)
///     .maxtasksperchild(100)
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(pool.apply(work, 1)?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    processes: Option<usize>,
    context: Option<Result<Context, String>>,
    initializer: Option<std::result::Result<(FnRef, Vec<u8>), postcard::Error>>,
    maxtasksperchild: Option<u64>,
    task_timeout: Option<Duration>,
    max_memory_per_child: Option<u64>,
    imap_window: Option<usize>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The defaults: one worker per usable CPU, the default context, no
    /// initializer, workers that live as long as the pool.
    pub fn new() -> Builder {
        Builder {
            processes: None,
            context: None,
            initializer: None,
            maxtasksperchild: None,
            task_timeout: None,
            max_memory_per_child: None,
            imap_window: None,
        }
    }

    /// The number of workers (CPython's `processes`; default
    /// [`mp_context::cpu_count`], the CPUs this process may use).
    pub fn processes(mut self, n: usize) -> Builder {
        self.processes = Some(n);
        self
    }

    /// The context whose start method starts the workers (CPython's
    /// `context`; default: the default context, `forkserver` unless
    /// [`mp_context::set_start_method`] chose another).
    pub fn context(mut self, ctx: Context) -> Builder {
        self.context = Some(Ok(ctx));
        self
    }

    /// The start method by name (`"fork"`, `"spawn"`, `"forkserver"`),
    /// as `context(get_context(Some(name)))`.
    pub fn start_method(mut self, name: &str) -> Builder {
        self.context = Some(mp_context::get_context(Some(name)).map_err(|_| name.to_owned()));
        self
    }

    /// Runs `f(args)` in each worker before its first task (CPython's
    /// `initializer` and `initargs`). If it panics or calls `exit` in any
    /// worker, the pool stops and reports [`Error::InitializerFailed`]
    /// instead of starting workers forever.
    pub fn initializer<I>(mut self, f: fn(I), args: I) -> Builder
    where
        I: Serialize + DeserializeOwned + 'static,
    {
        self.initializer = Some(postcard::to_allocvec(&args).map(|a| (FnRef::new(f), a)));
        self
    }

    /// Replaces each worker after it has run `n` tasks (CPython's
    /// `maxtasksperchild`; a `map` chunk counts as one task, as there).
    pub fn maxtasksperchild(mut self, n: u64) -> Builder {
        self.maxtasksperchild = Some(n);
        self
    }

    /// Fails a task that runs longer than `limit` with
    /// [`Error::TaskTimeout`] and replaces its worker (billiard's
    /// `timeout`). The limit applies to each unit a worker is sent: one
    /// `apply_async`, or one chunk of a `map`. With a limit, each worker
    /// holds one unit at a time, so that the pool knows when it started.
    pub fn task_timeout(mut self, limit: Duration) -> Builder {
        self.task_timeout = Some(limit);
        self
    }

    /// Replaces a worker, between tasks, once its resident memory is over
    /// `bytes` (billiard's `max_memory_per_child`, loky's leak guard). The
    /// worker looks after every task that took a few milliseconds, and
    /// otherwise every few milliseconds.
    pub fn max_memory_per_child(mut self, bytes: u64) -> Builder {
        self.max_memory_per_child = Some(bytes);
        self
    }

    /// How many units (chunks) one `imap` or `imap_unordered` keeps in
    /// flight, reading its input no further ahead (default: 64 per
    /// worker).
    pub fn imap_window(mut self, units: usize) -> Builder {
        self.imap_window = Some(units);
        self
    }

    /// Starts the workers and returns the pool.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes, `maxtasksperchild`,
    /// `imap_window` or task timeout, an unknown start method, or spawn and
    /// forkserver after `mp_context::set_executable` named another binary;
    /// [`Error::ArgsNotSerializable`] for initializer arguments that cannot
    /// be serialized; [`Error::WorkerStart`] if a worker cannot be started
    /// (for spawn and forkserver, `mp_context::init()` must have been
    /// called at the top of `main`).
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => return Err(Error::InvalidArgument("processes must be at least 1")),
            Some(n) => n,
            None => mp_context::cpu_count().unwrap_or(1),
        };
        if self.maxtasksperchild == Some(0) {
            return Err(Error::InvalidArgument(
                "maxtasksperchild must be at least 1",
            ));
        }
        if self.imap_window == Some(0) {
            return Err(Error::InvalidArgument("imap_window must be at least 1"));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(Error::InvalidArgument("task_timeout must be positive"));
        }
        let context = match self.context {
            None => mp_context::get_context(None).map_err(|e| Error::WorkerStart(Arc::new(e)))?,
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                return Err(Error::InvalidArgument(
                    "unknown start method: use fork, spawn or forkserver",
                ));
            }
        };
        if context.start_method() != StartMethod::Fork && children_run_another_binary() {
            return Err(Error::InvalidArgument(
                "pool workers run this program's own binary: with mp_context::set_executable \
                 naming another one, use the fork start method (workers and task functions \
                 are found by their offsets in this binary)",
            ));
        }
        let initializer = self
            .initializer
            .transpose()
            .map_err(Error::ArgsNotSerializable)?;
        let config = Config {
            processes,
            context,
            initializer,
            maxtasksperchild: self.maxtasksperchild,
            task_timeout: self.task_timeout,
            max_memory_per_child: self.max_memory_per_child,
            imap_window: self.imap_window.unwrap_or(64 * processes),
        };
        Pool::start(config)
    }
}

/// A pool of worker processes that run plain functions `fn(A) -> R` with
/// serde arguments and results, under any start method (CPython's
/// `multiprocessing.Pool`).
///
/// Submissions take `&self`, so one pool can serve many threads. Dropping
/// the pool terminates it, as leaving CPython's `with Pool() as p:` block
/// does: call [`close`](Pool::close) and [`join`](Pool::join) first to let
/// submitted tasks finish.
///
/// See the [crate docs](crate) for how it never hangs on a dead worker.
///
/// # Examples
///
/// ```
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # fn main() -> Result<(), mp_pool::Error> {
/// mp_context::init();
/// let pool = mp_pool::Pool::builder().processes(2).start_method("fork").build()?;
/// assert_eq!(pool.map(square, 0..5, None)?, [0, 1, 4, 9, 16]);
/// let pending = pool.apply_async(square, 12)?;
/// assert_eq!(pending.get(None)?, 144);
/// pool.close();
/// pool.join()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    engine: Mutex<Engine>,
}

/// Where the supervisor (the loop that sends units, files results and
/// replaces workers) runs.
///
/// A pool starts without a thread: a caller that waits anyway (a
/// synchronous `apply` or `map`, `join`, `terminate`) drives the loop on
/// its own thread while it waits, then parks it here. The first
/// submission that returns before its result is in (`apply_async`,
/// `map_async`, `imap`, anything with callbacks) moves the loop to the
/// supervisor thread for good, so that callbacks, task timeouts and
/// worker replacements never wait for a caller. A pool used only
/// synchronously, such as one started for a single `map`, never starts a
/// thread (one thread start less, and forks from a process that may have
/// just one thread).
enum Engine {
    /// No thread, and no caller drives it now.
    Parked(Supervisor),
    /// A caller's thread drives it.
    Driven,
    /// The supervisor thread serves it (until it finishes); `None` once
    /// joined.
    Thread(Option<JoinHandle<()>>),
    /// The pool has finished: nothing is left to drive.
    Finished,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Parked(_) => "Parked",
            Engine::Driven => "Driven",
            Engine::Thread(_) => "Thread",
            Engine::Finished => "Finished",
        })
    }
}

/// Starts the supervisor thread, which serves the supervisor sent on the
/// returned channel. (A failed spawn drops its closure: the supervisor
/// travels separately so that it is not lost with it.)
fn spawn_supervisor() -> std::io::Result<(JoinHandle<()>, SyncSender<Supervisor>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Supervisor>(1);
    let handle = std::thread::Builder::new()
        .name("mp-pool".into())
        .spawn(move || {
            if let Ok(sup) = rx.recv() {
                supervisor::run(sup)
            }
        })?;
    Ok((handle, tx))
}

impl Pool {
    /// A pool of `processes` workers (`None`: one per usable CPU) with the
    /// default context; [`Pool::builder`] sets the rest.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(processes: Option<usize>) -> Result<Pool> {
        let mut b = Builder::new();
        b.processes = processes;
        b.build()
    }

    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    fn start(config: Config) -> Result<Pool> {
        crate::worker::install_panic_hook();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: PoolState::Running,
                broken: None,
                pending: VecDeque::new(),
                fns: FnTable::default(),
                next_id: 0,
                workers: Vec::new(),
                wants_thread: false,
            }),
            config,
            notifier: Arc::new(Notifier::default()),
            wake: EventFd::new()?,
            sleeping: AtomicBool::new(false),
        });
        // The workers start on this thread (a start error is the
        // caller's, as from CPython's `Pool()`); no supervisor thread yet.
        let sup = supervisor::start(shared.clone())?;
        Ok(Pool {
            shared,
            engine: Mutex::new(Engine::Parked(sup)),
        })
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    /// Drives the parked supervisor on this thread (`driver` says how
    /// long) if no one else drives it; returns false if it was not parked
    /// or is promised to an async submission.
    fn drive_parked(&self, driver: Driver, enough: &dyn Fn() -> bool) -> bool {
        let mut engine = self.engine();
        if !matches!(*engine, Engine::Parked(_)) || self.shared.lock().wants_thread {
            return false;
        }
        let Engine::Parked(sup) = std::mem::replace(&mut *engine, Engine::Driven) else {
            unreachable!("matched above")
        };
        drop(engine);
        let left = supervisor::drive(sup, driver, enough);
        *self.engine() = match left {
            Some(sup) => Engine::Parked(sup),
            None => Engine::Finished,
        };
        // Other waiters may drive now (or see the pool finished).
        self.shared.notifier.notify();
        true
    }

    /// Waits until `done()`, driving the supervisor meanwhile whenever no
    /// other thread does.
    fn wait_driving(&self, done: &dyn Fn() -> bool) {
        while !done() {
            if self.drive_parked(Driver::Caller, done) {
                continue;
            }
            if matches!(*self.engine(), Engine::Thread(_) | Engine::Finished) {
                // The supervisor thread serves it (or all is over): wait
                // for results as any caller does.
                self.shared.notifier.wait_until(None, done);
                return;
            }
            // Another caller drives it, or it is about to move to its
            // thread: wait until that changes.
            self.shared
                .notifier
                .wait_until(None, || done() || self.worth_a_look());
        }
    }

    /// Whether a waiting caller should look again: the supervisor is
    /// parked and free to drive, has its thread, or has finished.
    fn worth_a_look(&self) -> bool {
        match *self.engine() {
            Engine::Parked(_) => !self.shared.lock().wants_thread,
            Engine::Driven => false,
            Engine::Thread(_) | Engine::Finished => true,
        }
    }

    /// Makes sure the supervisor thread serves the pool, before a
    /// submission that returns before its result is in.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the thread cannot be started (the pool goes on
    /// without it).
    fn ensure_thread(&self) -> Result<()> {
        loop {
            let mut engine = self.engine();
            match &*engine {
                Engine::Thread(_) | Engine::Finished => return Ok(()),
                Engine::Parked(_) => {
                    let result = match spawn_supervisor() {
                        Ok((handle, tx)) => {
                            let Engine::Parked(sup) =
                                std::mem::replace(&mut *engine, Engine::Thread(Some(handle)))
                            else {
                                unreachable!("matched above")
                            };
                            // The thread waits for it: this cannot fail.
                            let _ = tx.send(sup);
                            Ok(())
                        }
                        Err(e) => Err(Error::Io(Arc::new(e))),
                    };
                    drop(engine);
                    self.shared.lock().wants_thread = false;
                    self.shared.notifier.notify();
                    return result;
                }
                Engine::Driven => {
                    drop(engine);
                    // The driving caller hands it over at its next round
                    // (woken here), taking no more submissions meanwhile.
                    self.shared.lock().wants_thread = true;
                    self.shared.wake.signal();
                    self.shared
                        .notifier
                        .wait_until(None, || !matches!(*self.engine(), Engine::Driven));
                }
            }
        }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// What the pool is doing.
    pub fn state(&self) -> PoolState {
        self.shared.lock().status
    }

    /// The pids of the live workers (they change as workers are replaced).
    pub fn worker_pids(&self) -> Vec<i32> {
        let state = self.shared.lock();
        state
            .workers
            .iter()
            .filter_map(|p| p.pid().ok().flatten())
            .collect()
    }

    /// Runs `f(args)` in a worker and waits for its result (CPython's
    /// `apply`).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async) and [`AsyncResult::get`].
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let result = self.submit_apply(f, args, Callbacks::new(), Wait::Here)?;
        self.wait_driving(&|| result.ready());
        result.get(None)
    }

    /// Submits `f(args)` and returns at once (CPython's `apply_async`).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] after `close` or `terminate`, the error that
    /// broke the pool, or [`Error::ArgsNotSerializable`].
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async_with(f, args, Callbacks::new())
    }

    /// [`apply_async`](Pool::apply_async) with a `callback` and an
    /// `error_callback`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); no callback runs then.
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        args: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.submit_apply(f, args, callbacks, Wait::Later)
    }

    /// Submits one task; `wait` says whether the caller waits for it here.
    fn submit_apply<A, R>(
        &self,
        f: fn(A) -> R,
        args: A,
        callbacks: Callbacks<R>,
        wait: Wait,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let mut record = UnitRecord::new();
        record.push(&args).map_err(arg_error)?;
        self.submit_one::<Typed<R>>(record, callbacks, wait, |fns| fns.intern(f))
    }

    /// Submits one unit calling the function `intern` numbers; its result
    /// is decoded by `D`.
    fn submit_one<D: Decode>(
        &self,
        record: UnitRecord,
        callbacks: Callbacks<D::Out>,
        wait: Wait,
        intern: impl FnOnce(&mut FnTable) -> Result<u32>,
    ) -> Result<AsyncResult<D::Out>> {
        self.before_submitting(wait)?;
        let job = Job::new(1, 1);
        callbacks.install(&job, job::decode_single::<D>);
        let sink = Sink::Job {
            job: job.clone(),
            unit: 0,
        };
        self.shared.submit_to(intern, [(record, sink)])?;
        Ok(AsyncResult::new(
            job,
            self.shared.notifier.clone(),
            job::decode_single::<D>,
        ))
    }

    /// Runs `f` on every item and returns the results in order (CPython's
    /// `map`). The input is read whole first and cut into chunks of
    /// `chunksize` items (`None`: CPython's default, `len / (4 *
    /// processes)` rounded up), each sent to a worker as one unit.
    ///
    /// # Errors
    ///
    /// The error of the first item (by position) that failed, once every
    /// chunk has been answered (CPython's `map` does not fail fast either);
    /// the submission errors of [`apply_async`](Pool::apply_async);
    /// [`Error::InvalidArgument`] for a `chunksize` of 0.
    pub fn map<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let result = self.submit_map(f, iterable, chunksize, Callbacks::new(), Wait::Here)?;
        self.wait_driving(&|| result.ready());
        result.get(None)
    }

    /// [`map`](Pool::map) without waiting (CPython's `map_async`).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async), and
    /// [`Error::InvalidArgument`] for a `chunksize` of 0.
    pub fn map_async<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
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
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.submit_map(f, iterable, chunksize, callbacks, Wait::Later)
    }

    /// Submits a `map`; `wait` says whether the caller waits for it here.
    fn submit_map<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
        wait: Wait,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let records = self.map_records(iterable, chunksize, UnitRecord::push)?;
        self.submit_records::<Typed<R>>(records, callbacks, wait, |fns| fns.intern(f))
    }

    /// A `map`'s input, read whole and cut into chunks of `chunksize`
    /// items (`None`: CPython's default), each item added by `push`.
    fn map_records<T>(
        &self,
        iterable: impl IntoIterator<Item = T>,
        chunksize: Option<usize>,
        push: fn(&mut UnitRecord, &T) -> std::result::Result<(), ArgError>,
    ) -> Result<Vec<UnitRecord>> {
        if let Some(c) = chunksize {
            check_chunksize(c)?;
        }
        let state = self.state();
        if state != PoolState::Running {
            // Checked before the input is read, as a closed pool reads nothing.
            return Err(self.not_running(state));
        }
        let items: Vec<T> = iterable.into_iter().collect();
        let chunksize =
            chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes()));
        let mut records = Vec::with_capacity(items.len().div_ceil(chunksize.max(1)));
        for chunk in items.chunks(chunksize.max(1)) {
            let mut record = UnitRecord::with_capacity(chunk.len());
            for item in chunk {
                push(&mut record, item).map_err(arg_error)?;
            }
            records.push(record);
        }
        Ok(records)
    }

    /// Submits the units of a `map` calling the function `intern`
    /// numbers; its items are decoded by `D`.
    fn submit_records<D: Decode>(
        &self,
        records: Vec<UnitRecord>,
        callbacks: Callbacks<Vec<D::Out>>,
        wait: Wait,
        intern: impl FnOnce(&mut FnTable) -> Result<u32>,
    ) -> Result<AsyncResult<Vec<D::Out>>> {
        let job = Job::new(
            records.len(),
            records.iter().map(|r| r.count() as usize).sum(),
        );
        if records.is_empty() {
            // Nothing to send: ready now, callbacks run here (as CPython's
            // MapResult does for an empty input).
            callbacks.run(Ok(Vec::new()));
            return Ok(AsyncResult::new(
                job,
                self.shared.notifier.clone(),
                job::decode_map::<D>,
            ));
        }
        self.before_submitting(wait)?;
        callbacks.install(&job, job::decode_map::<D>);
        let units = records.into_iter().enumerate().map(|(unit, record)| {
            let sink = Sink::Job {
                job: job.clone(),
                unit,
            };
            (record, sink)
        });
        self.shared.submit_to(intern, units)?;
        Ok(AsyncResult::new(
            job,
            self.shared.notifier.clone(),
            job::decode_map::<D>,
        ))
    }

    /// Submits `f` given as an [`FnRef`] with its arguments already
    /// encoded (postcard, as [`FnRef`]'s call expects them), and returns
    /// at once: the raw form of [`apply_async`](Pool::apply_async), for a
    /// caller that holds the function and its arguments as values, such
    /// as a manager serving another process's pool calls. The result is
    /// the postcard encoding of `f`'s result.
    ///
    /// The reference is checked here first ([`FnRef::resolve`]): the
    /// workers run this process's binary.
    ///
    /// # Errors
    ///
    /// [`Error::BadFunction`] for a reference made by another build or with
    /// mismatched types; otherwise as [`apply_async`](Pool::apply_async).
    /// Arguments that do not decode as `f`'s fail the task with
    /// [`Error::ArgsNotDecodable`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_context::FnRef;
    ///
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// # fn main() -> Result<(), mp_pool::Error> {
    /// mp_context::init();
    /// let pool = mp_pool::Pool::builder().processes(1).start_method("fork").build()?;
    /// let args = postcard::to_allocvec(&7u64).unwrap();
    /// let r = pool.apply_async_raw(&FnRef::new(square), &args)?;
    /// assert_eq!(postcard::from_bytes::<u64>(&r.get(None)?).unwrap(), 49);
    /// let all = pool.map_async_raw(&FnRef::new(square), vec![args.clone(), args], None)?;
    /// assert_eq!(all.get(None)?.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn apply_async_raw(&self, f: &FnRef, args: &[u8]) -> Result<AsyncResult<Vec<u8>>> {
        let mut record = UnitRecord::new();
        record.push_encoded(args).map_err(arg_error)?;
        self.submit_one::<Raw>(record, Callbacks::new(), Wait::Later, |fns| {
            fns.intern_raw(f)
        })
    }

    /// The raw form of [`map_async`](Pool::map_async): `f` as an
    /// [`FnRef`], each item's arguments encoded (see
    /// [`apply_async_raw`](Pool::apply_async_raw)); the result is each
    /// item's encoded result, in order.
    ///
    /// # Errors
    ///
    /// As [`apply_async_raw`](Pool::apply_async_raw) and
    /// [`map_async`](Pool::map_async).
    pub fn map_async_raw(
        &self,
        f: &FnRef,
        items: impl IntoIterator<Item = Vec<u8>>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<Vec<u8>>>> {
        let records =
            self.map_records(items, chunksize, |r, item: &Vec<u8>| r.push_encoded(item))?;
        self.submit_records::<Raw>(records, Callbacks::new(), Wait::Later, |fns| {
            fns.intern_raw(f)
        })
    }

    /// The raw form of [`imap`](Pool::imap) (`ordered`) and
    /// [`imap_unordered`](Pool::imap_unordered): `f` as an [`FnRef`], each
    /// item's arguments encoded, each result the encoded bytes (see
    /// [`apply_async_raw`](Pool::apply_async_raw)). The input is read
    /// lazily, as `imap` reads it.
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap), and [`Error::BadFunction`] for a bad
    /// reference.
    pub fn imap_raw<I>(
        &self,
        f: &FnRef,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMapRaw<I::IntoIter>>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        f.resolve().map_err(|e| Error::BadFunction {
            message: e.to_string(),
        })?;
        self.check_open()?;
        self.before_submitting(Wait::Later)?;
        Ok(IMapRaw::new(
            self.shared.clone(),
            f.clone(),
            items.into_iter(),
            check_chunksize(chunksize)?,
            ordered,
        ))
    }

    /// The error for a submission in state `state`.
    fn not_running(&self, state: PoolState) -> Error {
        match state {
            PoolState::Broken => self
                .shared
                .lock()
                .broken
                .clone()
                .unwrap_or(Error::NotRunning(state)),
            other => Error::NotRunning(other),
        }
    }

    /// CPython's `starmap`: `f` takes its arguments as one tuple, which a
    /// Rust function destructures in its signature (`fn add((a, b): (u32,
    /// u32)) -> u32`), so this is [`map`](Pool::map) over tuples.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
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
    pub fn starmap_async<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, iterable, chunksize)
    }

    /// [`starmap_async`](Pool::starmap_async) with callbacks.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, iterable, chunksize, callbacks)
    }

    /// Runs `f` on every item of `iterable` and yields the results in
    /// order, as they come (CPython's `imap`). The input is read lazily,
    /// `chunksize` items a unit, with at most the pool's
    /// [`imap_window`](Builder::imap_window) units in flight: an endless
    /// iterator works (CPython reads the whole input first, gh-64192).
    ///
    /// Each item yields its own `Result`: a failed task, or a chunk whose
    /// worker was lost, gives errors at those items and the rest go on.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a `chunksize` of 0,
    /// [`Error::NotRunning`] or the error that broke the pool.
    pub fn imap<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: usize,
    ) -> Result<IMap<A, R, I::IntoIter>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.check_open()?;
        self.before_submitting(Wait::Later)?;
        Ok(IMap::new(
            self.shared.clone(),
            f,
            iterable.into_iter(),
            check_chunksize(chunksize)?,
        ))
    }

    /// [`imap`](Pool::imap), yielding results in the order they finish
    /// (CPython's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<A, R, I>(
        &self,
        f: fn(A) -> R,
        iterable: I,
        chunksize: usize,
    ) -> Result<IMapUnordered<A, R, I::IntoIter>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.check_open()?;
        self.before_submitting(Wait::Later)?;
        Ok(IMapUnordered::new(
            self.shared.clone(),
            f,
            iterable.into_iter(),
            check_chunksize(chunksize)?,
        ))
    }

    /// Before units are queued: a submission whose caller does not wait
    /// for it here needs the supervisor thread (for a pool that is still
    /// running: a closed one refuses the units anyway).
    fn before_submitting(&self, wait: Wait) -> Result<()> {
        if wait == Wait::Later && self.state() == PoolState::Running {
            self.ensure_thread()?;
        }
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        match self.state() {
            PoolState::Running => Ok(()),
            other => Err(self.not_running(other)),
        }
    }

    /// Takes no new tasks; the workers exit once every submitted task is
    /// done (CPython's `close`). Harmless on a pool that is not running.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        if state.status == PoolState::Running {
            state.status = PoolState::Closed;
        }
        drop(state);
        self.shared.wake();
        // Without a thread, one round that does not wait: idle workers are
        // told to exit now, as CPython's would be.
        self.drive_parked(Driver::CallerOnce, &|| true);
    }

    /// Kills the workers at once and fails every unfinished task with
    /// [`Error::Terminated`] (CPython's `terminate`, which leaves such
    /// results waiting forever). Returns once the workers are gone, and
    /// promptly: the workers get `SIGKILL`, from this thread. Harmless to
    /// call again.
    pub fn terminate(&self) {
        let workers = {
            let mut state = self.shared.lock();
            if state.status != PoolState::Terminated {
                state.status = PoolState::Terminated;
            }
            state.workers.clone()
        };
        for p in &workers {
            let _ = p.kill();
        }
        if !matches!(*self.engine(), Engine::Finished) {
            self.shared.wake.signal();
        }
        self.join_supervisor();
    }

    /// Waits for the workers to exit (CPython's `join`): after
    /// [`close`](Pool::close), once every task is done; after
    /// [`terminate`](Pool::terminate), at once.
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] if neither was called.
    pub fn join(&self) -> Result<()> {
        if self.state() == PoolState::Running {
            return Err(Error::StillRunning);
        }
        self.join_supervisor();
        Ok(())
    }

    /// Waits until the supervisor has finished, driving it to the end if
    /// it has no thread.
    fn join_supervisor(&self) {
        loop {
            if self.drive_parked(Driver::Caller, &|| false) {
                continue;
            }
            let mut engine = self.engine();
            match &mut *engine {
                Engine::Finished => return,
                Engine::Thread(handle) => {
                    if handle
                        .as_ref()
                        .is_some_and(|h| h.thread().id() == std::thread::current().id())
                    {
                        // Called from a callback, on the supervisor thread
                        // itself: it finishes once the callback returns.
                        return;
                    }
                    match handle.take() {
                        Some(handle) => {
                            drop(engine);
                            // The supervisor catches its own panics (failing
                            // every task), so a join error has nothing left
                            // to report.
                            let _ = handle.join();
                            *self.engine() = Engine::Finished;
                            self.shared.notifier.notify();
                            return;
                        }
                        None => {
                            // Another thread joins it: wait for that.
                            drop(engine);
                            self.shared
                                .notifier
                                .wait_until(None, || matches!(*self.engine(), Engine::Finished));
                            return;
                        }
                    }
                }
                Engine::Parked(_) | Engine::Driven => {
                    drop(engine);
                    self.shared
                        .notifier
                        .wait_until(None, || self.worth_a_look());
                }
            }
        }
    }
}

/// Whether the caller of a submission waits for its result on the spot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A synchronous call (`apply`, `map`): its thread may drive the
    /// supervisor while it waits.
    Here,
    /// An async one: the supervisor thread must serve it.
    Later,
}

/// Terminates the pool, as leaving CPython's `with` block does.
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
        assert_eq!(default_chunksize(10, 0), 3);
    }

    fn id(n: u32) -> u32 {
        n
    }
    fn same_id(n: i32) -> i32 {
        n
    }

    #[test]
    fn functions_are_numbered_by_address_and_type() {
        let mut t = FnTable::default();
        assert_eq!(t.intern(id).unwrap(), 0);
        assert_eq!(t.intern(same_id).unwrap(), 1);
        assert_eq!(t.intern(id).unwrap(), 0);
        assert_eq!(t.refs.len(), 2);
    }

    #[test]
    fn bad_builder_arguments_are_errors() {
        let e = Pool::builder().processes(0).build().unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let e = Pool::builder().maxtasksperchild(0).build().unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let e = Pool::builder().start_method("thread").build().unwrap_err();
        assert!(format!("{e}").contains("unknown start method"), "{e}");
    }
}
