//! Where a task's outcome goes: [`Slot`] (one value, written once by the
//! worker thread that finishes the task), [`AsyncResult`] over it, and the
//! [`Callbacks`] run when it is filled.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::{PoolError, Result};

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (no user code runs under these locks, and every update is one step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The deadline `timeout` from now (`None`, or too far for an `Instant`:
/// none).
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Waits on `cv` until `deadline` (`None`: no limit); `false` once the
/// deadline has passed.
pub(crate) fn wait_on<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (cv.wait(guard).unwrap_or_else(|e| e.into_inner()), true),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return (guard, false);
            }
            let (guard, _) = cv
                .wait_timeout(guard, d - now)
                .unwrap_or_else(|e| e.into_inner());
            (guard, true)
        }
    }
}

/// Where a slot is: for an `apply_async`, the input waits here too
/// (`Pending`), so that a task is one lock and one small allocation.
enum Outcome<T, I> {
    /// Not started: the input (`()` for a `map`, whose chunks hold theirs).
    Pending(I),
    /// A worker took the input and runs it.
    Running,
    /// A callback is running with the value; ready once it returns.
    Completing,
    /// The error boxed: a pending task's slot is allocated per task and
    /// kept until its `AsyncResult` goes, and `PoolError` is five words.
    Ready(std::result::Result<T, Box<PoolError>>),
    /// The value was handed out (it was a success).
    Taken,
}

struct SlotState<T, I> {
    outcome: Outcome<T, I>,
    /// Threads blocked in [`Slot::wait_ready`]: the finisher wakes them
    /// only if there are any (a futex wake is a system call).
    waiters: u32,
    /// Boxed: most tasks have none, and a small task is a small
    /// allocation.
    callbacks: Option<Box<Callbacks<T>>>,
}

/// One task's (or one `map`'s) outcome, filled once, and until a worker
/// takes it the task's input `I`.
pub(crate) struct Slot<T, I = ()> {
    state: Mutex<SlotState<T, I>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    /// A slot without an input (a `map`'s).
    pub(crate) fn new(callbacks: Callbacks<T>) -> Slot<T> {
        Slot::with_input(callbacks, ())
    }
}

impl<T, I> Slot<T, I> {
    /// A slot holding `input` until a worker takes it.
    pub(crate) fn with_input(callbacks: Callbacks<T>, input: I) -> Slot<T, I> {
        Slot {
            state: Mutex::new(SlotState {
                outcome: Outcome::Pending(input),
                waiters: 0,
                callbacks: (!callbacks.is_empty()).then(|| Box::new(callbacks)),
            }),
            ready: Condvar::new(),
        }
    }

    /// Whether the outcome is still to come.
    #[cfg(test)]
    fn is_pending(&self) -> bool {
        matches!(
            lock(&self.state).outcome,
            Outcome::Pending(_) | Outcome::Running
        )
    }

    /// The input, once, for the worker that runs the task (`None` if the
    /// task was cancelled or taken already).
    pub(crate) fn take_input(&self) -> Option<I> {
        let mut state = lock(&self.state);
        if !matches!(state.outcome, Outcome::Pending(_)) {
            return None;
        }
        match std::mem::replace(&mut state.outcome, Outcome::Running) {
            Outcome::Pending(input) => Some(input),
            _ => None,
        }
    }

    /// Files the outcome (the first one counts; a later one is dropped).
    /// Runs the callback first, as CPython does before `ready()` turns
    /// true: on the thread that calls this. An input not taken yet (a
    /// cancelled task's) is dropped after the lock is released: its
    /// `Drop` may use the pool.
    pub(crate) fn complete(&self, result: Result<T>) {
        let mut state = lock(&self.state);
        if !matches!(state.outcome, Outcome::Pending(_) | Outcome::Running) {
            return;
        }
        let Some(callbacks) = state.callbacks.take() else {
            let before =
                std::mem::replace(&mut state.outcome, Outcome::Ready(result.map_err(Box::new)));
            self.wake(state);
            drop(before);
            return;
        };
        let before = std::mem::replace(&mut state.outcome, Outcome::Completing);
        drop(state);
        drop(before);
        let after = callbacks.run(result);
        let mut state = lock(&self.state);
        state.outcome = after;
        self.wake(state);
    }

    fn wake(&self, state: MutexGuard<'_, SlotState<T, I>>) {
        let waiters = state.waiters > 0;
        drop(state);
        if waiters {
            self.ready.notify_all();
        }
    }

    /// Waits until the outcome is ready or `deadline` passes; the guard if
    /// it is ready.
    fn wait_ready(&self, deadline: Option<Instant>) -> Option<MutexGuard<'_, SlotState<T, I>>> {
        let mut state = lock(&self.state);
        loop {
            if matches!(state.outcome, Outcome::Ready(_) | Outcome::Taken) {
                return Some(state);
            }
            state.waiters += 1;
            let (s, in_time) = wait_on(&self.ready, state, deadline);
            state = s;
            state.waiters -= 1;
            if !in_time {
                return None;
            }
        }
    }
}

/// What an [`AsyncResult`] asks of its slot, whatever the input type.
pub(crate) trait ResultSlot<T>: Send + Sync {
    /// The value (moved out) or the error, once ready by `deadline`.
    fn get(&self, deadline: Option<Instant>) -> Result<T>;
    /// Whether the outcome is ready by `deadline`.
    fn wait(&self, deadline: Option<Instant>) -> bool;
    /// Whether the task succeeded; `None` while not ready.
    fn succeeded(&self) -> Option<bool>;
}

impl<T: Send, I: Send> ResultSlot<T> for Slot<T, I> {
    fn get(&self, deadline: Option<Instant>) -> Result<T> {
        let Some(mut state) = self.wait_ready(deadline) else {
            return Err(PoolError::Timeout);
        };
        match std::mem::replace(&mut state.outcome, Outcome::Taken) {
            Outcome::Ready(Ok(v)) => Ok(v),
            Outcome::Ready(Err(e)) => {
                let error = (*e).clone();
                state.outcome = Outcome::Ready(Err(e));
                Err(error)
            }
            _ => Err(PoolError::ResultTaken),
        }
    }

    fn wait(&self, deadline: Option<Instant>) -> bool {
        self.wait_ready(deadline).is_some()
    }

    fn succeeded(&self) -> Option<bool> {
        let state = self.wait_ready(deadline_after(Some(Duration::ZERO)))?;
        Some(!matches!(state.outcome, Outcome::Ready(Err(_))))
    }
}

/// Runs a callback, reporting its panic on stderr instead of unwinding
/// into the worker thread.
fn contained(call: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err() {
        // The panic hook has printed the message.
        eprintln!("mp-dummy: a thread pool result callback panicked; the pool goes on");
    }
}

/// What an [`AsyncResult`] reads: a [`Slot`] inside a task.
pub(crate) trait HasSlot<T>: Send + Sync {
    fn slot(&self) -> &dyn ResultSlot<T>;
}

impl<T: Send, I: Send> HasSlot<T> for Slot<T, I> {
    fn slot(&self) -> &dyn ResultSlot<T> {
        self
    }
}

/// What to run when a result is ready: `on_success` with the value, or
/// `on_error` with the error (CPython's `callback` and `error_callback`).
///
/// A callback runs on the worker thread that finished the task (for a
/// `map`, its last chunk), before the result turns ready, as CPython's
/// run before `ready()` is true; keep it short, it holds up that thread.
/// `on_success` is given the value itself, so a later
/// [`AsyncResult::get`] returns [`PoolError::ResultTaken`]. A panicking
/// callback is reported on stderr and the pool goes on.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use mp_dummy::pool::{Callbacks, Pool};
///
/// # fn main() -> Result<(), mp_dummy::pool::PoolError> {
/// let pool = Pool::new(Some(1))?;
/// let (tx, rx) = mpsc::channel();
/// let callbacks = Callbacks::new()
///     .on_success(move |n| tx.send(n).unwrap())
///     .on_error(|e| eprintln!("failed: {e}"));
/// pool.apply_async_with(|n: u64| n * n, 7, callbacks)?;
/// assert_eq!(rx.recv().unwrap(), 49);
/// # Ok(()) }
/// ```
pub struct Callbacks<T> {
    on_success: Option<Box<dyn FnOnce(T) + Send>>,
    on_error: Option<Box<dyn FnOnce(PoolError) + Send>>,
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_success", &self.on_success.is_some())
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            on_success: None,
            on_error: None,
        }
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the value when the task succeeds.
    pub fn on_success(mut self, f: impl FnOnce(T) + Send + 'static) -> Self {
        self.on_success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when the task fails.
    pub fn on_error(mut self, f: impl FnOnce(PoolError) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    fn is_empty(&self) -> bool {
        self.on_success.is_none() && self.on_error.is_none()
    }

    /// Runs the callback that fits `result`, catching its panic (the
    /// thread that runs it serves the whole pool); what the slot holds
    /// afterwards.
    fn run<I>(self, result: Result<T>) -> Outcome<T, I> {
        match result {
            Ok(v) => match self.on_success {
                Some(f) => {
                    contained(move || f(v));
                    Outcome::Taken
                }
                None => Outcome::Ready(Ok(v)),
            },
            Err(e) => {
                if let Some(f) = self.on_error {
                    let given = e.clone();
                    contained(move || f(given));
                }
                Outcome::Ready(Err(Box::new(e)))
            }
        }
    }

    /// Runs the callbacks with `result` now, on this thread (an empty
    /// `map`); the outcome for a slot.
    pub(crate) fn run_now(self, result: Result<T>) -> Slot<T> {
        let slot = Slot::new(Callbacks::new());
        lock(&slot.state).outcome = self.run(result);
        slot
    }
}

/// The result of [`Pool::apply_async`](crate::pool::Pool::apply_async)
/// (`T` is the task's result) or
/// [`Pool::map_async`](crate::pool::Pool::map_async) (`T` is a `Vec` of
/// them): CPython's `AsyncResult` and `MapResult`.
///
/// The value is moved out by the first successful [`get`](AsyncResult::get)
/// (results need not be `Clone`); a failure can be asked for again and
/// again. A result never waits forever for a terminated pool or a broken
/// one: those end it with an error.
pub struct AsyncResult<T> {
    task: Arc<dyn HasSlot<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = self.task.slot().wait(deadline_after(Some(Duration::ZERO)));
        f.debug_struct("AsyncResult")
            .field("ready", &ready)
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(task: Arc<dyn HasSlot<T>>) -> Self {
        AsyncResult { task }
    }

    /// Waits up to `timeout` (`None`: until ready) and returns the value.
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] if the result is not ready in time (the task
    /// goes on; ask again later); [`PoolError::ResultTaken`] if the value
    /// was handed out already. Otherwise the task's error:
    /// [`PoolError::Panicked`], [`PoolError::Terminated`], or the error that
    /// broke the pool. For a `map`, the error of the first item (by
    /// position) that failed.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        self.task.slot().get(deadline_after(timeout))
    }

    /// Waits up to `timeout` (`None`: until ready); returns whether the
    /// result is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.task.slot().wait(deadline_after(timeout))
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        self.wait(Some(Duration::ZERO))
    }

    /// Whether the task succeeded (also once its value was taken).
    ///
    /// # Errors
    ///
    /// [`PoolError::NotReady`] before the result is ready (CPython's
    /// `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        self.task.slot().succeeded().ok_or(PoolError::NotReady)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_filled_once_and_its_value_handed_out_once() {
        let slot = Arc::new(Slot::<u8>::new(Callbacks::new()));
        let r = AsyncResult::new(slot.clone() as Arc<dyn HasSlot<u8>>);
        assert!(!r.ready());
        assert!(matches!(r.successful(), Err(PoolError::NotReady)));
        assert!(matches!(
            r.get(Some(Duration::from_millis(1))),
            Err(PoolError::Timeout)
        ));
        slot.complete(Ok(1));
        slot.complete(Ok(2));
        assert_eq!(r.get(None).unwrap(), 1);
        assert!(matches!(r.get(None), Err(PoolError::ResultTaken)));
        assert!(r.successful().unwrap());

        let slot = Arc::new(Slot::<u8>::new(Callbacks::new()));
        let r = AsyncResult::new(slot.clone() as Arc<dyn HasSlot<u8>>);
        slot.complete(Err(PoolError::Terminated));
        assert!(matches!(r.get(None), Err(PoolError::Terminated)));
        assert!(matches!(r.get(None), Err(PoolError::Terminated)));
        assert!(!r.successful().unwrap());
    }

    #[test]
    fn a_waiter_is_woken_by_the_finisher() {
        let slot = Arc::new(Slot::<u32>::new(Callbacks::new()));
        let r = AsyncResult::new(slot.clone() as Arc<dyn HasSlot<u32>>);
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            slot.complete(Ok(5));
        });
        assert_eq!(r.get(Some(Duration::from_secs(30))).unwrap(), 5);
        finisher.join().unwrap();
    }

    #[test]
    fn a_panicking_callback_is_contained() {
        let slot = Slot::new(
            Callbacks::new().on_error(|_| panic!("this callback panic is expected by the test")),
        );
        slot.complete(Err::<u8, _>(PoolError::Terminated));
        assert!(!slot.is_pending());
    }
}
