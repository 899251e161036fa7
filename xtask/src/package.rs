//! `cargo xtask package`: what `cargo publish --workspace` would upload
//! works from the uploaded files alone, so that no crate, new or old,
//! ships a package that does not build or lacks its licence.
//!
//! 1. `cargo package --workspace` makes every package's `.crate`.
//! 2. Each publishable `.crate`, unpacked, holds `README.md`,
//!    `CHANGELOG.md` and the licence files of its `license` field
//!    (`LICENSE-MIT`, `LICENSE-APACHE`), sets the manifest fields crates.io
//!    shows, and holds code: a placeholder is `publish = false` until it
//!    does.
//! 3. Their libraries, tests, examples and doc tests build from the
//!    unpacked `.crate` files alone (cargo's own verification, and more):
//!    a scratch workspace under `target/` has them as members and patches
//!    crates.io with them, so a test that reaches outside its package (an
//!    unpublished dev-dependency, a file beside the crate) fails here. Doc
//!    tests run (cargo cannot only build them).
//! 4. `cargo publish --workspace --dry-run` would upload exactly the
//!    publishable packages.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{self, cargo, project_root};

/// The licence files our `license = "MIT OR Apache-2.0"` names, and the
/// other files every published package carries.
const REQUIRED_FILES: &[&str] = &["LICENSE-MIT", "LICENSE-APACHE", "README.md", "CHANGELOG.md"];

/// A workspace member, as its manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) dir: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) publish: bool,
}

/// The value of `key = "value"` on a line of `toml`, if any.
fn string_value(toml: &str, key: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

/// The workspace's members: the `members = [...]` list of the root
/// manifest, each with its name, version and whether it is published.
pub(crate) fn members(root: &Path) -> Result<Vec<Member>, String> {
    let read = |p: PathBuf| fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let workspace = read(root.join("Cargo.toml"))?;
    let version = workspace
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| string_value(s, "version"))
        .ok_or("the root Cargo.toml has no [workspace.package] version")?;
    let list = workspace
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .ok_or("the root Cargo.toml has no members = [...]")?;
    let mut out = Vec::new();
    for dir in list
        .split(',')
        .map(|d| d.trim().trim_matches('"'))
        .filter(|d| !d.is_empty())
    {
        let manifest = read(root.join(dir).join("Cargo.toml"))?;
        let package = manifest.split("\n[").next().unwrap_or("");
        let name = string_value(package, "name").ok_or(format!("{dir}: no package name"))?;
        let own_version = string_value(package, "version");
        out.push(Member {
            dir: dir.to_string(),
            name,
            version: own_version.unwrap_or_else(|| version.clone()),
            publish: string_value(package, "publish").as_deref() != Some("false"),
        });
    }
    Ok(out)
}

/// Whether the Rust files under `dir` declare a public item: a crate
/// that declares none is a placeholder.
pub(crate) fn holds_code(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            return holds_code(&path);
        }
        path.extension().is_some_and(|x| x == "rs")
            && fs::read_to_string(&path).is_ok_and(|text| {
                text.lines().any(|l| {
                    let l = l.trim_start();
                    [
                        "pub fn ",
                        "pub struct ",
                        "pub enum ",
                        "pub trait ",
                        "pub use ",
                        "pub mod ",
                        "pub const ",
                        "pub static ",
                        "pub type ",
                        "pub unsafe ",
                    ]
                    .iter()
                    .any(|p| l.starts_with(p))
                })
            })
    })
}

/// The fields crates.io shows and every published manifest of ours sets.
const REQUIRED_FIELDS: &[&str] = &[
    "description",
    "license",
    "repository",
    "readme",
    "rust-version",
    "keywords",
    "categories",
];

/// What is wrong with the unpacked package `unpacked` of `m`.
pub(crate) fn package_problems(m: &Member, unpacked: &Path) -> Vec<String> {
    let mut problems: Vec<String> = REQUIRED_FILES
        .iter()
        .filter(|f| !unpacked.join(f).is_file())
        .map(|f| {
            format!(
                "{}: the .crate has no {f} (add it, or a symlink to ../{f})",
                m.name
            )
        })
        .collect();
    let manifest = fs::read_to_string(unpacked.join("Cargo.toml")).unwrap_or_default();
    let package = manifest
        .split("[package]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or("");
    for field in REQUIRED_FIELDS {
        if string_value(package, field).is_none() {
            problems.push(format!("{}: the manifest sets no {field}", m.name));
        }
    }
    if !holds_code(&unpacked.join("src")) {
        problems.push(format!(
            "{}: a placeholder (no public item) that would be published: set `publish = false` until it holds code",
            m.name
        ));
    }
    problems
}

/// The scratch workspace's manifest: `dirs` as members, crates.io patched
/// with each of `published` (name, dir).
pub(crate) fn scratch_manifest(published: &[(String, String)]) -> String {
    let mut toml = String::from(
        "# Written by `cargo xtask package`: the publishable packages as unpacked\n\
         # from their .crate files, built on their own.\n[workspace]\nresolver = \"3\"\nmembers = [\n",
    );
    for (_, dir) in published {
        toml.push_str(&format!("    \"{dir}\",\n"));
    }
    toml.push_str("]\n\n[patch.crates-io]\n");
    for (name, dir) in published {
        toml.push_str(&format!("{name} = {{ path = \"{dir}\" }}\n"));
    }
    toml
}

/// Cargo's target directory (`CARGO_TARGET_DIR` and the config respected),
/// as `cargo metadata` reports it.
fn target_dir() -> Result<PathBuf, String> {
    let (ok, text) =
        util::run_quiet(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    if !ok {
        return Err(format!("cargo metadata failed: {text}"));
    }
    target_dir_of(&text).ok_or_else(|| "cargo metadata reported no target_directory".into())
}

/// The `"target_directory"` of `cargo metadata`'s JSON.
fn target_dir_of(metadata: &str) -> Option<PathBuf> {
    let key = "\"target_directory\":\"";
    let at = metadata.find(key)? + key.len();
    let value = metadata[at..].split('"').next()?;
    Some(PathBuf::from(value.replace("\\\\", "\\")))
}

/// The packages named on `Uploading NAME vVERSION` lines.
pub(crate) fn uploaded(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Uploading "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("`package` takes no arguments, got {arg:?}"));
    }
    let root = project_root();
    let members = members(&root)?;
    let published: Vec<&Member> = members.iter().filter(|m| m.publish).collect();

    // 1. Package everything; a dirty tree is what is tested. Offline
    //    first: after a build every dependency is in the local cache, and
    //    asking the index again for each package costs seconds.
    //
    //    Cargo's own verification (the build of each package from its
    //    .crate) is left to step 3, which builds more: it unpacks the
    //    workspace's packages from a local registry into
    //    ~/.cargo/registry/src/ and reuses a folder already there for the
    //    same name and version, so a change made without a version bump
    //    verifies against the stale copy of an earlier run.
    let package = [
        "package",
        "--workspace",
        "--no-verify",
        "--allow-dirty",
        "--quiet",
    ];
    if util::run(cargo().args(package).arg("--offline")).is_err() {
        eprintln!("xtask package: again with the network");
        util::run(cargo().args(package))?;
    }

    // 2. Unpack each publishable .crate into a scratch workspace, and check
    //    what it holds.
    let target = target_dir()?;
    let package_dir = target.join("package");
    let scratch = target.join("package-check");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut dirs = Vec::new();
    let mut problems = Vec::new();
    for m in &published {
        let dir = format!("{}-{}", m.name, m.version);
        let crate_file = package_dir.join(format!("{dir}.crate"));
        // `-m`: the files get the time of unpacking, not the archive's, so
        // that cargo never takes an artifact of an earlier run (in the
        // shared target directory) for up to date.
        let mut untar = std::process::Command::new("tar");
        untar.arg("-xmzf").arg(&crate_file).arg("-C").arg(&scratch);
        let (ok, text) = util::run_quiet(&mut untar)?;
        if !ok {
            return Err(format!("cannot unpack {}: {text}", crate_file.display()));
        }
        let _ = fs::remove_file(scratch.join(&dir).join("Cargo.lock"));
        problems.extend(package_problems(m, &scratch.join(&dir)));
        dirs.push((m.name.clone(), dir));
    }
    if !problems.is_empty() {
        return Err(format!("packaging: {}", problems.join("; ")));
    }

    // 3. Libraries, tests, examples and doc tests from the unpacked
    //    packages alone.
    fs::write(scratch.join("Cargo.toml"), scratch_manifest(&dirs))
        .map_err(|e| format!("{}: {e}", scratch.display()))?;
    // Our lock file, so that the packages build with the versions we test.
    fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))
        .map_err(|e| format!("Cargo.lock: {e}"))?;
    for step in [
        &[
            "test",
            "--workspace",
            "--all-targets",
            "--no-run",
            "--quiet",
        ][..],
        &["test", "--workspace", "--doc", "--quiet"][..],
    ] {
        let mut cmd = cargo();
        cmd.current_dir(&scratch)
            .args(step)
            .env("CARGO_TARGET_DIR", &target);
        util::run(&mut cmd).map_err(|e| format!("from the .crate files: {e}"))?;
    }

    // 4. What a publish would upload.
    let mut dry = cargo();
    dry.args([
        "publish",
        "--workspace",
        "--dry-run",
        "--no-verify",
        "--allow-dirty",
    ]);
    let (ok, text) = util::run_quiet(&mut dry)?;
    if !ok {
        return Err(format!("cargo publish --dry-run failed:\n{text}"));
    }
    let mut expected: Vec<String> = published.iter().map(|m| m.name.clone()).collect();
    expected.sort();
    let got = uploaded(&text);
    if got != expected {
        return Err(format!(
            "cargo publish would upload {got:?}, but the publishable crates are {expected:?}"
        ));
    }
    eprintln!(
        "xtask package: {} crates package, build with their tests from the .crate files, and are all a publish would upload",
        expected.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_from_the_manifests() {
        let members = members(&project_root()).unwrap();
        let find = |name: &str| members.iter().find(|m| m.name == name).unwrap();
        assert!(find("mp-conn").publish);
        assert_eq!(find("mp-conn").version, "0.1.0");
        assert!(!find("xtask").publish);
        assert_eq!(find("xtask").version, "0.0.0");
        // Every placeholder is unpublished, every published crate has code.
        for m in &members {
            let src = project_root().join(&m.dir).join("src");
            assert!(
                !m.publish || holds_code(&src),
                "{} is published without code",
                m.name
            );
        }
    }

    #[test]
    fn a_package_without_licence_or_code_is_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-package-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(
            dir.join("src/lib.rs"),
            "//! Nothing yet.\n#![forbid(unsafe_code)]\n",
        )
        .unwrap();
        fs::write(dir.join("README.md"), "# x\n").unwrap();
        let m = Member {
            dir: "x".into(),
            name: "x".into(),
            version: "0.1.0".into(),
            publish: true,
        };
        let fields = r#"description = "d"
license = "MIT OR Apache-2.0"
repository = "r"
readme = "README.md"
keywords = ["k"]
"#;
        fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\n{fields}\n[lib]\ncategories = []\n"),
        )
        .unwrap();
        let problems = package_problems(&m, &dir);
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems[0].contains("no LICENSE-MIT"), "{problems:#?}");
        assert!(
            problems[3].contains("sets no rust-version"),
            "{problems:#?}"
        );
        assert!(problems[4].contains("sets no categories"), "{problems:#?}");
        assert!(problems[5].contains("placeholder"), "{problems:#?}");
        for f in ["LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md"] {
            fs::write(dir.join(f), "text\n").unwrap();
        }
        fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\n{fields}rust-version = \"1.88\"\ncategories = [\"c\"]\n"),
        )
        .unwrap();
        fs::write(dir.join("src/lib.rs"), "//! Code.\npub fn f() {}\n").unwrap();
        assert!(package_problems(&m, &dir).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_scratch_workspace_patches_every_package() {
        let toml = scratch_manifest(&[("mp-auth".into(), "mp-auth-0.1.0".into())]);
        assert!(
            toml.contains("members = [\n    \"mp-auth-0.1.0\",\n]"),
            "{toml}"
        );
        assert!(
            toml.contains("[patch.crates-io]\nmp-auth = { path = \"mp-auth-0.1.0\" }"),
            "{toml}"
        );
    }

    #[test]
    fn the_target_directory_is_read_off_cargo_metadata() {
        let json = r#"{"packages":[],"target_directory":"/tmp/t x/target","version":1}"#;
        assert_eq!(target_dir_of(json), Some(PathBuf::from("/tmp/t x/target")));
        assert_eq!(target_dir_of("{}"), None);
        assert!(target_dir().unwrap().is_absolute());
    }

    #[test]
    fn uploads_are_read_off_cargo_publish() {
        let out = "   Packaging mp-auth v0.1.0 (/x)\n   Uploading mp-reduction v0.1.0 (/y)\n\
                   warning: aborting upload due to dry run\n   Uploading mp-auth v0.1.0 (/x)\n";
        assert_eq!(uploaded(out), ["mp-auth", "mp-reduction"]);
    }
}
