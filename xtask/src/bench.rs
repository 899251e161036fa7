//! `cargo xtask bench [FILTER]`: builds the benchmark driver (`mp-bench`)
//! in release mode and runs it; it measures ours, CPython's and the raw
//! syscall limit in one run and prints the tables with their ratios.

use crate::util::{self, cargo};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "--package", "mp-bench", "--"]);
    cmd.args(args);
    util::run(&mut cmd)
}
