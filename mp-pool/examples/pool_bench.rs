//! Throughput of the pool on trivial tasks, and the cost of a pool's life.
//!
//! ```text
//! pool_bench --op apply_async|map1|map|start --count N --workers W [--start-method NAME]
//! cargo run --release -p mp-pool --example pool_bench -- --op map1 --count 100000 --workers 2
//! ```
//!
//! - `apply_async`: submits N trivial tasks (`fn(u64) -> u64`), then
//!   collects every result;
//! - `map1`: maps the same function over N items with `chunksize=1`;
//! - `map`: the same with the default chunk size;
//! - `start`: starts N pools of W workers one after another, each running
//!   one task, then closed and joined.
//!
//! The pool of the first three ops is started (and its workers have
//! answered once) before the clock starts. A contract for other tools
//! (the bench harness, tests): the last line of stdout is tasks (or pools)
//! per second, as a plain number.

use std::process::ExitCode;
use std::time::Instant;

use mp_pool::Pool;

fn trivial(n: u64) -> u64 {
    n + 1
}

const USAGE: &str = "usage: pool_bench --op apply_async|map1|map|start --count N --workers W [--start-method fork|spawn|forkserver]";

struct Args {
    op: String,
    count: u64,
    workers: usize,
    method: String,
}

fn parse() -> Result<Args, String> {
    let mut op = None;
    let mut count = None;
    let mut workers = None;
    let mut method = mp_context::DEFAULT_START_METHOD.name().to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--op" => op = Some(value()?),
            "--count" => count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?),
            "--workers" => workers = Some(value()?.parse().map_err(|e| format!("--workers: {e}"))?),
            "--start-method" => method = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let op = op.ok_or_else(|| format!("--op is required\n{USAGE}"))?;
    if !matches!(op.as_str(), "apply_async" | "map1" | "map" | "start") {
        return Err(format!("unknown op {op:?}\n{USAGE}"));
    }
    let count = count
        .filter(|&c| c > 0)
        .ok_or("--count must be a positive integer")?;
    let workers = workers
        .filter(|&w| w > 0)
        .ok_or("--workers must be a positive integer")?;
    Ok(Args {
        op,
        count,
        workers,
        method,
    })
}

fn new_pool(args: &Args) -> Result<Pool, mp_pool::Error> {
    Pool::builder()
        .processes(args.workers)
        .start_method(&args.method)
        .build()
}

/// Runs the op; returns how many operations ran and how long they took.
fn run(args: &Args) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let n = args.count;
    if args.op == "start" {
        if args.method == "forkserver" {
            // The fork server starts once per program, outside the timing,
            // as a long-running program would have it already.
            new_pool(args)?.apply(trivial, 0)?;
        }
        let t0 = Instant::now();
        for _ in 0..n {
            let pool = new_pool(args)?;
            if pool.apply(trivial, 1)? != 2 {
                return Err("wrong result".into());
            }
            pool.close();
            pool.join()?;
        }
        return Ok((n, t0.elapsed().as_secs_f64()));
    }
    let pool = new_pool(args)?;
    // Every worker up and answering before the clock starts.
    pool.map(trivial, 0..args.workers as u64, Some(1))?;
    let t0 = Instant::now();
    let sum: u64 = match args.op.as_str() {
        "apply_async" => {
            let pending = (0..n)
                .map(|i| pool.apply_async(trivial, i))
                .collect::<Result<Vec<_>, _>>()?;
            let mut sum = 0;
            for r in pending {
                sum += r.get(None)?;
            }
            sum
        }
        "map1" => pool.map(trivial, 0..n, Some(1))?.iter().sum(),
        _ => pool.map(trivial, 0..n, None)?.iter().sum(),
    };
    let secs = t0.elapsed().as_secs_f64();
    let expected: u64 = (0..n).map(trivial).sum();
    if sum != expected {
        return Err(format!("wrong results: sum {sum}, expected {expected}").into());
    }
    pool.close();
    pool.join()?;
    Ok((n, secs))
}

fn main() -> ExitCode {
    mp_context::init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pool_bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok((n, secs)) => {
            println!(
                "{}: {n} in {secs:.3} s with {} workers ({})",
                args.op, args.workers, args.method
            );
            println!("{:.1}", n as f64 / secs);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pool_bench: {e:?}");
            ExitCode::FAILURE
        }
    }
}
