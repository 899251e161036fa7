//! [`ProcessLock`]: a lock whose whole state is a 16-byte word in shared
//! memory, so that every process mapping it shares one lock
//! (`PTHREAD_PROCESS_SHARED` semantics, built on shared futexes).

use std::{
    cell::Cell,
    fmt,
    marker::PhantomData,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use rustix::thread::futex;

use crate::sys;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and somebody may be asleep in `futex_wait`.
const CONTENDED: u32 = 2;

const KIND_PLAIN: u32 = 0;
const KIND_RECURSIVE: u32 = 1;

/// Spins before sleeping: a short critical section in another process is
/// usually over sooner than a `futex_wait` round trip.
const SPIN_LIMIT: u32 = 100;

/// A lock living in shared memory, usable from every process that maps it:
/// the lock of [`Value`](crate::Value) (recursive, as CPython's default
/// `RLock`) and [`Array`](crate::Array) (plain, as a `Lock`).
///
/// The state is a futex word (0 free, 1 held, 2 held with sleepers), the
/// holder's kernel thread id and a recursion count; waiters sleep in a
/// shared (not `FUTEX_PRIVATE`) `futex_wait`, so a release in one process
/// wakes a waiter in another.
///
/// A thread that dies holding the lock leaves it held, as with CPython's
/// `multiprocessing` locks.
#[repr(C)]
pub struct ProcessLock {
    state: AtomicU32,
    /// Kernel tid of the holder, 0 when free. Tids are unique across the
    /// system among live threads, so this also tells processes apart.
    owner: AtomicU32,
    count: AtomicU32,
    kind: AtomicU32,
}

// The layout is part of the shared-memory format: a process built from
// another version must find the same fields at the same offsets.
const _: () = assert!(std::mem::size_of::<ProcessLock>() == 16);
const _: () = assert!(std::mem::align_of::<ProcessLock>() == 4);
const _: () = assert!(std::mem::offset_of!(ProcessLock, state) == 0);
const _: () = assert!(std::mem::offset_of!(ProcessLock, owner) == 4);
const _: () = assert!(std::mem::offset_of!(ProcessLock, count) == 8);
const _: () = assert!(std::mem::offset_of!(ProcessLock, kind) == 12);

/// The bytes a [`ProcessLock`] occupies in front of a value or array.
pub(crate) const LOCK_SIZE: usize = std::mem::size_of::<ProcessLock>();

thread_local! {
    /// `(pid, tid)` of this thread, refreshed when the pid changes (fork).
    static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

fn current_tid() -> u32 {
    let pid = sys::current_pid();
    TID.with(|c| {
        let (p, t) = c.get();
        if p == pid {
            return t;
        }
        let t = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        c.set((pid, t));
        t
    })
}

impl ProcessLock {
    /// Initialises a zeroed lock word: recursive or plain.
    pub(crate) fn init(&self, recursive: bool) {
        self.state.store(UNLOCKED, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.kind.store(
            if recursive {
                KIND_RECURSIVE
            } else {
                KIND_PLAIN
            },
            Ordering::Release,
        );
    }

    /// Whether the holder may acquire it again (an `RLock`).
    pub fn is_recursive(&self) -> bool {
        self.kind.load(Ordering::Relaxed) == KIND_RECURSIVE
    }

    /// Whether the calling thread holds the lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == current_tid()
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Panics
    ///
    /// When the lock is plain and this thread already holds it: waiting
    /// would never end.
    pub fn acquire(&self) -> ProcessLockGuard<'_> {
        match self.acquire_inner(None) {
            Some(g) => g,
            None => unreachable!("acquire without a deadline returns a guard"),
        }
    }

    /// Acquires the lock if that is possible without waiting.
    ///
    /// # Panics
    ///
    /// As [`ProcessLock::acquire`].
    pub fn try_acquire(&self) -> Option<ProcessLockGuard<'_>> {
        self.acquire_inner(Some(Instant::now()))
    }

    /// Acquires the lock, waiting at most `timeout` (CPython's
    /// `acquire(timeout=…)`); `None` on timeout. A timeout too long for an
    /// [`Instant`] to hold (`Duration::MAX`) waits without limit.
    ///
    /// # Panics
    ///
    /// As [`ProcessLock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<ProcessLockGuard<'_>> {
        // `Instant + Duration` panics on overflow: no deadline instead.
        self.acquire_inner(Instant::now().checked_add(timeout))
    }

    fn acquire_inner(&self, deadline: Option<Instant>) -> Option<ProcessLockGuard<'_>> {
        let me = current_tid();
        if self.owner.load(Ordering::Relaxed) == me {
            assert!(
                self.is_recursive(),
                "ProcessLock: this thread already holds this non-recursive lock; acquiring it again would deadlock"
            );
            self.count.fetch_add(1, Ordering::Relaxed);
            return Some(ProcessLockGuard {
                lock: self,
                _not_send: PhantomData,
            });
        }
        if !self.raw_lock(deadline) {
            return None;
        }
        self.owner.store(me, Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Some(ProcessLockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// The futex mutex of Drepper's "Futexes Are Tricky" (mutex 2).
    fn raw_lock(&self, deadline: Option<Instant>) -> bool {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // `try_acquire`: one attempt, without marking the word contended.
            return false;
        }
        for _ in 0..SPIN_LIMIT {
            std::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self
                    .state
                    .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        loop {
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    let left = d - now;
                    Some(rustix::time::Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    })
                }
            };
            // Shared (not private) futex: the waker may be another process.
            // EAGAIN (the word changed), EINTR and ETIMEDOUT all mean
            // "look again".
            let _ = futex::wait(
                &self.state,
                futex::Flags::empty(),
                CONTENDED,
                timeout.as_ref(),
            );
        }
    }

    fn raw_unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            let _ = futex::wake(&self.state, futex::Flags::empty(), 1);
        }
    }

    fn release(&self) {
        if self.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.owner.store(0, Ordering::Relaxed);
            self.raw_unlock();
        }
    }
}

impl fmt::Debug for ProcessLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLock")
            .field("recursive", &self.is_recursive())
            .field("held", &(self.state.load(Ordering::Relaxed) != UNLOCKED))
            .field("owner_tid", &self.owner.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holds a [`ProcessLock`] until dropped. Not `Send`: the thread that
/// acquired the lock releases it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ProcessLockGuard<'a> {
    lock: &'a ProcessLock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ProcessLockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl fmt::Debug for ProcessLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLockGuard")
            .field("lock", self.lock)
            .finish()
    }
}
