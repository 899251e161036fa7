//! House rules checked as a `#[test]`, so that plain `cargo test` enforces
//! them too (rust-analyzer's `tidy`):
//!
//! - every Rust file starts with a `//!` module comment;
//! - no trailing whitespace in sources, manifests and docs;
//! - every internal dependency of a publishable crate carries a version;
//! - every `unsafe {` block has a `SAFETY:` comment just above it;
//! - no `#[ignore]` without a reason;
//! - every dependency's license is on the allow-list.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::project_root;

/// Licenses (SPDX ids) a dependency may carry; an `OR` expression passes if
/// any alternative is allowed, an `AND` if all are.
const ALLOWED_LICENSES: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "Unlicense",
    "CC0-1.0",
    "BSL-1.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "MPL-2.0",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn project_files(exts: &[&str]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files(&project_root(), &mut all);
    all.retain(|p| p.extension().is_some_and(|e| exts.iter().any(|x| e == *x)));
    all
}

#[test]
fn rust_files_start_with_module_docs() {
    let offenders: Vec<_> = project_files(&["rs"])
        .into_iter()
        .filter(|p| !fs::read_to_string(p).unwrap_or_default().starts_with("//!"))
        .collect();
    assert!(
        offenders.is_empty(),
        "files without a leading `//!` comment: {offenders:#?}"
    );
}

#[test]
fn no_trailing_whitespace() {
    let mut offenders = Vec::new();
    for path in project_files(&["rs", "toml", "md", "py", "sh"]) {
        let text = fs::read_to_string(&path).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                offenders.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "trailing whitespace: {offenders:#?}");
}

#[test]
fn unsafe_blocks_have_safety_comments() {
    let mut offenders = Vec::new();
    for path in project_files(&["rs"]) {
        if path.ends_with("xtask/src/tidy.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !code.contains("unsafe {") {
                continue;
            }
            // The comment may sit a few lines up, above a `let` or a call
            // that spans lines, or on the same line.
            let window = &lines[i.saturating_sub(6)..=i];
            if !window.iter().any(|l| l.contains("SAFETY:")) {
                offenders.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`unsafe {{` without `// SAFETY:`: {offenders:#?}"
    );
}

#[test]
fn ignored_tests_say_why() {
    let mut offenders = Vec::new();
    for path in project_files(&["rs"]) {
        let text = fs::read_to_string(&path).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            if line.trim() == "#[ignore]" {
                offenders.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`#[ignore]` without a reason: {offenders:#?}"
    );
}

#[test]
fn internal_dependencies_carry_versions() {
    let root = fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    let mut offenders = Vec::new();
    for line in root.lines() {
        let line = line.trim();
        if line.starts_with("mp-") && line.contains("path =") && !line.contains("version =") {
            let name = line.split_whitespace().next().unwrap_or(line);
            // Unpublished support crates need no version.
            let manifest = project_root().join(name).join("Cargo.toml");
            let publishable = !fs::read_to_string(manifest)
                .unwrap_or_default()
                .contains("publish = false");
            if publishable {
                offenders.push(line.to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "internal dependencies without a version: {offenders:#?}"
    );
}

fn license_allowed(expr: &str) -> bool {
    let expr = expr.replace(['(', ')'], "").replace('/', " OR ");
    expr.split(" OR ").any(|alt| {
        alt.split(" AND ")
            .all(|lic| ALLOWED_LICENSES.contains(&lic.trim()))
    })
}

/// `cargo metadata` of the workspace and every dependency (Linux), as JSON.
fn metadata() -> String {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(project_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dependency_licenses_are_allowed() {
    let text = metadata();
    let mut offenders = Vec::new();
    // A small scan instead of a JSON parser: each package object has
    // `"name":"…","version":"…"` and later `"license":"…"` or `null`.
    for chunk in text.split("{\"name\":\"").skip(1) {
        let name = chunk.split('"').next().unwrap_or("?");
        let Some(lic_at) = chunk.find("\"license\":") else {
            continue;
        };
        let rest = &chunk[lic_at + 10..];
        if rest.starts_with("null") {
            continue; // workspace crates without a license field are caught by review
        }
        let license = rest.trim_start_matches('"').split('"').next().unwrap_or("");
        if !license_allowed(license) {
            offenders.push(format!("{name}: {license}"));
        }
    }
    offenders.sort();
    offenders.dedup();
    assert!(
        offenders.is_empty(),
        "dependencies with licenses off the allow-list: {offenders:#?}"
    );
}

/// `"1.88"` or `"1.88.0"` as (major, minor, patch).
fn rust_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// The workspace's `rust-version`.
fn workspace_rust_version() -> (u32, u32, u32) {
    let root = fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    root.lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .and_then(|v| rust_version(v.trim_matches('"')))
        .expect("the workspace sets rust-version = \"X.Y\"")
}

/// Clippy's `incompatible_msrv` checks our use of std against
/// `rust-version`; this checks that no dependency (as locked) asks for a
/// newer Rust either, without a second toolchain. What neither can see is
/// language syntax (a let-chain on 1.87): `rust-version` must be raised
/// by hand when the code starts to use a newer feature.
#[test]
fn dependencies_need_no_newer_rust_than_ours() {
    let ours = workspace_rust_version();
    let text = metadata();
    let mut offenders = Vec::new();
    // Each package object carries its own "id" and, later, "rust_version"
    // (the dependency entries inside it have neither).
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"rust_version\":\"") {
        let before = &rest[..at];
        let id = before
            .rfind("\"id\":\"")
            .map(|i| before[i + 6..].split('"').next().unwrap_or("?"))
            .unwrap_or("?");
        let value = rest[at + 16..].split('"').next().unwrap_or("");
        match rust_version(value) {
            Some(v) if v > ours => offenders.push(format!("{id} needs Rust {value}")),
            Some(_) => {}
            None => offenders.push(format!("{id}: unreadable rust-version {value:?}")),
        }
        rest = &rest[at + 16..];
    }
    assert!(
        offenders.is_empty(),
        "dependencies that need a newer Rust than our rust-version {ours:?}: {offenders:#?}"
    );
}

#[test]
fn rust_versions_compare() {
    assert_eq!(rust_version("1.88"), Some((1, 88, 0)));
    assert_eq!(rust_version("1.86.0"), Some((1, 86, 0)));
    assert!(rust_version("1.89").unwrap() > rust_version("1.88.0").unwrap());
    assert_eq!(rust_version("x"), None);
    assert_eq!(workspace_rust_version().0, 1);
}

#[test]
fn license_expressions() {
    assert!(license_allowed("MIT OR Apache-2.0"));
    assert!(license_allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(license_allowed("MIT/Apache-2.0"));
    assert!(!license_allowed("GPL-3.0"));
    assert!(!license_allowed("MIT AND GPL-3.0"));
}
