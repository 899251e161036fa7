//! The thread versions of mp-sync's primitives (CPython's `threading`
//! ones, which `multiprocessing.dummy` re-exports): [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`] and
//! [`Barrier`], with mp-sync's method names, arguments and errors.
//!
//! Each is a handle on a `Mutex` + `Condvar` pair; clones share the
//! primitive, like an `Arc`.

use std::{
    collections::VecDeque,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Condvar, Mutex},
    thread::{self, ThreadId},
    time::{Duration, Instant},
};

use crate::error::{ActionError, Error, Result};
use crate::wait::{acquire_deadline, deadline, lock, wait_while};

/// The lock part of [`Lock`] and [`RLock`], which a [`Condition`] and a
/// [`LockGuard`] work through.
trait RawLock: Send + Sync {
    fn acquire_until(&self, deadline: Option<Instant>) -> bool;
    fn release(&self) -> Result<()>;
    /// Whether the calling thread may wait on or notify a condition over
    /// this lock (CPython's `Condition._is_owned`).
    fn is_owned(&self) -> bool;
    /// Releases the lock completely, returning what `acquire_restore`
    /// needs to take it back as it was.
    fn release_save(&self) -> u64;
    fn acquire_restore(&self, saved: u64);
}

/// A held [`Lock`], [`RLock`] or [`Condition`] lock, released on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a dyn RawLock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // The guard's own acquisition: the release cannot fail unless the
        // caller released it by hand meanwhile, which leaves nothing to do.
        let _ = self.lock.release();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

fn guard_until(lock: &dyn RawLock, deadline: Option<Instant>) -> Option<LockGuard<'_>> {
    // `then`, not `then_some`: a guard made and dropped on failure would
    // release a lock someone else holds.
    lock.acquire_until(deadline).then(|| LockGuard { lock })
}

/// The acquire/lock methods every lock kind shares.
macro_rules! lock_methods {
    ($name:ident) => {
        impl $name {
            /// CPython's `acquire(block=True, timeout=None)`: whether the
            /// lock was taken (without `block`, a try; with a timeout, at
            /// most that long).
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool {
                RawLock::acquire_until(&*self.inner, acquire_deadline(block, timeout))
            }

            /// Takes the lock, waiting as long as it takes; released when
            /// the guard drops (CPython's `with lock:`).
            pub fn lock(&self) -> LockGuard<'_> {
                LockGuard { lock: &*self.inner }.acquired(None)
            }

            /// Takes the lock if it is free now.
            pub fn try_lock(&self) -> Option<LockGuard<'_>> {
                guard_until(&*self.inner, Some(Instant::now()))
            }

            /// Takes the lock, waiting at most `timeout`.
            pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
                guard_until(&*self.inner, deadline(Some(timeout)))
            }
        }
    };
}

impl<'a> LockGuard<'a> {
    fn acquired(self, deadline: Option<Instant>) -> LockGuard<'a> {
        // Waiting forever: cannot fail.
        let taken = self.lock.acquire_until(deadline);
        debug_assert!(taken);
        self
    }
}

/// CPython's `threading.Lock` (`multiprocessing.dummy.Lock`): a
/// non-recursive lock that any thread may release.
///
/// ```
/// let lock = mp_dummy::Lock::new();
/// assert!(lock.acquire(true, None));
/// assert!(!lock.acquire(false, None)); // held: a try fails
/// lock.release()?;
/// assert!(lock.release().is_err()); // "released too many times"
/// {
///     let _guard = lock.lock();
///     assert!(lock.is_locked());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Lock {
    inner: Arc<PlainLock>,
}

#[derive(Default)]
struct PlainLock {
    locked: Mutex<bool>,
    cv: Condvar,
}

impl RawLock for PlainLock {
    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let (mut locked, free) = wait_while(&self.cv, lock(&self.locked), deadline, |l| *l);
        if free {
            *locked = true;
        }
        free
    }

    fn release(&self) -> Result<()> {
        let mut locked = lock(&self.locked);
        if !*locked {
            return Err(Error::ReleasedTooManyTimes);
        }
        *locked = false;
        drop(locked);
        self.cv.notify_one();
        Ok(())
    }

    fn is_owned(&self) -> bool {
        // A plain lock has no owner: held is as good as it gets (CPython's
        // `Condition._is_owned` for a lock without `_is_owned`).
        *lock(&self.locked)
    }

    fn release_save(&self) -> u64 {
        let _ = RawLock::release(self);
        1
    }

    fn acquire_restore(&self, _saved: u64) {
        self.acquire_until(None);
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock::default()
    }

    /// CPython's `release()`: by any thread.
    ///
    /// # Errors
    ///
    /// [`Error::ReleasedTooManyTimes`] when it is not held.
    pub fn release(&self) -> Result<()> {
        RawLock::release(&*self.inner)
    }

    /// CPython's `locked()`: whether some thread holds it now.
    pub fn is_locked(&self) -> bool {
        *lock(&self.inner.locked)
    }
}

lock_methods!(Lock);

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_locked() {
            "locked"
        } else {
            "unlocked"
        };
        write!(f, "<Lock({state})>")
    }
}

/// CPython's `threading.RLock`: a recursive lock. The holding thread may
/// acquire it again; it stays held until released as many times; only
/// that thread may release it.
///
/// ```
/// let lock = mp_dummy::RLock::new();
/// for _ in 0..3 {
///     assert!(lock.acquire(true, None));
/// }
/// assert_eq!(lock.recursion_count(), 3);
/// for _ in 0..3 {
///     lock.release()?;
/// }
/// assert!(matches!(lock.release(), Err(mp_dummy::Error::NotOwner)));
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct RLock {
    inner: Arc<ReentrantLock>,
}

#[derive(Default)]
struct ReentrantLock {
    /// The holding thread and how many times it holds the lock.
    state: Mutex<(Option<ThreadId>, u64)>,
    cv: Condvar,
}

impl RawLock for ReentrantLock {
    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let me = thread::current().id();
        let mut state = lock(&self.state);
        if state.0 == Some(me) {
            state.1 += 1;
            return true;
        }
        let (mut state, free) = wait_while(&self.cv, state, deadline, |s| s.0.is_some());
        if free {
            *state = (Some(me), 1);
        }
        free
    }

    fn release(&self) -> Result<()> {
        let mut state = lock(&self.state);
        if state.0 != Some(thread::current().id()) {
            return Err(Error::NotOwner);
        }
        state.1 -= 1;
        if state.1 == 0 {
            state.0 = None;
            drop(state);
            self.cv.notify_one();
        }
        Ok(())
    }

    fn is_owned(&self) -> bool {
        lock(&self.state).0 == Some(thread::current().id())
    }

    fn release_save(&self) -> u64 {
        let mut state = lock(&self.state);
        let count = state.1;
        *state = (None, 0);
        drop(state);
        self.cv.notify_one();
        count
    }

    fn acquire_restore(&self, saved: u64) {
        let me = thread::current().id();
        let (mut state, _) = wait_while(&self.cv, lock(&self.state), None, |s| s.0.is_some());
        *state = (Some(me), saved);
    }
}

impl RLock {
    /// A new, unlocked recursive lock.
    pub fn new() -> RLock {
        RLock::default()
    }

    /// CPython's `release()`: one level, by the holding thread.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwner`] when the calling thread does not hold it.
    pub fn release(&self) -> Result<()> {
        RawLock::release(&*self.inner)
    }

    /// How many times the calling thread holds it (0: not at all).
    pub fn recursion_count(&self) -> u64 {
        let state = lock(&self.inner.state);
        if state.0 == Some(thread::current().id()) {
            state.1
        } else {
            0
        }
    }

    /// Whether the calling thread holds it.
    pub fn is_mine(&self) -> bool {
        self.inner.is_owned()
    }

    /// Whether some thread holds it.
    pub fn is_locked(&self) -> bool {
        lock(&self.inner.state).0.is_some()
    }
}

lock_methods!(RLock);

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (owner, count) = *lock(&self.inner.state);
        match owner {
            Some(t) => write!(f, "<RLock(owner={t:?}, count={count})>"),
            None => f.write_str("<RLock(unlocked)>"),
        }
    }
}

/// The lock of a [`Condition`]: a [`Lock`] or an [`RLock`] (mp-sync's
/// `SharedLock`).
#[derive(Clone, Debug)]
pub enum ConditionLock {
    /// A plain lock.
    Lock(Lock),
    /// A recursive lock (the default, as in CPython).
    RLock(RLock),
}

impl ConditionLock {
    fn raw(&self) -> &dyn RawLock {
        match self {
            ConditionLock::Lock(l) => &*l.inner,
            ConditionLock::RLock(l) => &*l.inner,
        }
    }
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<&Lock> for ConditionLock {
    fn from(l: &Lock) -> Self {
        ConditionLock::Lock(l.clone())
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> Self {
        ConditionLock::RLock(l)
    }
}

impl From<&RLock> for ConditionLock {
    fn from(l: &RLock) -> Self {
        ConditionLock::RLock(l.clone())
    }
}

/// One thread asleep in [`Condition::wait`], woken by `notify`.
#[derive(Default)]
struct Waiter {
    notified: Mutex<bool>,
    cv: Condvar,
}

/// CPython's `threading.Condition`: `wait`/`notify` over a lock (an
/// [`RLock`] unless given one), waiters woken in the order they came.
///
/// ```
/// use std::time::Duration;
/// let cond = mp_dummy::Condition::new();
/// assert!(cond.wait(None).is_err()); // without the lock: an error
/// let _held = cond.lock();
/// assert!(!cond.wait(Some(Duration::from_millis(1)))?); // nobody notifies
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: ConditionLock,
    waiters: Arc<Mutex<VecDeque<Arc<Waiter>>>>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl Condition {
    /// A condition over a new [`RLock`].
    pub fn new() -> Condition {
        Condition::with_lock(RLock::new())
    }

    /// A condition over `lock` (CPython's `Condition(lock)`).
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Condition {
        Condition {
            lock: lock.into(),
            waiters: Arc::default(),
        }
    }

    /// The condition's lock.
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Acquires the condition's lock, as its `acquire(block, timeout)`.
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool {
        self.lock
            .raw()
            .acquire_until(acquire_deadline(block, timeout))
    }

    /// Releases the condition's lock, as its `release()`.
    ///
    /// # Errors
    ///
    /// As the lock's `release`.
    pub fn release(&self) -> Result<()> {
        self.lock.raw().release()
    }

    /// Takes the condition's lock until the guard drops.
    pub fn lock(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self.lock.raw(),
        }
        .acquired(None)
    }

    /// Takes the condition's lock if it is free now.
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        guard_until(self.lock.raw(), Some(Instant::now()))
    }

    /// Takes the condition's lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        guard_until(self.lock.raw(), deadline(Some(timeout)))
    }

    /// CPython's `wait(timeout=None)`: releases the lock, sleeps until
    /// notified or the timeout, takes the lock back: whether it was
    /// notified.
    ///
    /// # Errors
    ///
    /// [`Error::WaitWithoutLock`] when the calling thread does not hold
    /// the lock.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let raw = self.lock.raw();
        if !raw.is_owned() {
            return Err(Error::WaitWithoutLock);
        }
        let waiter = Arc::new(Waiter::default());
        lock(&self.waiters).push_back(waiter.clone());
        let saved = raw.release_save();
        let (guard, mut notified) =
            wait_while(&waiter.cv, lock(&waiter.notified), deadline(timeout), |n| {
                !*n
            });
        drop(guard);
        if !notified {
            let mut waiters = lock(&self.waiters);
            match waiters.iter().position(|w| Arc::ptr_eq(w, &waiter)) {
                Some(i) => {
                    waiters.remove(i);
                }
                // A notify took it off the list after the timeout: it
                // counts, or that notify would be lost.
                None => notified = true,
            }
        }
        raw.acquire_restore(saved);
        Ok(notified)
    }

    /// CPython's `wait_for(predicate, timeout=None)`: waits until
    /// `predicate()` holds (checked first, then after each wake-up) or the
    /// timeout: the predicate's last answer.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let end = deadline(timeout);
        let mut result = predicate();
        while !result {
            let left = match end {
                None => None,
                Some(end) => {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    Some(end - now)
                }
            };
            self.wait(left)?;
            result = predicate();
        }
        Ok(result)
    }

    /// CPython's `notify(n=1)`: wakes up to `n` waiters, the longest
    /// waiting first.
    ///
    /// # Errors
    ///
    /// [`Error::NotifyWithoutLock`] when the calling thread does not hold
    /// the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        if !self.lock.raw().is_owned() {
            return Err(Error::NotifyWithoutLock);
        }
        let mut waiters = lock(&self.waiters);
        for _ in 0..n {
            let Some(w) = waiters.pop_front() else { break };
            *lock(&w.notified) = true;
            w.cv.notify_one();
        }
        Ok(())
    }

    /// CPython's `notify_all()`.
    ///
    /// # Errors
    ///
    /// As [`notify`](Condition::notify).
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waiters = lock(&self.waiters).len();
        write!(f, "<Condition({:?}, {waiters})>", self.lock)
    }
}

/// CPython's `threading.Event`: a flag threads wait for.
///
/// ```
/// let ready = mp_dummy::Event::new();
/// assert!(!ready.wait(Some(std::time::Duration::ZERO)));
/// ready.set();
/// assert!(ready.is_set() && ready.wait(None));
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// CPython's `is_set()`.
    pub fn is_set(&self) -> bool {
        *lock(&self.inner.0)
    }

    /// CPython's `set()`: sets the flag and wakes every waiter.
    pub fn set(&self) {
        *lock(&self.inner.0) = true;
        self.inner.1.notify_all();
    }

    /// CPython's `clear()`.
    pub fn clear(&self) {
        *lock(&self.inner.0) = false;
    }

    /// CPython's `wait(timeout=None)`: whether the flag is set, waiting
    /// for it at most `timeout`.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        wait_while(&self.inner.1, lock(&self.inner.0), deadline(timeout), |s| {
            !*s
        })
        .1
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        write!(f, "<Event({state})>")
    }
}

/// The largest value a semaphore counts to.
pub const SEM_VALUE_MAX: u32 = u32::MAX;

/// A counter and its condition variable, behind both semaphore kinds.
struct Counter {
    value: Mutex<u32>,
    cv: Condvar,
    /// A bounded semaphore's initial value.
    max: Option<u32>,
}

impl Counter {
    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let (mut value, free) = wait_while(&self.cv, lock(&self.value), deadline, |v| *v == 0);
        if free {
            *value -= 1;
        }
        free
    }

    fn release(&self) -> Result<()> {
        let mut value = lock(&self.value);
        if self.max.is_some_and(|max| *value >= max) {
            return Err(Error::ReleasedTooManyTimes);
        }
        *value = value
            .checked_add(1)
            .ok_or(Error::SemaphoreOverflow { max: SEM_VALUE_MAX })?;
        drop(value);
        self.cv.notify_one();
        Ok(())
    }
}

/// A held semaphore, released on drop.
#[must_use = "the semaphore is released when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    counter: &'a Counter,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Its own acquisition: room to give back, unless a release by hand
        // filled a bounded semaphore meanwhile, which leaves nothing to do.
        let _ = self.counter.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

macro_rules! semaphore_methods {
    ($name:ident) => {
        impl $name {
            /// CPython's `acquire(block=True, timeout=None)`: whether a
            /// unit was taken.
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool {
                self.inner.acquire_until(acquire_deadline(block, timeout))
            }

            /// Takes a unit if one is free now.
            pub fn try_acquire(&self) -> bool {
                self.inner.acquire_until(Some(Instant::now()))
            }

            /// Takes a unit, waiting as long as it takes, until the guard
            /// drops.
            pub fn guard(&self) -> SemaphoreGuard<'_> {
                self.inner.acquire_until(None);
                SemaphoreGuard {
                    counter: &self.inner,
                }
            }

            /// CPython's `get_value()` (`_value`): free units now.
            pub fn get_value(&self) -> u32 {
                *lock(&self.inner.value)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<{}(value={})>", stringify!($name), self.get_value())
            }
        }
    };
}

/// CPython's `threading.Semaphore`.
///
/// ```
/// let sem = mp_dummy::Semaphore::new(1);
/// assert!(sem.acquire(true, None));
/// assert!(!sem.try_acquire());
/// sem.release()?;
/// sem.release()?; // past the initial value: fine for a Semaphore
/// assert_eq!(sem.get_value(), 2);
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Counter>,
}

impl Semaphore {
    /// A semaphore with `value` free units.
    pub fn new(value: u32) -> Semaphore {
        Semaphore {
            inner: Arc::new(Counter {
                value: Mutex::new(value),
                cv: Condvar::new(),
                max: None,
            }),
        }
    }

    /// CPython's `release()`: gives one unit back.
    ///
    /// # Errors
    ///
    /// [`Error::SemaphoreOverflow`] past [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }
}

semaphore_methods!(Semaphore);

/// CPython's `threading.BoundedSemaphore`: releasing above the initial
/// value is an error.
///
/// ```
/// let sem = mp_dummy::BoundedSemaphore::new(1);
/// assert!(sem.release().is_err()); // would exceed 1
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    inner: Arc<Counter>,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` free units, never more.
    pub fn new(value: u32) -> BoundedSemaphore {
        BoundedSemaphore {
            inner: Arc::new(Counter {
                value: Mutex::new(value),
                cv: Condvar::new(),
                max: Some(value),
            }),
        }
    }

    /// CPython's `release()`.
    ///
    /// # Errors
    ///
    /// [`Error::ReleasedTooManyTimes`] above the initial value.
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }

    /// The initial value, which it never exceeds.
    pub fn max_value(&self) -> u32 {
        self.inner.max.unwrap_or(SEM_VALUE_MAX)
    }
}

semaphore_methods!(BoundedSemaphore);

/// What the last party to arrive at a [`Barrier`] runs, before any leaves.
pub type BarrierActionFn = dyn Fn() -> std::result::Result<(), ActionError> + Send + Sync;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BarrierPhase {
    Filling,
    Draining,
    Resetting,
    Broken,
}

struct BarrierState {
    phase: BarrierPhase,
    /// Parties inside `wait`.
    count: u32,
}

struct BarrierInner {
    state: Mutex<BarrierState>,
    cv: Condvar,
    parties: u32,
    timeout: Option<Duration>,
    action: Option<Box<BarrierActionFn>>,
}

/// CPython's `threading.Barrier`: `parties` threads wait until all have
/// arrived; the last runs the action first. `abort`, `reset`, a timeout
/// or a failed action break it ([`Error::BrokenBarrier`]).
///
/// ```
/// use std::time::Duration;
/// let barrier = mp_dummy::Barrier::new(2, None)?;
/// let other = barrier.clone();
/// let t = std::thread::spawn(move || other.wait(None));
/// let mine = barrier.wait(Some(Duration::from_secs(30)))?;
/// let theirs = t.join().unwrap()?;
/// assert_eq!(mine + theirs, 1); // indexes 0 and 1
/// assert!(barrier.wait(Some(Duration::ZERO)).is_err()); // alone: times out, breaks
/// assert!(barrier.broken());
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Arc<BarrierInner>,
}

impl Barrier {
    /// A barrier for `parties` threads, with a default timeout for
    /// [`wait`](Barrier::wait).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero parties.
    pub fn new(parties: u32, timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::build(parties, None, timeout)
    }

    /// A barrier whose last party to arrive runs `action` before any
    /// leaves; an `Err` (or a panic) breaks the barrier.
    ///
    /// # Errors
    ///
    /// As [`new`](Barrier::new).
    pub fn with_action(
        parties: u32,
        action: impl Fn() -> std::result::Result<(), ActionError> + Send + Sync + 'static,
        timeout: Option<Duration>,
    ) -> Result<Barrier> {
        Barrier::build(parties, Some(Box::new(action)), timeout)
    }

    fn build(
        parties: u32,
        action: Option<Box<BarrierActionFn>>,
        timeout: Option<Duration>,
    ) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument("a barrier needs at least one party"));
        }
        Ok(Barrier {
            inner: Arc::new(BarrierInner {
                state: Mutex::new(BarrierState {
                    phase: BarrierPhase::Filling,
                    count: 0,
                }),
                cv: Condvar::new(),
                parties,
                timeout,
                action,
            }),
        })
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.inner.parties
    }

    /// Parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        let state = lock(&self.inner.state);
        if state.phase == BarrierPhase::Filling {
            state.count
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        lock(&self.inner.state).phase == BarrierPhase::Broken
    }

    /// The default timeout of `wait`.
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// CPython's `wait(timeout=None)`: waits for every party (at most
    /// `timeout`, or the barrier's default): this party's index, from 0 to
    /// `parties - 1`, each once per pass.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] when the barrier is or becomes broken (the
    /// timeout breaks it); [`Error::BarrierAction`] for the party whose
    /// action failed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        let inner = &*self.inner;
        let end = deadline(timeout.or(inner.timeout));
        // A pass still draining or resetting: wait for it to finish.
        let (mut state, _) = wait_while(&inner.cv, lock(&inner.state), None, |s| {
            matches!(s.phase, BarrierPhase::Draining | BarrierPhase::Resetting)
        });
        if state.phase == BarrierPhase::Broken {
            return Err(Error::BrokenBarrier);
        }
        let index = state.count;
        state.count += 1;
        let result = if index + 1 == inner.parties {
            // The last to arrive: run the action (under the lock, as
            // CPython does), then let everyone out.
            let outcome = match &inner.action {
                None => Ok(()),
                Some(action) => match catch_unwind(AssertUnwindSafe(action)) {
                    Ok(r) => r,
                    Err(panic) => Err(panic_message(&*panic).into()),
                },
            };
            match outcome {
                Ok(()) => {
                    state.phase = BarrierPhase::Draining;
                    inner.cv.notify_all();
                    Ok(index)
                }
                Err(e) => {
                    state.phase = BarrierPhase::Broken;
                    inner.cv.notify_all();
                    Err(Error::BarrierAction(e))
                }
            }
        } else {
            let (s, released) =
                wait_while(&inner.cv, state, end, |s| s.phase == BarrierPhase::Filling);
            state = s;
            if !released {
                state.phase = BarrierPhase::Broken;
                inner.cv.notify_all();
                Err(Error::BrokenBarrier)
            } else if state.phase != BarrierPhase::Draining {
                Err(Error::BrokenBarrier)
            } else {
                Ok(index)
            }
        };
        state.count -= 1;
        if state.count == 0
            && matches!(
                state.phase,
                BarrierPhase::Resetting | BarrierPhase::Draining
            )
        {
            state.phase = BarrierPhase::Filling;
            inner.cv.notify_all();
        }
        result
    }

    /// CPython's `reset()`: back to its first state; parties waiting now
    /// get [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let mut state = lock(&self.inner.state);
        if state.count > 0 {
            if matches!(state.phase, BarrierPhase::Filling | BarrierPhase::Broken) {
                state.phase = BarrierPhase::Resetting;
            }
        } else {
            state.phase = BarrierPhase::Filling;
        }
        self.inner.cv.notify_all();
    }

    /// CPython's `abort()`: breaks the barrier, for the parties waiting now
    /// and those to come, until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        lock(&self.inner.state).phase = BarrierPhase::Broken;
        self.inner.cv.notify_all();
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        write!(
            f,
            "<Barrier(parties={}, waiting={}, {:?})>",
            self.inner.parties, state.count, state.phase
        )
    }
}

/// A panic's message (a `&str` or `String` payload), for the error that
/// carries it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}
