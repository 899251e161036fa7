//! The supervisor: the loop that starts a pool's workers, sends them
//! units, files their results and replaces the ones that end (CPython's
//! three handler threads in one). It runs in rounds ([`drive`]): on the
//! thread of a caller that waits anyway (a synchronous call, `join`,
//! `terminate`), or, from the first submission that returns before its
//! result is in, on the pool's supervisor thread until the pool finishes
//! (see `Engine` in `pool.rs`).
//!
//! It owns every worker's pipes and never blocks on one: its ends are
//! nonblocking, results are framed with `mp-conn`'s sans-IO
//! [`FrameDecoder`], and one level-triggered epoll set watches the result
//! pipes, the workers' sentinels, pipes with bytes left to write, and an
//! eventfd that submitters and `close`/`terminate` use to wake it.
//!
//! Each worker holds a queue of the units sent to it, answered in order.
//! How many it may hold adapts to how long its units take (enough work for
//! [`QUEUED_WORK`], between 1 and [`MAX_DEPTH`] units): trivial tasks
//! travel by the hundred per system call, slow ones one or two at a time
//! so that no worker sits idle while another holds a queue.
//!
//! When a worker ends, its results are drained, then its shared-memory
//! slot says how many units it had started: those it did not answer fail
//! with `WorkerLost` (or `TaskTimeout`, when the pool killed it for
//! running past the limit), and the rest go back to the front of the
//! queue for other workers. A worker that ends before its initializer has
//! finished breaks the pool instead of being replaced.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mp_conn::FrameDecoder;
use mp_context::{Process, Sentinel, StartMethod};

use crate::error::{Error, PoolState, Result, describe_exit};
use crate::job::{Items, Outcome, Unit};
use crate::pool::Shared;
use crate::sys::{self, Epoll};
use crate::wire::{self, FromWorker, WireError};
use crate::worker::{self, READY, STARTED, Slot, WorkerArgs};

/// The epoll key of the wake-up eventfd.
const WAKE_KEY: u64 = u64::MAX;
/// Key kinds: a worker's result pipe, its sentinel, its task pipe (when
/// there are bytes left to write).
const RESULTS: u64 = 0;
const EXITED: u64 = 1;
const WRITABLE: u64 = 2;

fn key(serial: u64, kind: u64) -> u64 {
    serial << 2 | kind
}

/// How much work (by the measured time per unit) a worker is given ahead:
/// enough to cover a round trip to the supervisor on a loaded machine.
const QUEUED_WORK: Duration = Duration::from_millis(2);

/// The most units one worker holds.
const MAX_DEPTH: usize = 256;

/// Units shorter than this are sent at least two at a time, so that the
/// worker finds the next one when it finishes; longer ones one at a time,
/// so that a free worker is never waiting while another holds a queue.
const LONG_UNIT: Duration = Duration::from_millis(20);

/// The most bytes of unanswered units one worker holds (a single larger
/// unit is still sent, alone).
const MAX_INFLIGHT_BYTES: usize = 8 << 20;

/// How long a worker whose pipes closed may take to exit before it is
/// killed.
const EOF_GRACE: Duration = Duration::from_secs(2);

/// How long a worker told to quit may take to exit before it is killed
/// (its result pipe is no longer watched then: nothing more is due on it).
const QUIT_GRACE: Duration = Duration::from_secs(10);

/// How much one read of a result pipe takes (a megabyte frame takes 64
/// reads). Never cleared: only the pages the bytes land on are written.
const READ_BUF: usize = 16 * 1024;

/// How long to wait for a killed or exiting worker to be reaped.
const REAP_PATIENCE: Duration = Duration::from_secs(30);

/// A unit a worker holds, and when it was sent.
struct InFlight {
    unit: Unit,
    sent_at: Instant,
}

/// One worker process as the supervisor sees it.
struct Worker {
    serial: u64,
    pid: i32,
    process: Process,
    sentinel: Sentinel,
    /// Our end of the task pipe (nonblocking).
    tasks: OwnedFd,
    /// Our end of the result pipe (nonblocking).
    results: OwnedFd,
    slot: Slot,
    decoder: FrameDecoder,
    /// Bytes to write, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// Where the header of the batch being built sits in `out`.
    batch_at: Option<usize>,
    /// Whether the task pipe is in the epoll set (bytes left to write).
    watching_write: bool,
    /// Whether the result pipe is in the epoll set.
    watching_results: bool,
    /// End of file (or an error) on the result pipe: nothing more to read.
    results_done: bool,
    inflight: VecDeque<InFlight>,
    inflight_bytes: usize,
    /// Which functions it has been sent, by number.
    defined: Vec<bool>,
    /// Units sent, and answered.
    sent: u64,
    answered: u64,
    depth: usize,
    /// Measured time per unit, in seconds (0: not yet).
    per_unit: f64,
    last_answer: Instant,
    ready_at: Option<Instant>,
    init_error: Option<String>,
    /// When its pipes reached end of file (or broke).
    eof_at: Option<Instant>,
    /// The sentinel is ready: it has exited.
    exited: bool,
    /// When it was told to quit.
    quit_at: Option<Instant>,
    /// Killed by the supervisor for running past the task timeout.
    timed_out: bool,
    killed: bool,
}

impl Worker {
    /// How many more units it may be sent now.
    fn capacity(&self, shared: &Shared) -> usize {
        if self.exited || self.eof_at.is_some() || self.quit_at.is_some() || self.killed {
            return 0;
        }
        let config = &shared.config;
        let depth = if config.task_timeout.is_some() {
            1
        } else {
            self.depth
        };
        let mut capacity = depth.saturating_sub(self.inflight.len());
        if let Some(max) = config.maxtasksperchild {
            capacity = capacity.min(max.saturating_sub(self.sent) as usize);
        }
        if !self.inflight.is_empty() && self.inflight_bytes >= MAX_INFLIGHT_BYTES {
            capacity = 0;
        }
        capacity
    }

    /// Adds `unit` to the batch being built (defining its function first
    /// if this worker does not know it).
    fn assign(&mut self, unit: Unit, fn_refs: &[Arc<[u8]>], now: Instant) {
        if self.batch_at.is_none() {
            self.batch_at = Some(self.out.len());
            self.out.extend_from_slice(&[0; mp_conn::HEADER_LEN]);
        }
        let f = unit.fn_id as usize;
        if !self.defined.get(f).copied().unwrap_or(false) {
            wire::define(&mut self.out, unit.fn_id, &fn_refs[f]);
            if self.defined.len() <= f {
                self.defined.resize(f + 1, false);
            }
            self.defined[f] = true;
        }
        self.out.extend_from_slice(&unit.record);
        self.inflight_bytes += unit.record.len();
        self.sent += 1;
        self.inflight.push_back(InFlight { unit, sent_at: now });
    }

    /// Writes the header of the batch being built.
    fn close_batch(&mut self) {
        let Some(at) = self.batch_at.take() else {
            return;
        };
        let len = self.out.len() - at - mp_conn::HEADER_LEN;
        let mut buf = [0; 12];
        let header = mp_conn::encode_header(len as u64, &mut buf);
        if header.len() == mp_conn::HEADER_LEN {
            self.out[at..at + mp_conn::HEADER_LEN].copy_from_slice(header);
        } else {
            // Over 2 GiB: the long header, 8 bytes longer (rare enough
            // that moving the payload does not matter).
            let header = header.to_vec();
            self.out.splice(at..at + mp_conn::HEADER_LEN, header);
        }
    }

    /// Queues the request to exit (once). Nothing more is due on the
    /// result pipe, so it is no longer watched (its end of file would only
    /// wake the loop before the exit does; what is left on it is read when
    /// the worker is reaped), and the worker gets [`QUIT_GRACE`] to exit.
    fn quit(&mut self, epoll: &Epoll) {
        if self.quit_at.is_some() {
            return;
        }
        self.quit_at = Some(Instant::now());
        let mut buf = [0; 12];
        self.out
            .extend_from_slice(mp_conn::encode_header(1, &mut buf));
        wire::quit(&mut self.out);
        self.unwatch_results(epoll);
    }

    fn unwatch_results(&mut self, epoll: &Epoll) {
        if self.watching_results {
            epoll.remove(self.results.as_fd());
            self.watching_results = false;
        }
    }

    /// When it must have exited by, if it is on its way out.
    fn exit_deadline(&self) -> Option<Instant> {
        let after_eof = self.eof_at.map(|t| t + EOF_GRACE);
        let after_quit = self.quit_at.map(|t| t + QUIT_GRACE);
        after_eof.into_iter().chain(after_quit).min()
    }

    /// Writes what it can without blocking; watches the pipe for room if
    /// bytes are left.
    fn flush(&mut self, epoll: &Epoll) {
        while self.out_at < self.out.len() {
            match sys::write_nonblocking(self.tasks.as_fd(), &self.out[self.out_at..]) {
                Ok(Some(n)) => self.out_at += n,
                Ok(None) => {
                    if !self.watching_write {
                        self.watching_write = epoll
                            .add(self.tasks.as_fd(), key(self.serial, WRITABLE), true)
                            .is_ok();
                    }
                    return;
                }
                Err(_) => {
                    // The worker closed its end (it is exiting): what it
                    // did not read goes elsewhere once it has exited.
                    self.eof_at.get_or_insert_with(Instant::now);
                    self.out.clear();
                    self.out_at = 0;
                    break;
                }
            }
        }
        self.out.clear();
        self.out_at = 0;
        if self.watching_write {
            epoll.remove(self.tasks.as_fd());
            self.watching_write = false;
        }
    }

    /// Reads what the result pipe holds and files it; stops the worker if
    /// it sends something that is not the protocol.
    fn read_results(&mut self, buf: &mut Vec<u8>, epoll: &Epoll) {
        while !self.results_done {
            match sys::read_nonblocking(self.results.as_fd(), buf) {
                Ok(Some(0)) | Err(_) => {
                    self.results_done = true;
                    self.eof_at.get_or_insert_with(Instant::now);
                    self.unwatch_results(epoll);
                }
                Ok(Some(_)) => {
                    if let Err(e) = self.feed(buf) {
                        eprintln!("mp-pool: worker process {}: {e}; killing it", self.pid);
                        self.kill();
                        self.results_done = true;
                        self.eof_at.get_or_insert_with(Instant::now);
                        self.unwatch_results(epoll);
                    }
                }
                Ok(None) => return,
            }
        }
    }

    fn feed(&mut self, mut input: &[u8]) -> std::result::Result<(), String> {
        while !input.is_empty() {
            let (used, frame) = self.decoder.feed(input).map_err(|e| format!("{e}"))?;
            input = &input[used..];
            if let Some(frame) = frame {
                self.file(frame).map_err(|e| format!("{e}"))?;
            }
        }
        Ok(())
    }

    /// Files the records of one frame.
    fn file(&mut self, frame: Vec<u8>) -> std::result::Result<(), WireError> {
        let now = Instant::now();
        let frame = Arc::new(frame);
        let mut answered = 0u64;
        let mut first_sent = None;
        let mut bad = None;
        wire::parse_from_worker(&frame, |record| {
            if bad.is_some() {
                return;
            }
            match record {
                FromWorker::Ready => self.ready_at = Some(now),
                FromWorker::InitFailed(message) => {
                    self.init_error = Some(String::from_utf8_lossy(message).into_owned());
                }
                FromWorker::Results { id, results } => {
                    let expected = self
                        .inflight
                        .front()
                        .is_some_and(|f| f.unit.id == id && f.unit.items == results.count());
                    let Some(f) = self.inflight.pop_front().filter(|_| expected) else {
                        bad = Some(WireError("results of a unit the worker was not sent"));
                        return;
                    };
                    self.inflight_bytes -= f.unit.record.len();
                    first_sent.get_or_insert(f.sent_at);
                    answered += 1;
                    let items = Items {
                        frame: frame.clone(),
                        range: results.range_in(&frame),
                        count: results.count(),
                    };
                    f.unit.sink.complete(Outcome::Done(items));
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        if answered > 0 {
            self.answered += answered;
            self.learn(answered, first_sent.unwrap_or(now), now);
        }
        Ok(())
    }

    /// Updates the time per unit and the depth from a batch of answers.
    fn learn(&mut self, answered: u64, first_sent: Instant, now: Instant) {
        let start = first_sent.max(self.last_answer);
        let per = now.saturating_duration_since(start).as_secs_f64() / answered as f64;
        self.per_unit = if self.per_unit > 0.0 {
            0.75 * self.per_unit + 0.25 * per
        } else {
            per
        };
        self.last_answer = now;
        let min = if self.per_unit < LONG_UNIT.as_secs_f64() {
            2
        } else {
            1
        };
        let depth = (QUEUED_WORK.as_secs_f64() / self.per_unit.max(1e-9)).ceil();
        self.depth = (depth.min(MAX_DEPTH as f64) as usize).clamp(min, MAX_DEPTH);
    }

    /// When the unit it runs passes the task timeout (units count from
    /// when the worker is ready).
    fn deadline(&self, limit: Option<Duration>) -> Option<Instant> {
        let limit = limit?;
        let head = self.inflight.front()?;
        let ready = self.ready_at?;
        head.sent_at.max(ready).checked_add(limit)
    }

    fn kill(&mut self) {
        self.killed = true;
        let _ = self.process.kill();
    }
}

/// The supervisor's state.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    epoll: Epoll,
    workers: Vec<Worker>,
    /// Units taken from the submitters, not yet sent.
    queue: VecDeque<Unit>,
    /// Function references by number (a copy of the shared table).
    fn_refs: Vec<Arc<[u8]>>,
    status: PoolState,
    next_serial: u64,
    /// Workers started so far (their names count up).
    started: u64,
    rotate: usize,
    read_buf: Vec<u8>,
    ready: Vec<u64>,
    /// Under fork: a pidfd of this process, which the workers inherit and
    /// watch (see [`WorkerArgs::watch_pool`]).
    pool_pidfd: Option<Arc<OwnedFd>>,
}

/// Starts a pool's workers, on the calling thread (as CPython's `Pool()`
/// does: a start error is the caller's), and returns the supervisor that
/// will serve them.
pub(crate) fn start(shared: Arc<Shared>) -> Result<Supervisor> {
    let mut sup = Supervisor::new(shared.clone())?;
    for _ in 0..shared.config.processes {
        if let Err(e) = sup.start_worker() {
            shared.lock().status = PoolState::Terminated;
            sup.shutdown(Error::Terminated);
            return Err(e);
        }
    }
    Ok(sup)
}

/// What one round of the supervisor's loop ended with.
enum Step {
    /// Go on.
    Continue,
    /// The pool has finished: every worker is gone, every unit answered
    /// or failed.
    Finished,
    /// A caller drives it and an async submission waits to move it to the
    /// supervisor thread: nothing was taken from the submitters.
    HandOver,
}

/// Who drives the supervisor, and how long.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// The supervisor thread: until the pool has finished.
    Thread,
    /// A caller's thread, waiting for its own synchronous call, `join` or
    /// `terminate`: the rounds block as the thread's would.
    Caller,
    /// A caller's thread that must not wait (`close`): one round that
    /// sends what there is to send and does not wait.
    CallerOnce,
}

/// Drives the supervisor on this thread until `enough()` holds (asked
/// after each round), a submission waits to move it to the supervisor
/// thread, or the pool has finished (then `None`: nothing is left to
/// drive). A panic inside fails every task and stops the workers, as
/// the supervisor thread's would.
pub(crate) fn drive(
    mut sup: Supervisor,
    driver: Driver,
    enough: &dyn Fn() -> bool,
) -> Option<Supervisor> {
    let shared = sup.shared.clone();
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<bool> {
        loop {
            match sup.round(driver)? {
                Step::Finished => return Ok(true),
                Step::HandOver => return Ok(false),
                Step::Continue if driver == Driver::CallerOnce || enough() => return Ok(false),
                Step::Continue => {}
            }
        }
    }));
    let failure = match served {
        Ok(Ok(false)) => return Some(sup),
        Ok(Ok(true)) => return None,
        Ok(Err(e)) => e,
        Err(_) => Error::Io(Arc::new(std::io::Error::other(
            "the pool's supervisor panicked (its message is on stderr)",
        ))),
    };
    // Never leave a task waiting: stop the workers and fail everything.
    {
        let mut state = shared.lock();
        state.status = PoolState::Broken;
        state.broken = Some(failure.clone());
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sup.shutdown(failure)));
    shared.notifier.notify();
    None
}

/// The supervisor thread's body: serves the pool until it is finished.
pub(crate) fn run(sup: Supervisor) {
    drive(sup, Driver::Thread, &|| false);
}

impl Supervisor {
    fn new(shared: Arc<Shared>) -> Result<Supervisor> {
        let epoll = Epoll::new()?;
        epoll.add(shared.wake.as_fd(), WAKE_KEY, false)?;
        let pool_pidfd = match shared.config.context.start_method() {
            StartMethod::Fork => Some(sys::pidfd_of_self()?),
            StartMethod::Spawn | StartMethod::ForkServer => None,
        };
        Ok(Supervisor {
            shared,
            epoll,
            workers: Vec::new(),
            queue: VecDeque::new(),
            fn_refs: Vec::new(),
            status: PoolState::Running,
            next_serial: 0,
            started: 0,
            rotate: 0,
            read_buf: Vec::with_capacity(READ_BUF),
            ready: Vec::new(),
            pool_pidfd,
        })
    }

    /// One round: takes what was submitted, keeps the workers up, sends
    /// them units, then (but for [`Driver::CallerOnce`]) sleeps until
    /// something happens and deals with it.
    fn round(&mut self, driver: Driver) -> Result<Step> {
        if !self.pull(driver) {
            return Ok(Step::HandOver);
        }
        match self.status {
            PoolState::Terminated => {
                self.shutdown(Error::Terminated);
                return Ok(Step::Finished);
            }
            PoolState::Broken => {
                let e = self
                    .shared
                    .lock()
                    .broken
                    .clone()
                    .unwrap_or(Error::Terminated);
                self.shutdown(e);
                return Ok(Step::Finished);
            }
            PoolState::Running | PoolState::Closed => {}
        }
        if let Err(e) = self.maintain() {
            self.break_pool(e);
            return Ok(Step::Continue);
        }
        self.dispatch();
        if self.status == PoolState::Closed
            && self.queue.is_empty()
            && self.workers.iter().all(|w| w.inflight.is_empty())
        {
            if self.workers.is_empty() {
                self.shared.lock().workers.clear();
                return Ok(Step::Finished);
            }
            for w in &mut self.workers {
                w.quit(&self.epoll);
            }
        }
        for w in &mut self.workers {
            w.flush(&self.epoll);
        }
        if driver != Driver::CallerOnce {
            self.wait()?;
        }
        Ok(Step::Continue)
    }

    /// Takes the submitted units and the pool's status; false (taking
    /// nothing) when a caller drives and an async submission waits to move
    /// the supervisor to its thread, so that a callback never runs on a
    /// caller's thread.
    fn pull(&mut self, driver: Driver) -> bool {
        let mut state = self.shared.lock();
        if driver != Driver::Thread && state.wants_thread {
            return false;
        }
        self.status = state.status;
        if self.queue.is_empty() {
            std::mem::swap(&mut self.queue, &mut state.pending);
        } else {
            self.queue.extend(state.pending.drain(..));
        }
        let known = self.fn_refs.len();
        if state.fns.refs.len() > known {
            self.fn_refs.extend_from_slice(&state.fns.refs[known..]);
        }
        true
    }

    /// Starts workers until there are enough, while there is work for
    /// them.
    fn maintain(&mut self) -> Result<()> {
        let wanted = self.status == PoolState::Running || !self.queue.is_empty();
        while wanted && self.workers.len() < self.shared.config.processes {
            self.start_worker()?;
        }
        Ok(())
    }

    fn start_worker(&mut self) -> Result<()> {
        let heap =
            |e: mp_heap::HeapError| Error::Io(Arc::new(std::io::Error::other(e.to_string())));
        let (tasks_r, tasks) = sys::worker_pipe()?;
        let (results, results_w) = sys::worker_pipe()?;
        sys::set_nonblocking(tasks.as_fd())?;
        sys::set_nonblocking(results.as_fd())?;
        let slot = worker::new_slot().map_err(heap)?;
        let config = &self.shared.config;
        let method = config.context.start_method();
        let args = WorkerArgs {
            tasks: tasks_r,
            results: results_w,
            slot: slot.clone(),
            initializer: config.initializer.clone(),
            maxtasks: config.maxtasksperchild,
            max_memory: config.max_memory_per_child,
            report_ready: config.task_timeout.is_some(),
            watch_pool: self.pool_pidfd.clone(),
        };
        self.started += 1;
        let prefix = match method {
            StartMethod::Fork => "Fork",
            StartMethod::Spawn => "Spawn",
            StartMethod::ForkServer => "ForkServer",
        };
        let process = config
            .context
            .process(worker::main, args)
            .with_name(format!("{prefix}PoolWorker-{}", self.started))
            .with_daemon(true);
        let start_err = |e: mp_context::Error| Error::WorkerStart(Arc::new(e));
        process.start().map_err(start_err)?;
        let pid = process.pid().ok().flatten().unwrap_or(0);
        let registered = process.sentinel().map_err(start_err).and_then(|sentinel| {
            let serial = self.next_serial;
            self.epoll
                .add(results.as_fd(), key(serial, RESULTS), false)?;
            self.epoll
                .add(sentinel.as_fd(), key(serial, EXITED), false)?;
            Ok((serial, sentinel))
        });
        let (serial, sentinel) = match registered {
            Ok(r) => r,
            Err(e) => {
                let _ = process.kill();
                let _ = process.join(Some(REAP_PATIENCE));
                let _ = process.close();
                return Err(e);
            }
        };
        self.next_serial += 1;
        self.shared.lock().workers.push(process.clone());
        let now = Instant::now();
        self.workers.push(Worker {
            serial,
            pid,
            process,
            sentinel,
            tasks,
            results,
            slot,
            decoder: FrameDecoder::new(usize::MAX >> 1),
            out: Vec::new(),
            out_at: 0,
            batch_at: None,
            watching_write: false,
            watching_results: true,
            results_done: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            defined: Vec::new(),
            sent: 0,
            answered: 0,
            depth: 2,
            per_unit: 0.0,
            last_answer: now,
            ready_at: None,
            init_error: None,
            eof_at: None,
            exited: false,
            quit_at: None,
            timed_out: false,
            killed: false,
        });
        Ok(())
    }

    /// Sends queued units to workers with room, one unit per worker in
    /// turn.
    fn dispatch(&mut self) {
        let n = self.workers.len();
        if self.queue.is_empty() || n == 0 {
            return;
        }
        let now = Instant::now();
        loop {
            let mut gave = false;
            for k in 0..n {
                let w = &mut self.workers[(self.rotate + k) % n];
                if w.capacity(&self.shared) == 0 {
                    continue;
                }
                let Some(unit) = self.queue.pop_front() else {
                    break;
                };
                w.assign(unit, &self.fn_refs, now);
                gave = true;
            }
            if !gave || self.queue.is_empty() {
                break;
            }
        }
        self.rotate = self.rotate.wrapping_add(1);
        for w in &mut self.workers {
            w.close_batch();
        }
    }

    /// Sleeps until something happens (or the next deadline), then deals
    /// with it.
    fn wait(&mut self) -> Result<()> {
        let now = Instant::now();
        let limit = self.shared.config.task_timeout;
        let next = self
            .workers
            .iter()
            .flat_map(|w| [w.deadline(limit), w.exit_deadline()])
            .flatten()
            .min();
        self.shared.sleeping.store(true, Ordering::SeqCst);
        let busy = {
            let state = self.shared.lock();
            !state.pending.is_empty() || state.status != self.status
        };
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            next.map(|d| d.saturating_duration_since(now))
        };
        self.ready.clear();
        let waited = self.epoll.wait(timeout, &mut self.ready);
        self.shared.sleeping.store(false, Ordering::SeqCst);
        waited?;
        let ready = std::mem::take(&mut self.ready);
        for &k in &ready {
            if k == WAKE_KEY {
                self.shared.wake.drain();
                continue;
            }
            let Some(w) = self.workers.iter_mut().find(|w| w.serial == k >> 2) else {
                continue;
            };
            match k & 3 {
                RESULTS => w.read_results(&mut self.read_buf, &self.epoll),
                EXITED => w.exited = true,
                _ => w.flush(&self.epoll),
            }
        }
        self.ready = ready;
        // After `terminate` (which sets the state before it kills the
        // workers), dead workers are not replaced or mourned: the next
        // round fails their units with the pool's error.
        let status = self.shared.lock().status;
        if !matches!(status, PoolState::Running | PoolState::Closed) {
            self.status = status;
            return Ok(());
        }
        self.check_deadlines();
        while let Some(i) = self.workers.iter().position(|w| w.exited) {
            let w = self.workers.remove(i);
            self.reap(w);
        }
        self.shared.notifier.notify();
        Ok(())
    }

    /// Kills workers past the task timeout or that stopped talking.
    fn check_deadlines(&mut self) {
        let now = Instant::now();
        let limit = self.shared.config.task_timeout;
        for w in &mut self.workers {
            if w.killed {
                continue;
            }
            if w.deadline(limit).is_some_and(|d| now >= d) {
                w.timed_out = true;
                w.kill();
            } else if w.exit_deadline().is_some_and(|d| now >= d) {
                w.kill();
            }
        }
    }

    /// Deals with a worker that has exited: files its last results, fails
    /// the units it started without answering, queues the others again.
    fn reap(&mut self, mut w: Worker) {
        w.read_results(&mut self.read_buf, &self.epoll);
        // Removed by hand: a sibling forked after this worker holds a copy
        // of its sentinel, so closing ours would leave it in the set.
        self.epoll.remove(w.sentinel.as_fd());
        if w.watching_write {
            self.epoll.remove(w.tasks.as_fd());
        }
        // Its sentinel is ready, so it is reaped at once (one `waitpid`).
        let exitcode = match w.process.exitcode() {
            Ok(Some(code)) => code,
            _ => {
                let _ = w.process.join(Some(REAP_PATIENCE));
                w.process.exitcode().ok().flatten().unwrap_or(255)
            }
        };
        // The worker has exited, so nothing writes the slot any more.
        let started = w.slot[STARTED].load(Ordering::Acquire);
        let ready = w.slot[READY].load(Ordering::Acquire) != 0;
        let lost = started
            .saturating_sub(w.answered)
            .min(w.inflight.len() as u64) as usize;
        for (i, f) in w.inflight.drain(..lost).enumerate() {
            let error = match self.shared.config.task_timeout {
                Some(limit) if w.timed_out && i + 1 == lost => {
                    Error::TaskTimeout { pid: w.pid, limit }
                }
                _ => Error::WorkerLost {
                    pid: w.pid,
                    exitcode,
                },
            };
            f.unit.sink.complete(Outcome::Failed(error));
        }
        for f in w.inflight.drain(..).rev() {
            self.queue.push_front(f.unit);
        }
        let _ = w.process.close();
        self.shared
            .lock()
            .workers
            .retain(|p| p.pid().ok().flatten() != Some(w.pid));
        if !ready && self.status != PoolState::Terminated {
            let message = w.init_error.take().unwrap_or_else(|| {
                format!(
                    "worker process {} ended ({}) before its initializer finished",
                    w.pid,
                    describe_exit(exitcode)
                )
            });
            self.break_pool(Error::InitializerFailed { message });
        }
    }

    /// Marks the pool broken by `error` (the next round stops it).
    fn break_pool(&mut self, error: Error) {
        let mut state = self.shared.lock();
        if matches!(state.status, PoolState::Running | PoolState::Closed) {
            state.status = PoolState::Broken;
            state.broken = Some(error);
        }
        self.status = state.status;
    }

    /// Kills every worker, fails every unfinished unit with `error`, and
    /// waits for the workers to be gone.
    fn shutdown(&mut self, error: Error) {
        for w in &mut self.workers {
            w.kill();
        }
        let pending = std::mem::take(&mut self.shared.lock().pending);
        for unit in self.queue.drain(..).chain(pending) {
            unit.sink.complete(Outcome::Failed(error.clone()));
        }
        for w in &mut self.workers {
            for f in w.inflight.drain(..) {
                f.unit.sink.complete(Outcome::Failed(error.clone()));
            }
        }
        self.shared.notifier.notify();
        for w in self.workers.drain(..) {
            let _ = w.process.join(Some(REAP_PATIENCE));
            let _ = w.process.close();
        }
        self.shared.lock().workers.clear();
    }
}
