//! `Condition` and `Event`: CPython's `_TestCondition` and `_TestEvent`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mp_dummy::{Condition, DummyProcess, Error, Event, Lock, Value};

use crate::{LONG, SHORT, took_at_least};

/// Waits until `count` reaches `n` (polling: the waiters report through
/// it), at most a long while.
fn until_count(count: &AtomicU32, n: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "count stuck at {}",
            count.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `n` processes that each wait on `cond` once, counting themselves
/// in `sleeping` before and in `woken` after.
fn waiters(
    cond: &Condition,
    n: u32,
    sleeping: &Arc<AtomicU32>,
    woken: &Arc<AtomicU32>,
) -> Vec<DummyProcess> {
    (0..n)
        .map(|_| {
            let (cond, sleeping, woken) = (cond.clone(), sleeping.clone(), woken.clone());
            let p = DummyProcess::new(
                move |()| {
                    let _held = cond.lock();
                    sleeping.fetch_add(1, Ordering::SeqCst);
                    assert!(cond.wait(LONG).unwrap(), "notified");
                    woken.fetch_add(1, Ordering::SeqCst);
                },
                (),
            );
            p.start().unwrap();
            p
        })
        .collect()
}

#[test]
fn notify_wakes_one_waiter_at_a_time() {
    let cond = Condition::new();
    let (sleeping, woken) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let ps = waiters(&cond, 2, &sleeping, &woken);
    until_count(&sleeping, 2);
    // Each waiter counted itself under the lock, then released it inside
    // wait: once we hold the lock, both are asleep.
    {
        let _held = cond.lock();
        cond.notify(1).unwrap();
    }
    until_count(&woken, 1);
    std::thread::sleep(SHORT);
    assert_eq!(woken.load(Ordering::SeqCst), 1, "one notify, one waiter");
    {
        let _held = cond.lock();
        cond.notify(1).unwrap();
    }
    until_count(&woken, 2);
    for p in ps {
        p.join(LONG).unwrap();
    }
}

#[test]
fn notify_all_and_notify_n() {
    let cond = Condition::new();
    let (sleeping, woken) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let ps = waiters(&cond, 5, &sleeping, &woken);
    until_count(&sleeping, 5);
    {
        let _held = cond.lock();
        cond.notify(2).unwrap();
    }
    until_count(&woken, 2);
    std::thread::sleep(SHORT);
    assert_eq!(woken.load(Ordering::SeqCst), 2);
    {
        let _held = cond.lock();
        cond.notify_all().unwrap();
    }
    until_count(&woken, 5);
    for p in ps {
        p.join(LONG).unwrap();
    }
}

#[test]
fn wait_returns_false_after_its_timeout() {
    let cond = Condition::new();
    let _held = cond.lock();
    assert!(!took_at_least(SHORT, || cond.wait(Some(SHORT)).unwrap()));
    // The lock is held again after the wait.
    assert!(cond.notify(1).is_ok());
}

#[test]
fn wait_for_a_predicate_with_and_without_timeout() {
    let cond = Condition::new();
    let state = Value::new(0);
    let (c2, s2) = (cond.clone(), state.clone());
    let setter = std::thread::spawn(move || {
        for i in 1..=4 {
            std::thread::sleep(Duration::from_millis(10));
            let _held = c2.lock();
            s2.set(i);
            c2.notify_all().unwrap();
        }
    });
    {
        let _held = cond.lock();
        assert!(cond.wait_for(|| state.get() == 4, LONG).unwrap());
        // An impossible predicate: false once the timeout passes.
        assert!(!took_at_least(SHORT, || cond
            .wait_for(|| state.get() == 5, Some(SHORT))
            .unwrap()));
    }
    setter.join().unwrap();
}

#[test]
fn wait_and_notify_without_the_lock_are_errors() {
    let cond = Condition::new();
    assert!(matches!(cond.wait(None), Err(Error::WaitWithoutLock)));
    assert!(matches!(cond.notify(1), Err(Error::NotifyWithoutLock)));
    // Another thread's hold does not count (an RLock has an owner).
    let _held = cond.lock();
    let c2 = cond.clone();
    let e = std::thread::spawn(move || c2.wait(Some(SHORT)))
        .join()
        .unwrap();
    assert!(matches!(e, Err(Error::WaitWithoutLock)));
}

#[test]
fn a_condition_over_a_plain_lock_and_over_a_held_rlock() {
    let cond = Condition::with_lock(Lock::new());
    assert!(cond.acquire(true, None));
    assert!(!cond.wait(Some(Duration::ZERO)).unwrap());
    cond.release().unwrap();
    // An RLock held twice is released completely while waiting, and held
    // twice again after.
    let rlock = mp_dummy::RLock::new();
    let cond = Condition::with_lock(&rlock);
    assert!(rlock.acquire(true, None) && rlock.acquire(true, None));
    let c2 = cond.clone();
    let t = std::thread::spawn(move || {
        let _held = c2.lock(); // possible only while the waiter waits
        c2.notify(1).unwrap();
    });
    assert!(cond.wait(LONG).unwrap());
    assert_eq!(rlock.recursion_count(), 2);
    t.join().unwrap();
    rlock.release().unwrap();
    rlock.release().unwrap();
}

#[test]
fn an_event_is_set_waited_for_and_cleared() {
    // _TestEvent.test_event.
    let event = Event::new();
    assert!(!event.is_set());
    assert!(!event.wait(Some(Duration::ZERO)));
    assert!(!took_at_least(SHORT, || event.wait(Some(SHORT))));
    event.set();
    assert!(event.is_set());
    assert!(event.wait(None));
    assert!(event.wait(Some(Duration::ZERO)));
    event.clear();
    assert!(!event.is_set());
    let e2 = event.clone();
    let p = DummyProcess::new(
        move |()| {
            std::thread::sleep(SHORT);
            e2.set();
        },
        (),
    );
    p.start().unwrap();
    assert!(event.wait(LONG));
    p.join(LONG).unwrap();
}
