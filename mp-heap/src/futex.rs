//! Waiting on a 32-bit word in shared memory, and waking its waiters, from
//! any process that maps it: the layer under every lock, semaphore and
//! condition of mp-heap and mp-sync, public so that other shared
//! structures (a queue's ring, say) can sleep the same way.
//!
//! The futexes are shared ones (never `FUTEX_PRIVATE_FLAG`): the kernel
//! keys them by the memory behind the address, so a waker in another
//! process, with the word mapped at another address, finds the sleeper.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use mp_heap::futex::{self, Deadline};
//!
//! let word = AtomicU32::new(0);
//! // The word is still 0, so this sleeps until the deadline: false.
//! assert!(!futex::wait(&word, 0, Deadline::after(Some(Duration::from_millis(10)))));
//! // A word that no longer holds the expected value returns at once.
//! word.store(1, Ordering::Release);
//! assert!(futex::wait(&word, 0, Deadline::Never));
//! assert_eq!(futex::wake_all(&word), 0); // nobody was asleep
//! ```

use std::{
    sync::atomic::AtomicU32,
    time::{Duration, Instant},
};

use rustix::thread::futex;

/// When a wait gives up: never, or at an instant of the monotonic clock.
///
/// CPython's `acquire(block, timeout)` and `wait(timeout)` map onto it
/// with [`Deadline::after`] and [`Deadline::for_acquire`]; a timeout too
/// large for an [`Instant`] to hold (`Duration::MAX`) means no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Give up at this instant (one that has passed: try once, never sleep).
    At(Instant),
}

impl Deadline {
    /// `timeout` from now: `None` waits forever, as does a timeout too
    /// large to add to the clock.
    pub fn after(timeout: Option<Duration>) -> Deadline {
        // `Instant + Duration` overflows for huge timeouts: no deadline.
        match timeout.and_then(|t| Instant::now().checked_add(t)) {
            Some(at) => Deadline::At(at),
            None => Deadline::Never,
        }
    }

    /// A deadline that has already passed: one attempt, no waiting.
    pub fn now() -> Deadline {
        Deadline::At(Instant::now())
    }

    /// CPython's `acquire(block, timeout)`: without `block` one attempt
    /// (the timeout is ignored, as CPython ignores it), else as
    /// [`Deadline::after`].
    pub fn for_acquire(block: bool, timeout: Option<Duration>) -> Deadline {
        if block {
            Deadline::after(timeout)
        } else {
            Deadline::now()
        }
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        match self {
            Deadline::Never => false,
            Deadline::At(at) => Instant::now() >= *at,
        }
    }

    /// The time left: `None` for no deadline, zero once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
        }
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        match (self, other) {
            (Deadline::Never, d) | (d, Deadline::Never) => d,
            (Deadline::At(a), Deadline::At(b)) => Deadline::At(a.min(b)),
        }
    }
}

/// Sleeps while `word` holds `expected`, until a [`wake`], the deadline,
/// or a signal: `FUTEX_WAIT` on a shared futex.
///
/// Returns `false` once the deadline has passed, `true` otherwise (woken,
/// the word held another value, or interrupted): either way the caller
/// looks at the word again, as every futex user must, since wakes can be
/// spurious.
///
/// # References
///
/// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
#[doc(alias = "FUTEX_WAIT")]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    let timeout = match deadline.remaining() {
        None => None,
        Some(left) if left.is_zero() => return false,
        Some(left) => Some(rustix::time::Timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        }),
    };
    // EAGAIN (the word changed), EINTR and ETIMEDOUT all mean "look
    // again"; the deadline decides what a timeout means.
    let _ = futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref());
    !deadline.has_passed()
}

/// Wakes at most `n` of the processes and threads asleep on `word`
/// (`FUTEX_WAKE`); returns how many woke.
///
/// # References
///
/// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
#[doc(alias = "FUTEX_WAKE")]
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    // The kernel takes the count as a signed int.
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

/// Wakes every sleeper on `word`; returns how many woke.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn deadlines_follow_cpython_timeouts() {
        assert_eq!(Deadline::after(None), Deadline::Never);
        assert_eq!(Deadline::after(Some(Duration::MAX)), Deadline::Never);
        assert!(Deadline::for_acquire(false, None).has_passed());
        assert!(Deadline::for_acquire(false, Some(Duration::from_secs(60))).has_passed());
        assert_eq!(Deadline::for_acquire(true, None), Deadline::Never);
        let soon = Deadline::after(Some(Duration::from_secs(60)));
        assert!(!soon.has_passed());
        assert!(soon.remaining().unwrap() <= Duration::from_secs(60));
        assert_eq!(Deadline::Never.min(soon), soon);
        assert_eq!(Deadline::now().remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait() {
        let word = AtomicU32::new(0);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                while word.load(Ordering::Acquire) == 0 {
                    assert!(wait(
                        &word,
                        0,
                        Deadline::after(Some(Duration::from_secs(60)))
                    ));
                }
            });
            std::thread::sleep(Duration::from_millis(20));
            word.store(1, Ordering::Release);
            wake_all(&word);
            sleeper.join().unwrap();
        });
    }
}
