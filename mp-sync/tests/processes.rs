//! Cross-process tests of mp-sync under every start method (fork, spawn,
//! forkserver through mp-context), after CPython's `_TestLock`,
//! `_TestSemaphore`, `_TestCondition`, `_TestEvent` and `_TestBarrier`
//! (SH-06..21 in the project's behaviour list), in our own words; plus the
//! owner-death cases CPython has no answer for.
//!
//! A `harness = false` target: `main` calls `mp_context::init()` first, so
//! that this binary can serve as a spawned child and as the fork server,
//! and nothing else runs while the fork tests fork. Prints libtest's
//! summary line so the workspace's test driver counts it. Children report
//! through their exit code (a failed assertion there is exit code 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_context::{Process, get_context};
use mp_heap::{Array, RawArray, Value};
use mp_sync::{
    ActionError, Barrier, BarrierAction, BoundedSemaphore, Condition, Event, Lock, RLock,
    Semaphore, SyncError,
};

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];
/// How long anything may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn start<A>(method: &str, target: fn(A), args: A) -> Process
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
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
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Time for something that must not happen (an extra wake) to happen.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

const ROUNDS: u64 = 500;

/// Read-modify-write of an unlocked counter under `lock`, with a pause in
/// the middle that invites a lost update if the lock did not exclude.
fn add_under_lock((lock, mut counter): (Lock, RawArray<u64>)) {
    for i in 0..ROUNDS {
        let _g = lock.lock().unwrap();
        let v = counter[0];
        if i % 50 == 0 {
            std::thread::yield_now();
        }
        counter[0] = v + 1;
    }
}

fn add_under_rlock((lock, mut counter): (RLock, RawArray<u64>)) {
    for _ in 0..ROUNDS {
        let _outer = lock.lock().unwrap();
        let _inner = lock.lock().unwrap();
        counter[0] += 1;
    }
}

fn locks_exclude_across_processes() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        four_add_up(m, "a Lock", |counter| {
            start(m, add_under_lock, (lock.clone(), counter))
        });
        let rlock = RLock::new().unwrap();
        four_add_up(m, "an RLock", |counter| {
            start(m, add_under_rlock, (rlock.clone(), counter))
        });
    }
}

/// Four processes, each started by `start_one` with its own handle on one
/// counter, add [`ROUNDS`] each: no update may be lost.
fn four_add_up(m: &str, what: &str, start_one: impl Fn(RawArray<u64>) -> Process) {
    let counter = RawArray::<u64>::zeroed(1).unwrap();
    let procs: Vec<_> = (0..4).map(|_| start_one(share(&counter))).collect();
    for p in &procs {
        joined(p, 0, m);
    }
    assert_eq!(counter[0], 4 * ROUNDS, "{m}: lost updates under {what}");
}

/// A second handle on `a`'s elements (a separate mapping, as a child's).
fn share(a: &RawArray<u64>) -> RawArray<u64> {
    RawArray::from_buffer(a.buffer().share().unwrap()).unwrap()
}

fn release_it(lock: Lock) {
    lock.release().unwrap();
}

/// Exit code 3 when the release is refused as CPython refuses it.
fn release_unlocked(lock: Lock) {
    match lock.release() {
        Err(SyncError::ReleasedTooManyTimes) => mp_context::exit(3),
        other => panic!("releasing an unlocked Lock gave {other:?}"),
    }
}

fn acquire_it((lock, held): (Lock, Event)) {
    assert!(lock.acquire(true, Some(PATIENCE)).unwrap());
    held.set();
}

fn a_lock_released_by_another_process() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        assert!(lock.acquire(true, None).unwrap());
        joined(&start(m, release_it, lock.clone()), 0, m);
        assert!(!lock.is_locked(), "{m}");
        // And the other way: taken in a child, released here.
        let held = Event::new().unwrap();
        joined(&start(m, acquire_it, (lock.clone(), held.clone())), 0, m);
        assert!(held.is_set() && lock.is_locked(), "{m}");
        lock.release().unwrap();
        // Released too many times, in a child too.
        joined(&start(m, release_unlocked, lock.clone()), 3, m);
    }
}

/// Takes the lock, says so, and waits to be killed.
fn hold_until_killed((lock, held): (Lock, Event)) {
    let _g = lock.lock().unwrap();
    held.set();
    std::thread::sleep(PATIENCE);
}

fn hold_rlock_until_killed((lock, held): (RLock, Event)) {
    let _a = lock.lock().unwrap();
    let _b = lock.lock().unwrap();
    held.set();
    std::thread::sleep(PATIENCE);
}

fn hold_value_until_killed((value, held): (Arc<Value<u64>>, Event)) {
    let mut g = value.lock().unwrap();
    g.set(7);
    held.set();
    std::thread::sleep(PATIENCE);
}

/// Takes the lock and exits without releasing it.
fn exit_holding(lock: Lock) {
    std::mem::forget(lock.lock().unwrap());
}

fn a_lock_whose_holder_is_killed_is_taken_over() {
    // Beyond CPython, which waits forever: the next acquire gets the lock
    // and OwnerDied, within the acquire's own (generous) timeout.
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let p = start(m, hold_until_killed, (lock.clone(), held.clone()));
        assert!(held.wait(Some(PATIENCE)), "{m}: the child never held it");
        let pid = p.pid().unwrap().unwrap() as u32;
        assert_eq!(lock.owner_pid(), Some(pid));
        p.kill().unwrap();
        match lock.acquire(true, Some(PATIENCE)) {
            Err(SyncError::OwnerDied { pid: dead }) => assert_eq!(dead, pid, "{m}"),
            other => panic!("{m}: expected OwnerDied, got {other:?}"),
        }
        assert!(lock.is_mine());
        lock.release().unwrap();
        joined(&p, -9, m);
        // Reported once: the next acquisition is ordinary.
        assert!(lock.acquire(false, None).unwrap(), "{m}");
        lock.release().unwrap();

        // An RLock held two deep, and the guard form.
        let rlock = RLock::new().unwrap();
        let held = Event::new().unwrap();
        let p = start(m, hold_rlock_until_killed, (rlock.clone(), held.clone()));
        assert!(held.wait(Some(PATIENCE)), "{m}");
        p.kill().unwrap();
        match rlock.lock_timeout(PATIENCE) {
            Err(mp_sync::TryLockError::OwnerDied(died)) => {
                let guard = died.into_inner();
                assert_eq!(rlock.recursion_count(), 1, "{m}: ours, once");
                drop(guard);
            }
            other => panic!("{m}: expected OwnerDied, got {other:?}"),
        }
        assert!(!rlock.is_locked());
        joined(&p, -9, m);

        // A Value's own lock (an RLock), with the dead child's write.
        let value = Arc::new(Value::new(0_u64).unwrap());
        let held = Event::new().unwrap();
        let p = start(m, hold_value_until_killed, (value.clone(), held.clone()));
        assert!(held.wait(Some(PATIENCE)), "{m}");
        p.kill().unwrap();
        match value.get() {
            Err(died) => assert_eq!(died.into_inner(), 7, "{m}"),
            Ok(v) => panic!("{m}: no OwnerDied notice (read {v})"),
        }
        joined(&p, -9, m);

        // A holder that exits without releasing counts as dead too.
        let p = start(m, exit_holding, lock.clone());
        joined(&p, 0, m);
        assert!(matches!(
            lock.acquire(true, Some(PATIENCE)),
            Err(SyncError::OwnerDied { .. })
        ));
        lock.release().unwrap();
    }
}

/// Waits on the condition, then says whether it was notified.
fn wait_on((cond, sleeping, woken): (Condition, Semaphore, Semaphore)) {
    let _g = cond.lock().unwrap();
    sleeping.release().unwrap();
    assert!(cond.wait(Some(PATIENCE)).unwrap(), "not notified in time");
    woken.release().unwrap();
}

fn condition_notify_and_notify_all_across_processes() {
    // SH-11, SH-12, SH-13 with processes as the waiters.
    for m in METHODS {
        let cond = Condition::new().unwrap();
        let sleeping = Semaphore::new(0).unwrap();
        let woken = Semaphore::new(0).unwrap();
        let procs: Vec<_> = (0..4)
            .map(|_| start(m, wait_on, (cond.clone(), sleeping.clone(), woken.clone())))
            .collect();
        for _ in 0..4 {
            assert!(sleeping.acquire(true, Some(PATIENCE)), "{m}");
        }
        // Each sleeper registered before releasing the lock in its wait:
        // once we hold the lock, all four are registered.
        let notify = |n: u32| {
            let _g = cond.lock().unwrap();
            cond.notify(n).unwrap();
        };
        notify(1);
        assert!(woken.acquire(true, Some(PATIENCE)), "{m}: nobody woke");
        settle();
        assert_eq!(woken.get_value(), 0, "{m}: notify(1) woke more than one");
        notify(2);
        for _ in 0..2 {
            assert!(woken.acquire(true, Some(PATIENCE)), "{m}");
        }
        settle();
        assert_eq!(woken.get_value(), 0, "{m}: notify(2) woke more than two");
        {
            let _g = cond.lock().unwrap();
            cond.notify_all().unwrap();
        }
        assert!(woken.acquire(true, Some(PATIENCE)), "{m}");
        for p in &procs {
            joined(p, 0, m);
        }
    }
}

/// Bumps the shared value four times, notifying each time.
fn count_and_notify((cond, value): (Condition, Arc<Value<u32>>)) {
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(5));
        let _g = cond.lock().unwrap();
        value.lock().unwrap().update(|n| n + 1);
        cond.notify(1).unwrap();
    }
}

fn condition_wait_for_a_value_set_elsewhere() {
    // SH-14, SH-15.
    for m in METHODS {
        let cond = Condition::new().unwrap();
        let value = Arc::new(Value::new(0_u32).unwrap());
        let g = cond.lock().unwrap();
        assert!(!cond.wait(Some(Duration::ZERO)).unwrap());
        assert!(
            !cond
                .wait_for(|| false, Some(Duration::from_millis(50)))
                .unwrap()
        );
        let p = start(m, count_and_notify, (cond.clone(), value.clone()));
        assert!(
            cond.wait_for(|| value.get().unwrap() == 4, Some(PATIENCE))
                .unwrap(),
            "{m}"
        );
        drop(g);
        joined(&p, 0, m);
    }
}

fn wait_for_event((event, seen): (Event, Semaphore)) {
    assert!(event.wait(Some(PATIENCE)), "the event never came");
    seen.release().unwrap();
}

fn clear_event(event: Event) {
    event.clear();
}

fn events_across_processes() {
    // SH-16 with processes.
    for m in METHODS {
        let event = Event::new().unwrap();
        let seen = Semaphore::new(0).unwrap();
        let procs: Vec<_> = (0..3)
            .map(|_| start(m, wait_for_event, (event.clone(), seen.clone())))
            .collect();
        settle();
        assert_eq!(seen.get_value(), 0, "{m}: woke before the set");
        event.set();
        for p in &procs {
            joined(p, 0, m);
        }
        assert_eq!(seen.get_value(), 3, "{m}");
        joined(&start(m, clear_event, event.clone()), 0, m);
        assert!(!event.is_set(), "{m}");
    }
}

/// Counts passes through the barrier in shared memory (the last arrival
/// runs it, in whichever process that is).
#[derive(serde::Serialize, serde::Deserialize)]
struct CountPasses(Arc<Value<u32>>);

impl BarrierAction for CountPasses {
    fn run(&self) -> Result<(), ActionError> {
        self.0.lock().map_err(|e| e.to_string())?.update(|n| n + 1);
        Ok(())
    }
}

const PASSES: usize = 10;

/// Passes the barrier `PASSES` times, recording its index of each pass.
fn pass_barrier((barrier, indices, me): (Barrier<CountPasses>, Arc<Array<u32>>, usize)) {
    for pass in 0..PASSES {
        let index = barrier.wait(None).unwrap();
        indices.set(pass * 4 + me, index).unwrap();
    }
}

/// Waits once; exit code 3 if the barrier was broken, 0 if it passed.
fn wait_once(barrier: Barrier) {
    match barrier.wait(None) {
        Ok(_) => {}
        Err(SyncError::BrokenBarrier) => mp_context::exit(3),
        Err(e) => panic!("{e}"),
    }
}

fn barrier_with_four_processes() {
    // SH-17..19: passes, the action, abort and reset, four processes.
    for m in METHODS {
        let passes = Arc::new(Value::new(0_u32).unwrap());
        let barrier = Barrier::with_action(4, CountPasses(passes.clone()), Some(PATIENCE)).unwrap();
        let indices = Arc::new(Array::<u32>::zeroed(PASSES * 4).unwrap());
        let procs: Vec<_> = (0..4)
            .map(|me| start(m, pass_barrier, (barrier.clone(), indices.clone(), me)))
            .collect();
        for p in &procs {
            joined(p, 0, m);
        }
        assert_eq!(
            passes.get().unwrap(),
            PASSES as u32,
            "{m}: one action per pass"
        );
        let indices = indices.to_vec().unwrap();
        for pass in indices.chunks(4) {
            let mut pass = pass.to_vec();
            pass.sort();
            assert_eq!(pass, [0, 1, 2, 3], "{m}: each index once per pass");
        }
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());

        // abort() while three wait: all three see it broken.
        let barrier = Barrier::new(4, Some(PATIENCE)).unwrap();
        let procs: Vec<_> = (0..3)
            .map(|_| start(m, wait_once, barrier.clone()))
            .collect();
        eventually("three parties wait", || barrier.n_waiting() == 3);
        barrier.abort();
        for p in &procs {
            joined(p, 3, m);
        }
        assert!(barrier.broken());

        // reset() while three wait: broken for them, then usable by four.
        barrier.reset();
        let procs: Vec<_> = (0..3)
            .map(|_| start(m, wait_once, barrier.clone()))
            .collect();
        eventually("three parties wait again", || barrier.n_waiting() == 3);
        barrier.reset();
        for p in &procs {
            joined(p, 3, m);
        }
        assert!(!barrier.broken(), "{m}: a reset barrier is not broken");
        let procs: Vec<_> = (0..3)
            .map(|_| start(m, wait_once, barrier.clone()))
            .collect();
        barrier.wait(None).unwrap();
        for p in &procs {
            joined(p, 0, m);
        }
    }
}

/// The other half of a semaphore ping-pong.
fn pong((ping, pong): (Semaphore, Semaphore)) {
    for _ in 0..1000 {
        assert!(ping.acquire(true, Some(PATIENCE)));
        pong.release().unwrap();
    }
}

/// Lets `inside` count how many are inside at once, at most two.
fn limited((sem, inside, most): (BoundedSemaphore, Arc<Value<u32>>, Arc<Value<u32>>)) {
    for _ in 0..50 {
        let _unit = sem.guard();
        let now = inside.lock().unwrap().update(|n| n + 1);
        most.lock().unwrap().update(|m| m.max(now));
        std::thread::yield_now();
        inside.lock().unwrap().update(|n| n - 1);
    }
}

fn semaphores_across_processes() {
    for m in METHODS {
        // A ping-pong: every unit released in one process is taken in the other.
        let (ping, pong_sem) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
        let p = start(m, pong, (ping.clone(), pong_sem.clone()));
        for _ in 0..1000 {
            ping.release().unwrap();
            assert!(pong_sem.acquire(true, Some(PATIENCE)), "{m}");
        }
        joined(&p, 0, m);
        assert_eq!((ping.get_value(), pong_sem.get_value()), (0, 0));
        // A BoundedSemaphore(2) admits at most two processes at once.
        let sem = BoundedSemaphore::new(2).unwrap();
        let inside = Arc::new(Value::new(0_u32).unwrap());
        let most = Arc::new(Value::new(0_u32).unwrap());
        let procs: Vec<_> = (0..4)
            .map(|_| start(m, limited, (sem.clone(), inside.clone(), most.clone())))
            .collect();
        for p in &procs {
            joined(p, 0, m);
        }
        assert!(most.get().unwrap() <= 2, "{m}: more than two inside");
        assert_eq!(sem.get_value(), 2);
        assert!(matches!(
            sem.release(),
            Err(SyncError::ReleasedTooManyTimes)
        ));
    }
}

/// The primitives a child receives in a message, not as arguments.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kit {
    lock: Lock,
    sem: Semaphore,
    event: Event,
}

/// Receives a [`Kit`], takes its lock, posts a unit, sets the event, and
/// releases the lock once the parent says so (the next message).
fn use_a_received_kit(mut conn: mp_conn::Connection) {
    assert!(conn.poll(Some(PATIENCE)).unwrap());
    let kit: Kit = conn.recv().unwrap();
    let guard = kit.lock.lock().unwrap();
    kit.sem.release().unwrap();
    kit.event.set();
    assert!(conn.poll(Some(PATIENCE)).unwrap());
    let _: () = conn.recv().unwrap();
    drop(guard);
}

fn primitives_travel_in_messages() {
    // The fds of their blocks go beside the bytes (SCM_RIGHTS); the
    // receiver maps the same memory, so it is the same primitive.
    for m in METHODS {
        let (ours, theirs) = mp_conn::pipe(true).unwrap();
        let p = start(m, use_a_received_kit, theirs);
        let kit = Kit {
            lock: Lock::new().unwrap(),
            sem: Semaphore::new(0).unwrap(),
            event: Event::new().unwrap(),
        };
        ours.send(&kit).unwrap();
        assert!(kit.event.wait(Some(PATIENCE)), "{m}");
        assert!(kit.sem.acquire(true, Some(PATIENCE)), "{m}");
        assert_eq!(kit.lock.owner_pid(), Some(p.pid().unwrap().unwrap() as u32));
        assert!(
            !kit.lock.acquire(false, None).unwrap(),
            "{m}: held in the child"
        );
        ours.send(&()).unwrap();
        assert!(kit.lock.acquire(true, Some(PATIENCE)).unwrap(), "{m}");
        kit.lock.release().unwrap();
        joined(&p, 0, m);
    }
}

fn main() {
    mp_context::init();
    let tests: &[(&str, fn())] = &[
        (
            "locks_exclude_across_processes",
            locks_exclude_across_processes,
        ),
        (
            "a_lock_released_by_another_process",
            a_lock_released_by_another_process,
        ),
        (
            "a_lock_whose_holder_is_killed_is_taken_over",
            a_lock_whose_holder_is_killed_is_taken_over,
        ),
        (
            "condition_notify_and_notify_all_across_processes",
            condition_notify_and_notify_all_across_processes,
        ),
        (
            "condition_wait_for_a_value_set_elsewhere",
            condition_wait_for_a_value_set_elsewhere,
        ),
        ("events_across_processes", events_across_processes),
        ("barrier_with_four_processes", barrier_with_four_processes),
        ("semaphores_across_processes", semaphores_across_processes),
        (
            "primitives_travel_in_messages",
            primitives_travel_in_messages,
        ),
    ];
    let ok = mp_testsupport::harness::run_tests(tests);
    mp_context::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(ok));
}
