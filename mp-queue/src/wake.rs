//! [`Waiters`]: who sleeps for a change of the ring (an item in, an item
//! out, all tasks done), 16 bytes of the ring's header, woken *after* the
//! waker has released the ring's lock.
//!
//! A condition variable wakes its waiters under the lock; on one CPU the
//! woken process then preempts the waker while it still holds the lock,
//! only to sleep again on the lock itself (measured: six futex calls per
//! round trip between two processes instead of four). Here a waiter
//! registers under the lock and sleeps without it; a waker changes the
//! ring under the lock and wakes after releasing it:
//!
//! - waiter, under the lock: sees no item, `sleepers += 1` and reads
//!   `epoch` (both SeqCst), releases the lock, `FUTEX_WAIT` on `epoch`;
//! - waker: commits under the lock, releases it, then if `sleepers > 0`
//!   bumps `epoch` and `FUTEX_WAKE`s.
//!
//! The lock orders the waiter's registration before the waker's commit, so
//! the waker sees the sleeper; a wake that comes before the waiter's
//! `FUTEX_WAIT` changed `epoch`, which then returns at once. Nothing is
//! lost. A waiter that wakes for any reason leaves the count and looks
//! again under the lock. A sleeper killed while registered leaves the
//! count one too high: later wakers make a needless system call.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use mp_heap::{Deadline, futex};

/// A wait list in shared memory; all-zero memory is an empty one.
#[repr(C)]
pub(crate) struct Waiters {
    /// The futex word: bumped by every wake.
    epoch: AtomicU32,
    /// Registered sleepers (and some that died registered).
    sleepers: AtomicU32,
    _reserved: [AtomicU32; 2],
}

const _: () = assert!(std::mem::size_of::<Waiters>() == 16);

impl Waiters {
    pub(crate) const fn new() -> Waiters {
        Waiters {
            epoch: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _reserved: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }

    /// Registers a sleeper (with the ring's lock held); returns the epoch
    /// to sleep on once the lock is released.
    pub(crate) fn prepare(&self) -> u32 {
        self.sleepers.fetch_add(1, SeqCst);
        self.epoch.load(SeqCst)
    }

    /// Sleeps (without the lock) while no wake came after `prepare`, until
    /// `deadline`; then leaves the list.
    pub(crate) fn sleep(&self, seen: u32, deadline: Deadline) {
        futex::wait(&self.epoch, seen, deadline);
        // Saturating: a peer may have scribbled over the count.
        let _ = self
            .sleepers
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }

    /// Wakes one sleeper, if any registered (without the lock, after the
    /// change it waits for).
    pub(crate) fn wake_one(&self) {
        if self.sleepers.load(SeqCst) > 0 {
            self.epoch.fetch_add(1, SeqCst);
            futex::wake(&self.epoch, 1);
        }
    }

    /// Wakes every sleeper.
    pub(crate) fn wake_all(&self) {
        if self.sleepers.load(SeqCst) > 0 {
            self.epoch.fetch_add(1, SeqCst);
            futex::wake_all(&self.epoch);
        }
    }

    /// How many are registered (a hint).
    #[cfg(test)]
    pub(crate) fn sleepers(&self) -> u32 {
        self.sleepers.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn a_wake_after_prepare_is_never_lost() {
        let w = Waiters::new();
        let flag = AtomicBool::new(false);
        let t0 = std::time::Instant::now();
        for _ in 0..200 {
            flag.store(false, Ordering::SeqCst);
            std::thread::scope(|s| {
                s.spawn(|| {
                    // The "lock": the flag is read after registering.
                    loop {
                        let seen = w.prepare();
                        if flag.load(Ordering::SeqCst) {
                            w.sleep(seen, Deadline::now());
                            return;
                        }
                        w.sleep(seen, Deadline::after(Some(Duration::from_secs(60))));
                    }
                });
                flag.store(true, Ordering::SeqCst);
                w.wake_one();
            });
        }
        // A lost wake would show as a 60-second sleep.
        assert!(t0.elapsed() < Duration::from_secs(30), "a wake was lost");
        assert_eq!(w.sleepers(), 0);
    }
}
