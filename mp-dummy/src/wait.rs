//! Mutexes that shrug off poisoning and condition-variable waits with a
//! deadline: the two things every object of this crate is made of.
//!
//! No code of this crate panics while it holds one of its mutexes, but a
//! caller's closure may (`Condition::wait_for`'s predicate, a barrier's
//! action, `Value::update`); the data behind the mutex is whole then (the
//! closures only read it or replace it whole), so poisoning is recovered
//! from instead of spreading the panic to every other thread.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Locks `m`, recovering from poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When a wait ends: `None` is never. A timeout too large for an
/// `Instant` also means never.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// The deadline of an acquisition after CPython's `acquire(block,
/// timeout)`: without `block`, now (the timeout is ignored, as mp-sync
/// ignores it).
pub(crate) fn acquire_deadline(block: bool, timeout: Option<Duration>) -> Option<Instant> {
    if block {
        deadline(timeout)
    } else {
        Some(Instant::now())
    }
}

/// Waits on `cv` while `blocked(&mut state)` holds, until `deadline`:
/// whether the condition cleared (false: timed out, still blocked).
pub(crate) fn wait_while<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut blocked: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    while blocked(&mut guard) {
        match deadline {
            None => guard = cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(end) => {
                let now = Instant::now();
                if now >= end {
                    return (guard, false);
                }
                guard = cv
                    .wait_timeout(guard, end - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
    (guard, true)
}
