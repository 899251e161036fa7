//! A separate worker binary, as a program that ships one would have: its
//! `main` registers the targets it serves, then calls `init()`. A parent
//! built from the same code (here: any binary linking `mp-testsupport`'s
//! targets, such as mp-context's `processes` test) calls
//! `mp_context::set_executable` with this binary's path, and its spawn and
//! forkserver children then run here.
//!
//! ```text
//! // the parent
//! mp_context::set_executable("target/debug/examples/worker")?;
//! mp_context::get_context(Some("spawn"))?
//!     .process(mp_testsupport::targets::report_executable, path)
//!     .start()?;
//! ```
//!
//! Run on its own it has nothing to serve, and says so.

use mp_testsupport::targets;

fn main() {
    // Registrations come first: they only record the functions, and
    // `init()` serves a child (never returning) when this is one.
    mp_context::register_target(targets::report_executable);
    mp_context::register_target(targets::panic_with);
    mp_context::init();
    eprintln!(
        "worker: this binary serves the children of a program that called \
         mp_context::set_executable with its path; it does nothing on its own"
    );
    std::process::exit(2);
}
