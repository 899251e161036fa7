//! The one-line switch, proved: the same generic functions run on
//! [`Threads`] and on [`Processes`] under fork, spawn and forkserver, and
//! give the same results — a pool map (and `imap`, `imap_unordered`,
//! `apply_async`, a failing task), producers and a consumer over a queue
//! with each batch of puts under a lock, released together by an event.
//!
//! A `harness = false` target: `main` calls `multiprocessing::init()`
//! first, so that this binary serves as a spawned child and as the fork
//! server.

use std::time::Duration;

use multiprocessing::backend::{
    AsyncResultApi, Backend, Error, EventApi, JoinableQueueApi, LockApi, PoolApi, PoolBackend,
    ProcessApi, Processes, QueueApi, Threads,
};

const LONG: Option<Duration> = Some(Duration::from_secs(120));
const PRODUCERS: u32 = 3;
const BATCHES: u32 = 4;
const BATCH: u32 = 5;

fn square(n: u64) -> u64 {
    n * n
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn fails_on_13(n: u64) -> u64 {
    if n == 13 {
        panic!("13 is unlucky (expected by the test)");
    }
    n
}

/// A producer's arguments: its id, the queue, the lock, the event, and
/// where it says it is done.
type ProducerArgs<B> = (
    u32,
    <B as Backend>::Queue<(u32, u32)>,
    <B as Backend>::Lock,
    <B as Backend>::Event,
    <B as Backend>::JoinableQueue<u32>,
);

/// What the consumer saw, sorted, and the producers' exit codes.
#[derive(Debug, PartialEq)]
struct Consumed {
    items: Vec<(u32, u32)>,
    exit_codes: Vec<Option<i32>>,
}

/// A producer: waits for `go`, then puts its items in batches, each batch
/// under the lock, and marks itself done on `done`.
fn produce<B: Backend>((id, items, lock, go, done): ProducerArgs<B>) {
    assert!(go.wait(LONG), "producer {id}: the event never came");
    for batch in 0..BATCHES {
        assert!(lock.acquire(true, LONG).unwrap());
        for i in 0..BATCH {
            items.put((id, batch * BATCH + i), true, LONG).unwrap();
        }
        lock.release().unwrap();
    }
    done.put(id, true, LONG).unwrap();
}

/// Producers and a consumer over one queue: every item once, each batch
/// contiguous (the lock), nothing before the event.
fn producer_consumer<B: Backend>(backend: &B) -> Result<Consumed, Error> {
    let items = backend.queue::<(u32, u32)>(0)?;
    let lock = backend.lock()?;
    let go = backend.event()?;
    let done = backend.joinable_queue::<u32>(0)?;
    let producers: Vec<B::Process> = (0..PRODUCERS)
        .map(|id| {
            backend.process(
                produce::<B>,
                (id, items.clone(), lock.clone(), go.clone(), done.clone()),
            )
        })
        .collect();
    for p in &producers {
        p.start()?;
    }
    // Started, but held by the event: nothing comes yet.
    assert!(matches!(
        items.get(true, Some(Duration::from_millis(200))),
        Err(Error::Empty)
    ));
    assert!(!go.is_set());
    go.set();
    let total = (PRODUCERS * BATCHES * BATCH) as usize;
    let mut seen = Vec::with_capacity(total);
    for _ in 0..total {
        seen.push(items.get(true, LONG)?);
    }
    for batch in seen.chunks(BATCH as usize) {
        let (id, first) = batch[0];
        assert_eq!(
            first % BATCH,
            0,
            "{}: a batch starts at a batch boundary: {seen:?}",
            backend.name()
        );
        for (k, item) in batch.iter().enumerate() {
            assert_eq!(
                *item,
                (id, first + k as u32),
                "{}: batches interleaved: {seen:?}",
                backend.name()
            );
        }
    }
    let mut finished = Vec::new();
    for _ in 0..PRODUCERS {
        finished.push(done.get(true, LONG)?);
        done.task_done()?;
    }
    assert!(done.join_timeout(Duration::from_secs(60))?);
    let mut codes = Vec::new();
    for p in &producers {
        p.join(LONG)?;
        codes.push(p.exitcode()?);
    }
    assert!(matches!(items.get_nowait(), Err(Error::Empty)));
    finished.sort_unstable();
    assert_eq!(finished, (0..PRODUCERS).collect::<Vec<_>>());
    seen.sort_unstable();
    Ok(Consumed {
        items: seen,
        exit_codes: codes,
    })
}

/// What the pool part computes, to compare between backends.
#[derive(Debug, PartialEq)]
struct PoolResults {
    map: Vec<u64>,
    imap: Vec<u64>,
    imap_unordered_sorted: Vec<u64>,
    apply_async: u64,
    failing_task: String,
    after_failure: Vec<u64>,
}

/// The pool part; also returns the pid its tasks ran in.
fn pool_work<B: PoolBackend>(backend: &B) -> Result<(PoolResults, u32), Error> {
    let pool = backend.pool(Some(2))?;
    let task_pid = pool.apply(pid, ())?;
    let map = pool.map(square, 1..=20, None)?;
    let imap = pool
        .imap(square, 1..=10, 3)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut imap_unordered_sorted = pool
        .imap_unordered(square, 1..=10, 1)?
        .collect::<Result<Vec<_>, _>>()?;
    imap_unordered_sorted.sort_unstable();
    let pending = pool.apply_async(square, 12)?;
    let apply_async = pending.get(LONG)?;
    assert!(pending.ready() && pending.successful()?);
    let failing_task = match pool.map(fails_on_13, 10..=15, Some(1)) {
        Err(Error::Task(_)) => "task failed".to_owned(),
        other => format!("unexpected: {other:?}"),
    };
    // The pool goes on after a failed task.
    let after_failure = pool.map(square, [2, 3], None)?;
    pool.close();
    pool.join()?;
    let results = PoolResults {
        map,
        imap,
        imap_unordered_sorted,
        apply_async,
        failing_task,
        after_failure,
    };
    Ok((results, task_pid))
}

fn processes(method: &str) -> Processes {
    Processes::from(multiprocessing::get_context(Some(method)).unwrap())
}

fn same_queue_results_on_every_backend() {
    let on_threads = producer_consumer(&Threads).unwrap();
    assert_eq!(on_threads.exit_codes, vec![Some(0); PRODUCERS as usize]);
    let expected: Vec<(u32, u32)> = (0..PRODUCERS)
        .flat_map(|id| (0..BATCHES * BATCH).map(move |i| (id, i)))
        .collect();
    assert_eq!(on_threads.items, expected);
    for m in ["fork", "spawn", "forkserver"] {
        assert_eq!(producer_consumer(&processes(m)).unwrap(), on_threads, "{m}");
    }
}

fn same_pool_results_on_every_backend() {
    let expected = PoolResults {
        map: (1..=20).map(square).collect(),
        imap: (1..=10).map(square).collect(),
        imap_unordered_sorted: (1..=10).map(square).collect(),
        apply_async: 144,
        failing_task: "task failed".to_owned(),
        after_failure: vec![4, 9],
    };
    let (on_threads, task_pid) = pool_work(&Threads).unwrap();
    assert_eq!(on_threads, expected, "threads");
    assert_eq!(task_pid, std::process::id(), "threads: the tasks ran here");
    for m in ["fork", "spawn", "forkserver"] {
        let (results, task_pid) = pool_work(&processes(m)).unwrap();
        assert_eq!(results, expected, "{m}");
        assert_ne!(
            task_pid,
            std::process::id(),
            "{m}: the tasks ran in a worker process"
        );
    }
}

fn thread_objects_refuse_to_go_to_a_process() {
    // The serde bound holds for thread objects, but they cannot leave
    // their process: starting fails with the reason, under spawn.
    let b = processes("spawn");
    let lock = Threads.lock().unwrap();
    let p = b.process(hold_lock, lock);
    let e = p.start().unwrap_err();
    assert!(
        format!("{e:?}").contains("cannot serialize a thread-backed Lock"),
        "{e:?}"
    );
}

fn hold_lock(lock: <Threads as Backend>::Lock) {
    drop(lock);
}

fn main() {
    multiprocessing::init();
    let tests: &[(&str, fn())] = &[
        (
            "same_queue_results_on_every_backend",
            same_queue_results_on_every_backend,
        ),
        (
            "same_pool_results_on_every_backend",
            same_pool_results_on_every_backend,
        ),
        (
            "thread_objects_refuse_to_go_to_a_process",
            thread_objects_refuse_to_go_to_a_process,
        ),
    ];
    mp_testsupport::harness::silence_expected_panics("expected by the test");
    let passed = mp_testsupport::harness::run_tests(tests);
    multiprocessing::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(passed));
}
