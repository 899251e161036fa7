//! Process targets that live in a library, so that two binaries built from
//! the same code (a test and a separate worker binary) both contain them
//! under the same symbol names: what mp-context's `set_executable` needs.
//! They are plain `fn(A)`s with std-only arguments.

use std::io::Write;

/// Writes the path of the executable it runs in (`/proc/self/exe`,
/// resolved) to the file `report`, so that the parent can tell which
/// binary served it.
pub fn report_executable(report: String) {
    let exe = std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
    let mut f = std::fs::File::create(&report).expect("create the report file");
    writeln!(f, "{}", exe.display()).expect("write the report file");
}

/// Panics with `message`: the process's exit code is then 1.
pub fn panic_with(message: String) {
    panic!("{message}");
}

/// A target the worker binary deliberately does not register: starting it
/// there must fail with a clear message, never call anything.
pub fn not_registered(_: u32) {}
