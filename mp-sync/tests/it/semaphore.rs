//! SH-09, SH-10 and ADJ-03 for `Semaphore` and `BoundedSemaphore`.

use std::time::{Duration, Instant};

use mp_sync::{BoundedSemaphore, SEM_VALUE_MAX, Semaphore, SyncError};

use crate::common::eventually;

#[test]
fn semaphore_counts_and_is_unbounded() {
    // SH-09.
    let sem = Semaphore::new(2).unwrap();
    assert!(sem.acquire(true, None));
    assert!(sem.acquire(true, None));
    assert_eq!(sem.get_value(), 0);
    assert!(!sem.acquire(false, None));
    for value in 1..=4 {
        sem.release().unwrap();
        assert_eq!(sem.get_value(), value);
    }
}

#[test]
fn bounded_semaphore_refuses_a_release_above_its_start() {
    // SH-10, and CPython's ValueError message.
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.max_value(), 2);
    assert!(sem.acquire(true, None));
    assert!(sem.acquire(true, None));
    assert!(!sem.try_acquire());
    sem.release().unwrap();
    sem.release().unwrap();
    let e = sem.release().unwrap_err();
    assert!(matches!(e, SyncError::ReleasedTooManyTimes));
    assert_eq!(e.to_string(), "semaphore or lock released too many times");
    assert_eq!(sem.get_value(), 2);
    let zero = BoundedSemaphore::new(0).unwrap();
    assert!(zero.release().is_err());
}

#[test]
fn timeouts_as_cpython() {
    // ADJ-03.
    let sem = Semaphore::new(0).unwrap();
    let t0 = Instant::now();
    assert!(!sem.acquire(false, None));
    assert!(!sem.acquire(false, Some(Duration::from_secs(60))));
    assert!(t0.elapsed() < Duration::from_secs(30), "a try waited");
    let t0 = Instant::now();
    assert!(!sem.acquire(true, Some(Duration::from_millis(100))));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    // Duration::MAX: no deadline, a release from another thread ends it.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| sem.acquire(true, Some(Duration::MAX)));
        std::thread::sleep(Duration::from_millis(20));
        sem.release().unwrap();
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn a_release_wakes_exactly_one_sleeper_per_unit() {
    let sem = Semaphore::new(0).unwrap();
    let got = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                assert!(sem.acquire(true, Some(Duration::from_secs(60))));
                got.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        for n in 1..=4 {
            sem.release().unwrap();
            eventually("a sleeper took the unit", || {
                got.load(std::sync::atomic::Ordering::SeqCst) == n
            });
        }
    });
    assert_eq!(sem.get_value(), 0);
}

#[test]
fn values_beyond_sem_value_max_are_refused() {
    assert!(matches!(
        Semaphore::new(SEM_VALUE_MAX + 1),
        Err(SyncError::InvalidArgument(_))
    ));
    let sem = Semaphore::new(SEM_VALUE_MAX).unwrap();
    assert!(matches!(
        sem.release(),
        Err(SyncError::SemaphoreOverflow { max: SEM_VALUE_MAX })
    ));
}

#[test]
fn a_guard_gives_its_unit_back() {
    let sem = BoundedSemaphore::new(1).unwrap();
    {
        let _g = sem.guard();
        assert_eq!(sem.get_value(), 0);
    }
    assert_eq!(sem.get_value(), 1);
}
