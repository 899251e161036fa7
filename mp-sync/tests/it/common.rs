//! Helpers: patient waits for the state other threads reach.

use std::time::{Duration, Instant};

/// How long anything may take on a loaded machine before a test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Waits (up to [`PATIENCE`]) until `cond` holds.
pub(crate) fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Gives other threads time to do what they should not (a wake that must
/// not happen); a failure after it is a real bug, never a slow machine.
pub(crate) fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}
