//! Project automation, after rust-analyzer's `xtask`: a thin dispatcher with
//! one module per subcommand and no dependencies beyond `std`.
//!
//! - `cargo xtask test`: formatting, clippy, every unit, integration and doc
//!   test (the CPython interop suites are integration tests), the bounded
//!   tour example and the bounded stable fuzz runs, then one summary line.
//! - `cargo xtask bench`: the side-by-side performance tables.
//! - `cargo xtask fuzz`: the fuzz targets (stable driver; cargo-fuzz where
//!   nightly exists).
//! - `cargo xtask package`: what `cargo publish --workspace` would upload
//!   builds, tests included, from the `.crate` files alone.

#![forbid(unsafe_code)]

mod bench;
mod fuzz;
mod package;
mod test;
mod util;

#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test             fmt, clippy, rustdoc, all tests (unit, integration, doc, CPython interop),
                   the tour, stable fuzz runs
  bench [FILTER]   side-by-side tables: ours, CPython's, the raw-syscall limit
  fuzz [--seconds N]
                   run every fuzz target for N seconds each (stable driver)
  package          the publishable crates package, build with their tests and doc
                   tests from the .crate files alone, and are what a publish uploads
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("test") => test::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("package") => package::run(&rest),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
