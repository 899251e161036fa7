//! Test support of the mp-rs crates: finding the CPython interpreters that
//! their interop suites run as real peers.
//!
//! [`find`] locates CPython 3.`minor`: `python3` on PATH (3.11 here, the
//! legacy handshake), and 3.12 and 3.13 under pyenv's root (`$PYENV_ROOT`,
//! `pyenv root`, or `~/.pyenv`). A missing one is skipped loudly, unless
//! `MP_REQUIRE_PYTHON=1` (set by `cargo xtask test`), in which case the
//! test fails.
//!
//! It is published only so that the tests shipped inside mp-auth's and
//! mp-conn's packages build from the `.crate`; it is not meant for other
//! uses.
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

/// This crate's README example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
