//! [`Semaphore`] and [`BoundedSemaphore`] (CPython's, which are POSIX
//! semaphores), and the 16-byte [`RawSemaphore`] they are made of, which
//! other shared structures (a queue's ring) can embed.

use std::{
    fmt,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use mp_heap::{
    Deadline, Heap, Shared,
    futex::{self},
};

use crate::{Result, SyncError};

/// The largest value a semaphore counts to: POSIX's `SEM_VALUE_MAX` on
/// Linux, which CPython's semaphores inherit.
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// `max` of an unbounded semaphore.
const UNBOUNDED: u32 = u32::MAX;

/// A counting semaphore in 16 bytes of shared memory: the value (the futex
/// word), the number of possible sleepers, and the bound.
///
/// [`Semaphore`] and [`BoundedSemaphore`] are handles on one; embed it in
/// a `#[repr(C)]` structure of your own (a queue's ring header, say) to
/// count slots or items there, and implement
/// [`SharedState`](mp_heap::SharedState) for that structure.
///
/// All-zero memory is an unbounded semaphore of value 0.
///
/// A process killed while asleep in [`acquire`](Self::acquire) leaves the
/// sleeper count one too high: later releases then make one needless
/// `futex_wake` call each, nothing worse.
///
/// ```
/// use mp_sync::RawSemaphore;
///
/// let slots = RawSemaphore::bounded(2, 2);
/// assert!(slots.try_acquire());
/// assert!(slots.try_acquire());
/// assert!(!slots.try_acquire());
/// slots.release()?;
/// assert_eq!(slots.value(), 1);
/// # Ok::<(), mp_sync::SyncError>(())
/// ```
#[repr(C)]
pub struct RawSemaphore {
    /// The count, and the futex word sleepers wait on while it is 0.
    value: AtomicU32,
    /// How many acquirers may be asleep (or about to sleep).
    sleepers: AtomicU32,
    /// The bound of a bounded semaphore, [`UNBOUNDED`] otherwise.
    max: AtomicU32,
    _reserved: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<RawSemaphore>() == 16);
const _: () = assert!(std::mem::align_of::<RawSemaphore>() == 4);
const _: () = assert!(std::mem::offset_of!(RawSemaphore, value) == 0);
const _: () = assert!(std::mem::offset_of!(RawSemaphore, sleepers) == 4);
const _: () = assert!(std::mem::offset_of!(RawSemaphore, max) == 8);

impl RawSemaphore {
    /// An unbounded semaphore holding `value` (at most [`SEM_VALUE_MAX`]).
    pub const fn new(value: u32) -> RawSemaphore {
        Self::with_max(value, UNBOUNDED)
    }

    /// A semaphore holding `value` that refuses releases above `max`.
    pub const fn bounded(value: u32, max: u32) -> RawSemaphore {
        Self::with_max(value, max)
    }

    const fn with_max(value: u32, max: u32) -> RawSemaphore {
        RawSemaphore {
            value: AtomicU32::new(value),
            sleepers: AtomicU32::new(0),
            max: AtomicU32::new(max),
            _reserved: AtomicU32::new(0),
        }
    }

    /// The current value (CPython's `get_value()`).
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// The bound, for a bounded semaphore.
    pub fn max(&self) -> Option<u32> {
        match self.max.load(Ordering::Relaxed) {
            UNBOUNDED => None,
            m => Some(m),
        }
    }

    /// Takes one unit if the value is above 0, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// CPython's `acquire(block=True, timeout=None)`: takes one unit,
    /// waiting while the value is 0; `false` if none came (without `block`,
    /// or before the timeout).
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool {
        self.acquire_until(Deadline::for_acquire(block, timeout))
    }

    /// Takes one unit, waiting until `deadline` at most.
    #[inline]
    pub fn acquire_until(&self, deadline: Deadline) -> bool {
        self.try_acquire() || (!deadline.has_passed() && self.acquire_slow(deadline))
    }

    /// No spinning first: semaphores mostly hand units between processes
    /// (ping-pong, producer and consumer), where the unit comes from a peer
    /// that first has to be woken; spinning would only burn the CPU that
    /// peer may need (measured: about 10% more CPU per round trip with
    /// both on one CPU, and no gain on two).
    #[cold]
    fn acquire_slow(&self, deadline: Deadline) -> bool {
        loop {
            if self.try_acquire() {
                return true;
            }
            // Announce the sleeper before looking at the value for the last
            // time; a releaser bumps the value before it looks at the
            // sleepers (both SeqCst), so one of us sees the other.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let in_time = if self.value.load(Ordering::SeqCst) == 0 {
                futex::wait(&self.value, 0, deadline)
            } else {
                true
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if !in_time {
                // One last look: a unit may have come just at the deadline.
                return self.try_acquire();
            }
        }
    }

    /// CPython's `release()`: adds one unit and wakes a sleeper if there may
    /// be one.
    ///
    /// # Errors
    ///
    /// A bounded semaphore at its bound: [`SyncError::ReleasedTooManyTimes`].
    /// At [`SEM_VALUE_MAX`]: [`SyncError::SemaphoreOverflow`].
    #[inline]
    pub fn release(&self) -> Result<()> {
        let max = self.max.load(Ordering::Relaxed);
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            if max != UNBOUNDED && v >= max {
                return Err(SyncError::ReleasedTooManyTimes);
            }
            if v >= SEM_VALUE_MAX {
                return Err(SyncError::SemaphoreOverflow { max: SEM_VALUE_MAX });
            }
            match self
                .value
                .compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, 1);
        }
        Ok(())
    }
}

impl fmt::Debug for RawSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("RawSemaphore");
        s.field("value", &self.value());
        if let Some(max) = self.max() {
            s.field("maxvalue", &max);
        }
        s.finish()
    }
}

fn check_value(value: u32) -> Result<()> {
    if value > SEM_VALUE_MAX {
        return Err(SyncError::InvalidArgument(
            "a semaphore's value is at most SEM_VALUE_MAX (2^31 - 1)",
        ));
    }
    Ok(())
}

/// The handle methods both semaphore types share.
macro_rules! semaphore_handle {
    ($name:ident, $python:literal, $bounded:expr) => {
        impl $name {
            /// CPython's `acquire(block=True, timeout=None)`: takes one unit,
            /// waiting while the value is 0; `false` if none came (without
            /// `block`, or before the timeout; a timeout too large for an
            /// `Instant` waits as long as it takes).
            pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> bool {
                self.inner.acquire(block, timeout)
            }

            /// Takes one unit, waiting until `deadline` at most.
            pub fn acquire_until(&self, deadline: Deadline) -> bool {
                self.inner.acquire_until(deadline)
            }

            /// Takes one unit if that is possible without waiting.
            pub fn try_acquire(&self) -> bool {
                self.inner.try_acquire()
            }

            /// Takes one unit, waiting as long as it takes, and gives it back
            /// when the guard drops (`with sem:`).
            pub fn guard(&self) -> SemaphoreGuard<'_> {
                self.inner.acquire_until(Deadline::Never);
                SemaphoreGuard { sem: &self.inner }
            }

            /// CPython's `get_value()`.
            pub fn get_value(&self) -> u32 {
                self.inner.value()
            }

            /// The semaphore in shared memory.
            pub fn as_raw(&self) -> &RawSemaphore {
                &self.inner
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = f.debug_struct(stringify!($name));
                s.field("value", &self.get_value());
                if let Some(max) = self.inner.max() {
                    s.field("maxvalue", &max);
                }
                s.finish()
            }
        }

        impl From<$name> for Shared<RawSemaphore> {
            fn from(sem: $name) -> Self {
                sem.inner
            }
        }

        /// For serde (`#[serde(try_from)]`): the other kind of semaphore is
        /// an error.
        impl TryFrom<Shared<RawSemaphore>> for $name {
            type Error = &'static str;
            fn try_from(inner: Shared<RawSemaphore>) -> std::result::Result<Self, Self::Error> {
                if inner.max().is_some() != $bounded {
                    return Err(concat!("the semaphore received is not a ", $python));
                }
                Ok(Self { inner })
            }
        }
    };
}

/// CPython's `multiprocessing.Semaphore`: a counting semaphore in shared
/// memory, unbounded (releases may take the value past its start), usable
/// from every process holding a clone. As a serde value it is its block
/// (arena fd beside the bytes), shared by the receiver; a
/// `BoundedSemaphore` is refused.
///
/// ```
/// use mp_sync::Semaphore;
///
/// let sem = Semaphore::new(2)?;
/// assert!(sem.acquire(true, None));
/// assert!(sem.acquire(true, None));
/// assert!(!sem.acquire(false, None));
/// for value in 1..=4 {
///     sem.release()?;
///     assert_eq!(sem.get_value(), value);
/// }
/// # Ok::<(), mp_sync::SyncError>(())
/// ```
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Shared<RawSemaphore>", into = "Shared<RawSemaphore>")]
pub struct Semaphore {
    inner: Shared<RawSemaphore>,
}

semaphore_handle!(Semaphore, "Semaphore", false);

impl Semaphore {
    /// A semaphore holding `value`, in the process-wide heap.
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] above [`SEM_VALUE_MAX`];
    /// [`SyncError::Heap`] when shared memory cannot be allocated.
    pub fn new(value: u32) -> Result<Self> {
        Self::new_in(Heap::global(), value)
    }

    /// A semaphore holding `value`, in `heap`.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new_in(heap: &Heap, value: u32) -> Result<Self> {
        check_value(value)?;
        Ok(Self {
            inner: Shared::new_in(heap, RawSemaphore::new(value))?,
        })
    }

    /// CPython's `release()`: adds one unit, waking a waiter.
    ///
    /// # Errors
    ///
    /// [`SyncError::SemaphoreOverflow`] at [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }
}

/// CPython's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] that
/// refuses a release above its initial value.
///
/// ```
/// use mp_sync::{BoundedSemaphore, SyncError};
///
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(matches!(sem.release(), Err(SyncError::ReleasedTooManyTimes)));
/// assert!(sem.acquire(true, None));
/// sem.release()?;
/// # Ok::<(), SyncError>(())
/// ```
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Shared<RawSemaphore>", into = "Shared<RawSemaphore>")]
pub struct BoundedSemaphore {
    inner: Shared<RawSemaphore>,
}

semaphore_handle!(BoundedSemaphore, "BoundedSemaphore", true);

impl BoundedSemaphore {
    /// A semaphore holding `value`, which is also its bound.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new(value: u32) -> Result<Self> {
        Self::new_in(Heap::global(), value)
    }

    /// As [`BoundedSemaphore::new`], in `heap`.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new_in(heap: &Heap, value: u32) -> Result<Self> {
        check_value(value)?;
        Ok(Self {
            inner: Shared::new_in(heap, RawSemaphore::bounded(value, value))?,
        })
    }

    /// CPython's `release()`.
    ///
    /// # Errors
    ///
    /// [`SyncError::ReleasedTooManyTimes`] ("semaphore or lock released too
    /// many times") when the value is already at the bound.
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }

    /// The bound (CPython's `maxvalue`).
    pub fn max_value(&self) -> u32 {
        self.inner.max().unwrap_or(SEM_VALUE_MAX)
    }
}

/// One unit of a semaphore, given back when dropped.
#[must_use = "the unit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a RawSemaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // The unit taken is given back, so the bound cannot be exceeded
        // unless someone else over-released meanwhile; nothing to do then.
        let _ = self.sem.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("sem", self.sem)
            .finish()
    }
}
