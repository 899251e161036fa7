//! Calls through a proxy of a freshly started manager, and prints the
//! rate.
//!
//! ```text
//! cargo run --release -p mp-manager --example manager_bench -- --op dict_get --count 20000
//! ```
//!
//! `--op`: `dict_set`, `dict_get` (one call each), `queue` (put + get: two
//! calls), `lock` (acquire + release: two calls), `proxy` (create and drop
//! a dict proxy: one operation), `start` (start a manager and shut it
//! down: one operation). `--count N`: operations (calls for the call
//! types). `--method M`: the manager's start method (default fork, as
//! CPython 3.13's default on Linux). `--cpus P,C`: pin this process to CPU
//! `P` and the manager process to `C` (`-1`: not pinned).
//!
//! A contract for other tools (the bench harness): the last line of stdout
//! is operations per second, as a plain number.

use std::process::ExitCode;
use std::time::Instant;

use mp_manager::SyncManager;

/// Pins this thread (`None`) or every thread of process `pid` to `cpu`
/// (threads it starts later inherit it).
fn pin(pid: Option<i32>, cpu: i64) -> Result<(), String> {
    if cpu < 0 {
        return Ok(());
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu as usize);
    let set_one = |tid: Option<i32>| {
        let tid = tid.and_then(rustix::process::Pid::from_raw);
        rustix::thread::sched_setaffinity(tid, &set).map_err(|e| format!("sched_setaffinity: {e}"))
    };
    let Some(pid) = pid else { return set_one(None) };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
    for t in tasks.flatten() {
        if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
            set_one(Some(tid))?;
        }
    }
    Ok(())
}

fn run(op: &str, count: u64, method: &str, cpus: (i64, i64)) -> Result<f64, String> {
    let ctx = mp_context::get_context(Some(method)).map_err(|e| e.to_string())?;
    pin(None, cpus.0)?;
    let err = |e: mp_manager::Error| format!("{e:?}");
    if op == "start" {
        // Under forkserver, the fork server starts outside the timed loop,
        // as a long-running program would have it already.
        if method == "forkserver" {
            let warm = SyncManager::new(&ctx);
            warm.start().map_err(err)?;
            warm.shutdown().map_err(err)?;
        }
        let t0 = Instant::now();
        for _ in 0..count {
            let m = SyncManager::new(&ctx);
            m.start().map_err(err)?;
            m.shutdown().map_err(err)?;
        }
        return Ok(count as f64 / t0.elapsed().as_secs_f64());
    }
    let m = SyncManager::started(&ctx).map_err(err)?;
    let server_pid = m.process().and_then(|p| p.pid().ok().flatten());
    pin(server_pid, cpus.1)?;
    let t0;
    match op {
        "dict_set" | "dict_get" => {
            let d = m.dict::<String, i64>().map_err(err)?;
            let key = "key".to_string();
            d.set_item(&key, &0).map_err(err)?;
            t0 = Instant::now();
            if op == "dict_set" {
                for i in 0..count as i64 {
                    d.set_item(&key, &i).map_err(err)?;
                }
            } else {
                for _ in 0..count {
                    d.get_item(&key).map_err(err)?;
                }
            }
        }
        "queue" => {
            let q = m.queue::<i64>(0).map_err(err)?;
            t0 = Instant::now();
            for i in 0..(count / 2) as i64 {
                q.put(&i).map_err(err)?;
                q.get().map_err(err)?;
            }
        }
        "lock" => {
            let l = m.lock().map_err(err)?;
            t0 = Instant::now();
            for _ in 0..count / 2 {
                l.acquire().map_err(err)?;
                l.release().map_err(err)?;
            }
        }
        "proxy" => {
            // The first proxy opens this process's connections.
            drop(m.dict::<i64, i64>().map_err(err)?);
            t0 = Instant::now();
            for _ in 0..count {
                drop(m.dict::<i64, i64>().map_err(err)?);
            }
        }
        other => return Err(format!("unknown --op {other:?}")),
    }
    let calls = if matches!(op, "queue" | "lock") {
        count / 2 * 2
    } else {
        count
    };
    let rate = calls as f64 / t0.elapsed().as_secs_f64();
    m.shutdown().map_err(err)?;
    Ok(rate)
}

fn main() -> ExitCode {
    mp_context::init();
    let (mut op, mut count, mut method, mut cpus) =
        (String::new(), 10_000u64, "fork".to_string(), (-1, -1));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `--name=value` or `--name value`.
        let (arg, value) = match arg.split_once('=') {
            Some((a, v)) => (a.to_string(), v.to_string()),
            None => {
                let v = args.next().unwrap_or_default();
                (arg, v)
            }
        };
        match arg.as_str() {
            "--op" => op = value,
            "--count" => count = value.parse().unwrap_or(0),
            "--method" => method = value,
            "--cpus" => {
                let mut parts = value.split(',').map(|c| c.parse::<i64>());
                match (parts.next(), parts.next()) {
                    (Some(Ok(p)), Some(Ok(c))) => cpus = (p, c),
                    _ => count = 0,
                }
            }
            _ => count = 0,
        }
    }
    if op.is_empty() || count < 2 {
        eprintln!(
            "usage: manager_bench --op dict_set|dict_get|queue|lock|proxy|start --count N [--method M] [--cpus P,C]"
        );
        return ExitCode::from(2);
    }
    match run(&op, count, &method, cpus) {
        Ok(rate) => {
            println!("{op} ({method}): {count} operations");
            println!("{rate:.1}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("manager_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
