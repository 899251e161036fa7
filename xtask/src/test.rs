//! `cargo xtask test`: every check the project has, in the order a failure
//! is cheapest to read, ending with one summary line: fmt, clippy, rustdoc,
//! the examples, every test and doc test, the packaging check
//! (`cargo xtask package`), the tour, bounded fuzz runs.
//!
//! The CPython interop suites are ordinary integration tests: they find the
//! interpreters themselves (3.11 to 3.15, through `mp-testsupport`: pyenv,
//! `python3.X` on `PATH`, and `.ci/cpython-newest`'s folder under
//! `target/`). Under `CI=true` a missing one fails the run; elsewhere it is
//! skipped with a loud line naming it, so that this command passes on a
//! developer's machine with a single CPython (`MP_REQUIRE_PYTHON=1` makes
//! it strict there too).
//! The tour example runs too, so the showcase cannot rot.

use std::time::{Duration, Instant};

use crate::util::{self, cargo, run_teed};

/// How long each step took, for the line before the summary: the suite
/// must stay well inside CI's budget, and this says where the time goes.
#[derive(Debug)]
struct Laps {
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Laps {
    fn start() -> Laps {
        Laps {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// Ends step `name`.
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps.push((name, now - self.last));
        self.last = now;
    }

    fn line(&self) -> String {
        let total: Duration = self.laps.iter().map(|(_, d)| *d).sum();
        let parts: Vec<String> = self
            .laps
            .iter()
            .map(|(name, d)| format!("{name} {:.0}s", d.as_secs_f64()))
            .collect();
        format!(
            "times: {}; total {:.0}s",
            parts.join(", "),
            total.as_secs_f64()
        )
    }
}

/// Totals read off libtest's `test result:` lines.
#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add_output(&mut self, text: &str) {
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("test result: ") else {
                continue;
            };
            for part in rest.split([';', '.']) {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("`test` takes no arguments, got {arg:?}"));
    }
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    let mut laps = Laps::start();

    // 1. Formatting, lints and docs: cheap, and they fail CI anyway.
    if let Err(e) = util::run(cargo().args(["fmt", "--all", "--", "--check"])) {
        failures.push(e);
    }
    if let Err(e) = util::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])) {
        failures.push(e);
    }

    // Docs build without warnings (broken intra-doc links, bad code spans).
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--quiet"])
        .env("RUSTDOCFLAGS", "-D warnings");
    if let Err(e) = util::run(&mut doc) {
        failures.push(e);
    }
    laps.lap("fmt+clippy+doc");

    // 2. Unit, integration, example and bench-harness tests, then doc tests.
    //    `--all-targets` builds examples in test mode only; tests that run
    //    an example as a second program (mp-context's `worker`, mp-conn's
    //    echo examples) need the plain binaries under target/debug/examples,
    //    so build them first.
    if let Err(e) = util::run(cargo().args(["build", "--workspace", "--examples", "--quiet"])) {
        failures.push(e);
    }
    for step in [
        &["test", "--workspace", "--all-targets", "--no-fail-fast"][..],
        &["test", "--workspace", "--doc", "--no-fail-fast"][..],
    ] {
        let mut cmd = cargo();
        cmd.args(step);
        let (ok, text) = run_teed(&mut cmd)?;
        totals.add_output(&text);
        if !ok {
            failures.push(format!("cargo {} failed", step.join(" ")));
        }
    }
    laps.lap("tests");

    // 3. What a publish uploads builds, with its tests, from the .crate
    //    files alone (see package.rs).
    if let Err(e) = crate::package::run(&[]) {
        failures.push(e);
    }
    laps.lap("package");

    // 4. The showcase must keep working: run the tour (a debug build; step
    //    2 built it) and check that it ends with its summary line.
    match run_teed(cargo().args(["run", "--quiet", "--example", "tour"])) {
        Ok((true, text)) if tour_passed(&text) => {}
        Ok((true, _)) => failures.push("the tour did not end with \"N/N ok\"".into()),
        Ok((false, _)) => failures.push("the tour failed".into()),
        Err(e) => failures.push(e),
    }
    laps.lap("tour");

    // 5. Bounded fuzz runs on stable (the cargo-fuzz targets need nightly).
    if let Err(e) = crate::fuzz::run(&["--seconds".into(), "10".into()]) {
        failures.push(e);
    }
    laps.lap("fuzz");

    for f in &failures {
        eprintln!("xtask test: FAILED: {f}");
    }
    // Failed tests are counted by libtest; a step that fails without a
    // failing test (fmt, clippy, rustdoc, the tour, fuzzing) counts as one,
    // so the summary never says "0 failed" for a failed run.
    let failed = totals.failed.max(failures.len() as u64);
    println!("{}", laps.line());
    println!(
        "summary: {} passed, {failed} failed, {} skipped",
        totals.passed, totals.ignored
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} step(s) failed", failures.len()))
    }
}

/// Whether the tour's output ends with its all-passed summary, `N/N ok`.
fn tour_passed(output: &str) -> bool {
    let Some(last) = output.lines().rev().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let Some(counts) = last.split_whitespace().next() else {
        return false;
    };
    let ok_word = last.split_whitespace().nth(1);
    match counts.split_once('/') {
        Some((ok, ran)) => {
            ok == ran && ok.parse::<u32>().is_ok_and(|n| n > 0) && ok_word == Some("ok")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{Totals, tour_passed};

    #[test]
    fn laps_add_up() {
        let mut laps = super::Laps::start();
        laps.lap("a");
        laps.lap("b");
        let line = laps.line();
        // Durations vary; the shape does not.
        assert!(line.starts_with("times: a "), "{line}");
        assert!(
            line.contains("s, b ") && line.contains("s; total "),
            "{line}"
        );
        assert!(line.ends_with('s'), "{line}");
    }

    #[test]
    fn the_tour_passes_only_with_its_full_summary_line() {
        assert!(tour_passed(
            "ok   pipe  x\n\n9/9 ok (1.2s). Each step is ...\n"
        ));
        assert!(!tour_passed("7/9 ok, FAILED: cpython, heap (1.2s).\n"));
        assert!(!tour_passed("ok   pipe  x\n"));
        assert!(!tour_passed("0/0 ok\n"));
        assert!(!tour_passed(""));
    }

    #[test]
    fn sums_libtest_result_lines() {
        let mut t = Totals::default();
        t.add_output(
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
             noise\n\
             test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.5s\n",
        );
        assert_eq!((t.passed, t.failed, t.ignored), (15, 2, 1));
    }
}
