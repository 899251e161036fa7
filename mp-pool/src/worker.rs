//! The worker process: runs the initializer, then the units it is sent, in
//! order, answering each with its results (CPython's `pool.worker`).
//!
//! Results are batched in an [`Outbox`]: they are sent when the worker has
//! nothing more to read, when a unit took long, or once the oldest has
//! waited [`FLUSH_AFTER`], so that trivial tasks cost a fraction of a
//! system call each and a slow one is answered as soon as it is done. A
//! small flusher thread sends what has waited [`FLUSH_LATEST`] while the
//! worker is inside a unit, so that a slow task never holds back the
//! results of the quick ones before it.
//!
//! Before it starts a unit the worker counts it in its slot of shared
//! memory ([`STARTED`]). When a worker dies, the pool reads that count:
//! units counted but not answered were running (or their results were
//! still in this process) and fail with `WorkerLost`; the others never
//! started and go to another worker.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mp_context::{CallError, FnRef, ResolvedFn};
use mp_heap::Shared;
use rustix::event::{PollFd, PollFlags};
use serde::{Deserialize, Serialize};

use crate::sys::{self, FrameReader, ResidentMemory};
use crate::wire::{self, ToWorker};

/// Slot index: units started so far.
pub(crate) const STARTED: usize = 0;
/// Slot index: 1 once the initializer has run.
pub(crate) const READY: usize = 1;
/// A worker's counts in shared memory ([`STARTED`], [`READY`]): clones
/// share one block, so a fork worker's costs no mapping of its own.
pub(crate) type Slot = Shared<[AtomicU64; 2]>;

/// A fresh slot of zeros.
pub(crate) fn new_slot() -> Result<Slot, mp_heap::HeapError> {
    Shared::new([AtomicU64::new(0), AtomicU64::new(0)])
}

/// At the end of a unit, pending results that have waited this long (or
/// whose unit took this long) are sent.
const FLUSH_AFTER: Duration = Duration::from_micros(100);

/// The flusher thread sends results that have waited this long while the
/// worker is still inside a unit.
const FLUSH_LATEST: Duration = Duration::from_millis(1);

/// Pending results are sent once they hold this many bytes.
const FLUSH_BYTES: usize = 256 * 1024;

/// How often resident memory is looked at, at most, when a limit is set
/// (a look costs a `pread` of `/proc/self/statm`, a few microseconds);
/// always after a unit that took this long.
const MEMORY_CHECK_EVERY: Duration = Duration::from_millis(2);

/// What a worker process is started with.
///
/// The pipes are plain fds in CPython's framing, not `mp_conn`
/// `Connection`s: the worker is their only reader and writer, so it reads
/// ahead without the bookkeeping a connection keeps for copies of itself
/// (and the pool makes them without probing each fd's kind).
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    /// Batches of units from the pool (the read end).
    #[serde(with = "mp_reduction::owned_fd")]
    pub(crate) tasks: OwnedFd,
    /// Batches of results to the pool (the write end).
    #[serde(with = "mp_reduction::owned_fd")]
    pub(crate) results: OwnedFd,
    /// [`STARTED`] and [`READY`], shared with the pool.
    pub(crate) slot: Slot,
    pub(crate) initializer: Option<(FnRef, Vec<u8>)>,
    pub(crate) maxtasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    /// Send "ready" once the initializer has run (the pool has a task
    /// timeout, which counts from then).
    pub(crate) report_ready: bool,
    /// Under fork: a pidfd of the pool process, opened there once per
    /// pool and inherited. Forked workers inherit copies of each other's
    /// pipe ends, so end of file on the task pipe does not tell that the
    /// pool is gone; the worker watches the pool process itself whenever
    /// it waits for work. (Never serialized: spawn and forkserver workers
    /// see end of file.)
    #[serde(skip)]
    pub(crate) watch_pool: Option<Arc<OwnedFd>>,
}

thread_local! {
    /// Whether a task is running (the panic hook keeps its message).
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// The location and message of the task's panic, for its error.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the panic hook once per process: a task's panic becomes its
/// error (with its location) instead of text on the worker's stderr, as
/// CPython sends a task's exception to the caller; other panics go to the
/// previous hook. The pool's process installs it too (where it only ever
/// passes panics on), so that a forked worker finds it in place and does
/// not write to memory it shares with the pool (each page written is
/// copied).
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a panic whose payload is not a string");
                let text = format!("{location}\0{message}");
                PANIC.with(|p| *p.borrow_mut() = Some(text));
            } else {
                previous(info)
            }
        }));
    });
}

/// Calls `f` on one item's arguments, appending the result to `out`.
/// A failure gives its status and message; `Err(Ok(code))` is `exit(code)`
/// inside the task.
fn call_task(
    f: &ResolvedFn,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Result<i32, (u8, String)>> {
    IN_TASK.with(|t| t.set(true));
    let result = f.call(args, out);
    IN_TASK.with(|t| t.set(false));
    // Only after a panic: the first use of `PANIC` registers its
    // destructor, which a worker that never panics need not pay for.
    let hooked = matches!(result, Err(CallError::Panicked(_)))
        .then(|| PANIC.with(|p| p.borrow_mut().take()))
        .flatten();
    match result {
        Ok(()) => Ok(()),
        Err(CallError::Exit(code)) => Err(Ok(code)),
        Err(CallError::Panicked(message)) => Err(Err((wire::PANICKED, hooked.unwrap_or(message)))),
        Err(e @ CallError::Args { .. }) => Err(Err((wire::ARGS_UNDECODABLE, format!("{e:?}")))),
        Err(e @ CallError::Result { .. }) => {
            Err(Err((wire::RESULT_UNSERIALIZABLE, format!("{e:?}"))))
        }
        Err(e) => Err(Err((wire::PANICKED, format!("{e:?}")))),
    }
}

/// Results waiting to be sent, shared by the worker's thread and its
/// flusher thread.
struct Outbox {
    pending: Mutex<Pending>,
    wake: Condvar,
}

struct Pending {
    /// Records not sent yet (one frame's payload).
    buf: Vec<u8>,
    /// When the oldest of them was added.
    since: Option<Instant>,
    /// The result pipe's write end (blocking).
    results: OwnedFd,
    /// Sending failed: the pool is gone.
    broken: bool,
    /// The flusher waits without a deadline (and needs a wake-up).
    idle: bool,
    stop: bool,
}

impl Pending {
    /// Sends what is pending; false once the pool is gone.
    fn flush(&mut self) -> bool {
        self.since = None;
        if !self.buf.is_empty() && !self.broken {
            self.broken = sys::write_frame(self.results.as_fd(), &self.buf).is_err();
        }
        self.buf.clear();
        !self.broken
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        crate::job::lock(&self.pending)
    }

    /// Adds records; sends everything if `urgent`, if the oldest pending
    /// record has waited [`FLUSH_AFTER`], or if it is a lot. Says whether
    /// records are left pending; `Err` once the pool is gone.
    fn add(&self, records: &mut Vec<u8>, now: Instant, urgent: bool) -> Result<bool, Gone> {
        let mut p = self.lock();
        if p.buf.is_empty() {
            // Nothing pending: take the records over instead of copying
            // them (a map chunk's results are megabytes).
            std::mem::swap(&mut p.buf, records);
        } else {
            p.buf.extend_from_slice(records);
        }
        records.clear();
        let since = *p.since.get_or_insert(now);
        if urgent || now - since >= FLUSH_AFTER || p.buf.len() >= FLUSH_BYTES {
            return if p.flush() { Ok(false) } else { Err(Gone) };
        }
        if p.idle {
            self.wake.notify_one();
        }
        if p.broken { Err(Gone) } else { Ok(true) }
    }

    /// Sends everything now.
    fn flush(&self) -> bool {
        self.lock().flush()
    }

    /// The flusher thread: sends records that waited [`FLUSH_LATEST`].
    fn run_flusher(&self) {
        let mut p = self.lock();
        while !p.stop {
            match p.since {
                None => {
                    p.idle = true;
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                    p.idle = false;
                }
                Some(since) => {
                    let due = since + FLUSH_LATEST;
                    let now = Instant::now();
                    if now >= due {
                        p.flush();
                    } else {
                        p = self
                            .wake
                            .wait_timeout(p, due - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
    }

    fn stop_flusher(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }
}

/// The pool stopped reading: the worker should exit.
struct Gone;

/// Waits until `tasks` has something to read; false if the pool process
/// (`pool`, a pidfd) ended first.
fn wait_for_work(tasks: &FrameReader, pool: &OwnedFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(tasks, PollFlags::IN),
            PollFd::new(pool, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) if !fds[1].revents().is_empty() => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            // Cannot watch: read as if there were no pool to watch.
            Err(_) => return true,
        }
    }
}

/// The worker's state between units.
struct Worker {
    tasks: FrameReader,
    /// Under fork: a pidfd of the pool process.
    pool: Option<Arc<OwnedFd>>,
    slot: Slot,
    /// Functions by number: resolved, or why not.
    fns: Vec<Option<Result<ResolvedFn, String>>>,
    outbox: Arc<Outbox>,
    /// The flusher thread, started the first time a unit begins while
    /// results are pending (a pool that runs one task never needs it).
    flusher: Option<std::thread::JoinHandle<()>>,
    /// Results were left pending by the last unit.
    pending: bool,
    /// Whether the pool waits for "ready" (it has a task timeout).
    report_ready: bool,
    /// The records of the unit being run.
    out: Vec<u8>,
    done: u64,
    maxtasks: Option<u64>,
    memory: Option<(u64, ResidentMemory)>,
    last_memory_check: Instant,
}

/// Why the worker loop stopped.
enum Stop {
    /// Asked to, retiring, or the pool is gone: exit normally.
    Normal,
    /// `exit(code)` inside a task.
    Exit(i32),
}

/// The entry point of a worker process (a `Process` target).
pub(crate) fn main(args: WorkerArgs) {
    install_panic_hook();
    let memory = args
        .max_memory
        .and_then(|limit| ResidentMemory::open().ok().map(|m| (limit, m)));
    let outbox = Arc::new(Outbox {
        pending: Mutex::new(Pending {
            buf: Vec::new(),
            since: None,
            results: args.results,
            broken: false,
            idle: false,
            stop: false,
        }),
        wake: Condvar::new(),
    });
    let mut worker = Worker {
        tasks: FrameReader::new(args.tasks),
        pool: args.watch_pool,
        slot: args.slot,
        fns: Vec::new(),
        outbox: outbox.clone(),
        flusher: None,
        pending: false,
        report_ready: args.report_ready,
        out: Vec::new(),
        done: 0,
        maxtasks: args.maxtasks,
        memory,
        last_memory_check: Instant::now(),
    };
    let stop = match worker.initialize(args.initializer) {
        Ok(()) => worker.serve(),
        Err(stop) => stop,
    };
    outbox.flush();
    if let Some(flusher) = worker.flusher.take() {
        outbox.stop_flusher();
        let _ = flusher.join();
    }
    // The pipes close as the rest drops (the pool sees end of file before
    // the exit); the slot (a mapping of its own under spawn and
    // forkserver) and the pool's pidfd go with the process, without a
    // system call each.
    std::mem::forget(worker.slot);
    std::mem::forget(worker.pool);
    if let Stop::Exit(code) = stop {
        mp_context::exit(code)
    }
}

impl Worker {
    /// Runs the initializer; on failure reports it and says how to stop.
    fn initialize(&mut self, init: Option<(FnRef, Vec<u8>)>) -> Result<(), Stop> {
        if let Some((f, args)) = init {
            let failure = match f.resolve() {
                Err(e) => Some((format!("{e:?}"), Stop::Normal)),
                Ok(f) => match call_task(&f, &args, &mut Vec::new()) {
                    Ok(()) => None,
                    Err(Ok(code)) => Some((
                        format!("the initializer called exit({code})"),
                        Stop::Exit(code),
                    )),
                    Err(Err((status, message))) => Some((describe(status, &message), Stop::Normal)),
                },
            };
            if let Some((message, stop)) = failure {
                let mut out = Vec::new();
                wire::init_failed(&mut out, &message);
                let _ = self.outbox.add(&mut out, Instant::now(), true);
                return Err(stop);
            }
        }
        self.slot[READY].store(1, Ordering::Release);
        if self.report_ready {
            let mut out = Vec::new();
            wire::ready(&mut out);
            let _ = self.outbox.add(&mut out, Instant::now(), true);
        }
        Ok(())
    }

    /// Reads batches and runs their units until told to stop.
    fn serve(&mut self) -> Stop {
        let mut batch = Vec::new();
        loop {
            // About to block: send what is pending first.
            if !self.tasks.has_buffered() {
                if !self.outbox.flush() {
                    return Stop::Normal;
                }
                self.pending = false;
                if let Some(pool) = &self.pool
                    && !wait_for_work(&self.tasks, pool)
                {
                    return Stop::Normal;
                }
            }
            if !matches!(self.tasks.recv(&mut batch), Ok(true)) {
                // End of file (the pool is gone), a broken pipe or a bad
                // frame.
                return Stop::Normal;
            }
            let mut stop = None;
            let parsed = wire::parse_to_worker(&batch, |record| match record {
                ToWorker::Define { fn_id, fn_ref } => {
                    self.define(fn_id, fn_ref);
                    true
                }
                ToWorker::Unit { id, fn_id, args } => match self.run_unit(id, fn_id, args) {
                    Ok(()) => true,
                    Err(s) => {
                        stop = Some(s);
                        false
                    }
                },
                ToWorker::Quit => {
                    stop = Some(Stop::Normal);
                    false
                }
            });
            if let Some(stop) = stop {
                return stop;
            }
            if let Err(e) = parsed {
                eprintln!("mp-pool worker: {e}");
                return Stop::Exit(1);
            }
        }
    }

    fn define(&mut self, fn_id: u32, fn_ref: &[u8]) {
        let resolved = match postcard::from_bytes::<FnRef>(fn_ref) {
            Ok(f) => f.resolve().map_err(|e| format!("{e:?}")),
            Err(e) => Err(format!("could not decode the function reference: {e}")),
        };
        let at = fn_id as usize;
        if self.fns.len() <= at {
            self.fns.resize_with(at + 1, || None);
        }
        self.fns[at] = Some(resolved);
    }

    /// Runs one unit and files its results; `Err` when the worker must
    /// stop afterwards.
    fn run_unit(&mut self, id: u64, fn_id: u32, args: wire::Args<'_>) -> Result<(), Stop> {
        self.slot[STARTED].fetch_add(1, Ordering::Release);
        if self.pending && self.flusher.is_none() {
            // Without a thread to be had, results still go out at the end
            // of every unit that took long and before the worker waits.
            let outbox = self.outbox.clone();
            self.flusher = std::thread::Builder::new()
                .name("mp-pool-flusher".into())
                .spawn(move || outbox.run_flusher())
                .ok();
        }
        let t0 = Instant::now();
        self.out.clear();
        wire::begin_results(&mut self.out, id, args.count());
        let f = match self.fns.get(fn_id as usize) {
            Some(Some(f)) => f.clone(),
            _ => Err(format!("function {fn_id} was never defined")),
        };
        for item in args.iter() {
            match &f {
                Ok(f) => {
                    let mut exit = None;
                    wire::push_result(&mut self.out, |out| {
                        call_task(f, item, out).map_err(|e| match e {
                            Ok(code) => {
                                exit = Some(code);
                                (wire::PANICKED, String::new())
                            }
                            Err(failure) => failure,
                        })
                    });
                    if let Some(code) = exit {
                        // The unit stays unanswered: the pool sees a
                        // started unit and the exit code (WorkerLost).
                        return Err(Stop::Exit(code));
                    }
                }
                Err(message) => wire::push_failure(&mut self.out, wire::BAD_FUNCTION, message),
            }
        }
        self.done += 1;
        let now = Instant::now();
        let took = now - t0;
        match self.outbox.add(&mut self.out, now, took >= FLUSH_AFTER) {
            Ok(pending) => self.pending = pending,
            Err(Gone) => return Err(Stop::Normal),
        }
        if self.maxtasks.is_some_and(|max| self.done >= max) {
            return Err(Stop::Normal);
        }
        if self.over_memory(now, took) {
            return Err(Stop::Normal);
        }
        Ok(())
    }

    /// Whether resident memory is past the limit (looked at now and then).
    fn over_memory(&mut self, now: Instant, took: Duration) -> bool {
        let Some((limit, memory)) = &self.memory else {
            return false;
        };
        if took < MEMORY_CHECK_EVERY && now - self.last_memory_check < MEMORY_CHECK_EVERY {
            return false;
        }
        self.last_memory_check = now;
        memory.bytes().is_ok_and(|rss| rss > *limit)
    }
}

/// A failure's message for the initializer error.
fn describe(status: u8, message: &str) -> String {
    match status {
        wire::PANICKED => match message.split_once('\0') {
            Some((at, m)) if !at.is_empty() => format!("the initializer panicked at {at}: {m}"),
            Some((_, m)) => format!("the initializer panicked: {m}"),
            None => format!("the initializer panicked: {message}"),
        },
        _ => message.to_owned(),
    }
}
