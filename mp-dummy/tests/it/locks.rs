//! Locks and semaphores: CPython's `_TestLock` and `_TestSemaphore`.

use std::time::Duration;

use mp_dummy::{BoundedSemaphore, Error, Lock, RLock, Semaphore};

use crate::{LONG, SHORT, took_at_least};

#[test]
fn a_lock_is_not_recursive_and_any_thread_may_release_it() {
    let lock = Lock::new();
    assert!(lock.acquire(true, None));
    assert!(!lock.acquire(false, None));
    assert!(!took_at_least(SHORT, || lock.acquire(true, Some(SHORT))));
    let l2 = lock.clone();
    std::thread::spawn(move || l2.release())
        .join()
        .unwrap()
        .unwrap();
    assert!(!lock.is_locked());
    assert!(matches!(lock.release(), Err(Error::ReleasedTooManyTimes)));
}

#[test]
fn a_waiting_acquire_gets_the_lock_when_it_is_released() {
    let lock = Lock::new();
    let held = lock.lock();
    let l2 = lock.clone();
    let t = std::thread::spawn(move || l2.acquire(true, LONG));
    std::thread::sleep(SHORT);
    drop(held);
    assert!(t.join().unwrap());
    assert!(lock.is_locked());
}

#[test]
fn lock_guards_try_and_timeout() {
    let lock = Lock::new();
    let g = lock.try_lock().unwrap();
    assert!(lock.try_lock().is_none());
    assert!(lock.lock_timeout(SHORT).is_none());
    drop(g);
    assert!(lock.lock_timeout(Duration::ZERO).is_some());
}

#[test]
fn an_rlock_is_recursive_and_owned() {
    let lock = RLock::new();
    assert!(lock.acquire(true, None));
    assert!(lock.acquire(false, None));
    assert_eq!(lock.recursion_count(), 2);
    let l2 = lock.clone();
    let (other_release, other_acquire) =
        std::thread::spawn(move || (l2.release(), l2.acquire(false, None)))
            .join()
            .unwrap();
    assert!(matches!(other_release, Err(Error::NotOwner)));
    assert!(!other_acquire);
    lock.release().unwrap();
    assert!(lock.is_mine());
    lock.release().unwrap();
    assert!(!lock.is_locked());
    assert!(matches!(lock.release(), Err(Error::NotOwner)));
}

#[test]
fn a_semaphore_counts() {
    // _TestSemaphore._test_semaphore.
    let sem = Semaphore::new(2);
    assert!(sem.acquire(true, None));
    assert_eq!(sem.get_value(), 1);
    assert!(sem.acquire(false, None));
    assert_eq!(sem.get_value(), 0);
    assert!(!sem.acquire(false, None));
    assert!(!took_at_least(SHORT, || sem.acquire(true, Some(SHORT))));
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 1);
    sem.release().unwrap();
    sem.release().unwrap(); // above the initial value: fine
    assert_eq!(sem.get_value(), 3);
    {
        let _g = sem.guard();
        assert_eq!(sem.get_value(), 2);
    }
    assert_eq!(sem.get_value(), 3);
}

#[test]
fn a_semaphore_release_wakes_a_waiter() {
    let sem = Semaphore::new(0);
    let s2 = sem.clone();
    let t = std::thread::spawn(move || s2.acquire(true, LONG));
    std::thread::sleep(SHORT);
    sem.release().unwrap();
    assert!(t.join().unwrap());
    assert_eq!(sem.get_value(), 0);
}

#[test]
fn a_bounded_semaphore_refuses_to_exceed_its_initial_value() {
    let sem = BoundedSemaphore::new(2);
    assert_eq!(sem.max_value(), 2);
    assert!(matches!(sem.release(), Err(Error::ReleasedTooManyTimes)));
    assert!(sem.try_acquire());
    sem.release().unwrap();
    assert!(matches!(sem.release(), Err(Error::ReleasedTooManyTimes)));
    assert_eq!(sem.get_value(), 2);
}
