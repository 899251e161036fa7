//! Queue, locks, semaphores, condition, event and barrier, used from
//! several threads of this process (each thread has its own connection,
//! as each CPython client thread does). Cross-process use is in
//! `tests/processes.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::Served;

const SHORT: Duration = Duration::from_millis(100);

#[test]
fn queue_put_get_timeouts_and_join() {
    let s = Served::new();
    let q = s.manager.queue::<i64>(2).unwrap();
    q.put(&5).unwrap();
    q.put(&6).unwrap();
    assert!(q.full().unwrap());
    assert_eq!(q.qsize().unwrap(), 2);
    assert!(q.put_nowait(&7).unwrap_err().is("queue.Full"));
    assert!(
        q.put_timeout(&7, false, Some(SHORT))
            .unwrap_err()
            .is("queue.Full")
    );
    let t = Instant::now();
    assert!(
        q.put_timeout(&7, true, Some(SHORT))
            .unwrap_err()
            .is("queue.Full")
    );
    assert!(t.elapsed() >= SHORT);
    assert_eq!(q.get().unwrap(), 5);
    assert_eq!(q.get_nowait().unwrap(), 6);
    assert!(q.empty().unwrap());
    assert!(q.get_nowait().unwrap_err().is("queue.Empty"));
    let t = Instant::now();
    assert!(
        q.get_timeout(true, Some(SHORT))
            .unwrap_err()
            .is("queue.Empty")
    );
    assert!(t.elapsed() >= SHORT);
    // task_done / join (SH-05).
    let jq = s.manager.joinable_queue::<Option<i64>>(0).unwrap();
    for i in 0..10 {
        jq.put(&Some(i)).unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let jq = jq.clone();
            std::thread::spawn(move || {
                while let Some(_item) = jq.get().unwrap() {
                    jq.task_done().unwrap();
                }
                jq.task_done().unwrap();
            })
        })
        .collect();
    for _ in 0..4 {
        jq.put(&None).unwrap();
    }
    jq.join().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    assert!(jq.task_done().unwrap_err().is("ValueError"));
    q.shutdown(false).unwrap();
    assert!(q.put(&1).unwrap_err().is("queue.ShutDown"));
}

#[test]
fn locks_follow_threading() {
    let s = Served::new();
    let lock = s.manager.lock().unwrap();
    assert!(lock.acquire().unwrap());
    assert!(lock.locked().unwrap());
    assert!(!lock.acquire_timeout(false, None).unwrap());
    // Released from another thread (another connection): allowed for a Lock.
    let other = lock.clone();
    std::thread::spawn(move || other.release().unwrap())
        .join()
        .unwrap();
    assert!(!lock.locked().unwrap());
    let err = lock.release().unwrap_err();
    assert!(err.is("RuntimeError"), "{err:?}");
    assert!(
        lock.acquire_timeout(false, Some(SHORT))
            .unwrap_err()
            .is("ValueError")
    );
    {
        let _held = lock.lock().unwrap();
        assert!(lock.locked().unwrap());
    }
    assert!(!lock.locked().unwrap());

    // An RLock: reentrant for its owner, refused to others.
    let rlock = s.manager.rlock().unwrap();
    for _ in 0..3 {
        assert!(rlock.acquire().unwrap());
    }
    let other = rlock.clone();
    let denied = std::thread::spawn(move || {
        let got = other.acquire_timeout(true, Some(SHORT)).unwrap();
        let release = other.release();
        (got, release.is_err())
    })
    .join()
    .unwrap();
    assert_eq!(denied, (false, true));
    for _ in 0..3 {
        rlock.release().unwrap();
    }
    assert!(rlock.release().unwrap_err().is("RuntimeError"));
}

#[test]
fn semaphores() {
    let s = Served::new();
    let sem = s.manager.semaphore(2).unwrap();
    assert!(sem.acquire().unwrap());
    assert!(sem.acquire().unwrap());
    assert!(!sem.acquire_timeout(false, None).unwrap());
    let t = Instant::now();
    assert!(!sem.acquire_timeout(true, Some(SHORT)).unwrap());
    assert!(t.elapsed() >= SHORT);
    for _ in 0..4 {
        sem.release().unwrap(); // unbounded
    }
    let bsem = s.manager.bounded_semaphore(1).unwrap();
    assert!(bsem.acquire().unwrap());
    bsem.release().unwrap();
    assert!(bsem.release().unwrap_err().is("ValueError"));
}

#[test]
fn event_wait_and_set_from_another_thread() {
    let s = Served::new();
    let e = s.manager.event().unwrap();
    assert!(!e.is_set().unwrap());
    assert!(!e.wait(Some(Duration::ZERO)).unwrap());
    let t = Instant::now();
    assert!(!e.wait(Some(SHORT)).unwrap());
    assert!(t.elapsed() >= SHORT);
    let setter = e.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(SHORT);
        setter.set().unwrap();
    });
    assert!(e.wait(Some(Duration::from_secs(30))).unwrap());
    h.join().unwrap();
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());
}

#[test]
fn condition_notify_n_and_timeouts() {
    let s = Served::new();
    let cond = s.manager.condition(None).unwrap();
    // Waiting or notifying without the lock is refused.
    assert!(cond.wait(Some(SHORT)).unwrap_err().is("RuntimeError"));
    assert!(cond.notify(1).unwrap_err().is("RuntimeError"));
    cond.acquire().unwrap();
    assert!(!cond.wait(Some(SHORT)).unwrap());
    cond.release().unwrap();

    let woken = s.manager.value("i", &0_i64).unwrap();
    let waiters: Vec<_> = (0..6)
        .map(|_| {
            let (cond, woken) = (cond.clone(), woken.clone());
            std::thread::spawn(move || {
                cond.acquire().unwrap();
                let got = cond.wait(Some(Duration::from_secs(30))).unwrap();
                woken.set(&(woken.get().unwrap() + 1)).unwrap();
                cond.release().unwrap();
                got
            })
        })
        .collect();
    // Wait until all six sleep in the condition (n_waiting is not exposed:
    // poll the repr, which counts the waiters).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond.proxy_repr().contains(", 6)") {
        assert!(Instant::now() < deadline, "waiters did not arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
    cond.acquire().unwrap();
    cond.notify(2).unwrap();
    cond.release().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while woken.get().unwrap() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(SHORT);
    assert_eq!(woken.get().unwrap(), 2);
    cond.acquire().unwrap();
    cond.notify(4).unwrap();
    cond.release().unwrap();
    for w in waiters {
        assert!(w.join().unwrap());
    }
    assert_eq!(woken.get().unwrap(), 6);
    cond.acquire().unwrap();
    cond.notify(3).unwrap(); // wakes nobody
    cond.release().unwrap();

    // wait_for with a predicate that never holds returns false after the
    // timeout.
    cond.acquire().unwrap();
    let t = Instant::now();
    assert!(!cond.wait_for(|| false, Some(SHORT)).unwrap());
    assert!(t.elapsed() >= SHORT);
    cond.release().unwrap();

    // A Condition over an explicit Lock proxy of the same manager.
    let lock = s.manager.lock().unwrap();
    let c2 = s.manager.condition(Some(&lock)).unwrap();
    c2.acquire().unwrap();
    assert!(lock.locked().unwrap());
    c2.release().unwrap();
}

trait ReprExt {
    fn proxy_repr(&self) -> String;
}

impl ReprExt for mp_manager::ConditionProxy {
    fn proxy_repr(&self) -> String {
        use mp_manager::ProxyType;
        self.proxy().referent_repr().unwrap()
    }
}

#[test]
fn barrier_rounds_abort_reset_and_timeout() {
    let s = Served::new();
    let b = s.manager.barrier(5, None).unwrap();
    assert_eq!(b.parties().unwrap(), 5);
    let run = |b: &mp_manager::BarrierProxy, rounds: usize| {
        let zeros = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, zeros) = (b.clone(), zeros.clone());
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        if b.wait(Some(Duration::from_secs(30))).unwrap() == 0 {
                            zeros.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for _ in 0..rounds {
            if b.wait(Some(Duration::from_secs(30))).unwrap() == 0 {
                zeros.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(zeros.load(std::sync::atomic::Ordering::Relaxed), rounds);
    };
    run(&b, 1);
    run(&b, 10);
    assert_eq!(b.n_waiting().unwrap(), 0);
    assert!(!b.broken().unwrap());

    // abort(): the others get BrokenBarrierError.
    let waiter = b.clone();
    let h = std::thread::spawn(move || waiter.wait(Some(Duration::from_secs(30))));
    while b.n_waiting().unwrap() < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    b.abort().unwrap();
    assert!(
        h.join()
            .unwrap()
            .unwrap_err()
            .is("threading.BrokenBarrierError")
    );
    assert!(b.broken().unwrap());
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    run(&b, 2);

    // A timeout breaks it for everyone.
    let t = s.manager.barrier(2, Some(SHORT)).unwrap();
    assert!(t.wait(None).unwrap_err().is("threading.BrokenBarrierError"));
    assert!(t.broken().unwrap());
    let single = s.manager.barrier(1, None).unwrap();
    assert_eq!(single.wait(None).unwrap(), 0);
    assert!(s.manager.barrier(0, None).is_err());
}
