//! Smoke test of the bench machinery: the real binary, tiny counts, raw
//! rows only (no CPython, no examples to build). It checks that every row
//! is produced with a figure and that the Markdown table is written; it
//! never looks at how fast anything was.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn raw_rows_fill_the_table_and_the_markdown_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("table.md");
    let t0 = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_mp-bench"))
        .args(["--quick", "--raw-only", "--reps", "2", "--out"])
        .arg(&out)
        .output()
        .expect("run mp-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "mp-bench failed:\n{stdout}\n{stderr}"
    );
    // An upper bound on "returns in time", not a speed check: about 10 s
    // here alone, but 136 s was seen inside a full `cargo xtask test` on
    // the shared 2-core machine under load, hence the margin.
    assert!(
        t0.elapsed() < Duration::from_secs(600),
        "took {:?}",
        t0.elapsed()
    );

    let list = Command::new(env!("CARGO_BIN_EXE_mp-bench"))
        .arg("--list")
        .output()
        .expect("run mp-bench --list");
    let names = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = names.lines().collect();
    assert!(names.len() >= 18, "{names:?}");

    let md = std::fs::read_to_string(&out).expect("markdown written");
    assert!(md.starts_with("# Benchmarks\n"), "{md}");
    for section in ["## This run", "## Results", "## Legend", "## Goals"] {
        assert!(md.contains(&format!("\n{section}\n")), "no {section}: {md}");
    }
    assert!(md.contains("| benchmark | unit | ours | CPython |"), "{md}");
    for name in &names {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{stdout}"));
        // The raw cell (after the raw limit's name) holds a figure such as
        // "18127 (29%)", not an error.
        let cells: Vec<&str> = line.split_whitespace().collect();
        let raw_at = cells
            .iter()
            .position(|c| c.starts_with("raw."))
            .unwrap_or_else(|| panic!("no raw limit in {line}"));
        let figure: f64 = cells[raw_at + 1]
            .parse()
            .unwrap_or_else(|_| panic!("raw cell not a number in {line}"));
        assert!(figure > 0.0, "{line}");
        assert!(
            md.contains(&format!("| {name} |")),
            "{name} missing from markdown"
        );
        // Everything but the raw limit was skipped, and said so.
        assert!(line.contains("skipped (--raw-only)"), "{line}");
    }
    assert!(stdout.contains("raw.pingpong_64B_framed@same"), "{stdout}");
}

#[test]
fn a_filter_selects_rows_and_a_bad_option_fails() {
    let list = Command::new(env!("CARGO_BIN_EXE_mp-bench"))
        .args(["--list", "wait"])
        .output()
        .expect("run mp-bench");
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        !names.is_empty() && names.lines().all(|n| n.contains("wait")),
        "{names}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_mp-bench"))
        .arg("--no-such-option")
        .output()
        .expect("run mp-bench");
    assert!(!bad.status.success());
}
