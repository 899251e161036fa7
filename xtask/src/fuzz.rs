//! `cargo xtask fuzz [--seconds N]`: every fuzz target of the project for a
//! bounded time on stable Rust, through the `mp-fuzz` driver (mutations of a
//! seed corpus; any panic is a failure). Where nightly and `cargo-fuzz` are
//! installed, `cargo fuzz run <target>` in `fuzz/` runs the same targets
//! under libFuzzer's coverage guidance.

use crate::util::{self, cargo};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = "30".to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .ok_or("--seconds needs a value")?
                    .parse::<u64>()
                    .map_err(|e| format!("--seconds: {e}"))?
                    .to_string();
            }
            other => return Err(format!("fuzz: unknown argument {other:?}")),
        }
    }
    util::run(cargo().args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "mp-fuzz",
        "--",
        "--seconds",
        &seconds,
    ]))
}
