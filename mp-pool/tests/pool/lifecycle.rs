//! Workers coming and going: `maxtasksperchild` (pids change),
//! `terminate` with tasks in flight (prompt, no child left), dropping a
//! pool, the lazy `imap` over an endless input, an input that panics, a
//! pool that cannot start, and workers that notice their pool's process
//! die.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use mp_pool::{Error, Pool};
use rustix::process::{Signal, kill_process};

use crate::{LONG, METHODS, alive, pool, sleep_ms, square};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "maxtasksperchild_replaces_workers",
        maxtasksperchild_replaces_workers,
    ),
    (
        "terminate_with_tasks_in_flight",
        terminate_with_tasks_in_flight,
    ),
    (
        "dropping_a_pool_terminates_it",
        dropping_a_pool_terminates_it,
    ),
    (
        "lazy_imap_over_an_endless_input",
        lazy_imap_over_an_endless_input,
    ),
    (
        "a_panicking_input_is_raised_in_place",
        a_panicking_input_is_raised_in_place,
    ),
    ("a_large_pool", a_large_pool),
    (
        "workers_exit_when_the_pool_process_dies",
        workers_exit_when_the_pool_process_dies,
    ),
    (
        "another_executable_is_refused_for_spawn_and_forkserver",
        another_executable_is_refused_for_spawn_and_forkserver,
    ),
    (
        "a_fork_childs_pool_watches_the_child",
        a_fork_childs_pool_watches_the_child,
    ),
];

/// The environment variable that makes this binary run
/// [`refuse_another_executable`] (process-wide state, so in a process of
/// its own).
pub(crate) const OTHER_EXE_ROLE: &str = "MP_POOL_TEST_OTHER_EXECUTABLE";

/// With `set_executable` naming another binary, spawn and forkserver pools
/// are refused with a message that says why; fork pools still work.
pub(crate) fn refuse_another_executable() -> ! {
    mp_context::set_executable("/bin/true").unwrap();
    for m in ["spawn", "forkserver"] {
        let e = Pool::builder()
            .processes(1)
            .start_method(m)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{m}: {e:?}");
        assert!(format!("{e}").contains("set_executable"), "{e}");
    }
    assert_eq!(pool("fork", 1).apply(square, 5).unwrap(), 25);
    std::process::exit(0)
}

/// Runs this binary again with `role` set; asserts that it succeeds.
fn run_role(role: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(role, "1")
        .status()
        .unwrap();
    assert!(status.success(), "{role}: {status}");
}

fn another_executable_is_refused_for_spawn_and_forkserver() {
    run_role(OTHER_EXE_ROLE);
}

/// The environment variable that makes this binary
/// [`start_pool_then_die`] with the start method it names.
pub(crate) const DIE_ROLE: &str = "MP_POOL_TEST_DIE_WITH_POOL";

/// A pool process killed by a signal (no exit handler runs): prints its
/// workers' pids, then `SIGKILL`s itself.
pub(crate) fn start_pool_then_die(method: &str) -> ! {
    use std::io::Write;
    let p = pool(method, 2);
    assert_eq!(p.apply(square, 3).unwrap(), 9);
    let pids: Vec<String> = p.worker_pids().iter().map(i32::to_string).collect();
    println!("{}", pids.join(" "));
    std::io::stdout().flush().unwrap();
    let me = rustix::process::getpid();
    let _ = kill_process(me, Signal::KILL);
    unreachable!("SIGKILL ends the process")
}

/// Under every start method, workers notice that the pool's process is
/// gone (under fork, where siblings hold copies of each other's pipes,
/// through a pidfd of the pool) and exit.
fn workers_exit_when_the_pool_process_dies() {
    for m in METHODS {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(DIE_ROLE, m)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let pids: Vec<i32> = text
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "{m}: {text:?}");
        for pid in pids {
            crate::eventually(&format!("{m}: worker {pid} to exit"), || !alive(pid));
        }
    }
}

/// The environment variable that makes this binary run
/// [`child_pool_dies`] (it needs a process of its own, whose first fork
/// pool is started before the child's).
pub(crate) const CHILD_POOL_ROLE: &str = "MP_POOL_TEST_CHILD_POOL_DIES";

/// Started in a fork child: a fork pool of its own, whose workers' pids go
/// to `path`; then the child `SIGKILL`s itself.
fn start_pool_in_child_then_die(path: String) {
    let p = pool("fork", 2);
    assert_eq!(p.apply(square, 3).unwrap(), 9);
    let pids: Vec<String> = p.worker_pids().iter().map(i32::to_string).collect();
    std::fs::write(format!("{path}.tmp"), pids.join(" ")).unwrap();
    std::fs::rename(format!("{path}.tmp"), &path).unwrap();
    let me = rustix::process::getpid();
    let _ = kill_process(me, Signal::KILL);
}

/// A fork pool in a process that forked from a pool's process: its workers
/// watch that process, not its parent (which lives on here), and exit
/// when it dies. Exits 0 once they have.
pub(crate) fn child_pool_dies() -> ! {
    let own = pool("fork", 1);
    assert_eq!(own.apply(square, 2).unwrap(), 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pids").to_string_lossy().into_owned();
    let child = mp_context::get_context(Some("fork"))
        .unwrap()
        .process(start_pool_in_child_then_die, path.clone());
    child.start().unwrap();
    child.join(LONG).unwrap();
    assert_eq!(child.exitcode().unwrap(), Some(-9));
    let text = std::fs::read_to_string(&path).unwrap();
    for pid in text.split_whitespace().map(|w| w.parse::<i32>().unwrap()) {
        crate::eventually(&format!("worker {pid} of the dead child to exit"), || {
            !alive(pid)
        });
    }
    assert_eq!(
        own.apply(square, 5).unwrap(),
        25,
        "this process's pool goes on"
    );
    std::process::exit(0)
}

fn a_fork_childs_pool_watches_the_child() {
    run_role(CHILD_POOL_ROLE);
}

fn pid_of(_: u64) -> i32 {
    std::process::id() as i32
}

fn maxtasksperchild_replaces_workers() {
    for m in METHODS {
        let p = Pool::builder()
            .processes(2)
            .start_method(m)
            .maxtasksperchild(2)
            .build()
            .unwrap();
        let pids = p.map(pid_of, 0..20, Some(1)).unwrap();
        let mut uses: HashMap<i32, usize> = HashMap::new();
        for pid in &pids {
            *uses.entry(*pid).or_default() += 1;
        }
        assert!(uses.values().all(|&n| n <= 2), "{m}: {uses:?}");
        assert!(uses.len() >= 10, "{m}: {uses:?}");
        // A chunk counts as one task, as in CPython.
        let pids = p.map(pid_of, 0..8, Some(4)).unwrap();
        assert!(pids[..4].iter().all(|&x| x == pids[0]), "{m}: {pids:?}");
        assert_eq!(p.apply(square, 3).unwrap(), 9);
    }
}

/// CPython's test_terminate, with the never-hang rules: terminating with
/// thousands of queued tasks and workers busy returns promptly, kills the
/// workers, and fails what did not finish.
fn terminate_with_tasks_in_flight() {
    for m in METHODS {
        let p = pool(m, 2);
        let sleepers: Vec<_> = (0..4)
            .map(|_| p.apply_async(sleep_ms, 60_000).unwrap())
            .collect();
        let queued: Vec<_> = (0..10_000)
            .map(|i| p.apply_async(square, i).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let workers = p.worker_pids();
        assert_eq!(workers.len(), 2);
        crate::terminate_promptly(&p, m);
        for w in &workers {
            assert!(!alive(*w), "{m}: worker {w} left behind");
        }
        for r in &sleepers {
            assert!(
                matches!(r.get(Some(Duration::ZERO)), Err(Error::Terminated)),
                "{m}"
            );
        }
        // Every queued task is finished one way or the other.
        assert!(queued.iter().all(|r| r.ready()), "{m}");
        assert!(mp_context::active_children().iter().all(|c| {
            c.pid()
                .ok()
                .flatten()
                .is_none_or(|pid| !workers.contains(&pid))
        }));
    }
}

fn dropping_a_pool_terminates_it() {
    for m in METHODS {
        let p = pool(m, 2);
        let r = p.apply_async(sleep_ms, 60_000).unwrap();
        let workers = p.worker_pids();
        drop(p);
        assert!(matches!(r.get(LONG), Err(Error::Terminated)), "{m}");
        for w in workers {
            assert!(!alive(w), "{m}: worker {w} left behind");
        }
    }
}

fn lazy_imap_over_an_endless_input() {
    let window = 8;
    for m in METHODS {
        let p = Pool::builder()
            .processes(2)
            .start_method(m)
            .imap_window(window)
            .build()
            .unwrap();
        for (chunksize, ordered) in [(1, true), (3, true), (1, false), (4, false)] {
            let pulled = Rc::new(Cell::new(0usize));
            let counter = pulled.clone();
            let endless = (0u64..).inspect(move |_| counter.set(counter.get() + 1));
            let n = 50;
            let mut got: Vec<u64> = if ordered {
                p.imap(square, endless, chunksize)
                    .unwrap()
                    .take(n)
                    .collect::<Result<_, _>>()
                    .unwrap()
            } else {
                p.imap_unordered(square, endless, chunksize)
                    .unwrap()
                    .take(n)
                    .collect::<Result<_, _>>()
                    .unwrap()
            };
            let bound = n + (window + 1) * chunksize;
            assert!(
                pulled.get() <= bound,
                "{m}: read {} items for {n} results (bound {bound})",
                pulled.get()
            );
            if ordered {
                assert_eq!(got, (0..n as u64).map(|i| i * i).collect::<Vec<_>>(), "{m}");
            } else {
                got.sort_unstable();
                got.dedup();
                assert_eq!(got.len(), n, "{m}: every result once");
            }
        }
    }
}

/// SH-25: an exception of the input propagates, after the results of the
/// chunks read before it.
fn a_panicking_input_is_raised_in_place() {
    let p = pool("forkserver", 2);
    let input = (0u64..10).inspect(|&i| {
        if i == 5 {
            panic!("the input iterator fails on purpose, as expected by the test");
        }
    });
    let mut it = p.imap(square, input, 1).unwrap();
    let mut got = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for r in &mut it {
            got.push(r.unwrap());
        }
    }));
    assert!(outcome.is_err(), "the input's panic reaches the caller");
    assert_eq!(got, [0, 1, 4, 9, 16]);
    assert_eq!(p.apply(square, 2).unwrap(), 4, "the pool goes on");
}

/// CTX-35: Pool(200) works (here 64: the machine is small and shared).
fn a_large_pool() {
    let p = pool("forkserver", 64);
    let total: u64 = p.map(square, 0..1000, None).unwrap().iter().sum();
    assert_eq!(total, 332_833_500);
    p.close();
    p.join().unwrap();
}
