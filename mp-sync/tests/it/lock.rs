//! SH-06..08 and ADJ-03 for `Lock` and `RLock`.

use std::time::{Duration, Instant};

use mp_heap::{SharedLock, TryLockError, Value};
use mp_sync::{Lock, RLock, SyncError};

#[test]
fn lock_acquire_release_and_the_too_many_times_error() {
    // SH-06.
    let lock = Lock::new().unwrap();
    assert!(lock.acquire(true, None).unwrap());
    assert!(lock.is_locked());
    assert_eq!(lock.owner_pid(), Some(std::process::id()));
    assert!(!lock.acquire(false, None).unwrap());
    lock.release().unwrap();
    assert!(!lock.is_locked());
    let e = lock.release().unwrap_err();
    assert!(matches!(e, SyncError::ReleasedTooManyTimes));
    assert_eq!(e.to_string(), "semaphore or lock released too many times");
}

#[test]
fn a_lock_may_be_released_by_another_thread() {
    let lock = Lock::new().unwrap();
    assert!(lock.acquire(true, None).unwrap());
    std::thread::scope(|s| {
        s.spawn(|| lock.release().unwrap());
    });
    assert!(!lock.is_locked());
    // And a thread that holds it waits for someone else's release.
    assert!(lock.acquire(true, None).unwrap());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            lock.release().unwrap();
        });
        assert!(lock.acquire(true, Some(Duration::from_secs(60))).unwrap());
    });
    lock.release().unwrap();
}

#[test]
fn rlock_counts_recursion_and_only_its_owner_releases() {
    // SH-07.
    let lock = RLock::new().unwrap();
    for depth in 1..=3 {
        assert!(lock.acquire(true, None).unwrap());
        assert_eq!(lock.recursion_count(), depth);
    }
    let by_other = std::thread::scope(|s| s.spawn(|| lock.release()).join().unwrap());
    let e = by_other.unwrap_err();
    assert!(matches!(e, SyncError::NotOwner));
    assert_eq!(
        e.to_string(),
        "attempt to release recursive lock not owned by thread"
    );
    let other_got_it = std::thread::scope(|s| {
        s.spawn(|| lock.acquire(false, None).unwrap())
            .join()
            .unwrap()
    });
    assert!(!other_got_it);
    for _ in 0..2 {
        lock.release().unwrap();
        assert!(lock.is_locked(), "held until the last release");
    }
    lock.release().unwrap();
    assert!(!lock.is_locked());
    assert!(matches!(lock.release(), Err(SyncError::NotOwner)));
}

#[test]
fn guards_release_on_drop() {
    // SH-08.
    let lock = Lock::new().unwrap();
    {
        let _g = lock.lock().unwrap();
        assert!(lock.is_locked());
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    }
    assert!(!lock.is_locked());
    let rlock = RLock::new().unwrap();
    {
        let _a = rlock.lock().unwrap();
        let _b = rlock.lock().unwrap();
        assert_eq!(rlock.recursion_count(), 2);
    }
    assert!(!rlock.is_locked());
}

#[test]
fn non_blocking_and_timed_acquisitions() {
    // ADJ-03: acquire(False), acquire(False, None), acquire(False, t) at
    // once; acquire(True, t) after t.
    let lock = Lock::new().unwrap();
    let _held = lock.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for t in [None, Some(Duration::from_secs(60))] {
                let t0 = Instant::now();
                assert!(!lock.acquire(false, t).unwrap());
                assert!(t0.elapsed() < Duration::from_secs(30), "a try waited");
            }
            let t0 = Instant::now();
            assert!(
                !lock
                    .acquire(true, Some(Duration::from_millis(100)))
                    .unwrap()
            );
            assert!(t0.elapsed() >= Duration::from_millis(100));
            let t0 = Instant::now();
            assert!(matches!(
                lock.lock_timeout(Duration::from_millis(50)),
                Err(TryLockError::WouldBlock)
            ));
            assert!(t0.elapsed() >= Duration::from_millis(50));
        });
    });
}

#[test]
fn a_timeout_too_large_for_instant_waits_without_a_deadline() {
    let lock = Lock::new().unwrap();
    assert!(lock.acquire(true, Some(Duration::MAX)).unwrap());
    std::thread::scope(|s| {
        let waiter = s.spawn(|| lock.acquire(true, Some(Duration::MAX)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        lock.release().unwrap();
        assert!(waiter.join().unwrap());
    });
    lock.release().unwrap();
}

#[test]
fn locks_guard_values_and_know_their_kind() {
    // CPython's Value(typecode, v, lock=my_lock): one lock, several values.
    let lock = RLock::new().unwrap();
    let a = Value::with_lock(1_u32, &lock).unwrap();
    let b = Value::with_lock(2_u32, lock.clone()).unwrap();
    let g = a.lock().unwrap();
    assert!(lock.is_mine() && b.get_lock().is_mine());
    assert_eq!(b.get().unwrap(), 2, "the holder re-enters the shared RLock");
    drop(g);
    assert!(!lock.is_locked());
    // A SharedLock of the other kind is not a Lock.
    assert!(Lock::from_shared(SharedLock::recursive().unwrap()).is_none());
    assert!(RLock::from_shared(a.get_lock().clone()).is_some());
    assert!(Lock::from_shared(SharedLock::plain().unwrap()).is_some());
}

#[test]
fn clones_are_one_lock() {
    let lock = Lock::new().unwrap();
    let copy = lock.clone();
    let _g = lock.lock().unwrap();
    assert!(copy.is_locked());
    assert!(!copy.acquire(false, None).unwrap());
}
