//! mp-dummy's integration tests, a module per concern: the seed's rules
//! for processes and connections, and CPython's shared suites
//! (`_test_multiprocessing.py`'s queue, lock, semaphore, condition, event,
//! barrier and container tests, which CPython runs against managers and
//! dummy objects too) against the thread objects.

mod barrier;
mod condition;
mod connection;
mod containers;
mod errors;
mod locks;
mod pool;
mod process;
mod queues;

use std::time::{Duration, Instant};

/// Long enough for anything to happen on a loaded machine.
pub(crate) const LONG: Option<Duration> = Some(Duration::from_secs(60));

/// A short timeout that is meant to pass (something is *not* expected to
/// happen within it).
pub(crate) const SHORT: Duration = Duration::from_millis(100);

/// Asserts that `f` took at least `at_least` (a timeout was honoured);
/// never an upper bound, which a loaded machine would break.
pub(crate) fn took_at_least<T>(at_least: Duration, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    let took = t0.elapsed();
    assert!(
        took >= at_least,
        "returned after {took:?}, before {at_least:?}"
    );
    out
}
