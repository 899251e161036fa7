//! Starts and joins N trivial processes one after another and prints the
//! rate.
//!
//! ```text
//! cargo run --release -p mp-context --example procstart -- --method forkserver --count 1000
//! ```
//!
//! A contract for other tools (the bench harness, tests): the last line of
//! stdout is the number of processes per second, as a plain number.

use std::time::Instant;

fn trivial(_: ()) {}

fn main() {
    mp_context::init();
    let mut method = mp_context::DEFAULT_START_METHOD.name().to_string();
    let mut count: usize = 100;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--method" => method = args.next().unwrap_or_default(),
            "--count" => count = args.next().and_then(|c| c.parse().ok()).unwrap_or(0),
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: procstart --method fork|spawn|forkserver --count N"
                );
                std::process::exit(2);
            }
        }
    }
    let ctx = match mp_context::get_context(&method) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if count == 0 {
        eprintln!("--count must be a positive integer");
        std::process::exit(2);
    }
    // Start the fork server outside the timed loop, as a long-running
    // program would have it already.
    if method == "forkserver" {
        let warm = ctx.process(trivial, ());
        warm.start().expect("start");
        warm.join(None).expect("join");
    }
    let t0 = Instant::now();
    for _ in 0..count {
        let p = ctx.process(trivial, ());
        p.start().expect("start");
        p.join(None).expect("join");
        assert_eq!(p.exitcode().expect("exitcode"), Some(0));
    }
    let rate = count as f64 / t0.elapsed().as_secs_f64();
    println!("{method}: {count} processes started and joined");
    println!("{rate:.1}");
}
