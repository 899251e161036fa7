//! Cross-process tests of `mp-pool`, after CPython's `_TestPool`,
//! `_TestPoolWorkerLifetime`, `_TestPoolWorkerErrors` and
//! `TestInitializers` (SH-22..25, ADJ-04 in the project's behaviour list),
//! in our own words, plus the rules by which the pool never hangs.
//!
//! A `harness = false` target: `main` calls `mp_context::init()` first, so
//! that this binary can serve as a spawned worker and as the fork server,
//! and no other test thread runs while the fork tests fork. Prints
//! libtest's summary line so the workspace's test driver counts it.

mod basics;
mod bench_example;
mod callers;
mod lifecycle;
mod never_hang;

use std::time::{Duration, Instant};

use mp_pool::Pool;

/// Every start method; each test runs under all three unless it says why.
pub(crate) const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];

/// Long enough for a loaded machine; a hang shows as a failure, not a
/// stuck run.
pub(crate) const LONG: Option<Duration> = Some(Duration::from_secs(60));

/// A pool of `n` workers under `method`.
pub(crate) fn pool(method: &str, n: usize) -> Pool {
    Pool::builder()
        .processes(n)
        .start_method(method)
        .build()
        .unwrap_or_else(|e| panic!("{method}: {e:?}"))
}

/// Whether process `pid` still exists (a zombie counts as gone).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesized name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Calls `terminate` and checks that it returned promptly (generously, for
/// a loaded machine).
pub(crate) fn terminate_promptly(p: &Pool, method: &str) {
    let t0 = Instant::now();
    p.terminate();
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{method}: terminate took {took:?}"
    );
}

pub(crate) fn square(n: u64) -> u64 {
    n * n
}

pub(crate) fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Waits until `cond` holds, at most `LONG`.
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < LONG.unwrap(), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    mp_context::init();
    if let Ok(method) = std::env::var(lifecycle::DIE_ROLE) {
        lifecycle::start_pool_then_die(&method);
    }
    if std::env::var_os(lifecycle::OTHER_EXE_ROLE).is_some() {
        lifecycle::refuse_another_executable();
    }
    if std::env::var_os(lifecycle::CHILD_POOL_ROLE).is_some() {
        lifecycle::child_pool_dies();
    }
    let mut tests: Vec<(&str, fn())> = Vec::new();
    tests.extend(basics::TESTS);
    tests.extend(lifecycle::TESTS);
    tests.extend(never_hang::TESTS);
    tests.extend(callers::TESTS);
    tests.extend(bench_example::TESTS);
    // Panics the tests cause on purpose say so; only others are printed.
    mp_testsupport::harness::silence_expected_panics("expected by the test");
    let passed = mp_testsupport::harness::run_tests(&tests);
    mp_context::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(passed));
}
