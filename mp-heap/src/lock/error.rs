//! What taking or releasing a [`ProcessLock`](crate::ProcessLock) can
//! report: CPython's messages where CPython raises, and the owner-died
//! case CPython has no answer for (it waits forever).

use std::fmt;

/// An error from a lock operation.
///
/// [`LockError::OwnerDied`] is special: the lock *was* acquired. It says
/// that the process holding it before died without releasing it, so the
/// state the lock protects may be half-updated.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock is now the caller's, taken over from a process that died
    /// holding it. Check (or repair) what the lock protects before relying
    /// on it; only this one acquisition reports it.
    #[error(
        "the lock was acquired, but its previous owner (pid {pid}) died holding it; the state it protects may be inconsistent, so check or repair it before use"
    )]
    OwnerDied {
        /// The process that died holding the lock.
        pid: u32,
    },
    /// A plain lock released while unlocked (CPython: `ValueError`).
    #[error("semaphore or lock released too many times")]
    ReleasedTooManyTimes,
    /// A recursive lock released by a thread that does not hold it
    /// (CPython: `AssertionError`).
    #[error("attempt to release recursive lock not owned by thread")]
    NotOwner,
}

/// Prints the message, as `main() -> Result<(), Box<dyn Error>>` shows it.
impl fmt::Debug for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A lock taken over from a process that died holding it, with what the
/// acquisition produced (a guard, or the value read under the lock).
///
/// Like std's `PoisonError`: the caller has the lock, and `into_inner`
/// hands the guard over to carry on after checking the protected state.
///
/// ```
/// # fn demo(lock: &mp_heap::ProcessLock) {
/// let guard = match lock.lock() {
///     Ok(g) => g,
///     Err(died) => {
///         eprintln!("{died}");
///         died.into_inner() // repair the shared state here
///     }
/// };
/// # drop(guard); }
/// ```
pub struct OwnerDied<G> {
    inner: G,
    pid: u32,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(inner: G, pid: u32) -> Self {
        Self { inner, pid }
    }

    /// The process that died holding the lock.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The guard (or value), to carry on.
    pub fn into_inner(self) -> G {
        self.inner
    }

    /// A reference to the guard (or value).
    pub fn get_ref(&self) -> &G {
        &self.inner
    }

    /// A mutable reference to the guard (or value).
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.inner
    }

    /// The same notice around `f(inner)`: a guard wrapped in a richer one,
    /// or the value read under the lock.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            inner: f(self.inner),
            pid: self.pid,
        }
    }

    /// The error without the guard (the guard is dropped, releasing the
    /// lock).
    pub fn to_error(&self) -> LockError {
        LockError::OwnerDied { pid: self.pid }
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_error(), f)
    }
}

/// Prints the message (the guard has nothing to add).
impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

impl<G> From<OwnerDied<G>> for LockError {
    fn from(e: OwnerDied<G>) -> Self {
        e.to_error()
    }
}

/// What a blocking lock acquisition gives: the guard, or the guard
/// together with the news that the previous owner died holding the lock.
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// Why a non-blocking or timed acquisition did not simply succeed.
pub enum TryLockError<G> {
    /// The lock is held by someone else (until the deadline, for a timed
    /// attempt); nothing was acquired.
    WouldBlock,
    /// Acquired, from an owner that died holding it.
    OwnerDied(OwnerDied<G>),
}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(e)
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => {
                f.write_str("the lock is held elsewhere, and was not acquired in time")
            }
            TryLockError::OwnerDied(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// Prints the message.
impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<G> std::error::Error for TryLockError<G> {}

/// What a non-blocking or timed acquisition gives.
pub type TryLockResult<G> = Result<G, TryLockError<G>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_message() {
        let e = LockError::OwnerDied { pid: 42 };
        assert_eq!(format!("{e:?}"), e.to_string());
        assert!(e.to_string().contains("pid 42"));
        assert!(e.to_string().contains("inconsistent"));
        let died = OwnerDied::new((), 7);
        assert_eq!(
            format!("{died:?}"),
            LockError::OwnerDied { pid: 7 }.to_string()
        );
        assert_eq!(
            format!("{:?}", LockError::ReleasedTooManyTimes),
            "semaphore or lock released too many times"
        );
        let wb: TryLockError<()> = TryLockError::WouldBlock;
        assert_eq!(format!("{wb:?}"), wb.to_string());
    }
}
