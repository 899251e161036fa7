//! Test support of the mp-rs crates: finding the CPython interpreters that
//! their interop suites run as real peers.
//!
//! [`find`] locates the CPython interpreters the interop suites run as real
//! peers, for every version of [`VERSIONS`] (3.11 to 3.15). For CPython
//! 3.`minor` it tries, in order:
//!
//! 1. pyenv: `versions/3.minor.*/bin/python3` under pyenv's root
//!    (`$PYENV_ROOT`, `pyenv root`, or `~/.pyenv`);
//! 2. `python3.minor` on `PATH` (and `python3` itself, whatever it is);
//! 3. the folder `.ci/cpython-newest` fills from Debian's packages:
//!    `target/cpython-newest/bin/python3.minor` in this workspace.
//!
//! Each candidate is run and must report that version. Under `CI=true`
//! (or `MP_REQUIRE_PYTHON=1`) a missing interpreter fails the test;
//! elsewhere it is skipped with a loud line naming it, so that the suites
//! pass on a developer's machine with a single CPython.
//!
//! [`targets`] holds plain functions that a test binary and a separate
//! worker binary (mp-context's `set_executable` tests) both link, so that
//! the two name them alike.
//!
//! [`harness::run_tests`] runs the tests of a `harness = false` target;
//! [`each_cpython!`] defines one test per CPython version.
//!
//! It is published only so that the tests shipped inside mp-auth's,
//! mp-conn's and mp-context's packages build from the `.crate`; it is not
//! meant for other uses.
//!
//! # Examples
//!
//! ```
//! // `None` (after a loud message) when the interpreter is not installed.
//! if let Some(python) = mp_testsupport::find(11) {
//!     assert_eq!(python.minor, 11);
//!     assert!(python.legacy()); // 3.11 speaks only the HMAC-MD5 handshake
//! }
//! ```

#![forbid(unsafe_code)]

pub mod harness;
pub mod targets;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The CPython minor versions the interop suites run against: 3.11 (the
/// legacy HMAC-MD5 handshake) to 3.15 (today's newest).
pub const VERSIONS: [u32; 5] = [11, 12, 13, 14, 15];

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

/// Whether a missing interpreter is a failure rather than a skip: under
/// `CI=true`, or when `MP_REQUIRE_PYTHON=1` asks for it on a developer's
/// machine.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("MP_REQUIRE_PYTHON").is_ok_and(|v| v == "1")
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

/// The folder `.ci/cpython-newest` puts its wrappers in:
/// `target/cpython-newest/bin` of this workspace.
pub fn newest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mp-testsupport sits in the workspace root")
        .join("target/cpython-newest/bin")
}

/// Every place CPython 3.`minor` may be, in the order [`find`] tries them.
pub fn candidates(minor: u32) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(root) = pyenv_root()
        && let Ok(entries) = std::fs::read_dir(root.join("versions"))
    {
        let prefix = format!("3.{minor}.");
        let mut versions: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path().join("bin/python3"))
            .collect();
        versions.sort();
        candidates.extend(versions);
    }
    let name = format!("python3.{minor}");
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // pyenv's shims answer for versions that are not installed
            // (with an error): pyenv's own folders were searched above.
            if dir.components().any(|c| c.as_os_str() == "shims") {
                continue;
            }
            candidates.push(dir.join(&name));
        }
    }
    candidates.push(PathBuf::from("python3"));
    candidates.push(newest_dir().join(&name));
    candidates
}

/// The interpreter for CPython 3.`minor`, or `None` after a loud line
/// naming it (a panic when [`required`]).
pub fn find(minor: u32) -> Option<Python> {
    for path in candidates(minor) {
        if (path.is_file() || path.components().count() == 1) && minor_of(&path) == Some(minor) {
            return Some(Python { path, minor });
        }
    }
    let hint = if minor >= 14 {
        format!("`.ci/cpython-newest {minor}` fetches it from Debian")
    } else {
        format!("`pyenv install 3.{minor}` provides it")
    };
    let message = format!(
        "CPython 3.{minor} not found (pyenv versions/3.{minor}.*, python3.{minor} on PATH, {}; \
         {hint})",
        newest_dir().join(format!("python3.{minor}")).display()
    );
    if required() {
        panic!("{message}, and CI=true or MP_REQUIRE_PYTHON=1 require it");
    }
    eprintln!("\n*** SKIPPING interop test against CPython 3.{minor}: {message} ***\n");
    None
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

/// Defines the tests `cpython_3_11` .. `cpython_3_15` in the calling
/// module, each calling `$run(&python)` with that interpreter, or skipping
/// as [`find`] decides (loudly; a failure under [`required`]).
///
/// ```
/// fn talk_to(python: &mp_testsupport::Python) {
///     assert!(python.minor >= 11);
/// }
/// mp_testsupport::each_cpython!(talk_to);
/// ```
#[macro_export]
macro_rules! each_cpython {
    ($run:path) => {
        #[test]
        fn cpython_3_11() {
            if let Some(p) = $crate::find(11) {
                $run(&p);
            }
        }
        #[test]
        fn cpython_3_12() {
            if let Some(p) = $crate::find(12) {
                $run(&p);
            }
        }
        #[test]
        fn cpython_3_13() {
            if let Some(p) = $crate::find(13) {
                $run(&p);
            }
        }
        #[test]
        fn cpython_3_14() {
            if let Some(p) = $crate::find(14) {
                $run(&p);
            }
        }
        #[test]
        fn cpython_3_15() {
            if let Some(p) = $crate::find(15) {
                $run(&p);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_folder_is_searched_last() {
        let c = candidates(15);
        assert_eq!(c.last(), Some(&newest_dir().join("python3.15")));
        assert!(newest_dir().ends_with("target/cpython-newest/bin"));
    }

    #[test]
    fn a_found_interpreter_reports_its_version() {
        // python3 exists on every machine the suites run on; whatever its
        // version, find() of that version returns an interpreter of it.
        let Some(minor) = minor_of(Path::new("python3")) else {
            return;
        };
        let py = find(minor).expect("python3 itself is a candidate");
        assert_eq!(minor_of(&py.path), Some(minor));
    }
}

/// This crate's README example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
