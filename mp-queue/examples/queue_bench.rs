//! `queue_bench --kind queue|simple|joinable --count N --size BYTES [--start-method NAME]`
//!
//! A producer process puts N items of SIZE bytes (each a `Vec<u8>`) on a
//! queue of the given kind; this process, the consumer, gets them all
//! (and calls `task_done` for each, for `joinable`, while the producer
//! `join`s). The clock starts once the producer is running and told to
//! go, and stops when the consumer has the last item.
//!
//! The output contract, relied on by other tools: the LAST line of stdout
//! is the rate in items per second, as a plain number.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mp_queue::{JoinableQueue, Queue, QueueError, SimpleQueue};
use mp_sync::Event;

/// How long anything may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(serde::Serialize, serde::Deserialize)]
enum AnyQueue {
    Queue(Queue<Vec<u8>>),
    Simple(SimpleQueue<Vec<u8>>),
    Joinable(JoinableQueue<Vec<u8>>),
}

impl AnyQueue {
    fn put(&self, item: &Vec<u8>) -> Result<(), QueueError> {
        match self {
            AnyQueue::Queue(q) => q.put(item, true, None),
            AnyQueue::Simple(q) => q.put(item),
            AnyQueue::Joinable(q) => q.put(item, true, None),
        }
    }

    fn get(&self) -> Result<Vec<u8>, QueueError> {
        let timeout = Some(PATIENCE);
        match self {
            AnyQueue::Queue(q) => q.get(true, timeout),
            AnyQueue::Simple(q) => q.get_timeout(timeout),
            AnyQueue::Joinable(q) => {
                let item = q.get(true, timeout)?;
                q.task_done()?;
                Ok(item)
            }
        }
    }
}

/// The producer: says it is ready, waits for the word, puts `count` items
/// of `size` bytes (then, for a joinable queue, waits until all are done).
fn produce((queue, count, size, ready, go): (AnyQueue, u64, usize, Event, Event)) {
    let item = vec![0x5a_u8; size];
    ready.set();
    assert!(go.wait(Some(PATIENCE)), "the consumer never said go");
    for _ in 0..count {
        queue.put(&item).expect("put");
    }
    if let AnyQueue::Joinable(q) = &queue {
        assert!(q.join_timeout(PATIENCE).expect("join"), "tasks never done");
    }
}

struct Args {
    kind: String,
    count: u64,
    size: usize,
    method: Option<String>,
}

const USAGE: &str =
    "usage: queue_bench --kind queue|simple|joinable --count N --size BYTES [--start-method NAME]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        kind: "queue".into(),
        count: 100_000,
        size: 64,
        method: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kind" => args.kind = value()?,
            "--count" => args.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--size" => args.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--start-method" => args.method = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !["queue", "simple", "joinable"].contains(&args.kind.as_str()) {
        return Err(format!("--kind: unknown {:?}\n{USAGE}", args.kind));
    }
    Ok(args)
}

fn run(args: &Args) -> Result<f64, Box<dyn std::error::Error>> {
    let queue = match args.kind.as_str() {
        "simple" => AnyQueue::Simple(SimpleQueue::new()?),
        "joinable" => AnyQueue::Joinable(JoinableQueue::new(0)?),
        _ => AnyQueue::Queue(Queue::new(0)?),
    };
    let (ready, go) = (Event::new()?, Event::new()?);
    let ctx = mp_context::get_context(args.method.as_deref())?;
    let copy = match &queue {
        AnyQueue::Queue(q) => AnyQueue::Queue(q.clone()),
        AnyQueue::Simple(q) => AnyQueue::Simple(q.clone()),
        AnyQueue::Joinable(q) => AnyQueue::Joinable(q.clone()),
    };
    let producer = ctx.process(
        produce,
        (copy, args.count, args.size, ready.clone(), go.clone()),
    );
    producer.start()?;
    if !ready.wait(Some(PATIENCE)) {
        producer.kill()?;
        return Err("the producer did not start".into());
    }
    let t0 = Instant::now();
    go.set();
    for _ in 0..args.count {
        let item = queue.get()?;
        if item.len() != args.size {
            return Err(format!("an item of {} bytes, not {}", item.len(), args.size).into());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.join(Some(PATIENCE))?;
    match producer.exitcode()? {
        Some(0) => {}
        other => return Err(format!("the producer exited with {other:?}").into()),
    }
    Ok(args.count as f64 / secs.max(1e-9))
}

fn main() -> ExitCode {
    mp_context::init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("queue_bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(rate) => {
            println!(
                "{} {} items of {} bytes, producer under {}",
                args.count,
                args.kind,
                args.size,
                args.method
                    .as_deref()
                    .unwrap_or(mp_context::DEFAULT_START_METHOD.name())
            );
            println!("{rate:.0}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("queue_bench: {e:?}");
            ExitCode::FAILURE
        }
    }
}
