//! The `queue_bench` example's contract (other tools parse it): every kind
//! and start method runs, and the last stdout line is a rate. Never a
//! check of how fast.

use std::process::Command;

/// The example, built beside this test by `cargo test` (as every example
/// is).
fn queue_bench() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash> -> target/<profile>/examples/queue_bench
    let bench = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/queue_bench");
    assert!(
        bench.is_file(),
        "{} is not built: run `cargo build -p mp-queue --example queue_bench` \
         (plain `cargo test -p mp-queue` builds it)",
        bench.display()
    );
    bench
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(queue_bench()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn queue_bench_prints_a_rate_last_for_every_kind_and_method() {
    for kind in ["queue", "simple", "joinable"] {
        for method in ["fork", "spawn", "forkserver"] {
            let (ok, stdout, stderr) = run(&[
                "--kind",
                kind,
                "--count",
                "300",
                "--size",
                "100",
                "--start-method",
                method,
            ]);
            assert!(ok, "{kind} {method}: {stdout}\n{stderr}");
            let last = stdout
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let rate: f64 = last
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{kind} {method}: last line {last:?}"));
            assert!(rate > 0.0, "{kind} {method}: {rate}");
        }
    }
    // Big items, and the default start method.
    let (ok, stdout, stderr) = run(&["--kind", "queue", "--count", "2", "--size", "5000000"]);
    assert!(ok, "{stdout}\n{stderr}");
}

#[test]
fn queue_bench_refuses_bad_arguments() {
    for args in [&["--kind", "pool"][..], &["--count", "many"], &["--bogus"]] {
        let (ok, _, stderr) = run(args);
        assert!(!ok, "{args:?} was accepted");
        assert!(stderr.contains("queue_bench:"), "{stderr}");
    }
}
