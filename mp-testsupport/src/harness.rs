//! The runner of `harness = false` test targets (the cross-process suites,
//! whose `main` must call `mp_context::init()` before anything else, and
//! the fork tests, which must run with no other thread): libtest's output,
//! so that `cargo xtask test` counts them with the rest.

use std::time::Instant;

/// Runs `tests` in order, each caught if it panics, as libtest would: the
/// command line's words that are not flags select the tests whose names
/// contain one of them; each test prints one line, and the run ends with
/// libtest's `test result:` summary. Returns whether every test passed.
pub fn run_tests(tests: &[(&str, fn())]) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            filtered += 1;
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
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out"
    );
    failed == 0
}
