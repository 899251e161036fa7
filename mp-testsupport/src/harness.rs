//! The runner of the `harness = false` test targets (the ones that fork or
//! serve as spawned children, so that nothing else runs beside them).

use std::time::Instant;

/// Runs the tests whose names contain one of the command line's
/// non-option arguments (all of them if there are none), each caught with
/// `catch_unwind`, prints a line per test and libtest's summary line (the
/// workspace's test driver counts it), and returns whether all passed.
pub fn run_tests(tests: &[(&str, fn())]) -> bool {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let t0 = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2}s)", t0.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out"
    );
    failed == 0
}

/// The process exit code for [`run_tests`]'s verdict: 0, or libtest's 101.
pub fn exit_code(all_passed: bool) -> i32 {
    if all_passed { 0 } else { 101 }
}

/// Installs a panic hook that stays silent for panics a test causes on
/// purpose — those whose message contains `marker` — and passes every
/// other panic to the hook it replaces, so that a passing run prints no
/// panic messages or backtraces while an unexpected panic still shows.
pub fn silence_expected_panics(marker: &'static str) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        if !message.contains(marker) {
            previous(info)
        }
    }));
}
