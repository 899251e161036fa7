//! Who drives the pool: a synchronous call (`apply`, `map`), `join` and
//! `terminate` drive the supervisor on the caller's thread while they
//! wait; the first submission that returns before its result is in moves
//! it to the supervisor thread. Callbacks still run on that thread, a
//! `terminate` from elsewhere is still prompt, idle workers still exit at
//! `close`, callers on many threads take turns, and a worker killed under
//! a driving caller fails exactly its item.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_pool::{Callbacks, Error};

use crate::never_hang::{
    announced, assert_lost_to_kill_9, items_with_a_slow_one, kill_9, scratch, slow_if_asked,
};
use crate::{LONG, METHODS, alive, eventually, pool, sleep_ms, square};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "a_pool_used_synchronously_starts_no_thread",
        a_pool_used_synchronously_starts_no_thread,
    ),
    (
        "callbacks_run_on_the_supervisor_thread_while_a_caller_drives",
        callbacks_run_on_the_supervisor_thread_while_a_caller_drives,
    ),
    (
        "terminate_while_a_caller_drives",
        terminate_while_a_caller_drives,
    ),
    (
        "close_lets_idle_workers_exit_before_join",
        close_lets_idle_workers_exit_before_join,
    ),
    (
        "callers_on_many_threads_take_turns",
        callers_on_many_threads_take_turns,
    ),
    (
        "a_driving_caller_sees_a_killed_worker_exactly",
        a_driving_caller_sees_a_killed_worker_exactly,
    ),
];

/// The threads of this process named like the pool's supervisor.
fn supervisor_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "mp-pool")
        .count()
}

fn a_pool_used_synchronously_starts_no_thread() {
    eventually("the threads of earlier tests' pools to go", || {
        supervisor_threads() == 0
    });
    for m in METHODS {
        let p = pool(m, 2);
        assert_eq!(p.apply(square, 3).unwrap(), 9, "{m}");
        assert_eq!(p.map(square, 0..100, Some(7)).unwrap()[99], 9801, "{m}");
        assert_eq!(supervisor_threads(), 0, "{m}: only synchronous calls");
        p.close();
        p.join().unwrap();
        // An async submission needs the thread: it serves the result.
        let p = pool(m, 2);
        assert_eq!(p.apply(square, 2).unwrap(), 4, "{m}");
        let r = p.apply_async(square, 5).unwrap();
        // (A new thread names itself a moment after it starts.)
        eventually("the supervisor thread", || supervisor_threads() == 1);
        assert_eq!(r.get(LONG).unwrap(), 25, "{m}");
        assert_eq!(p.apply(square, 6).unwrap(), 36, "{m}: served by the thread");
        drop(p);
        // Joined at drop (the kernel lists a joined thread a moment longer).
        eventually("the supervisor thread to go", || supervisor_threads() == 0);
    }
}

fn callbacks_run_on_the_supervisor_thread_while_a_caller_drives() {
    for m in METHODS {
        let p = pool(m, 2);
        let ran_on = Arc::new(Mutex::new(None));
        let record = ran_on.clone();
        std::thread::scope(|s| {
            // This caller drives the supervisor while its slow task runs.
            let slow = s.spawn(|| p.apply(sleep_ms, 300));
            std::thread::sleep(Duration::from_millis(50));
            let r = p
                .apply_async_with(
                    square,
                    7,
                    Callbacks::new().on_success(move |n| {
                        let name = std::thread::current().name().map(str::to_owned);
                        *record.lock().unwrap() = Some((name, n));
                    }),
                )
                .unwrap();
            assert_eq!(r.get(LONG).unwrap(), 49, "{m}");
            assert_eq!(slow.join().unwrap().unwrap(), 300, "{m}");
        });
        let (name, n) = ran_on.lock().unwrap().take().expect("the callback ran");
        assert_eq!(n, 49);
        assert_eq!(
            name.as_deref(),
            Some("mp-pool"),
            "{m}: the callback's thread"
        );
    }
}

fn terminate_while_a_caller_drives() {
    for m in METHODS {
        let p = pool(m, 2);
        let workers = p.worker_pids();
        std::thread::scope(|s| {
            let stuck = s.spawn(|| p.apply(sleep_ms, 60_000));
            std::thread::sleep(Duration::from_millis(100));
            crate::terminate_promptly(&p, m);
            let outcome = stuck.join().unwrap();
            assert!(
                matches!(outcome, Err(Error::Terminated)),
                "{m}: {outcome:?}"
            );
        });
        for w in workers {
            assert!(!alive(w), "{m}: worker {w} left behind");
        }
    }
}

fn close_lets_idle_workers_exit_before_join() {
    for m in METHODS {
        let p = pool(m, 2);
        assert_eq!(p.apply(square, 4).unwrap(), 16);
        let workers = p.worker_pids();
        assert_eq!(workers.len(), 2, "{m}");
        p.close();
        for w in workers {
            eventually(&format!("{m}: idle worker {w} to exit"), || !alive(w));
        }
        p.join().unwrap();
        assert!(p.worker_pids().is_empty(), "{m}");
    }
}

fn callers_on_many_threads_take_turns() {
    for m in ["fork", "forkserver"] {
        let p = pool(m, 2);
        std::thread::scope(|s| {
            let callers: Vec<_> = (0..4u64)
                .map(|t| {
                    let p = &p;
                    s.spawn(move || {
                        for i in 0..30 {
                            let n = t * 1000 + i;
                            assert_eq!(p.apply(square, n).unwrap(), n * n);
                        }
                        let got = p.map(square, 0..50, Some(3)).unwrap();
                        assert_eq!(got, (0..50).map(|n| n * n).collect::<Vec<_>>());
                    })
                })
                .collect();
            for c in callers {
                c.join().unwrap();
            }
        });
        assert_eq!(supervisor_threads(), 0, "{m}: only synchronous calls");
        p.close();
        p.join().unwrap();
    }
}

/// A `kill -9` of the worker running an item of a synchronous `map`, whose
/// caller drives the pool: that item fails with `WorkerLost` naming the
/// worker and the signal, the map returns (no hang), a replacement starts
/// from the caller's thread, and no supervisor thread was needed.
fn a_driving_caller_sees_a_killed_worker_exactly() {
    for m in METHODS {
        let p = pool(m, 2);
        let (_dir, path) = scratch("pid");
        std::thread::scope(|s| {
            let caller =
                s.spawn(|| p.map(slow_if_asked, items_with_a_slow_one(10, 3, &path), Some(1)));
            let pid = announced(&path);
            kill_9(pid);
            assert_lost_to_kill_9(caller.join().unwrap(), pid, m);
            assert!(!alive(pid), "{m}");
        });
        assert_eq!(p.apply(square, 9).unwrap(), 81, "{m}: the pool goes on");
        assert_eq!(p.worker_pids().len(), 2, "{m}: replaced");
        assert_eq!(supervisor_threads(), 0, "{m}: only synchronous calls");
    }
}
