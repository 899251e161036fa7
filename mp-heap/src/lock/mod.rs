//! [`ProcessLock`]: a lock whose whole state is 32 bytes of shared memory,
//! so that every process mapping it shares one lock
//! (`PTHREAD_PROCESS_SHARED` semantics, built on shared futexes), and that
//! survives the death of its owner.
//!
//! # The lock word and owner death
//!
//! The futex word holds the owner's pid (bits 0..30; 0 when free) and a
//! "waiters may sleep" bit (bit 31), Drepper's mutex with the owner's id
//! in place of the "locked" state: taking the lock is one compare-and-swap
//! that writes who took it, so no process can die between taking the lock
//! and saying it has it. Releasing is one swap, plus a `FUTEX_WAKE` when
//! the bit says someone may sleep.
//!
//! A waiter sleeps at most [`OWNER_CHECK_INTERVAL`] at a time; each time it
//! wakes still waiting (and once more before a timed acquisition gives up)
//! it asks `/proc` whether the pid in the word is still alive (see the
//! `owner` module for the pid-reuse guard). If not, it swaps its own pid in
//! for the dead one's, which only one waiter can do, and its acquisition
//! reports [`LockError::OwnerDied`] with the lock held.
//!
//! Why not robust futexes: the kernel's robust list is per thread and
//! glibc already owns it (`set_robust_list` for its own robust mutexes);
//! registering ours would clobber glibc's. And a pthread robust mutex can
//! only be unlocked by its owner, while CPython's `Lock` may be released
//! by any process.
//!
//! Limits, documented where users meet them (`ProcessLock`'s docs):
//! owners are processes, so a *thread* that exits holding a lock in a
//! process that lives on leaves it held, as in CPython; all processes
//! sharing a lock must see one pid namespace (a container's pids are not
//! the host's); and a main thread that exits early (`pthread_exit`) while
//! other threads run makes its process look like a zombie.

mod error;
mod owner;

use std::{
    fmt,
    marker::PhantomData,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

pub use error::{LockError, LockResult, OwnerDied, TryLockError, TryLockResult};

use crate::{
    futex::{self, Deadline},
    sys,
};
use owner::OwnerCheck;
pub(crate) use owner::{stamp_pid, stamp_start};

/// The owner's pid in the lock word. Linux pids are below 2^22
/// (`PID_MAX_LIMIT`), so 30 bits leave room.
const PID_MASK: u32 = (1 << 30) - 1;
/// Set in the lock word when a waiter may be asleep in `futex_wait`.
const WAITERS: u32 = 1 << 31;

const KIND_PLAIN: u32 = 0;
const KIND_RECURSIVE: u32 = 1;

/// Spins before sleeping: a short critical section in another process is
/// usually over sooner than a `futex_wait` round trip.
const SPIN_LIMIT: u32 = 100;

/// The longest a waiter sleeps before asking whether the owner still lives.
/// Reading `/proc/PID/stat` costs some 20 us, so a waiter spends well under
/// 0.1% of a CPU on it; a dead owner is noticed within about this long.
pub const OWNER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A lock living in shared memory, usable from every process that maps it:
/// the lock of [`Value`](crate::Value) and [`Array`](crate::Array)
/// (recursive, as CPython's default `RLock`), and the core of mp-sync's
/// `Lock` and `RLock`.
///
/// Two kinds, fixed when the lock is made:
///
/// - **plain** (CPython's `Lock`): any thread of any process may release
///   it, releasing it unlocked is [`LockError::ReleasedTooManyTimes`], and
///   a thread that holds it and acquires it again waits for someone to
///   release it (as CPython's does: another thread or process may);
/// - **recursive** (CPython's `RLock`): the holding thread may acquire it
///   again, counting, and only that thread may release it (otherwise
///   [`LockError::NotOwner`]).
///
/// All-zero memory is a free plain lock, so a zeroed block, or a field of
/// a larger `#[repr(C)]` structure in shared memory, can serve as one.
///
/// **Owner death.** When a process dies holding the lock, the next
/// acquisition (by any process, within about [`OWNER_CHECK_INTERVAL`] of
/// waiting) gets the lock together with [`LockError::OwnerDied`] (or
/// [`OwnerDied`] around the guard): CPython waits forever here. Owners are
/// processes: a thread that exits holding the lock while its process lives
/// on leaves it held, as in CPython. Processes that share a lock must share
/// one pid namespace. A pid reused by a newer process is told apart by the
/// owner's start time.
///
/// # Examples
///
/// ```
/// use mp_heap::ProcessLock;
///
/// let lock = ProcessLock::new(true); // recursive
/// let outer = lock.lock().unwrap();
/// let inner = lock.lock().unwrap(); // the holder may re-enter
/// assert_eq!(lock.held_count(), 2);
/// drop((inner, outer));
/// assert!(!lock.is_locked());
/// // CPython's acquire(block, timeout) and release():
/// assert!(lock.acquire(false, None)?);
/// lock.release()?;
/// assert!(lock.release().is_err()); // not held
/// # Ok::<(), mp_heap::LockError>(())
/// ```
#[repr(C)]
pub struct ProcessLock {
    /// The futex word: owner pid | [`WAITERS`], 0 when free.
    word: AtomicU32,
    /// [`KIND_PLAIN`] or [`KIND_RECURSIVE`].
    kind: AtomicU32,
    /// Kernel tid of the thread that acquired it, 0 when free: tells the
    /// owning thread of an `RLock`, and `is_mine` for both kinds.
    owner_tid: AtomicU32,
    _reserved: AtomicU32,
    /// Recursion depth of a recursive lock; only its owner touches it.
    count: AtomicU64,
    /// The stamp (pid and start time) of the last process to take the
    /// lock, which tells a dead owner from a newer process with its pid.
    stamp: AtomicU64,
}

// The layout is part of the shared-memory format: a process built from
// another version must find the same fields at the same offsets.
const _: () = assert!(std::mem::size_of::<ProcessLock>() == 32);
const _: () = assert!(std::mem::align_of::<ProcessLock>() == 8);
const _: () = assert!(std::mem::offset_of!(ProcessLock, word) == 0);
const _: () = assert!(std::mem::offset_of!(ProcessLock, kind) == 4);
const _: () = assert!(std::mem::offset_of!(ProcessLock, owner_tid) == 8);
const _: () = assert!(std::mem::offset_of!(ProcessLock, count) == 16);
const _: () = assert!(std::mem::offset_of!(ProcessLock, stamp) == 24);

/// How a raw acquisition of the word went.
enum Taken {
    /// The lock is ours.
    Yes,
    /// Not before the deadline.
    No,
    /// Ours, taken over from this pid, which died holding it.
    FromDead(u32),
}

impl ProcessLock {
    /// A free lock, recursive (an `RLock`) or plain (a `Lock`), to be
    /// placed in shared memory (see [`Shared`](crate::Shared)).
    pub const fn new(recursive: bool) -> ProcessLock {
        ProcessLock {
            word: AtomicU32::new(0),
            kind: AtomicU32::new(if recursive {
                KIND_RECURSIVE
            } else {
                KIND_PLAIN
            }),
            owner_tid: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            count: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
        }
    }

    /// Whether the holder may acquire it again (an `RLock`).
    #[inline]
    pub fn is_recursive(&self) -> bool {
        self.kind.load(Ordering::Relaxed) == KIND_RECURSIVE
    }

    /// Whether some thread of some process holds the lock now.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID_MASK != 0
    }

    /// The pid of the process holding the lock, if any.
    pub fn owner_pid(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & PID_MASK {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether the calling thread holds the lock (CPython's
    /// `_semlock._is_mine()`): it acquired it and nobody has released it.
    #[inline]
    pub fn is_mine(&self) -> bool {
        self.held_by(sys::me())
    }

    #[inline]
    fn held_by(&self, me: sys::Me) -> bool {
        // Acquire: a release by another thread (which clears `owner_tid`
        // first) is seen before the word it freed.
        self.word.load(Ordering::Acquire) & PID_MASK == me.pid
            && self.owner_tid.load(Ordering::Relaxed) == me.tid
    }

    /// How many times the calling thread holds the lock: the recursion
    /// depth of an `RLock`, 1 for a plain lock it acquired, 0 otherwise.
    pub fn held_count(&self) -> u64 {
        match (self.is_mine(), self.is_recursive()) {
            (false, _) => 0,
            (true, true) => self.count.load(Ordering::Relaxed),
            (true, false) => 1,
        }
    }

    /// CPython's `acquire(block=True, timeout=None)`: `Ok(true)` once
    /// acquired, `Ok(false)` if not (held elsewhere, without `block` or
    /// past the timeout). `timeout` is ignored without `block`; `None`, or
    /// a timeout too large for an [`Instant`], waits as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`]: acquired, from a process that died holding
    /// it. Release it as after `Ok(true)`.
    #[inline]
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool, LockError> {
        self.acquire_until(Deadline::for_acquire(block, timeout))
    }

    /// As [`acquire`](Self::acquire), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    #[inline]
    pub fn acquire_until(&self, deadline: Deadline) -> Result<bool, LockError> {
        match self.take(deadline) {
            Taken::Yes => Ok(true),
            Taken::No => Ok(false),
            Taken::FromDead(pid) => Err(LockError::OwnerDied { pid }),
        }
    }

    /// CPython's `release()`.
    ///
    /// # Errors
    ///
    /// A plain lock that is not held: [`LockError::ReleasedTooManyTimes`].
    /// A recursive lock the calling thread does not hold:
    /// [`LockError::NotOwner`].
    #[inline]
    pub fn release(&self) -> Result<(), LockError> {
        if self.is_recursive() {
            if !self.is_mine() {
                return Err(LockError::NotOwner);
            }
            let depth = self.count.load(Ordering::Relaxed);
            if depth > 1 {
                self.count.store(depth - 1, Ordering::Relaxed);
                return Ok(());
            }
            self.count.store(0, Ordering::Relaxed);
            self.owner_tid.store(0, Ordering::Relaxed);
            self.unlock_word();
            return Ok(());
        }
        // Whoever holds it (any thread of any process may release a plain
        // lock); the swap tells whether anyone did. Clearing the tid of a
        // free lock changes nothing: it is 0 there already.
        self.owner_tid.store(0, Ordering::Relaxed);
        match self.unlock_word() {
            0 => Err(LockError::ReleasedTooManyTimes),
            _ => Ok(()),
        }
    }

    /// Acquires the lock, waiting as long as it takes, and releases it when
    /// the guard drops.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] around the guard: acquired from a process that died
    /// holding it.
    #[inline]
    pub fn lock(&self) -> LockResult<ProcessLockGuard<'_>> {
        match self.take(Deadline::Never) {
            Taken::FromDead(pid) => Err(OwnerDied::new(self.guard(), pid)),
            Taken::Yes | Taken::No => Ok(self.guard()),
        }
    }

    /// Acquires the lock if that is possible without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held elsewhere;
    /// [`TryLockError::OwnerDied`] as for [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<ProcessLockGuard<'_>> {
        self.lock_until(Deadline::now())
    }

    /// Acquires the lock, waiting at most `timeout` (`Duration::MAX`: as
    /// long as it takes).
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Self::try_lock), `WouldBlock` meaning "not before
    /// the timeout".
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ProcessLockGuard<'_>> {
        self.lock_until(Deadline::after(Some(timeout)))
    }

    /// Acquires the lock, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    #[inline]
    pub fn lock_until(&self, deadline: Deadline) -> TryLockResult<ProcessLockGuard<'_>> {
        match self.take(deadline) {
            Taken::Yes => Ok(self.guard()),
            Taken::No => Err(TryLockError::WouldBlock),
            Taken::FromDead(pid) => Err(OwnerDied::new(self.guard(), pid).into()),
        }
    }

    /// Releases the lock completely, whatever its recursion depth, and
    /// says how to take it back (CPython's `_release_save`, which a
    /// condition variable uses around its wait).
    ///
    /// # Errors
    ///
    /// [`LockError::NotOwner`] when the calling thread does not hold it.
    pub fn release_save(&self) -> Result<SavedOwnership, LockError> {
        if !self.is_mine() {
            return Err(LockError::NotOwner);
        }
        let depth = if self.is_recursive() {
            self.count.load(Ordering::Relaxed)
        } else {
            1
        };
        self.count.store(0, Ordering::Relaxed);
        self.owner_tid.store(0, Ordering::Relaxed);
        self.unlock_word();
        Ok(SavedOwnership { depth })
    }

    /// Takes the lock back, as deep as [`release_save`](Self::release_save)
    /// found it, waiting as long as it takes (CPython's `_acquire_restore`).
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`]: taken back from a process that died
    /// holding it meanwhile; it is held again, as after `Ok`.
    pub fn acquire_restore(&self, saved: SavedOwnership) -> Result<(), LockError> {
        let me = sys::me();
        let taken = self.take_word(me.pid, Deadline::Never);
        self.own(me, saved.depth);
        match taken {
            Taken::FromDead(pid) => Err(LockError::OwnerDied { pid }),
            Taken::Yes | Taken::No => Ok(()),
        }
    }

    #[inline]
    fn guard(&self) -> ProcessLockGuard<'_> {
        ProcessLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// One acquisition: re-entry of a recursive lock by its holder, or
    /// the word, then the ownership fields.
    #[inline]
    fn take(&self, deadline: Deadline) -> Taken {
        let me = sys::me();
        if self.is_recursive() && self.held_by(me) {
            // Only the holder touches the count; 2^64 re-entries would take
            // centuries, so it does not overflow.
            let depth = self.count.load(Ordering::Relaxed);
            self.count.store(depth.wrapping_add(1), Ordering::Relaxed);
            return Taken::Yes;
        }
        let taken = self.take_word(me.pid, deadline);
        if !matches!(taken, Taken::No) {
            self.own(me, 1);
        }
        taken
    }

    /// Records `me` (the calling thread) as the owner, `depth` times over,
    /// once the word is ours.
    #[inline]
    fn own(&self, me: sys::Me, depth: u64) {
        // Usually the same process took it last: a load, not a store.
        if self.stamp.load(Ordering::Relaxed) != me.stamp {
            self.stamp.store(me.stamp, Ordering::Relaxed);
        }
        self.owner_tid.store(me.tid, Ordering::Relaxed);
        if self.is_recursive() {
            self.count.store(depth, Ordering::Relaxed);
        }
    }

    /// Swaps our pid into the free word: one attempt, then (unless the
    /// deadline has passed) the contended path.
    #[inline]
    fn take_word(&self, pid: u32, deadline: Deadline) -> Taken {
        if self
            .word
            .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Taken::Yes;
        }
        if deadline.has_passed() {
            // `try_lock`: one attempt, without marking the word contended.
            return Taken::No;
        }
        self.take_word_contended(pid, deadline)
    }

    #[cold]
    fn take_word_contended(&self, pid: u32, deadline: Deadline) -> Taken {
        for _ in 0..SPIN_LIMIT {
            std::hint::spin_loop();
            if self.word.load(Ordering::Relaxed) == 0
                && self
                    .word
                    .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Taken::Yes;
            }
        }
        let mut check = OwnerCheck::default();
        let mut next_check = Instant::now() + OWNER_CHECK_INTERVAL;
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w & PID_MASK == 0 {
                // Free. Others may be asleep: keep the bit, so that our
                // release wakes one (Drepper's "lock as contended").
                if self
                    .word
                    .compare_exchange(w, pid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Taken::Yes;
                }
                continue;
            }
            let w = if w & WAITERS == 0 {
                match self.word.compare_exchange(
                    w,
                    w | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => w | WAITERS,
                    Err(_) => continue,
                }
            } else {
                w
            };
            futex::wait(&self.word, w, deadline.min(Deadline::At(next_check)));
            let gave_up = deadline.has_passed();
            if gave_up || Instant::now() >= next_check {
                next_check = Instant::now() + OWNER_CHECK_INTERVAL;
                let w = self.word.load(Ordering::Relaxed);
                let owner = w & PID_MASK;
                if owner != 0 && check.owner_died(w, owner, self.stamp.load(Ordering::Relaxed)) {
                    // Only one waiter swaps its pid in for the dead one's;
                    // the bit stays, as others may sleep.
                    if self
                        .word
                        .compare_exchange(w, pid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Taken::FromDead(owner);
                    }
                    continue;
                }
            }
            if gave_up {
                return match self.word.compare_exchange(
                    0,
                    pid | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => Taken::Yes,
                    Err(_) => Taken::No,
                };
            }
        }
    }

    /// Frees the word, waking one sleeper if the bit says there may be
    /// one; returns the word as it was (0: it was not held).
    #[inline]
    fn unlock_word(&self) -> u32 {
        let prev = self.word.swap(0, Ordering::Release);
        if prev & WAITERS != 0 {
            futex::wake(&self.word, 1);
        }
        prev
    }
}

impl fmt::Debug for ProcessLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLock")
            .field("recursive", &self.is_recursive())
            .field("owner_pid", &self.owner_pid())
            .finish()
    }
}

/// How deep a thread held a lock that
/// [`ProcessLock::release_save`] released, to take it back with
/// [`ProcessLock::acquire_restore`].
#[derive(Debug)]
#[must_use = "the lock must be taken back with acquire_restore"]
pub struct SavedOwnership {
    depth: u64,
}

/// Holds a [`ProcessLock`] until dropped. Not `Send`: the thread that
/// acquired the lock releases it.
///
/// Dropping it releases the lock once (one level of an `RLock`). A plain
/// lock that someone else released meanwhile (CPython lets any process do
/// that) is released again by the drop, as CPython's `with lock:` would.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ProcessLockGuard<'a> {
    lock: &'a ProcessLock,
    _not_send: PhantomData<*const ()>,
}

impl ProcessLockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &ProcessLock {
        self.lock
    }
}

impl Drop for ProcessLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // An error here (released by someone else first) cannot be acted
        // upon, and `Drop` must not panic.
        let _ = self.lock.release();
    }
}

impl fmt::Debug for ProcessLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLockGuard")
            .field("lock", self.lock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_names_the_owner_and_zeroes_are_a_free_plain_lock() {
        let lock = ProcessLock::new(false);
        assert!(!lock.is_recursive() && !lock.is_locked());
        let g = lock.lock().unwrap();
        assert_eq!(lock.owner_pid(), Some(std::process::id()));
        assert!(lock.is_mine());
        assert_eq!(lock.held_count(), 1);
        drop(g);
        assert_eq!(lock.owner_pid(), None);
        assert!(!lock.is_mine());
    }

    #[test]
    fn a_word_held_by_a_dead_pid_is_taken_over() {
        for recursive in [false, true] {
            let lock = ProcessLock::new(recursive);
            // As if process 2^23 (never a real pid) had died holding it.
            lock.word.store(1 << 23, Ordering::Relaxed);
            assert!(!lock.acquire(false, None).unwrap(), "a try does not wait");
            match lock.acquire(true, Some(Duration::from_secs(60))) {
                Err(LockError::OwnerDied { pid }) => assert_eq!(pid, 1 << 23),
                other => panic!("{other:?}"),
            }
            assert!(lock.is_mine());
            lock.release().unwrap();
            // Only that one acquisition reports it.
            assert!(lock.acquire(true, None).unwrap());
            lock.release().unwrap();
        }
    }

    #[test]
    fn a_short_timed_wait_still_checks_the_owner() {
        let lock = ProcessLock::new(false);
        lock.word.store(1 << 23, Ordering::Relaxed);
        // Shorter than the check interval: the check before giving up runs.
        let got = lock.acquire(true, Some(Duration::from_millis(5)));
        assert!(matches!(got, Err(LockError::OwnerDied { .. })), "{got:?}");
    }

    #[test]
    fn release_save_and_restore_keep_the_depth() {
        let lock = ProcessLock::new(true);
        for _ in 0..3 {
            assert!(lock.acquire(true, None).unwrap());
        }
        let saved = lock.release_save().unwrap();
        assert!(!lock.is_locked());
        assert!(matches!(lock.release_save(), Err(LockError::NotOwner)));
        lock.acquire_restore(saved).unwrap();
        assert_eq!(lock.held_count(), 3);
        for _ in 0..3 {
            lock.release().unwrap();
        }
        assert!(matches!(lock.release(), Err(LockError::NotOwner)));
    }
}
