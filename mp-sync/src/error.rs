//! [`SyncError`]: everything the primitives of this crate report, with
//! CPython's messages where CPython raises.

use std::{error::Error as _, fmt};

use mp_heap::{HeapError, LockError};

/// The boxed error a [`BarrierAction`](crate::BarrierAction) may return.
pub type ActionError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a lock, semaphore, condition, event or barrier.
///
/// [`SyncError::OwnerDied`] is special: it comes with the lock *held* (an
/// acquisition that succeeded, or a condition wait that took its lock
/// back), from a process that died holding it.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The lock is the caller's now, taken over from a process that died
    /// holding it; what it protects may be half-updated. Only this one
    /// acquisition reports it.
    #[error("{}", LockError::OwnerDied { pid: *pid })]
    OwnerDied {
        /// The process that died holding the lock.
        pid: u32,
    },
    /// A `Lock` released while unlocked, or a `BoundedSemaphore` released
    /// above its initial value (CPython: `ValueError`).
    #[error("{}", LockError::ReleasedTooManyTimes)]
    ReleasedTooManyTimes,
    /// An `RLock` released by a thread that does not hold it (CPython:
    /// `AssertionError`).
    #[error("{}", LockError::NotOwner)]
    NotOwner,
    /// `Condition::wait` by a thread that does not hold the condition's
    /// lock (CPython: `AssertionError`).
    #[error("must acquire() condition before using wait()")]
    WaitWithoutLock,
    /// `Condition::notify` by a thread that does not hold the condition's
    /// lock (CPython: `AssertionError`).
    #[error("lock is not owned")]
    NotifyWithoutLock,
    /// A semaphore released past the largest value it can count,
    /// `SEM_VALUE_MAX` (CPython: `OverflowError`).
    #[error("semaphore value would exceed {max} (SEM_VALUE_MAX)")]
    SemaphoreOverflow {
        /// The largest value.
        max: u32,
    },
    /// The barrier is broken: aborted, reset while others waited, a wait
    /// timed out, its action failed, or a party died holding its lock
    /// (CPython: `threading.BrokenBarrierError`). `reset()` makes it usable
    /// again.
    #[error(
        "the barrier is broken (aborted, reset, timed out, or its action failed); reset() it to use it again"
    )]
    BrokenBarrier,
    /// The barrier's action failed in this process (the barrier is broken
    /// for the others).
    #[error("the barrier's action failed, so the barrier is broken")]
    BarrierAction(#[source] ActionError),
    /// An argument out of range, named with the rule it breaks.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Another error of the lock word (mp-heap's [`LockError`]).
    #[error(transparent)]
    Lock(LockError),
    /// The primitive's shared memory could not be allocated.
    #[error("cannot allocate the shared memory of a synchronization primitive")]
    Heap(#[from] HeapError),
}

/// The message, then each cause after `": "`, as
/// `main() -> Result<(), Box<dyn Error>>` prints it.
impl fmt::Debug for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut source = self.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl SyncError {
    /// Whether the error is [`SyncError::OwnerDied`], which comes with the
    /// lock held.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, SyncError::OwnerDied { .. })
    }
}

impl From<LockError> for SyncError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::OwnerDied { pid } => SyncError::OwnerDied { pid },
            LockError::ReleasedTooManyTimes => SyncError::ReleasedTooManyTimes,
            LockError::NotOwner => SyncError::NotOwner,
            other => SyncError::Lock(other),
        }
    }
}

impl<G> From<mp_heap::OwnerDied<G>> for SyncError {
    fn from(e: mp_heap::OwnerDied<G>) -> Self {
        SyncError::OwnerDied { pid: e.pid() }
    }
}

/// Results of this crate.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_message_and_its_causes() {
        let e = SyncError::ReleasedTooManyTimes;
        assert_eq!(
            format!("{e:?}"),
            "semaphore or lock released too many times"
        );
        let e = SyncError::from(HeapError::TooLarge { size: 7 });
        assert_eq!(
            format!("{e:?}"),
            "cannot allocate the shared memory of a synchronization primitive: Size 7 too large"
        );
        let e = SyncError::BarrierAction("disk full".into());
        assert_eq!(
            format!("{e:?}"),
            "the barrier's action failed, so the barrier is broken: disk full"
        );
        let e = SyncError::from(LockError::OwnerDied { pid: 9 });
        assert!(format!("{e:?}").contains("pid 9"));
    }
}
