//! The rules by which the pool never hangs: a worker killed mid-task (a
//! real `kill -9`), aborted, or exiting inside a task fails that task
//! alone with `WorkerLost`; a failing initializer stops the pool; a task
//! past the timeout is failed and its worker replaced; a worker over its
//! memory limit is replaced between tasks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mp_pool::{Error, Pool, PoolState};
use rustix::process::{Pid, Signal, kill_process};

use crate::{LONG, METHODS, alive, eventually, pool};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "kill_9_fails_the_running_task_alone",
        kill_9_fails_the_running_task_alone,
    ),
    (
        "map_with_a_killed_worker_does_not_hang",
        map_with_a_killed_worker_does_not_hang,
    ),
    (
        "a_slow_task_does_not_hold_earlier_results",
        a_slow_task_does_not_hold_earlier_results,
    ),
    ("exit_and_abort_inside_tasks", exit_and_abort_inside_tasks),
    (
        "results_before_an_exit_are_kept",
        results_before_an_exit_are_kept,
    ),
    (
        "failing_initializer_stops_the_pool",
        failing_initializer_stops_the_pool,
    ),
    (
        "task_timeout_fails_the_task_and_replaces_the_worker",
        task_timeout_fails_the_task_and_replaces_the_worker,
    ),
    (
        "memory_limit_replaces_the_worker_between_tasks",
        memory_limit_replaces_the_worker_between_tasks,
    ),
];

fn square(n: u64) -> u64 {
    n * n
}

fn pid_of(_: u64) -> i32 {
    std::process::id() as i32
}

/// Writes this worker's pid to `path`, then sleeps `ms`.
fn announce_then_sleep((path, ms): (String, u64)) -> u64 {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, std::process::id().to_string()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The pid a task announced at `path`.
pub(crate) fn announced(path: &Path) -> i32 {
    let mut pid = None;
    eventually("the task to announce its pid", || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

pub(crate) fn kill_9(pid: i32) {
    kill_process(Pid::from_raw(pid).unwrap(), Signal::KILL).unwrap();
}

/// Checks that `outcome` is `WorkerLost` for worker `pid`, ended by
/// `SIGKILL`.
pub(crate) fn assert_lost_to_kill_9<T: std::fmt::Debug>(
    outcome: mp_pool::Result<T>,
    pid: i32,
    m: &str,
) {
    match outcome {
        Err(Error::WorkerLost {
            pid: lost,
            exitcode,
        }) => assert_eq!((lost, exitcode), (pid, -9), "{m}"),
        other => panic!("{m}: {other:?}"),
    }
}

pub(crate) fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn kill_9_fails_the_running_task_alone() {
    for m in METHODS {
        // One worker: the tasks queued behind the victim (some already
        // sent to it) must reach the replacement.
        let p = pool(m, 1);
        let (_dir, path) = scratch("pid");
        let victim = p
            .apply_async(announce_then_sleep, (path.display().to_string(), 60_000))
            .unwrap();
        let others: Vec<_> = (0..30).map(|i| p.apply_async(square, i).unwrap()).collect();
        let pid = announced(&path);
        kill_9(pid);
        let t0 = Instant::now();
        assert_lost_to_kill_9(victim.get(LONG), pid, m);
        assert!(t0.elapsed() < Duration::from_secs(30), "{m}: noticed late");
        let e = victim.get(None).unwrap_err();
        assert!(
            format!("{e}").contains("killed by signal 9 (SIGKILL)"),
            "{e}"
        );
        for (i, r) in others.iter().enumerate() {
            assert_eq!(r.get(LONG).unwrap(), (i * i) as u64, "{m}: task {i}");
        }
        let now = p.worker_pids();
        assert_eq!(now.len(), 1, "{m}: a replacement runs");
        assert_ne!(now[0], pid, "{m}");
        assert_eq!(p.apply(square, 4).unwrap(), 16);
        assert!(!alive(pid));
    }
}

/// Announces and sleeps for `Some(path)`, squares otherwise.
pub(crate) fn slow_if_asked((path, n): (Option<String>, u64)) -> u64 {
    match path {
        Some(path) => announce_then_sleep((path, 60_000)),
        None => n * n,
    }
}

/// Items `0..n`, item `slow` announcing at `path` and sleeping.
pub(crate) fn items_with_a_slow_one(n: u64, slow: u64, path: &Path) -> Vec<(Option<String>, u64)> {
    (0..n)
        .map(|i| ((i == slow).then(|| path.display().to_string()), i))
        .collect()
}

/// CPython's `map_async` waits forever when a worker dies (gh-66587).
fn map_with_a_killed_worker_does_not_hang() {
    for m in METHODS {
        let p = pool(m, 2);
        let (_dir, path) = scratch("pid");
        let r = p
            .map_async(slow_if_asked, items_with_a_slow_one(40, 3, &path), Some(1))
            .unwrap();
        let pid = announced(&path);
        kill_9(pid);
        match r.get(LONG) {
            Err(Error::WorkerLost { pid: lost, .. }) => assert_eq!(lost, pid, "{m}"),
            other => panic!("{m}: {other:?}"),
        }
        // imap over the same kind of input: only the lost item fails.
        let (_dir, path) = scratch("pid");
        let mut it = p
            .imap(slow_if_asked, items_with_a_slow_one(12, 5, &path), 1)
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(it.next().unwrap().unwrap());
        }
        kill_9(announced(&path));
        let lost = it.next();
        assert!(
            matches!(lost, Some(Err(Error::WorkerLost { .. }))),
            "{m}: {lost:?}"
        );
        got.extend(it.map(Result::unwrap));
        assert_eq!(got, [0, 1, 4, 9, 16, 36, 49, 64, 81, 100, 121], "{m}");
    }
}

/// A quick task's result is sent before the slow task after it (in the
/// same worker, the same batch) finishes.
fn a_slow_task_does_not_hold_earlier_results() {
    for m in METHODS {
        let p = pool(m, 1);
        let (_dir, path) = scratch("pid");
        let mut it = p
            .imap(slow_if_asked, items_with_a_slow_one(4, 3, &path), 1)
            .unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(it.next().unwrap().unwrap(), i * i, "{m}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{m}: results held back"
        );
        kill_9(announced(&path));
        assert!(
            matches!(it.next(), Some(Err(Error::WorkerLost { .. }))),
            "{m}"
        );
    }
}

fn exits(code: i32) -> u64 {
    mp_context::exit(code)
}

fn process_exits(code: i32) -> u64 {
    std::process::exit(code)
}

fn aborts(_: ()) -> u64 {
    // No core file from the test, whatever the machine's limit says.
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    std::process::abort()
}

fn exit_and_abort_inside_tasks() {
    for m in METHODS {
        let p = pool(m, 2);
        let lost = |r: mp_pool::Result<u64>| match r {
            Err(Error::WorkerLost { exitcode, .. }) => exitcode,
            other => panic!("{m}: {other:?}"),
        };
        assert_eq!(lost(p.apply(exits, 7)), 7, "{m}: mp_context::exit");
        assert_eq!(
            lost(p.apply(process_exits, 3)),
            3,
            "{m}: std::process::exit"
        );
        assert_eq!(lost(p.apply(aborts, ())), -6, "{m}: abort");
        assert_eq!(p.map(square, 0..10, Some(2)).unwrap()[9], 81, "{m}");
        assert_eq!(p.state(), PoolState::Running);
    }
}

fn exit_on_three(n: u64) -> u64 {
    if n == 3 {
        mp_context::exit(3);
    }
    n
}

/// Results a worker had ready before `exit` inside a later task are sent
/// first: only the exiting task is lost.
fn results_before_an_exit_are_kept() {
    for m in METHODS {
        let p = pool(m, 1);
        let got: Vec<_> = p.imap(exit_on_three, 1..=5, 1).unwrap().collect();
        assert_eq!(got[0].as_ref().unwrap(), &1, "{m}");
        assert_eq!(got[1].as_ref().unwrap(), &2, "{m}");
        assert!(
            matches!(got[2], Err(Error::WorkerLost { exitcode: 3, .. })),
            "{m}: {:?}",
            got[2]
        );
        assert_eq!(got[3].as_ref().unwrap(), &4, "{m}");
        assert_eq!(got[4].as_ref().unwrap(), &5, "{m}");
    }
}

fn bad_init(_: ()) {
    panic!("the initializer fails on purpose");
}

fn init_exits(code: i32) {
    mp_context::exit(code)
}

/// gh-87472: CPython restarts workers with a failing initializer forever.
fn failing_initializer_stops_the_pool() {
    for m in METHODS {
        let p = Pool::builder()
            .processes(2)
            .start_method(m)
            .initializer(bad_init, ())
            .build()
            .unwrap();
        let t0 = Instant::now();
        match p.apply(square, 1) {
            Err(Error::InitializerFailed { message }) => {
                assert!(message.contains("fails on purpose"), "{m}: {message}");
                assert!(message.contains("never_hang.rs"), "{m}: {message}");
            }
            other => panic!("{m}: {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(30));
        assert_eq!(p.state(), PoolState::Broken);
        eventually("the workers to stop", || p.worker_pids().is_empty());
        assert!(matches!(
            p.apply_async(square, 2),
            Err(Error::InitializerFailed { .. })
        ));
        p.terminate();
        p.join().unwrap();

        let p = Pool::builder()
            .processes(1)
            .start_method(m)
            .initializer(init_exits, 4)
            .build()
            .unwrap();
        match p.map(square, 0..4, None) {
            Err(Error::InitializerFailed { message }) => {
                assert!(message.contains("exit(4)"), "{m}: {message}");
            }
            other => panic!("{m}: {other:?}"),
        }
    }
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn task_timeout_fails_the_task_and_replaces_the_worker() {
    for m in METHODS {
        let limit = Duration::from_millis(300);
        let p = Pool::builder()
            .processes(1)
            .start_method(m)
            .task_timeout(limit)
            .build()
            .unwrap();
        assert_eq!(p.apply(sleep_ms, 10).unwrap(), 10, "{m}: in time");
        let before = p.worker_pids();
        let slow = p.apply_async(sleep_ms, 60_000).unwrap();
        let quick: Vec<_> = (0..5).map(|i| p.apply_async(square, i).unwrap()).collect();
        let t0 = Instant::now();
        match slow.get(LONG) {
            Err(Error::TaskTimeout { limit: l, pid }) => {
                assert_eq!(l, limit);
                assert_eq!(vec![pid], before, "{m}");
            }
            other => panic!("{m}: {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{m}");
        for (i, r) in quick.iter().enumerate() {
            assert_eq!(r.get(LONG).unwrap(), (i * i) as u64, "{m}");
        }
        assert_ne!(p.worker_pids(), before, "{m}: replaced");
    }
}

/// Keeps `mib` MiB of touched memory forever, returns the worker's pid.
fn leak(mib: usize) -> i32 {
    std::mem::forget(vec![1u8; mib << 20]);
    std::process::id() as i32
}

fn memory_limit_replaces_the_worker_between_tasks() {
    for m in METHODS {
        let p = Pool::builder()
            .processes(1)
            .start_method(m)
            .max_memory_per_child(128 << 20)
            .build()
            .unwrap();
        // Under the limit: the same worker throughout.
        let pids = p.map(pid_of, 0..20, Some(1)).unwrap();
        assert!(pids.iter().all(|&x| x == pids[0]), "{m}: {pids:?}");
        // The task that leaks gets its result; the next task runs elsewhere.
        let leaker = p.apply(leak, 192).unwrap();
        let next = p.apply(pid_of, 0).unwrap();
        assert_ne!(
            leaker, next,
            "{m}: the worker over its limit was not replaced"
        );
        eventually("the leaking worker to exit", || !alive(leaker));
    }
}
