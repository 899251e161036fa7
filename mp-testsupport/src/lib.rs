//! Test support shared by the workspace's suites (never published).
//!
//! [`find`] locates the CPython interpreters the interop suites run as real
//! peers: `python3` on PATH (3.11 here, the legacy handshake), and 3.12 and
//! 3.13 under pyenv's root (`$PYENV_ROOT`, `pyenv root`, or `~/.pyenv`). A
//! missing one is skipped loudly, unless `MP_REQUIRE_PYTHON=1` (set by
//! `cargo xtask test`), in which case the test fails.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CPython interpreter to test against.
#[derive(Clone, Debug)]
pub struct Python {
    /// The interpreter to run.
    pub path: PathBuf,
    /// Its minor version: 11 for CPython 3.11.
    pub minor: u32,
}

impl Python {
    /// Whether this interpreter speaks only the legacy (HMAC-MD5) handshake.
    pub fn legacy(&self) -> bool {
        self.minor < 12
    }
}

/// Whether `MP_REQUIRE_PYTHON=1` turns a missing interpreter into a failure.
pub fn required() -> bool {
    std::env::var("MP_REQUIRE_PYTHON").is_ok_and(|v| v == "1")
}

/// The `3.x` minor version `path` reports, if it runs.
pub fn minor_of(path: &Path) -> Option<u32> {
    let out = Command::new(path)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().split_once('.')?;
    (major == "3").then_some(())?;
    minor.parse().ok()
}

/// pyenv's root: `$PYENV_ROOT`, `pyenv root`, or `~/.pyenv`.
pub fn pyenv_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        return Some(PathBuf::from(root));
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output()
        && out.status.success()
    {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !root.is_empty() {
            return Some(PathBuf::from(root));
        }
    }
    for home in [
        std::env::var_os("HOME").map(PathBuf::from),
        Some("/root".into()),
    ]
    .into_iter()
    .flatten()
    {
        let root = home.join(".pyenv");
        if root.is_dir() {
            return Some(root);
        }
    }
    None
}

/// The interpreter for CPython 3.`minor`, or `None` after a loud message
/// (a panic when `MP_REQUIRE_PYTHON=1`).
pub fn find(minor: u32) -> Option<Python> {
    let mut candidates = Vec::new();
    if minor == 11 {
        candidates.push(PathBuf::from("python3"));
    }
    if let Some(root) = pyenv_root() {
        let versions = root.join("versions");
        let exact = match minor {
            12 => Some("3.12.1"),
            13 => Some("3.13.0"),
            _ => None,
        };
        if let Some(exact) = exact {
            candidates.push(versions.join(exact).join("bin/python3"));
        }
        if let Ok(entries) = std::fs::read_dir(&versions) {
            let mut others: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("3.{minor}."))
                })
                .map(|e| e.path().join("bin/python3"))
                .collect();
            others.sort();
            candidates.extend(others);
        }
    }
    for path in candidates {
        if minor_of(&path) == Some(minor) {
            return Some(Python { path, minor });
        }
    }
    let message =
        format!("CPython 3.{minor} not found (python3 on PATH, pyenv root versions/3.{minor}.*)");
    if required() {
        panic!("{message}, and MP_REQUIRE_PYTHON=1");
    }
    eprintln!("\n*** SKIPPING interop test: {message} ***\n");
    None
}

/// Runs the tests of a `harness = false` target whose `main` called
/// `mp_context::init()` first: each test by name (command-line words that
/// do not start with `-` filter by substring), a panic is a failure, and
/// libtest's summary line is printed so that the workspace's test driver
/// counts them. Exits 0 if all passed, 101 otherwise; `after` runs first
/// (joining children, say).
pub fn run_harness(tests: &[(&str, fn())], after: fn()) -> ! {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let t0 = std::time::Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2}s)", t0.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out"
    );
    after();
    std::process::exit(if failed == 0 { 0 } else { 101 });
}

/// The directory of `package`'s compiled examples for an integration test
/// (`target/<profile>/examples/`, where `cargo test` puts them). When
/// `names` are not all there (only the test target was built), builds
/// them with `cargo build --examples -p package` into `target/<profile>/
/// <package>-examples`, so as never to wait on the outer cargo's lock.
/// `manifest_dir` is the test crate's `CARGO_MANIFEST_DIR`.
pub fn examples_dir(package: &str, names: &[&str], manifest_dir: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let next_to_us = profile_dir.join("examples");
    if names.iter().all(|n| next_to_us.join(n).exists()) {
        return next_to_us;
    }
    let target = profile_dir.join(format!("{package}-examples"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--examples", "-p", package, "--target-dir"])
        .arg(&target)
        .current_dir(manifest_dir)
        .status()
        .expect("run cargo build --examples");
    assert!(
        status.success(),
        "cargo build --examples -p {package} failed"
    );
    target.join("debug").join("examples")
}
