//! A worker for a CPython manager, after the documentation's
//! distributed-worker pattern: the CPython side registers
//! `get_task_queue` and `get_result_queue` on a `BaseManager` and serves
//! it; this program connects (pickle, as CPython speaks), takes integer
//! tasks until it gets `None`, and puts back each task's square.
//!
//! ```text
//! cargo run -p mp-manager --example queue_worker -- --address 127.0.0.1:50000 --authkey abracadabra
//! ```
//!
//! The CPython side, for instance:
//!
//! ```python
//! import queue
//! from multiprocessing.managers import BaseManager
//! tasks, results = queue.Queue(), queue.Queue()
//! class QueueManager(BaseManager): pass
//! QueueManager.register("get_task_queue", callable=lambda: tasks)
//! QueueManager.register("get_result_queue", callable=lambda: results)
//! for i in range(10): tasks.put(i)
//! tasks.put(None)
//! QueueManager(address=("", 50000), authkey=b"abracadabra").get_server().serve_forever()
//! ```
//!
//! A contract for other tools (tests): it exits 0 after the `None` task,
//! and 1 with the reason on stderr if the manager cannot be reached or a
//! task is not an integer of 64 bits. ADDR is `HOST:PORT` or a path.

use std::process::ExitCode;
use std::sync::Arc;

use mp_manager::{BaseManager, NoTypes, Pickle, QueueProxy};

fn main() -> ExitCode {
    mp_context::init();
    let mut address = None;
    let mut authkey = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--address", Some(a)) => address = Some(a),
            ("--authkey", Some(k)) => authkey = Some(k),
            _ => {
                eprintln!("usage: queue_worker --address ADDR --authkey KEY");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(address), Some(authkey)) = (address, authkey) else {
        eprintln!("queue_worker: --address and --authkey are required");
        return ExitCode::from(2);
    };
    match work(&address, authkey.into_bytes()) {
        Ok(done) => {
            println!("{done} tasks done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("queue_worker: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn work(address: &str, authkey: Vec<u8>) -> Result<u64, Box<dyn std::error::Error>> {
    let address: mp_conn::Address = address
        .parse()
        .map_err(|e| format!("bad address {address:?}: {e}"))?;
    let ctx = mp_context::get_context(None)?;
    let manager = BaseManager::<NoTypes>::new(&ctx)
        .with_address(address)
        .with_authkey(authkey)
        .with_codec(Arc::new(Pickle::new()));
    manager.connect()?;
    let tasks: QueueProxy<Option<i64>> = manager.create("get_task_queue", &())?;
    let results: QueueProxy<i128> = manager.create("get_result_queue", &())?;
    let mut done = 0;
    while let Some(n) = tasks
        .get()
        .map_err(|e| format!("a task that is not None or a 64-bit integer: {e:?}"))?
    {
        results.put(&(i128::from(n) * i128::from(n)))?;
        done += 1;
    }
    Ok(done)
}
