//! The `pool_bench` example is a contract (the bench harness and other
//! tests run it): each op runs briefly under a start method and ends with
//! a rate, a plain positive number, on the last line of stdout; bad
//! arguments are refused with a usage message.
//!
//! The example binary is the one `cargo test` builds with the other
//! examples, next to this test's own binary (`target/<profile>/examples`).

use std::path::PathBuf;
use std::process::Command;

pub(crate) const TESTS: &[(&str, fn())] = &[("pool_bench_example_runs", pool_bench_example_runs)];

fn example() -> PathBuf {
    // target/<profile>/deps/pool-<hash> -> target/<profile>/examples/pool_bench
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples");
    let path = dir.join("pool_bench");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples unless a single test target is \
         selected; run `cargo build -p mp-pool --examples` first",
        path.display()
    );
    path
}

fn rate(args: &[&str]) -> f64 {
    let out = Command::new(example()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pool_bench {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let rate: f64 = last
        .parse()
        .unwrap_or_else(|_| panic!("last line {last:?} is not a number"));
    assert!(rate > 0.0 && rate.is_finite(), "{args:?}: {rate}");
    rate
}

fn pool_bench_example_runs() {
    for (op, count) in [
        ("apply_async", "500"),
        ("map1", "500"),
        ("map", "5000"),
        ("start", "2"),
    ] {
        for method in ["fork", "forkserver"] {
            rate(&[
                "--op",
                op,
                "--count",
                count,
                "--workers",
                "2",
                "--start-method",
                method,
            ]);
        }
    }
    rate(&[
        "--op",
        "map1",
        "--count",
        "50",
        "--workers",
        "1",
        "--start-method",
        "spawn",
    ]);
    let bad = Command::new(example())
        .args(["--op", "nope", "--count", "1", "--workers", "1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage: pool_bench"));
}
