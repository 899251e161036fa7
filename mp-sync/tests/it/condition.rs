//! SH-11..15 for `Condition`, with threads as the waiters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mp_sync::{Condition, Lock, RLock, SyncError};

use crate::common::{PATIENCE, eventually, settle};

/// Counts the waiters that went to sleep and those that woke notified.
#[derive(Default)]
struct Tally {
    sleeping: AtomicU32,
    woken: AtomicU32,
    timed_out: AtomicU32,
}

impl Tally {
    fn woken(&self) -> u32 {
        self.woken.load(Ordering::SeqCst)
    }
}

/// A waiter: takes the lock, says it sleeps, waits, records the outcome.
fn waiter(cond: &Condition, tally: &Tally, timeout: Option<Duration>) {
    let _g = cond.lock().unwrap();
    tally.sleeping.fetch_add(1, Ordering::SeqCst);
    if cond.wait(timeout).unwrap() {
        tally.woken.fetch_add(1, Ordering::SeqCst);
    } else {
        tally.timed_out.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until `n` waiters sleep; once the lock is free again, all of them
/// are registered (they register under it).
fn all_asleep(cond: &Condition, tally: &Tally, n: u32) {
    eventually("the waiters sleep", || {
        tally.sleeping.load(Ordering::SeqCst) == n
    });
    drop(cond.lock().unwrap());
}

fn notify(cond: &Condition, n: u32) {
    let _g = cond.lock().unwrap();
    cond.notify(n).unwrap();
}

#[test]
fn each_notify_wakes_exactly_one_waiter() {
    // SH-11.
    let cond = Condition::new().unwrap();
    let tally = Tally::default();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| waiter(&cond, &tally, Some(PATIENCE)));
        }
        all_asleep(&cond, &tally, 2);
        settle();
        assert_eq!(tally.woken(), 0);
        notify(&cond, 1);
        eventually("one waiter woke", || tally.woken() == 1);
        settle();
        assert_eq!(tally.woken(), 1, "one notify woke two waiters");
        notify(&cond, 1);
        eventually("the second waiter woke", || tally.woken() == 2);
    });
    assert_eq!(tally.timed_out.load(Ordering::SeqCst), 0);
}

#[test]
fn notify_all_wakes_everyone_and_timeouts_leave_no_trace() {
    // SH-12.
    let cond = Condition::new().unwrap();
    let tally = Tally::default();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| waiter(&cond, &tally, Some(Duration::from_millis(100))));
        }
    });
    assert_eq!(tally.timed_out.load(Ordering::SeqCst), 6);
    assert_eq!(tally.woken(), 0);
    let tally = Tally::default();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| waiter(&cond, &tally, Some(PATIENCE)));
        }
        all_asleep(&cond, &tally, 6);
        let _g = cond.lock().unwrap();
        cond.notify_all().unwrap();
    });
    assert_eq!(tally.woken(), 6);
    assert_eq!(tally.timed_out.load(Ordering::SeqCst), 0);
}

#[test]
fn notify_n_wakes_n() {
    // SH-13.
    let cond = Condition::new().unwrap();
    let tally = Tally::default();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| waiter(&cond, &tally, Some(PATIENCE)));
        }
        all_asleep(&cond, &tally, 6);
        notify(&cond, 2);
        eventually("two woke", || tally.woken() == 2);
        settle();
        assert_eq!(tally.woken(), 2);
        notify(&cond, 4);
        eventually("the other four woke", || tally.woken() == 6);
        // Nobody is left: a further notify wakes nobody, and is no error.
        notify(&cond, 3);
    });
    assert_eq!(tally.woken(), 6);
}

#[test]
fn a_notify_wakes_no_waiter_that_came_after_it() {
    let cond = Condition::new().unwrap();
    let tally = Tally::default();
    std::thread::scope(|s| {
        s.spawn(|| waiter(&cond, &tally, Some(PATIENCE)));
        all_asleep(&cond, &tally, 1);
        {
            let _g = cond.lock().unwrap();
            cond.notify(1).unwrap();
            // Register a second waiter before the first takes its signal:
            // the lock is held, so the first cannot run yet.
        }
        s.spawn(|| waiter(&cond, &tally, Some(Duration::from_millis(200))));
    });
    assert_eq!(tally.woken(), 1);
    assert_eq!(tally.timed_out.load(Ordering::SeqCst), 1);
}

#[test]
fn timeouts_and_wait_for() {
    // SH-14, SH-15.
    let cond = Condition::new().unwrap();
    let g = cond.lock().unwrap();
    assert!(!cond.wait(Some(Duration::ZERO)).unwrap());
    let t0 = Instant::now();
    assert!(!cond.wait(Some(Duration::from_millis(100))).unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(
        !cond
            .wait_for(|| false, Some(Duration::from_millis(100)))
            .unwrap()
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
    drop(g);
    // wait_for returns once a shared value reaches its target, with the
    // notifications coming from another thread.
    let state = mp_heap::Value::new(0_u32).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(5));
                let _g = cond.lock().unwrap();
                state.lock().unwrap().update(|n| n + 1);
                cond.notify(1).unwrap();
            }
        });
        let _g = cond.lock().unwrap();
        let reached = cond
            .wait_for(|| state.get().unwrap() == 4, Some(PATIENCE))
            .unwrap();
        assert!(reached);
    });
}

#[test]
fn waiting_releases_an_rlock_completely_and_takes_it_back_as_deep() {
    let lock = RLock::new().unwrap();
    let cond = Condition::with_lock(&lock).unwrap();
    for _ in 0..3 {
        assert!(lock.acquire(true, None).unwrap());
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // Taken while the owner waits: the wait released all 3 levels.
            let _g = cond.lock_timeout(PATIENCE).unwrap();
            cond.notify(1).unwrap();
        });
        assert!(cond.wait(Some(PATIENCE)).unwrap());
    });
    assert_eq!(lock.recursion_count(), 3);
    for _ in 0..3 {
        lock.release().unwrap();
    }
}

#[test]
fn a_condition_over_a_plain_lock() {
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let tally = Tally::default();
    std::thread::scope(|s| {
        s.spawn(|| waiter(&cond, &tally, Some(PATIENCE)));
        all_asleep(&cond, &tally, 1);
        let _g = lock.lock().unwrap();
        cond.notify_all().unwrap();
    });
    assert_eq!(tally.woken(), 1);
    assert!(!lock.is_locked());
}

#[test]
fn waiting_or_notifying_without_the_lock_is_an_error() {
    let cond = Condition::new().unwrap();
    let e = cond.wait(Some(Duration::ZERO)).unwrap_err();
    assert!(matches!(e, SyncError::WaitWithoutLock));
    assert_eq!(
        e.to_string(),
        "must acquire() condition before using wait()"
    );
    assert!(matches!(
        cond.wait_for(|| true, None),
        Err(SyncError::WaitWithoutLock)
    ));
    let e = cond.notify(1).unwrap_err();
    assert_eq!(e.to_string(), "lock is not owned");
    assert!(matches!(
        cond.notify_all(),
        Err(SyncError::NotifyWithoutLock)
    ));
    // Held by another thread is not held by us.
    let g = cond.lock().unwrap();
    let other = std::thread::scope(|s| s.spawn(|| cond.notify(1).is_err()).join().unwrap());
    assert!(other);
    drop(g);
}
