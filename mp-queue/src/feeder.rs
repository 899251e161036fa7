//! This process's side of a queue: the feeder thread (CPython's
//! `Queue._feed`), the buffer it drains, and how a process that ends
//! flushes it.
//!
//! A put writes its item into the ring itself when this process has
//! nothing waiting in its feeder and the ring has room; otherwise it
//! appends the item to the feeder's buffer and returns, so that a put
//! never waits for consumers (only for room under `maxsize`). The feeder
//! commits its buffer in order, waiting for room as consumers make it;
//! while it holds anything, every put of this process goes through it, so
//! that one process's items reach the ring in the order it put them.
//! Items in a feeder count as accepted (toward `maxsize` and `qsize()`)
//! and as pending in this process's slot of the ring's header, from which
//! another process takes them back if this one dies with them.
//!
//! When the process ends (every way out runs `mp_context::shutdown`), a
//! finalizer of priority -5 (CPython's `_finalize_join`, run after the
//! children are joined) tells the feeder to finish and waits for it to
//! flush, unless `cancel_join_thread()` was called: then the buffered
//! items are taken back and dropped, and the process does not wait.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mp_context::Finalizer;
use mp_heap::{ProcessStamp, current_pid};

use crate::core::Inner;
use crate::encode::Encoded;
use crate::pool::Pool;

/// How many buffered items a feeder takes per pass (committed under one
/// hold of the ring's lock when they fit).
const BATCH: usize = 64;

/// A get's longest spin before it sleeps, when this process may run on
/// more than one CPU: a few wake-up latencies of a busy peer, so that a
/// steady stream is taken without sleeping (and without the producer's
/// wake-up call), while an idle queue costs little.
const MAX_SPIN: Duration = Duration::from_micros(20);
/// Below this the budget drops to nothing.
const MIN_SPIN_NS: u32 = 500;
/// At a budget of nothing, one get in this many spins in full again.
const PROBE_EVERY: u32 = 64;

/// What puts and the feeder share in this process.
#[derive(Debug)]
pub(crate) struct State {
    /// Items accepted and not yet taken by the feeder, in put order.
    pub(crate) buffer: VecDeque<Encoded<'static>>,
    /// Items the feeder took out of the buffer and has not committed yet.
    pub(crate) in_flight: usize,
    /// This process's slot in the header (a hint; checked under the lock).
    pub(crate) slot: Option<usize>,
    running: bool,
    /// Finish once the buffer is flushed (`close()`, or the process ends).
    stop: bool,
    cancel_join: bool,
    thread: Option<JoinHandle<()>>,
    finalizer: Option<Finalizer>,
}

impl State {
    /// Items of this process not yet in the ring.
    pub(crate) fn backlog(&self) -> usize {
        self.buffer.len() + self.in_flight
    }
}

/// A queue's state in one process; a forked child makes its own.
#[derive(Debug)]
pub(crate) struct Local {
    pid: u32,
    stamp: ProcessStamp,
    closed: AtomicBool,
    state: Mutex<State>,
    /// The feeder waits here for items; `join_thread` and the exit flush
    /// for the feeder.
    cond: Condvar,
    /// The current spin budget of gets, in nanoseconds.
    spin_ns: AtomicU32,
    /// Gets since the budget dropped to nothing.
    probe: AtomicU32,
    /// When this process may next look for dead producers (milliseconds
    /// on [`clock_ms`]).
    next_reclaim_ms: AtomicU64,
    /// Memfds this process writes big items into.
    pub(crate) pool: Arc<Pool>,
}

/// Milliseconds since this process first asked.
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Local {
    pub(crate) fn new() -> Local {
        Local {
            pid: current_pid(),
            stamp: ProcessStamp::current(),
            closed: AtomicBool::new(false),
            state: Mutex::new(State {
                buffer: VecDeque::new(),
                in_flight: 0,
                slot: None,
                running: false,
                stop: false,
                cancel_join: false,
                thread: None,
                finalizer: None,
            }),
            cond: Condvar::new(),
            spin_ns: AtomicU32::new(MAX_SPIN.as_nanos() as u32),
            probe: AtomicU32::new(0),
            next_reclaim_ms: AtomicU64::new(0),
            pool: Arc::new(Pool::default()),
        }
    }

    /// Whether it is time to look for dead producers again (at most once
    /// per [`WAIT_SLICE`](crate::core::WAIT_SLICE) per process).
    pub(crate) fn reclaim_due(&self) -> bool {
        let now = clock_ms();
        let next = self.next_reclaim_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_reclaim_ms
                .compare_exchange(
                    next,
                    now + crate::core::WAIT_SLICE.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether this state belongs to the calling process (not to the
    /// parent of a fork).
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        self.pid == current_pid()
    }

    pub(crate) fn stamp(&self) -> ProcessStamp {
        self.stamp
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it (none is expected) leaves the state
        // usable: every field is valid at every step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.cond.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Spins until `ready()` or the spin budget runs out. The budget adapts
    /// to where the peers run: a hit (the item came while spinning, so the
    /// producer runs on another CPU) restores the full budget, a miss halves
    /// it down to nothing (a producer on this CPU cannot run while we spin),
    /// and at nothing every [`PROBE_EVERY`]th get spins in full again, in
    /// case the producer moved.
    pub(crate) fn spin_until(&self, ready: impl Fn() -> bool) {
        let max = MAX_SPIN.as_nanos() as u32;
        let mut budget = self.spin_ns.load(Ordering::Relaxed);
        if budget == 0 {
            let n = self.probe.fetch_add(1, Ordering::Relaxed);
            if !n.is_multiple_of(PROBE_EVERY) {
                return;
            }
            budget = max;
        }
        let limit = Duration::from_nanos(u64::from(budget));
        let started = Instant::now();
        loop {
            for _ in 0..32 {
                if ready() {
                    self.spin_ns.store(max, Ordering::Relaxed);
                    return;
                }
                std::hint::spin_loop();
            }
            if started.elapsed() >= limit {
                let next = budget / 2;
                self.spin_ns
                    .store(if next < MIN_SPIN_NS { 0 } else { next }, Ordering::Relaxed);
                return;
            }
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if !self.is_current() {
            // A parent's state, copied by fork: its thread and finalizer
            // exist only in the parent. Its buffered items are this
            // process's copies (their fds close here).
            let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(state.thread.take());
            // A finalizer handle is plain data (an id and a pid that is
            // not ours): nothing to do.
        }
    }
}

/// Starts this process's feeder thread if it is not running, and makes
/// sure the process flushes it before it ends.
pub(crate) fn ensure_running(inner: &Arc<Inner>, state: &mut State) -> io::Result<()> {
    if state.running {
        return Ok(());
    }
    let worker = Arc::clone(inner);
    let thread = std::thread::Builder::new()
        .name("QueueFeederThread".into())
        .spawn(move || feed(&worker))?;
    state.running = true;
    state.stop = false;
    // An earlier, finished feeder's handle: nothing to wait for.
    drop(state.thread.replace(thread));
    if state.finalizer.is_none() {
        let weak = Arc::downgrade(inner);
        state.finalizer = Some(mp_context::register_finalizer(-5, move || {
            if let Some(inner) = weak.upgrade() {
                flush_at_exit(&inner);
            }
        }));
    }
    Ok(())
}

/// The feeder thread: commits the buffer, batch by batch, until told to
/// stop (or every handle is gone) with nothing left.
fn feed(inner: &Arc<Inner>) {
    let local = inner.local();
    loop {
        let mut batch = {
            let mut state = local.state();
            loop {
                if !state.buffer.is_empty() {
                    break;
                }
                if state.stop || inner.handles.load(Ordering::Acquire) == 0 {
                    state.running = false;
                    if let Some(f) = state.finalizer.take() {
                        f.cancel();
                    }
                    local.notify();
                    return;
                }
                state = local.cond.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            let n = state.buffer.len().min(BATCH);
            state.in_flight = n;
            state.buffer.drain(..n).collect::<VecDeque<_>>()
        };
        inner.flush_batch(local, &mut batch);
        local.state().in_flight = 0;
        local.notify();
    }
}

/// The exit finalizer: waits for the feeder to flush, or (after
/// `cancel_join_thread`) takes its items back without waiting.
fn flush_at_exit(inner: &Arc<Inner>) {
    let local = inner.local();
    let thread = {
        let mut state = local.state();
        state.finalizer = None;
        state.stop = true;
        local.notify();
        if state.cancel_join {
            let n = state.buffer.len() as u32;
            inner.withdraw(local, &mut state, n);
            state.buffer.clear();
            return;
        }
        state.thread.take()
    };
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}

/// `close()`: no more puts or gets here; the feeder finishes once flushed.
pub(crate) fn close(inner: &Inner) {
    let local = inner.local();
    local.closed.store(true, Ordering::Relaxed);
    local.state().stop = true;
    local.notify();
}

/// `join_thread()`: waits for the feeder to flush and finish.
pub(crate) fn join_thread(inner: &Inner) -> Result<(), crate::QueueError> {
    let local = inner.local();
    if !local.is_closed() {
        return Err(crate::QueueError::NotClosed);
    }
    let thread = local.state().thread.take();
    if let Some(thread) = thread {
        let _ = thread.join();
    }
    Ok(())
}

/// `cancel_join_thread()`: this process will not wait for its feeder when
/// it ends; what is still buffered then is dropped.
pub(crate) fn cancel_join_thread(inner: &Inner) {
    inner.local().state().cancel_join = true;
}

/// Wakes the feeder once the last handle of this process is gone, so that
/// it finishes after flushing.
pub(crate) fn last_handle_dropped(inner: &Inner) {
    let local = inner.local();
    // Under the state's lock, so that a feeder about to wait sees it.
    let _state = local.state();
    local.notify();
}
