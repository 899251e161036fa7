//! [`Barrier`]: CPython's `multiprocessing.Barrier` (which is
//! `threading.Barrier` over a process-shared condition), with its state,
//! lock and condition in one shared block.
//!
//! The algorithm is `threading.Barrier`'s: parties arrive while the
//! barrier is *filling*; the last one runs the action and turns it to
//! *draining*, which lets the others out; the last to leave turns it back
//! to filling. `reset()` while parties wait turns it to *resetting* (they
//! leave with [`SyncError::BrokenBarrier`]); `abort()`, a failed action or
//! a timeout turn it *broken* until `reset()`.

use std::{
    any::Any,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use mp_heap::{Deadline, Heap, LockResult, ProcessLock, ProcessLockGuard, Shared};

use crate::{
    ActionError, Result, SyncError,
    condition::{CondState, wait_for},
};

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// No default timeout.
const NO_TIMEOUT: u64 = u64::MAX;

/// What the last party to arrive runs, in its own process, before any
/// party leaves (CPython's `action`).
///
/// The action travels with the barrier (a process argument, a message), so
/// it is a serde value that every process can rebuild, and what it does is
/// this trait's code, compiled into the program. An `Err`, or a panic,
/// breaks the barrier: that party gets [`SyncError::BarrierAction`], the
/// others [`SyncError::BrokenBarrier`].
///
/// ```
/// use std::sync::Arc;
/// use mp_heap::Value;
/// use mp_sync::{ActionError, Barrier, BarrierAction};
///
/// /// Counts the passes through the barrier.
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct CountPasses(Arc<Value<u64>>);
///
/// impl BarrierAction for CountPasses {
///     fn run(&self) -> Result<(), ActionError> {
///         self.0.lock().map_err(|e| e.to_string())?.update(|n| n + 1);
///         Ok(())
///     }
/// }
///
/// let passes = Arc::new(Value::new(0_u64)?);
/// let barrier = Barrier::with_action(1, CountPasses(passes.clone()), None)?;
/// barrier.wait(None)?;
/// barrier.wait(None)?;
/// assert_eq!(passes.get().unwrap(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait BarrierAction: Send + Sync {
    /// Runs the action.
    ///
    /// # Errors
    ///
    /// Whatever went wrong; the barrier breaks.
    fn run(&self) -> std::result::Result<(), ActionError>;
}

/// The action of a barrier without one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoAction;

impl BarrierAction for NoAction {
    fn run(&self) -> std::result::Result<(), ActionError> {
        Ok(())
    }
}

/// A barrier's shared state (72 bytes): its lock, its condition, the
/// number of parties, how many are inside, the state, the default timeout.
#[repr(C)]
pub struct BarrierState {
    lock: ProcessLock,
    cond: CondState,
    parties: AtomicU32,
    /// Parties inside `wait` (arrived and not yet left).
    count: AtomicU32,
    /// `FILLING`, `DRAINING`, `RESETTING` or `BROKEN`.
    state: AtomicU32,
    _reserved: AtomicU32,
    /// The default timeout of `wait`, in nanoseconds; `NO_TIMEOUT` for none.
    timeout_ns: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<BarrierState>() == 72);
const _: () = assert!(std::mem::align_of::<BarrierState>() == 8);
const _: () = assert!(std::mem::offset_of!(BarrierState, lock) == 0);
const _: () = assert!(std::mem::offset_of!(BarrierState, cond) == 32);
const _: () = assert!(std::mem::offset_of!(BarrierState, parties) == 48);
const _: () = assert!(std::mem::offset_of!(BarrierState, count) == 52);
const _: () = assert!(std::mem::offset_of!(BarrierState, state) == 56);
const _: () = assert!(std::mem::offset_of!(BarrierState, timeout_ns) == 64);

impl fmt::Debug for BarrierState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierState")
            .field("parties", &self.parties.load(Ordering::Relaxed))
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

/// CPython's `multiprocessing.Barrier(parties, action=None, timeout=None)`:
/// `parties` processes (or threads) wait until all have arrived, then all
/// go on; usable from every process holding a clone.
///
/// `wait` returns the arrival index (0 for the first to arrive, `parties -
/// 1` for the last, which runs the action). A barrier broken by
/// [`abort`](Barrier::abort), a timeout or a failed action answers
/// [`SyncError::BrokenBarrier`] until [`reset`](Barrier::reset).
///
/// ```
/// use mp_sync::{Barrier, SyncError};
///
/// let barrier = Barrier::new(1, None)?;
/// assert_eq!(barrier.wait(None)?, 0); // one party: never blocks
/// barrier.abort();
/// assert!(matches!(barrier.wait(None), Err(SyncError::BrokenBarrier)));
/// barrier.reset();
/// assert_eq!(barrier.wait(None)?, 0);
/// # Ok::<(), SyncError>(())
/// ```
pub struct Barrier<A = NoAction> {
    state: Shared<BarrierState>,
    /// Shared by clones, so that a barrier clones whatever its action.
    action: Arc<A>,
}

impl<A> Clone for Barrier<A> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            action: Arc::clone(&self.action),
        }
    }
}

impl Barrier<NoAction> {
    /// A barrier for `parties` parties, without an action; `timeout` is the
    /// default of [`wait`](Barrier::wait).
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] for 0 parties;
    /// [`SyncError::Heap`] when shared memory cannot be allocated.
    pub fn new(parties: u32, timeout: Option<Duration>) -> Result<Self> {
        Self::with_action(parties, NoAction, timeout)
    }
}

impl<A: BarrierAction> Barrier<A> {
    /// A barrier for `parties` parties whose last arrival runs `action`.
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`].
    pub fn with_action(parties: u32, action: A, timeout: Option<Duration>) -> Result<Self> {
        Self::with_action_in(Heap::global(), parties, action, timeout)
    }

    /// As [`Barrier::with_action`], in `heap`.
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`].
    pub fn with_action_in(
        heap: &Heap,
        parties: u32,
        action: A,
        timeout: Option<Duration>,
    ) -> Result<Self> {
        if parties == 0 {
            return Err(SyncError::InvalidArgument(
                "a barrier needs at least one party",
            ));
        }
        let timeout_ns = timeout.map_or(NO_TIMEOUT, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(NO_TIMEOUT - 1)
        });
        let state = Shared::new_in(
            heap,
            BarrierState {
                lock: ProcessLock::new(false),
                cond: CondState::new(),
                parties: AtomicU32::new(parties),
                count: AtomicU32::new(0),
                state: AtomicU32::new(FILLING),
                _reserved: AtomicU32::new(0),
                timeout_ns: AtomicU64::new(timeout_ns),
            },
        )?;
        Ok(Self {
            state,
            action: Arc::new(action),
        })
    }

    /// The number of parties (CPython's `parties`).
    pub fn parties(&self) -> u32 {
        self.state.parties.load(Ordering::Relaxed)
    }

    /// How many parties wait now (CPython's `n_waiting`).
    pub fn n_waiting(&self) -> u32 {
        let _guard = self.locked();
        match self.state.state.load(Ordering::Relaxed) {
            FILLING => self.state.count.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Whether the barrier is broken (CPython's `broken`).
    pub fn broken(&self) -> bool {
        self.state.state.load(Ordering::Relaxed) == BROKEN
    }

    /// The default timeout of [`wait`](Self::wait).
    pub fn timeout(&self) -> Option<Duration> {
        match self.state.timeout_ns.load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// CPython's `wait(timeout=None)`: waits until all parties have
    /// arrived; the arrival index (the last arrival, `parties - 1`, ran the
    /// action). `None` uses the barrier's default timeout.
    ///
    /// # Errors
    ///
    /// [`SyncError::BrokenBarrier`] when the barrier is or becomes broken
    /// (aborted, reset while waiting, a timeout here or elsewhere, a failed
    /// action elsewhere); [`SyncError::BarrierAction`] when this party's
    /// action failed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        let deadline = Deadline::after(timeout.or_else(|| self.timeout()));
        let _guard = self.locked();
        let st = &*self.state;
        // Wait while a previous pass drains or a reset completes.
        self.wait_until(
            || !matches!(st.state.load(Ordering::Relaxed), DRAINING | RESETTING),
            deadline,
        )?;
        if st.state.load(Ordering::Relaxed) == BROKEN {
            return Err(SyncError::BrokenBarrier);
        }
        let index = st.count.load(Ordering::Relaxed);
        // Saturating: the counts are shared memory, which anyone mapping
        // the block could have scribbled on.
        let arrived = index.saturating_add(1);
        st.count.store(arrived, Ordering::Relaxed);
        let passed = if arrived >= self.parties() {
            self.release_parties()
        } else {
            self.wait_for_release(deadline)
        };
        // Leave; the last one out lets the next pass (or reset) begin.
        let count = st.count.load(Ordering::Relaxed).saturating_sub(1);
        st.count.store(count, Ordering::Relaxed);
        if count == 0 && matches!(st.state.load(Ordering::Relaxed), DRAINING | RESETTING) {
            st.state.store(FILLING, Ordering::Relaxed);
            self.notify_all();
        }
        passed.map(|()| index)
    }

    /// The last arrival: runs the action, then lets everyone out.
    fn release_parties(&self) -> Result<()> {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.action.run()));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(panic_message(panic).into()),
        };
        if let Some(e) = failure {
            self.break_barrier();
            return Err(SyncError::BarrierAction(e));
        }
        self.state.state.store(DRAINING, Ordering::Relaxed);
        self.notify_all();
        Ok(())
    }

    /// Any other arrival: waits until the pass is released, or broken.
    fn wait_for_release(&self, deadline: Deadline) -> Result<()> {
        let st = &*self.state;
        self.wait_until(|| st.state.load(Ordering::Relaxed) != FILLING, deadline)?;
        match st.state.load(Ordering::Relaxed) {
            DRAINING => Ok(()),
            _ => Err(SyncError::BrokenBarrier),
        }
    }

    /// With the lock held, waits until `predicate()` holds; a timeout, or
    /// a lock taken back from a dead party, breaks the barrier.
    fn wait_until(&self, predicate: impl FnMut() -> bool, deadline: Deadline) -> Result<()> {
        match wait_for(&self.state.cond, &self.state.lock, predicate, deadline) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => {
                self.break_barrier();
                Err(SyncError::BrokenBarrier)
            }
        }
    }

    /// With the lock held: wakes every waiting party.
    fn notify_all(&self) {
        // Only fails without the lock, which every caller holds.
        let _ = self.state.cond.notify_all(&self.state.lock);
    }

    /// CPython's `reset()`: back to the initial state; parties waiting now
    /// leave with [`SyncError::BrokenBarrier`].
    pub fn reset(&self) {
        let _guard = self.locked();
        let st = &*self.state;
        if st.count.load(Ordering::Relaxed) > 0 {
            match st.state.load(Ordering::Relaxed) {
                FILLING | BROKEN => st.state.store(RESETTING, Ordering::Relaxed),
                // Draining, or already resetting: the last to leave resets.
                _ => {}
            }
        } else {
            st.state.store(FILLING, Ordering::Relaxed);
        }
        self.notify_all();
    }

    /// CPython's `abort()`: breaks the barrier; waiting parties leave with
    /// [`SyncError::BrokenBarrier`], as do later ones until `reset()`.
    pub fn abort(&self) {
        let _guard = self.locked();
        self.break_barrier();
    }

    /// With the lock held: broken, and everyone told.
    fn break_barrier(&self) {
        self.state.state.store(BROKEN, Ordering::Relaxed);
        self.notify_all();
    }

    /// Takes the barrier's lock. A party that died holding it may have left
    /// the state half-updated: the barrier is broken then.
    fn locked(&self) -> ProcessLockGuard<'_> {
        let taken: LockResult<_> = self.state.lock.lock();
        taken.unwrap_or_else(|died| {
            let guard = died.into_inner();
            self.break_barrier();
            guard
        })
    }

    /// The action.
    pub fn action(&self) -> &A {
        &self.action
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    format!("the action panicked: {what}")
}

impl<A> fmt::Debug for Barrier<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("state", &*self.state)
            .finish()
    }
}

/// Serializable only inside `mp_reduction::collect_fds`: the shared state
/// and the action, so that every receiver shares the barrier and can run
/// the action.
impl<A: serde::Serialize> serde::Serialize for Barrier<A> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        (&self.state, &*self.action).serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`.
impl<'de, A: serde::Deserialize<'de>> serde::Deserialize<'de> for Barrier<A> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let (state, action) = <(Shared<BarrierState>, A)>::deserialize(deserializer)?;
        Ok(Self {
            state,
            action: Arc::new(action),
        })
    }
}
