//! CPython's figures: the scripts in `mp-bench/python/`, which use
//! `multiprocessing` itself, run with CPython 3.13 where pyenv has it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::measure::{Placement, Plan, run_program, run_reps};
use crate::table::Rep;

/// The interpreter: `$MP_BENCH_PYTHON`, else pyenv's 3.13.0, else `python3`.
#[derive(Debug, Clone)]
pub(crate) struct Python {
    pub(crate) exe: PathBuf,
    pub(crate) version: String,
}

impl Python {
    /// Finds the interpreter and asks it its version.
    pub(crate) fn find() -> Result<Python, String> {
        let exe = if let Some(p) = std::env::var_os("MP_BENCH_PYTHON") {
            PathBuf::from(p)
        } else {
            let root = std::env::var_os("PYENV_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
            let pyenv = root.join("versions/3.13.0/bin/python3");
            if pyenv.exists() {
                pyenv
            } else {
                PathBuf::from("python3")
            }
        };
        let done = run_program(
            Command::new(&exe).args(["-c", "import sys; print(sys.version.split()[0])"]),
            Duration::from_secs(30),
        )
        .map_err(|e| format!("n/a (no CPython: {e})"))?;
        Ok(Python {
            exe,
            version: done.stdout.trim().to_string(),
        })
    }

    /// Runs `script` (a file of `mp-bench/python/`) with the plan's
    /// arguments and `extra`, returning its `rep` lines.
    pub(crate) fn run(
        &self,
        script: &str,
        extra: &[String],
        plan: &Plan,
        timeout: Duration,
    ) -> Result<Vec<Rep>, String> {
        let path = scripts_dir().join(script);
        let mut cmd = Command::new(&self.exe);
        cmd.arg(path).args(plan.args()).args(extra);
        run_reps(&mut cmd, timeout, plan)
    }
}

/// Where the CPython benchmark scripts live.
pub(crate) fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The `--cpus PARENT,CHILD` argument of the two-process scripts (-1: not
/// pinned).
pub(crate) fn cpus_arg(placement: Placement, allowed: &[usize]) -> Result<Vec<String>, String> {
    let (p, c) = placement.cpus(allowed)?;
    let f = |c: Option<usize>| c.map_or("-1".to_string(), |c| c.to_string());
    // One `--cpus=P,C` word: argparse would take a separate "-1,-1" for an option.
    Ok(vec![format!("--cpus={},{}", f(p), f(c))])
}
