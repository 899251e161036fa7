//! Cross-process tests of mp-queue under every start method (fork, spawn,
//! forkserver through mp-context), after CPython's `_TestQueue` (SH-01..05
//! in the project's behaviour list), in our own words; plus what CPython
//! has no answer for: producers and consumers killed inside `put` and
//! `get`, shutdown across processes, every way out of a producer.
//!
//! A `harness = false` target: `main` calls `mp_context::init()` first, so
//! that this binary can serve as a spawned child and as the fork server.
//! Children report through queues and their exit codes (a failed assertion
//! there is exit code 1).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mp_context::{Process, get_context};
use mp_queue::{JoinableQueue, Queue, QueueBuilder, QueueError, SimpleQueue};
use mp_sync::Event;
use serde::{Deserialize, Serialize};

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];
/// How long anything may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);
const WAIT: Option<Duration> = Some(PATIENCE);

fn start<A>(method: &str, target: fn(A), args: A) -> Process
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let p = get_context(Some(method)).unwrap().process(target, args);
    p.start().unwrap();
    p
}

/// Joins `p` (with a deadline) and asserts how it ended.
fn joined(p: &Process, code: i32, what: &str) {
    p.join(Some(PATIENCE)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(code), "{what}");
}

/// Waits (up to [`PATIENCE`]) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What producers send: who, which, and a body whose bytes say who and
/// which again (a torn or mixed-up frame cannot pass the check).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Msg {
    Item {
        producer: u32,
        seq: u32,
        body: Vec<u8>,
    },
    Stop,
}

fn item(producer: u32, seq: u32) -> Msg {
    // Every 250th item is too big for the ring (a memfd on the side
    // channel); the others vary in size.
    let len = if seq % 250 == 7 {
        100_000
    } else {
        (seq % 61) as usize
    };
    Msg::Item {
        producer,
        seq,
        body: vec![(producer * 31 + seq) as u8; len],
    }
}

fn check(msg: &Msg) -> (u32, u32) {
    match msg {
        Msg::Item {
            producer,
            seq,
            body,
        } => {
            let want = (producer * 31 + seq) as u8;
            assert!(
                body.iter().all(|&b| b == want),
                "item {producer}/{seq} is damaged"
            );
            (*producer, *seq)
        }
        Msg::Stop => panic!("not an item"),
    }
}

const PER_PRODUCER: u32 = 1200;

fn produce((q, me): (Queue<Msg>, u32)) {
    for seq in 0..PER_PRODUCER {
        q.put(&item(me, seq), true, None).unwrap();
    }
}

/// Gets until a Stop, then reports what it got, in order.
fn consume((q, results): (Queue<Msg>, Queue<Vec<(u32, u32)>>)) {
    let mut got = Vec::new();
    loop {
        match q.get(true, WAIT).unwrap() {
            Msg::Stop => break,
            m => got.push(check(&m)),
        }
    }
    results.put(&got, true, None).unwrap();
}

/// Every item exactly once; each consumer saw each producer's items in
/// the order they were put.
fn exactly_once_in_order(lists: &[Vec<(u32, u32)>], producers: u32, per: u32, m: &str) {
    let mut seen = HashMap::new();
    for list in lists {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for &(p, s) in list {
            *seen.entry((p, s)).or_insert(0) += 1;
            if let Some(&prev) = last.get(&p) {
                assert!(s > prev, "{m}: producer {p}'s {s} came after its {prev}");
            }
            last.insert(p, s);
        }
    }
    assert_eq!(seen.len(), (producers * per) as usize, "{m}: items lost");
    assert!(seen.values().all(|&n| n == 1), "{m}: an item came twice");
}

fn four_producers_and_four_consumers() {
    for m in METHODS {
        // A small ring: feeders fill up, big items take the side channel.
        let q = QueueBuilder::new().ring_bytes(16 * 1024).queue().unwrap();
        let results = Queue::new(0).unwrap();
        let consumers: Vec<_> = (0..4)
            .map(|_| start(m, consume, (q.clone(), results.clone())))
            .collect();
        let producers: Vec<_> = (0..4).map(|p| start(m, produce, (q.clone(), p))).collect();
        for p in &producers {
            joined(p, 0, m);
        }
        for _ in 0..4 {
            q.put(&Msg::Stop, true, None).unwrap();
        }
        let lists: Vec<_> = (0..4).map(|_| results.get(true, WAIT).unwrap()).collect();
        for c in &consumers {
            joined(c, 0, m);
        }
        exactly_once_in_order(&lists, 4, PER_PRODUCER, m);
        assert_eq!(q.qsize(), 0, "{m}");
        assert!(q.empty(), "{m}");
    }
}

fn put_range((q, from, to): (Queue<u32>, u32, u32)) {
    for i in from..to {
        q.put(&i, true, None).unwrap();
    }
}

/// SH-01/02/03: items put by another process arrive, with timeouts on
/// both sides; items put before and after a child starts come in order.
fn full_and_empty_across_processes() {
    for m in METHODS {
        let q = Queue::new(6).unwrap();
        for i in 0..3 {
            q.put(&i, true, None).unwrap();
        }
        let p = start(m, put_range, (q.clone(), 3, 9));
        // The child fills the queue and waits for room.
        eventually("the child filled the queue", || q.full());
        let t0 = Instant::now();
        for want in 0..9 {
            assert_eq!(q.get(true, WAIT).unwrap(), want, "{m}");
        }
        joined(&p, 0, m);
        assert!(t0.elapsed() < PATIENCE);
        let t0 = Instant::now();
        assert!(matches!(
            q.get(true, Some(Duration::from_millis(100))),
            Err(QueueError::Empty)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
        assert_eq!(q.qsize(), 0);
    }
}

/// How a producer ends right after its puts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Ending {
    Return,
    Exit,
    ProcessExit,
    Panic,
}

/// Puts more than the ring holds (most of it waits in the feeder), says
/// so, and ends at once.
fn put_and_end((q, n, done, ending): (Queue<u32>, u32, Event, Ending)) {
    for i in 0..n {
        q.put(&i, true, None).unwrap();
    }
    done.set();
    match ending {
        Ending::Return => {}
        Ending::Exit => mp_context::exit(0),
        Ending::ProcessExit => std::process::exit(0),
        Ending::Panic => {
            // Installed here, in the child, so that it wraps mp-context's
            // process header too: a passing run prints neither.
            mp_testsupport::harness::silence_expected_panics("expected by the test");
            panic!("ending with a panic after the puts (expected by the test)")
        }
    }
}

fn a_producer_that_ends_right_after_put_loses_nothing() {
    const N: u32 = 3000;
    for m in METHODS {
        for ending in [
            Ending::Return,
            Ending::Exit,
            Ending::ProcessExit,
            Ending::Panic,
        ] {
            let q = QueueBuilder::new().ring_bytes(4096).queue().unwrap();
            let done = Event::new().unwrap();
            let p = start(m, put_and_end, (q.clone(), N, done.clone(), ending));
            assert!(done.wait(Some(PATIENCE)), "{m} {ending:?}");
            // The child is on its way out, its feeder holding most items.
            std::thread::sleep(Duration::from_millis(20));
            for want in 0..N {
                let got = q.get(true, WAIT);
                assert_eq!(got.unwrap(), want, "{m} {ending:?}");
            }
            let code = if matches!(ending, Ending::Panic) {
                1
            } else {
                0
            };
            joined(&p, code, &format!("{m} {ending:?}"));
            assert_eq!(q.qsize(), 0, "{m} {ending:?}");
        }
    }
}

fn put_cancel_and_return((q, n, done): (Queue<u32>, u32, Event)) {
    q.cancel_join_thread();
    for i in 0..n {
        q.put(&i, true, None).unwrap();
    }
    done.set();
}

fn cancel_join_thread_drops_the_backlog_and_fixes_the_counts() {
    for m in METHODS {
        let q = QueueBuilder::new().ring_bytes(4096).queue().unwrap();
        let done = Event::new().unwrap();
        let p = start(m, put_cancel_and_return, (q.clone(), 3000, done.clone()));
        assert!(done.wait(Some(PATIENCE)));
        // It does not wait for its feeder: it ends with items unsent.
        joined(&p, 0, m);
        let mut got = Vec::new();
        while let Ok(i) = q.get(true, Some(Duration::from_millis(200))) {
            got.push(i);
        }
        assert!(got.len() < 3000, "{m}: {} items arrived", got.len());
        assert!(
            got.iter().enumerate().all(|(i, &v)| v == i as u32),
            "{m}: out of order"
        );
        // What was dropped no longer counts.
        eventually("the dropped items stop counting", || q.qsize() == 0);
    }
}

/// Items that hold fds, used where they arrive.
#[derive(Serialize, Deserialize)]
struct Kit {
    conn: mp_conn::Connection,
    buf: mp_heap::SharedBuffer,
    value: std::sync::Arc<mp_heap::Value<u64>>,
    write_end: mp_reduction::Fd,
    lock: mp_sync::Lock,
}

fn use_a_kit((q, done): (Queue<Kit>, Event)) {
    let mut kit = q.get(true, WAIT).unwrap();
    kit.conn
        .send(&"over a connection that came through a queue")
        .unwrap();
    kit.buf[..5].copy_from_slice(b"hello");
    kit.value.set(42).unwrap();
    rustix::io::write(&kit.write_end, b"!").unwrap();
    assert!(kit.lock.acquire(true, Some(PATIENCE)).unwrap());
    done.set();
    // Hold the lock until the parent has seen it held.
    assert!(kit.conn.poll(Some(PATIENCE)).unwrap());
    let _: () = kit.conn.recv().unwrap();
    kit.lock.release().unwrap();
}

fn items_that_carry_fds_work_in_another_process() {
    for m in METHODS {
        let q = Queue::new(0).unwrap();
        let done = Event::new().unwrap();
        let p = start(m, use_a_kit, (q.clone(), done.clone()));
        let (mut ours, theirs) = mp_conn::pipe(true).unwrap();
        let buf = mp_heap::SharedBuffer::zeroed(16).unwrap();
        let value = std::sync::Arc::new(mp_heap::Value::new(0u64).unwrap());
        let (r, w) = rustix::pipe::pipe().unwrap();
        let lock = mp_sync::Lock::new().unwrap();
        let kit = Kit {
            conn: theirs,
            buf: buf.share().unwrap(),
            value: value.clone(),
            write_end: mp_reduction::Fd::from(w),
            lock: lock.clone(),
        };
        q.put(&kit, true, None).unwrap();
        drop(kit);
        assert!(done.wait(Some(PATIENCE)), "{m}");
        assert!(ours.poll(Some(PATIENCE)).unwrap());
        assert_eq!(
            ours.recv::<String>().unwrap(),
            "over a connection that came through a queue"
        );
        assert_eq!(&buf[..5], b"hello", "{m}");
        assert_eq!(value.get().unwrap(), 42, "{m}");
        let mut one = [0u8];
        assert_eq!(rustix::io::read(&r, &mut one).unwrap(), 1);
        assert_eq!(
            lock.owner_pid(),
            Some(p.pid().unwrap().unwrap() as u32),
            "{m}"
        );
        ours.send(&()).unwrap();
        joined(&p, 0, m);
    }
}

/// 64 MiB whose every 4 KiB page holds its own number: a page lost,
/// doubled or moved shows.
fn numbered_pages() -> Vec<u8> {
    let mut big = vec![0u8; 64 << 20];
    for (i, page) in big.chunks_mut(4096).enumerate() {
        page.fill((i % 251) as u8);
    }
    big
}

fn put_blobs(q: Queue<Vec<u8>>) {
    q.put(&Vec::new(), true, None).unwrap();
    q.put(&numbered_pages(), true, None).unwrap();
}

fn zero_byte_and_64_mib_items_travel() {
    for m in METHODS {
        let q = Queue::new(0).unwrap();
        let p = start(m, put_blobs, q.clone());
        assert_eq!(q.get(true, WAIT).unwrap(), Vec::<u8>::new(), "{m}");
        let big = q.get(true, WAIT).unwrap();
        assert!(big == numbered_pages(), "{m}: the 64 MiB item differs");
        joined(&p, 0, m);
    }
}

fn work_until_stop(q: JoinableQueue<Option<u32>>) {
    while let Some(_job) = q.get(true, WAIT).unwrap() {
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

/// SH-05: four worker processes call `task_done` per item; `join`
/// returns once all are done.
fn task_done_and_join_with_four_workers() {
    for m in METHODS {
        let q = JoinableQueue::new(0).unwrap();
        let workers: Vec<_> = (0..4)
            .map(|_| start(m, work_until_stop, q.clone()))
            .collect();
        for i in 0..20 {
            q.put(&Some(i), true, None).unwrap();
        }
        for _ in 0..4 {
            q.put(&None, true, None).unwrap();
        }
        q.join().unwrap();
        assert_eq!(q.unfinished_tasks(), 0, "{m}");
        for w in &workers {
            joined(w, 0, m);
        }
        assert!(matches!(
            q.task_done(),
            Err(QueueError::TaskDoneTooManyTimes)
        ));
    }
}

fn die_in_put((q, victim): (Queue<u32>, u32)) {
    mp_queue::__hooks::die_inside_put(&q, &victim)
}

fn die_in_get(q: Queue<u32>) {
    mp_queue::__hooks::die_inside_get(&q)
}

/// A process killed inside the ring's critical section: the next owner of
/// the lock undoes its half-done operation.
fn a_process_killed_inside_put_or_get_is_undone() {
    for m in METHODS {
        let q = Queue::new(0).unwrap();
        q.put(&1, true, None).unwrap();
        let p = start(m, die_in_put, (q.clone(), 666));
        joined(&p, -9, m);
        // The half-put item never happened.
        assert_eq!(q.get(true, WAIT).unwrap(), 1, "{m}");
        assert!(matches!(q.get_nowait(), Err(QueueError::Empty)), "{m}");
        assert_eq!(q.qsize(), 0, "{m}");
        q.put(&2, true, None).unwrap();
        let p = start(m, die_in_get, q.clone());
        joined(&p, -9, m);
        // The half-got item is still there.
        assert_eq!(q.qsize(), 1, "{m}");
        assert_eq!(q.get(true, WAIT).unwrap(), 2, "{m}");
        q.put(&3, true, None).unwrap();
        assert_eq!(q.get(true, WAIT).unwrap(), 3, "{m}");
    }
}

/// Forwards everything it gets to `seen`, as fast as it can.
fn forward((q, seen): (Queue<Msg>, SimpleQueue<(u32, u32)>)) {
    loop {
        match q.get(true, WAIT).unwrap() {
            Msg::Stop => return,
            m => seen.put(&check(&m)).unwrap(),
        }
    }
}

fn produce_forever((q, me): (Queue<Msg>, u32)) {
    for seq in 0.. {
        q.put(&item(me, seq), true, None).unwrap();
    }
}

/// SIGKILL at random moments: a consumer busy in `get` and a producer
/// busy in `put` (with items waiting in its feeder, counted toward
/// `maxsize`). The others carry on: no torn item, no duplicate, no wait
/// for the dead producer's share of `maxsize`.
fn killed_consumers_and_producers_leave_the_queue_usable() {
    const END: (u32, u32) = (u32::MAX, 0);
    for m in METHODS {
        let q = QueueBuilder::new()
            .maxsize(40)
            .ring_bytes(4096)
            .queue()
            .unwrap();
        let seen: SimpleQueue<(u32, u32)> = SimpleQueue::new().unwrap();
        let collector = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut by_producer: HashMap<u32, Vec<u32>> = HashMap::new();
                loop {
                    let (p, s) = seen.get_timeout(WAIT).unwrap();
                    if (p, s) == END {
                        return by_producer;
                    }
                    by_producer.entry(p).or_default().push(s);
                }
            })
        };
        let victim = start(m, forward, (q.clone(), seen.clone()));
        let survivor = start(m, forward, (q.clone(), seen.clone()));
        let doomed = start(m, produce_forever, (q.clone(), 9));
        std::thread::sleep(Duration::from_millis(150));
        victim.kill().unwrap();
        joined(&victim, -9, m);
        std::thread::sleep(Duration::from_millis(50));
        doomed.kill().unwrap();
        joined(&doomed, -9, m);
        // A producer that lives: every one of its items must arrive, and in
        // order (one consumer is left).
        let producer = start(m, produce, (q.clone(), 1));
        joined(&producer, 0, m);
        q.put(&Msg::Stop, true, None).unwrap();
        joined(&survivor, 0, m);
        seen.put(&END).unwrap();
        let by_producer = collector.join().unwrap();
        let expected: Vec<u32> = (0..PER_PRODUCER).collect();
        assert_eq!(by_producer[&1], expected, "{m}: a live producer's items");
        // The dead producer's items: none twice, none damaged (check()).
        let mut doomed = by_producer.get(&9).cloned().unwrap_or_default();
        assert!(
            !doomed.is_empty(),
            "{m}: the doomed producer never got through"
        );
        let n = doomed.len();
        doomed.sort_unstable();
        doomed.dedup();
        assert_eq!(doomed.len(), n, "{m}: an item came twice");
        // Its share of maxsize (items its feeder held) no longer counts.
        eventually("the dead producer's share stops counting", || {
            q.qsize() == 0
        });
        // And the queue goes on.
        q.put(&item(2, 0), true, None).unwrap();
        assert_eq!(check(&q.get(true, WAIT).unwrap()), (2, 0));
    }
}

fn fill_up(q: Queue<Vec<u8>>) {
    loop {
        q.put(&vec![1; 100], true, None).unwrap();
    }
}

/// A producer killed with items in its feeder: they counted toward
/// `maxsize`; the next put that finds the queue full takes them back, even
/// one with no time to wait.
fn a_dead_producers_share_of_maxsize_comes_back() {
    for m in METHODS {
        // The ring holds about 36 of these; the rest wait in the feeder.
        let q = QueueBuilder::new()
            .maxsize(60)
            .ring_bytes(4096)
            .queue()
            .unwrap();
        let p = start(m, fill_up, q.clone());
        eventually("the producer filled the queue", || q.full());
        p.kill().unwrap();
        joined(&p, -9, m);
        // No time to wait: the last look takes the dead share back.
        q.put(&vec![2; 100], true, Some(Duration::ZERO)).unwrap();
        assert!(q.qsize() < 60, "{m}: {}", q.qsize());
        let mut got = 0;
        while q.get(true, Some(Duration::from_millis(100))).is_ok() {
            got += 1;
        }
        assert!(got > 1, "{m}: {got}");
        assert_eq!(q.qsize(), 0, "{m}");
    }
}

fn get_until_shut_down(q: Queue<u8>) {
    match q.get(true, WAIT) {
        Err(QueueError::ShutDown) => mp_context::exit(3),
        other => panic!("a blocked get gave {other:?}"),
    }
}

fn put_until_shut_down(q: Queue<u8>) {
    match q.put(&1, true, WAIT) {
        Err(QueueError::ShutDown) => mp_context::exit(4),
        other => panic!("a blocked put gave {other:?}"),
    }
}

fn join_until_shut_down(q: JoinableQueue<u8>) {
    q.join().unwrap();
    mp_context::exit(5);
}

/// CPython 3.13's `shutdown`: blocked callers in other processes wake.
fn shutdown_wakes_callers_blocked_in_other_processes() {
    for m in METHODS {
        let empty = Queue::new(0).unwrap();
        let full = Queue::new(1).unwrap();
        full.put(&0, true, None).unwrap();
        let jobs = JoinableQueue::new(0).unwrap();
        jobs.put(&0, true, None).unwrap();
        let getter = start(m, get_until_shut_down, empty.clone());
        let putter = start(m, put_until_shut_down, full.clone());
        let joiner = start(m, join_until_shut_down, jobs.clone());
        // Let them block (a blocked process shows as sleeping, so just wait).
        std::thread::sleep(Duration::from_millis(300));
        empty.shutdown(false);
        full.shutdown(false);
        jobs.shutdown(true);
        joined(&getter, 3, m);
        joined(&putter, 4, m);
        joined(&joiner, 5, m);
        // What was left in `full` is still there to get; then ShutDown.
        assert_eq!(full.get(true, WAIT).unwrap(), 0);
        assert!(matches!(full.get(true, WAIT), Err(QueueError::ShutDown)));
    }
}

fn pass_it_on((q, method): (Queue<u32>, String)) {
    q.put(&1, true, None).unwrap();
    let grandchild = start(&method, put_range, (q.clone(), 2, 3));
    joined(&grandchild, 0, "grandchild");
}

/// CTX-26: a child passes the queue it received on to a grandchild.
fn a_queue_passed_on_to_a_grandchild() {
    for m in METHODS {
        let q = Queue::new(0).unwrap();
        let p = start(m, pass_it_on, (q.clone(), m.to_string()));
        let mut got = [q.get(true, WAIT).unwrap(), q.get(true, WAIT).unwrap()];
        got.sort();
        assert_eq!(got, [1, 2], "{m}");
        joined(&p, 0, m);
    }
}

fn main() {
    mp_context::init();
    let tests: &[(&str, fn())] = &[
        (
            "four_producers_and_four_consumers",
            four_producers_and_four_consumers,
        ),
        (
            "full_and_empty_across_processes",
            full_and_empty_across_processes,
        ),
        (
            "a_producer_that_ends_right_after_put_loses_nothing",
            a_producer_that_ends_right_after_put_loses_nothing,
        ),
        (
            "cancel_join_thread_drops_the_backlog_and_fixes_the_counts",
            cancel_join_thread_drops_the_backlog_and_fixes_the_counts,
        ),
        (
            "items_that_carry_fds_work_in_another_process",
            items_that_carry_fds_work_in_another_process,
        ),
        (
            "zero_byte_and_64_mib_items_travel",
            zero_byte_and_64_mib_items_travel,
        ),
        (
            "task_done_and_join_with_four_workers",
            task_done_and_join_with_four_workers,
        ),
        (
            "a_process_killed_inside_put_or_get_is_undone",
            a_process_killed_inside_put_or_get_is_undone,
        ),
        (
            "killed_consumers_and_producers_leave_the_queue_usable",
            killed_consumers_and_producers_leave_the_queue_usable,
        ),
        (
            "a_dead_producers_share_of_maxsize_comes_back",
            a_dead_producers_share_of_maxsize_comes_back,
        ),
        (
            "shutdown_wakes_callers_blocked_in_other_processes",
            shutdown_wakes_callers_blocked_in_other_processes,
        ),
        (
            "a_queue_passed_on_to_a_grandchild",
            a_queue_passed_on_to_a_grandchild,
        ),
    ];
    let ok = mp_testsupport::harness::run_tests(tests);
    mp_context::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(ok));
}
