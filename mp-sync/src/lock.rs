//! [`Lock`] and [`RLock`]: CPython's `multiprocessing.Lock` and `RLock`,
//! thin typed handles on mp-heap's robust lock word ([`SharedLock`]).

use std::{fmt, time::Duration};

use mp_heap::{
    Deadline, Heap, LockResult, ProcessLock, ProcessLockGuard, SharedLock, TryLockResult,
};

use crate::Result;

/// Holds a [`Lock`], [`RLock`] or [`Condition`](crate::Condition)'s lock
/// until dropped (one level of an `RLock`). Not `Send`.
pub type LockGuard<'a> = ProcessLockGuard<'a>;

/// The methods `Lock` and `RLock` share; `$recursive` is the lock kind.
macro_rules! lock_handle {
    ($name:ident, $recursive:expr, $python:literal) => {
        impl $name {
            #[doc = concat!("A new free `", $python, "` in the process-wide heap.")]
            ///
            /// # Errors
            ///
            /// [`SyncError::Heap`](crate::SyncError::Heap) when shared memory cannot be allocated.
            pub fn new() -> Result<Self> {
                Self::new_in(Heap::global())
            }

            #[doc = concat!("A new free `", $python, "` in `heap`.")]
            ///
            /// # Errors
            ///
            /// As [`new`](Self::new).
            pub fn new_in(heap: &Heap) -> Result<Self> {
                Ok(Self {
                    inner: SharedLock::new_in(heap, ProcessLock::new($recursive))?,
                })
            }

            /// Wraps a [`SharedLock`] of the right kind (a `Value`'s lock,
            /// say); `None` for the other kind.
            pub fn from_shared(inner: SharedLock) -> Option<Self> {
                (inner.is_recursive() == $recursive).then_some(Self { inner })
            }

            /// CPython's `acquire(block=True, timeout=None)`: `Ok(true)` once
            /// acquired, `Ok(false)` if not (held elsewhere, without `block`
            /// or past the timeout). `timeout` is ignored without `block`;
            /// `None`, or a timeout too large for an `Instant`, waits as
            /// long as it takes. Pair it with [`release`](Self::release), or
            /// use [`lock`](Self::lock) for a guard.
            ///
            /// # Errors
            ///
            /// [`SyncError::OwnerDied`](crate::SyncError::OwnerDied): acquired, from a process that died
            /// holding it; release it as after `Ok(true)`.
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
                Ok(self.inner.acquire(block, timeout)?)
            }

            /// As [`acquire`](Self::acquire), waiting until `deadline`.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            pub fn acquire_until(&self, deadline: Deadline) -> Result<bool> {
                Ok(self.inner.acquire_until(deadline)?)
            }

            /// Acquires, waiting as long as it takes; released when the
            /// guard drops.
            ///
            /// # Errors
            ///
            /// [`OwnerDied`](mp_heap::OwnerDied) around the guard when the
            /// previous holder died holding it.
            #[inline]
            pub fn lock(&self) -> LockResult<LockGuard<'_>> {
                self.inner.lock()
            }

            /// Acquires if that is possible without waiting.
            ///
            /// # Errors
            ///
            /// [`TryLockError::WouldBlock`](mp_heap::TryLockError) when held
            /// elsewhere; `OwnerDied` as for [`lock`](Self::lock).
            pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
                self.inner.try_lock()
            }

            /// Acquires, waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// As [`try_lock`](Self::try_lock), `WouldBlock` meaning "not
            /// before the timeout".
            pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
                self.inner.lock_timeout(timeout)
            }

            /// Whether some thread of some process holds it.
            pub fn is_locked(&self) -> bool {
                self.inner.is_locked()
            }

            /// The pid of the process holding it, if any (CPython's repr
            /// shows its name).
            pub fn owner_pid(&self) -> Option<u32> {
                self.inner.owner_pid()
            }

            /// Whether the calling thread holds it.
            pub fn is_mine(&self) -> bool {
                self.inner.is_mine()
            }

            /// The lock word, to build on (a `Value::with_lock`, a
            /// [`Condition`](crate::Condition)).
            pub fn as_shared(&self) -> &SharedLock {
                &self.inner
            }
        }

        impl From<$name> for SharedLock {
            fn from(lock: $name) -> SharedLock {
                lock.inner
            }
        }

        impl From<&$name> for SharedLock {
            fn from(lock: &$name) -> SharedLock {
                lock.inner.clone()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("owner_pid", &self.owner_pid())
                    .finish()
            }
        }

        /// For serde (`#[serde(try_from)]`): a lock of the other kind is an
        /// error.
        impl TryFrom<SharedLock> for $name {
            type Error = &'static str;
            fn try_from(inner: SharedLock) -> std::result::Result<Self, Self::Error> {
                Self::from_shared(inner).ok_or(concat!(
                    "the lock received is not a ",
                    $python,
                    " (Lock and RLock are different kinds)"
                ))
            }
        }
    };
}

/// CPython's `multiprocessing.Lock`: a non-recursive lock in shared
/// memory, usable from every process that holds a clone (inherited across
/// fork, or passed as a process argument or in a message).
///
/// - Any thread of any process may [`release`](Lock::release) it;
///   releasing it unlocked is [`SyncError::ReleasedTooManyTimes`](crate::SyncError::ReleasedTooManyTimes).
/// - A thread holding it that acquires it again waits for someone else to
///   release it, as in CPython.
/// - When a process dies holding it, the next acquisition gets it together
///   with [`SyncError::OwnerDied`](crate::SyncError::OwnerDied) (or `OwnerDied` around its guard),
///   within about [`OWNER_CHECK_INTERVAL`](mp_heap::OWNER_CHECK_INTERVAL)
///   of waiting; CPython waits forever.
///
/// Clones share the one lock, like an `Arc`. As a serde value (inside
/// `mp_reduction::collect_fds`/`provide_fds`, as process arguments are) it
/// is its lock's block, arena fd beside the bytes; the receiver shares the
/// lock, and a lock of the other kind is refused.
///
/// ```
/// use mp_sync::Lock;
///
/// let lock = Lock::new()?;
/// assert!(lock.acquire(true, None)?);
/// assert!(!lock.acquire(false, None)?); // held: a try fails
/// lock.release()?;
/// assert!(lock.release().is_err()); // "released too many times"
/// {
///     let _guard = lock.lock().unwrap();
///     assert!(lock.is_locked());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), mp_sync::SyncError>(())
/// ```
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SharedLock", into = "SharedLock")]
pub struct Lock {
    inner: SharedLock,
}

lock_handle!(Lock, false, "Lock");

impl Lock {
    /// CPython's `release()`: by any thread of any process.
    ///
    /// # Errors
    ///
    /// [`SyncError::ReleasedTooManyTimes`](crate::SyncError::ReleasedTooManyTimes) when it is not held.
    pub fn release(&self) -> Result<()> {
        Ok(self.inner.release()?)
    }
}

/// CPython's `multiprocessing.RLock`: a recursive lock in shared memory.
///
/// The holding thread may acquire it again; it stays held until released
/// as many times; only that thread may release it (otherwise
/// [`SyncError::NotOwner`](crate::SyncError::NotOwner)). Owner death is handled as for [`Lock`].
///
/// ```
/// use mp_sync::RLock;
///
/// let lock = RLock::new()?;
/// for _ in 0..3 {
///     assert!(lock.acquire(true, None)?);
/// }
/// assert_eq!(lock.recursion_count(), 3);
/// for _ in 0..3 {
///     lock.release()?;
/// }
/// assert!(matches!(lock.release(), Err(mp_sync::SyncError::NotOwner)));
/// # Ok::<(), mp_sync::SyncError>(())
/// ```
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SharedLock", into = "SharedLock")]
pub struct RLock {
    inner: SharedLock,
}

lock_handle!(RLock, true, "RLock");

impl RLock {
    /// CPython's `release()`: one level, by the holding thread.
    ///
    /// # Errors
    ///
    /// [`SyncError::NotOwner`](crate::SyncError::NotOwner) when the calling thread does not hold it.
    pub fn release(&self) -> Result<()> {
        Ok(self.inner.release()?)
    }

    /// How many times the calling thread holds it (0: not at all).
    pub fn recursion_count(&self) -> u64 {
        self.inner.held_count()
    }
}
