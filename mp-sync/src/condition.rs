//! [`Condition`]: CPython's `multiprocessing.Condition`, a condition
//! variable in shared memory over a [`Lock`](crate::Lock) or
//! [`RLock`](crate::RLock).
//!
//! # How notifications are counted
//!
//! All of [`CondState`] but the futex word changes only under the
//! condition's lock (waiters register under it, notifiers must hold it,
//! and a waiter takes it back before deciding anything):
//!
//! - `waiting`: registered waiters not yet notified;
//! - `signals`: notifications not yet taken;
//! - `epoch`: the futex word, bumped by every notify that signals anyone.
//!
//! `notify(n)` moves `k = min(n, waiting)` from `waiting` to `signals`,
//! bumps the epoch and wakes `k` sleepers. A waiter that wakes (for
//! whatever reason) takes its lock back, then takes a signal if there is
//! one *and the epoch moved since it registered* (so a notify never wakes a
//! waiter that came after it); otherwise it sleeps again, or on timeout
//! leaves `waiting`. `waiting + signals` is always the number of waiters
//! present, so nothing is lost when a woken waiter finds its signal taken
//! by another: it sleeps again, still counted.
//!
//! Unlike CPython's (whose `notify` waits for each woken waiter to
//! acknowledge), a notifier never waits for waiters, so a waiter that dies
//! cannot hang it; a dead waiter's signal may instead go to a later waiter.

use std::{
    fmt,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use mp_heap::{
    Deadline, LockResult, ProcessLock, Shared, SharedLock, TryLockResult,
    futex::{self},
};

use crate::{LockGuard, Result, SyncError};

/// The shared counters of a condition variable (16 bytes), besides its
/// lock. Embed it with a [`ProcessLock`] in a structure of your own to
/// wait on a condition of that structure (as [`Barrier`](crate::Barrier)
/// does); all-zero memory is a condition nobody waits on.
#[repr(C)]
pub struct CondState {
    /// The futex word: bumped by each notify that signals someone.
    epoch: AtomicU32,
    /// Registered waiters not yet notified.
    waiting: AtomicU32,
    /// Notifications not yet taken by a waiter.
    signals: AtomicU32,
    _reserved: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<CondState>() == 16);
const _: () = assert!(std::mem::align_of::<CondState>() == 4);
const _: () = assert!(std::mem::offset_of!(CondState, epoch) == 0);
const _: () = assert!(std::mem::offset_of!(CondState, waiting) == 4);
const _: () = assert!(std::mem::offset_of!(CondState, signals) == 8);

impl CondState {
    /// A condition nobody waits on.
    pub const fn new() -> CondState {
        CondState {
            epoch: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            signals: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }

    /// Waits for a notification, with `lock` held by the calling thread
    /// (recursively or not): releases it completely, sleeps until notified
    /// or `deadline`, and takes it back as deep as it was. `Ok(false)` on
    /// timeout.
    ///
    /// # Errors
    ///
    /// [`SyncError::WaitWithoutLock`] when the calling thread does not hold
    /// `lock`; [`SyncError::OwnerDied`] when taking it back meant taking it
    /// over from a process that died holding it (it is held again).
    pub fn wait(&self, lock: &ProcessLock, deadline: Deadline) -> Result<bool> {
        if !lock.is_mine() {
            return Err(SyncError::WaitWithoutLock);
        }
        // Under the lock: register, and remember the epoch.
        let registered = self.epoch.load(Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut died = None;
        loop {
            let seen = self.epoch.load(Ordering::Relaxed);
            let saved = lock.release_save()?;
            let in_time = futex::wait(&self.epoch, seen, deadline);
            if let Err(e) = lock.acquire_restore(saved) {
                died = Some(e);
            }
            // Under the lock again.
            let signals = self.signals.load(Ordering::Relaxed);
            let notified = self.epoch.load(Ordering::Relaxed) != registered && signals > 0;
            if notified {
                self.signals.store(signals - 1, Ordering::Relaxed);
            } else if !in_time || deadline.has_passed() {
                let waiting = self.waiting.load(Ordering::Relaxed);
                self.waiting
                    .store(waiting.saturating_sub(1), Ordering::Relaxed);
            } else {
                continue;
            }
            return match died {
                Some(e) => Err(e.into()),
                None => Ok(notified),
            };
        }
    }

    /// Wakes at most `n` of the waiters registered now, with `lock` held by
    /// the calling thread.
    ///
    /// # Errors
    ///
    /// [`SyncError::NotifyWithoutLock`] when the calling thread does not
    /// hold `lock`.
    pub fn notify(&self, lock: &ProcessLock, n: u32) -> Result<()> {
        if !lock.is_mine() {
            return Err(SyncError::NotifyWithoutLock);
        }
        let waiting = self.waiting.load(Ordering::Relaxed);
        let k = n.min(waiting);
        if k == 0 {
            return Ok(());
        }
        self.waiting.store(waiting - k, Ordering::Relaxed);
        let signals = self.signals.load(Ordering::Relaxed);
        self.signals
            .store(signals.saturating_add(k), Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
        futex::wake(&self.epoch, k);
        Ok(())
    }

    /// Wakes every waiter registered now (see [`notify`](Self::notify)).
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self, lock: &ProcessLock) -> Result<()> {
        self.notify(lock, u32::MAX)
    }

    /// How many waiters are registered and not yet notified.
    pub fn n_waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Default for CondState {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CondState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CondState")
            .field("waiting", &self.n_waiting())
            .field("signals", &self.signals.load(Ordering::Relaxed))
            .finish()
    }
}

/// Waits until `predicate()` holds, at most until `deadline` (CPython's
/// `wait_for`): the predicate is checked first and after every wake.
pub(crate) fn wait_for(
    state: &CondState,
    lock: &ProcessLock,
    mut predicate: impl FnMut() -> bool,
    deadline: Deadline,
) -> Result<bool> {
    let mut result = predicate();
    while !result {
        if deadline.has_passed() {
            break;
        }
        state.wait(lock, deadline)?;
        result = predicate();
    }
    Ok(result)
}

/// CPython's `multiprocessing.Condition(lock=None)`: a condition variable
/// in shared memory, usable from every process holding a clone.
///
/// The lock is a new [`RLock`](crate::RLock) by default, or the caller's
/// [`Lock`](crate::Lock) or `RLock` ([`Condition::with_lock`]). `wait` and
/// `notify` need it held by the calling thread (an error otherwise, as in
/// CPython); `wait` releases it completely while it sleeps and takes it
/// back as deep as it was.
///
/// ```
/// use std::time::Duration;
/// use mp_sync::Condition;
///
/// let cond = Condition::new()?;
/// let guard = cond.lock().unwrap();
/// // Nobody notifies: the wait times out.
/// assert!(!cond.wait(Some(Duration::from_millis(10)))?);
/// cond.notify_all()?; // nobody waits: a no-op
/// drop(guard);
/// assert!(cond.wait(None).is_err()); // not holding the lock
/// # Ok::<(), mp_sync::SyncError>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: SharedLock,
    state: Shared<CondState>,
}

impl Condition {
    /// A condition with a new `RLock`, in the process-wide heap.
    ///
    /// # Errors
    ///
    /// [`SyncError::Heap`] when shared memory cannot be allocated.
    pub fn new() -> Result<Self> {
        Self::with_lock(SharedLock::recursive()?)
    }

    /// A condition over `lock` (CPython's `Condition(lock)`): a
    /// [`Lock`](crate::Lock), an [`RLock`](crate::RLock), or any
    /// [`SharedLock`] (a `Value`'s, say).
    ///
    /// # Errors
    ///
    /// As [`Condition::new`].
    pub fn with_lock(lock: impl Into<SharedLock>) -> Result<Self> {
        Ok(Self {
            lock: lock.into(),
            state: Shared::new(CondState::new())?,
        })
    }

    /// The condition's lock.
    pub fn get_lock(&self) -> &SharedLock {
        &self.lock
    }

    /// The lock's `acquire(block, timeout)`.
    ///
    /// # Errors
    ///
    /// [`SyncError::OwnerDied`] as for [`Lock::acquire`](crate::Lock::acquire).
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        Ok(self.lock.acquire(block, timeout)?)
    }

    /// The lock's `release()`.
    ///
    /// # Errors
    ///
    /// As [`Lock::release`](crate::Lock::release) or
    /// [`RLock::release`](crate::RLock::release).
    pub fn release(&self) -> Result<()> {
        Ok(self.lock.release()?)
    }

    /// Takes the lock, releasing it when the guard drops (`with cond:`).
    ///
    /// # Errors
    ///
    /// `OwnerDied` around the guard, as for [`Lock::lock`](crate::Lock::lock).
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        self.lock.lock()
    }

    /// Takes the lock if that is possible without waiting.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`](crate::Lock::try_lock).
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        self.lock.try_lock()
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`](crate::Lock::lock_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        self.lock.lock_timeout(timeout)
    }

    /// CPython's `wait(timeout=None)`: releases the lock, sleeps until
    /// notified or the timeout, takes the lock back. `Ok(false)` on timeout.
    ///
    /// # Errors
    ///
    /// [`SyncError::WaitWithoutLock`] when the calling thread does not hold
    /// the lock; [`SyncError::OwnerDied`] when taking it back meant taking
    /// it over from a process that died holding it (it is held again).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.state.wait(&self.lock, Deadline::after(timeout))
    }

    /// CPython's `wait_for(predicate, timeout=None)`: waits until
    /// `predicate()` holds, checking it first and after each wake; its last
    /// result (`false` only on timeout).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        if !self.lock.is_mine() {
            return Err(SyncError::WaitWithoutLock);
        }
        wait_for(&self.state, &self.lock, predicate, Deadline::after(timeout))
    }

    /// CPython's `notify(n=1)`: wakes at most `n` of the processes and
    /// threads waiting now.
    ///
    /// # Errors
    ///
    /// [`SyncError::NotifyWithoutLock`] when the calling thread does not
    /// hold the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.state.notify(&self.lock, n)
    }

    /// CPython's `notify_all()`.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<()> {
        self.state.notify_all(&self.lock)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &*self.lock)
            .field("waiting", &self.state.n_waiting())
            .finish()
    }
}

/// Serializable only inside `mp_reduction::collect_fds`: the lock and the
/// counters, so that every receiver shares both.
impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        (&self.lock, &self.state).serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`.
impl<'de> serde::Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let (lock, state) = <(SharedLock, Shared<CondState>)>::deserialize(deserializer)?;
        Ok(Self { lock, state })
    }
}
