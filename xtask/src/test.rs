//! `cargo xtask test`: every check the project has, in the order a failure
//! is cheapest to read, ending with one summary line.
//!
//! The CPython interop suites are ordinary integration tests: they find the
//! interpreters themselves (3.11 to 3.15, through `mp-testsupport`: pyenv,
//! `python3.X` on `PATH`, and `.ci/cpython-newest`'s folder under
//! `target/`). Under `CI=true` a missing one fails the run; elsewhere it is
//! skipped with a loud line naming it, so that this command passes on a
//! developer's machine with a single CPython (`MP_REQUIRE_PYTHON=1` makes
//! it strict there too).
//! The tour example runs too, so the showcase cannot rot.

use crate::util::{self, cargo, run_teed};

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

    // 2. Unit, integration, example and bench-harness tests, then doc tests.
    //    `--all-targets` builds examples in test mode only; tests that run
    //    an example as a second program (mp-context's `worker`) need the
    //    plain binaries under target/debug/examples, so build them first.
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

    // 3. The showcase must keep working: run the tour (a debug build; the
    //    test step above has already built the examples).
    if let Err(e) = util::run(cargo().args(["run", "--quiet", "--example", "tour"])) {
        failures.push(e);
    }

    // 4. Bounded fuzz runs on stable (the cargo-fuzz targets need nightly).
    if let Err(e) = crate::fuzz::run(&["--seconds".into(), "10".into()]) {
        failures.push(e);
    }

    for f in &failures {
        eprintln!("xtask test: FAILED: {f}");
    }
    // Failed tests are counted by libtest; a step that fails without a
    // failing test (fmt, clippy, rustdoc, the tour, fuzzing) counts as one,
    // so the summary never says "0 failed" for a failed run.
    let failed = totals.failed.max(failures.len() as u64);
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

#[cfg(test)]
mod tests {
    use super::Totals;

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
