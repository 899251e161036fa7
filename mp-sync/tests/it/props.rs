//! Property tests: a semaphore and an RLock driven by random operation
//! sequences behave as a plain counter model says, and a condition's
//! counters stay consistent under random waits and notifies.

use std::time::Duration;

use mp_sync::{BoundedSemaphore, Condition, RLock, Semaphore, SyncError};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum SemOp {
    TryAcquire,
    TimedAcquire,
    Release,
}

fn sem_op() -> impl Strategy<Value = SemOp> {
    prop_oneof![
        Just(SemOp::TryAcquire),
        Just(SemOp::TimedAcquire),
        Just(SemOp::Release)
    ]
}

/// Either kind of semaphore, under one interface for the model test.
enum AnySem {
    Unbounded(Semaphore),
    Bounded(BoundedSemaphore),
}

impl AnySem {
    fn acquire(&self, block: bool) -> bool {
        let t = Some(Duration::from_millis(1));
        match self {
            AnySem::Unbounded(s) => s.acquire(block, t),
            AnySem::Bounded(s) => s.acquire(block, t),
        }
    }

    fn release(&self) -> Result<(), SyncError> {
        match self {
            AnySem::Unbounded(s) => s.release(),
            AnySem::Bounded(s) => s.release(),
        }
    }

    fn value(&self) -> u32 {
        match self {
            AnySem::Unbounded(s) => s.get_value(),
            AnySem::Bounded(s) => s.get_value(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn semaphore_counts_follow_the_model(
        start in 0_u32..4,
        bound in proptest::option::of(0_u32..4),
        ops in proptest::collection::vec(sem_op(), 0..60),
    ) {
        let max = bound.map(|b| b.max(start));
        let sem = match max {
            None => AnySem::Unbounded(Semaphore::new(start).unwrap()),
            Some(m) => {
                let b = BoundedSemaphore::new(m).unwrap();
                // Bring it down to `start`.
                for _ in start..m {
                    prop_assert!(b.try_acquire());
                }
                AnySem::Bounded(b)
            }
        };
        let mut model = start;
        for op in ops {
            match op {
                SemOp::TryAcquire | SemOp::TimedAcquire => {
                    let got = sem.acquire(matches!(op, SemOp::TimedAcquire));
                    prop_assert_eq!(got, model > 0);
                    model -= u32::from(got);
                }
                SemOp::Release => {
                    let r = sem.release();
                    if max.is_some_and(|m| model >= m) {
                        prop_assert!(matches!(r, Err(SyncError::ReleasedTooManyTimes)));
                    } else {
                        prop_assert!(r.is_ok());
                        model += 1;
                    }
                }
            }
            prop_assert_eq!(sem.value(), model);
        }
    }

    #[test]
    fn rlock_depth_follows_the_model(acquires in proptest::collection::vec(any::<bool>(), 0..60)) {
        let lock = RLock::new().unwrap();
        let mut depth = 0_u64;
        for acquire in acquires {
            if acquire {
                prop_assert!(lock.acquire(false, None).unwrap());
                depth += 1;
            } else {
                let r = lock.release();
                if depth == 0 {
                    prop_assert!(matches!(r, Err(SyncError::NotOwner)));
                } else {
                    prop_assert!(r.is_ok());
                    depth -= 1;
                }
            }
            prop_assert_eq!(lock.recursion_count(), depth);
            prop_assert_eq!(lock.is_locked(), depth > 0);
        }
    }

    #[test]
    fn notifies_wake_at_most_the_waiters_there_are(
        waiters in 1_u32..5,
        notifies in proptest::collection::vec(0_u32..4, 1..5),
    ) {
        // Each waiter waits once, briefly; every notify wakes at most as
        // many as it names; each waiter ends either notified or timed out.
        let cond = Condition::new().unwrap();
        let woken = std::sync::atomic::AtomicU32::new(0);
        let timed_out = std::sync::atomic::AtomicU32::new(0);
        let total: u32 = notifies.iter().sum();
        std::thread::scope(|s| {
            for _ in 0..waiters {
                s.spawn(|| {
                    let _g = cond.lock().unwrap();
                    let notified = cond.wait(Some(Duration::from_millis(30))).unwrap();
                    let c = if notified { &woken } else { &timed_out };
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
            for n in &notifies {
                let _g = cond.lock().unwrap();
                cond.notify(*n).unwrap();
            }
        });
        let woken = woken.into_inner();
        prop_assert!(woken <= total.min(waiters));
        prop_assert_eq!(woken + timed_out.into_inner(), waiters);
    }
}
