//! The showcase: `cargo run --release --example tour`.
//!
//! An end-to-end tour of the workspace on built-in defaults: connections
//! and the CPython handshake (mp-auth, mp-conn), shared memory (mp-heap),
//! processes under every start method (mp-context, mp-forkserver), queues
//! and a lock between processes (mp-queue, mp-sync), a process pool
//! (mp-pool), a manager whose shared objects several processes use
//! (mp-manager), and one generic function run on threads (mp-dummy) and on
//! processes, switched by one type (the `multiprocessing` facade's
//! `backend`).
//! Each step prints one line, the run ends with a summary line (`11/11 ok`,
//! or which steps failed) and exits non-zero if a step failed; `--help`
//! lists the steps, and naming steps runs only those. The CPython steps
//! talk to a real `multiprocessing.connection.Client` and a real
//! `BaseManager` client when `python3` is on PATH.
//!
//! To add a step: write a `fn() -> Outcome` below and add one `step!` to
//! [`STEPS`].

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_conn::{Connection, Family, Listener, Waitable, client, pipe, wait};
use mp_context::{Process, StartMethod, get_context};
use mp_heap::{Array, Heap, SharedBuffer, Value};

/// What a step reports: one line on success.
type Outcome = Result<String, Box<dyn std::error::Error>>;

/// One step of the tour.
struct Step {
    /// The name printed on its line and accepted on the command line.
    name: &'static str,
    /// The function that runs it, as written in this file.
    function: &'static str,
    /// What it shows, for `--help`.
    shows: &'static str,
    run: fn() -> Outcome,
}

/// A [`Step`] from its name, function and description.
macro_rules! step {
    ($name:literal, $run:ident, $shows:literal) => {
        Step {
            name: $name,
            function: stringify!($run),
            shows: $shows,
            run: $run,
        }
    };
}

/// Every step, in the order they run. Adding a step is one entry here.
const STEPS: &[Step] = &[
    step!(
        "pipe",
        pipe_round_trip,
        "bytes and typed values over a Pipe()"
    ),
    step!(
        "listener",
        listener_and_client,
        "the HMAC handshake over AF_UNIX and TCP, a wrong key refused"
    ),
    step!(
        "fd-passing",
        fd_passing,
        "a pipe's write end sent over a connection (SCM_RIGHTS)"
    ),
    step!(
        "wait",
        wait_on_many,
        "wait() over 8 connections, 2 of them ready"
    ),
    step!(
        "cpython",
        cpython_client,
        "a real CPython client against our Listener"
    ),
    step!(
        "processes",
        processes_under_every_method,
        "one function under fork, spawn and forkserver"
    ),
    step!(
        "exit-codes",
        exit_codes,
        "CPython's exit codes: return, exit(3), terminate"
    ),
    step!(
        "shared-mem",
        shared_memory,
        "a locked counter and an array updated by 4 children"
    ),
    step!(
        "queues",
        queues_and_a_lock,
        "4 processes fed by a JoinableQueue, a total kept under a Lock"
    ),
    step!(
        "heap",
        heap_statistics,
        "heap.py's allocator: arenas, best fit, coalescing"
    ),
    step!(
        "pool",
        pool_at_work,
        "a process Pool's map, and a task whose worker exits failing alone"
    ),
    step!(
        "manager",
        manager_at_work,
        "a SyncManager's queue, dict and lock shared by 3 processes"
    ),
    step!(
        "cpython-mgr",
        cpython_uses_our_manager,
        "a CPython client's calls on a Rust manager's dict"
    ),
    step!(
        "switch",
        one_line_switch,
        "one generic function on threads and on processes, same results"
    ),
];

/// Long enough for a loaded machine, short enough that a hang is reported.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where this tour's code is, relative to the workspace root.
const SOURCE: &str = file!();

fn usage() -> String {
    let mut text = format!(
        "usage: cargo run --release --example tour [-- STEP...]\n\n\
         The mp-rs tour: each step exercises part of the workspace on built-in\n\
         defaults and prints one line; the run ends with a summary line and exits\n\
         non-zero if a step failed. Name steps to run only those.\n\n\
         steps (each is one function in {SOURCE}):\n"
    );
    for s in STEPS {
        text.push_str(&format!(
            "  {:<11} {:<29} {}\n",
            s.name, s.function, s.shows
        ));
    }
    text
}

/// The steps named on the command line (all of them when none is), or
/// what to print instead and the exit code: `--help`, or an unknown name.
fn select(args: &[String]) -> Result<Vec<&'static Step>, (String, u8)> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Err((usage(), 0));
    }
    if let Some(bad) = args
        .iter()
        .find(|a| !STEPS.iter().any(|s| s.name == a.as_str()))
    {
        return Err((format!("tour: no step named {bad:?}\n\n{}", usage()), 2));
    }
    Ok(STEPS
        .iter()
        .filter(|s| args.is_empty() || args.iter().any(|a| a == s.name))
        .collect())
}

/// The last line: `11/11 ok`, or how many passed and which failed.
fn summary(ran: usize, failed: &[&str], took: Duration) -> String {
    let ok = ran - failed.len();
    let verdict = if failed.is_empty() {
        format!("{ok}/{ran} ok")
    } else {
        format!("{ok}/{ran} ok, FAILED: {}", failed.join(", "))
    };
    format!("{verdict} ({took:.1?}). Each step is one function in {SOURCE}; --help lists them.")
}

fn main() -> ExitCode {
    // First thing: a spawned child or the fork server never gets past here.
    mp_context::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = match select(&args) {
        Ok(steps) => steps,
        Err((text, code)) => {
            if code == 0 {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
            return ExitCode::from(code);
        }
    };
    println!("mp-rs tour: multiprocessing for Rust, wire-compatible with CPython\n");
    let started = Instant::now();
    let mut failed = Vec::new();
    for step in &steps {
        let start = Instant::now();
        match (step.run)() {
            Ok(what) => println!("ok   {:<11} {what} ({:.1?})", step.name, start.elapsed()),
            Err(e) => {
                println!("FAIL {:<11} {e}", step.name);
                failed.push(step.name);
            }
        }
    }
    println!("\n{}", summary(steps.len(), &failed, started.elapsed()));
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `Pipe()`, bytes and typed values (postcard) both ways.
fn pipe_round_trip() -> Outcome {
    let (mut parent, mut child) = pipe(true)?;
    let worker = std::thread::spawn(move || -> mp_conn::Result<()> {
        let (name, numbers): (String, Vec<u32>) = child.recv()?;
        child.send(&(name.to_uppercase(), numbers.iter().sum::<u32>()))
    });
    parent.send(&("tour".to_string(), vec![1u32, 2, 3, 4]))?;
    let (name, sum): (String, u32) = parent.recv()?;
    worker.join().map_err(|_| "worker panicked")??;
    if (name.as_str(), sum) != ("TOUR", 10) {
        return Err(format!("unexpected reply {name} {sum}").into());
    }
    Ok(format!(
        "typed round trip over a socketpair: (\"tour\", [1,2,3,4]) -> ({name:?}, {sum})"
    ))
}

/// An authenticated Listener and client over AF_UNIX and TCP.
fn listener_and_client() -> Outcome {
    let mut seen = Vec::new();
    for family in [Family::Unix, Family::Inet] {
        let mut listener = Listener::builder()
            .family(family)
            .authkey(*b"tour key")
            .bind()?;
        let address = listener.address().clone();
        let server = std::thread::spawn(move || -> mp_conn::Result<()> {
            let mut conn = listener.accept()?;
            let msg = conn.recv_bytes()?;
            conn.send_bytes(&msg)
        });
        let mut conn = client(&address, Some(b"tour key"))?;
        conn.send_bytes(b"hello")?;
        if conn.recv_bytes()? != b"hello" {
            return Err("echo differs".into());
        }
        server.join().map_err(|_| "server panicked")??;
        // A wrong key is refused, on both sides.
        let mut listener = Listener::builder()
            .family(family)
            .authkey(*b"tour key")
            .bind()?;
        let address = listener.address().clone();
        let server = std::thread::spawn(move || listener.accept().map(drop));
        let refused = client(&address, Some(b"not the key")).is_err();
        let server_refused = server.join().map_err(|_| "server panicked")?.is_err();
        if !(refused && server_refused) {
            return Err("a wrong key was accepted".into());
        }
        seen.push(format!("{family} {address}"));
    }
    Ok(format!(
        "HMAC handshake + echo, wrong key refused on both sides: {}",
        seen.join(", ")
    ))
}

/// Passing a pipe's write end over a connection (SCM_RIGHTS).
fn fd_passing() -> Outcome {
    let (a, mut b) = pipe(true)?;
    let (reader, writer) = rustix::pipe::pipe()?;
    a.send_fds(&[writer.as_fd()])?;
    drop(writer);
    let received = b.recv_fds(1)?.pop().ok_or("no fd arrived")?;
    let mut file = std::fs::File::from(received);
    std::io::Write::write_all(&mut file, b"written through a passed fd")?;
    drop(file);
    let mut text = String::new();
    std::fs::File::from(reader).read_to_string(&mut text)?;
    Ok(format!("{text:?}"))
}

/// wait() over several connections: only the ones with data are ready.
fn wait_on_many() -> Outcome {
    let mut pairs = Vec::new();
    for _ in 0..8 {
        pairs.push(pipe(true)?);
    }
    for i in [2, 5] {
        pairs[i].1.send_bytes(b"ready")?;
    }
    let objects: Vec<&dyn Waitable> = pairs.iter().map(|(a, _)| a as &dyn Waitable).collect();
    let ready = wait(&objects, Some(Duration::from_secs(5)))?;
    if ready != [2, 5] {
        return Err(format!("wait returned {ready:?}").into());
    }
    Ok(format!("8 connections, ready: {ready:?}"))
}

/// A real CPython client against our Listener.
fn cpython_client() -> Outcome {
    let Ok(version) = Command::new("python3").arg("--version").output() else {
        return Ok("skipped: no python3 on PATH".into());
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let mut listener = Listener::builder()
        .family(Family::Inet)
        .authkey(*b"tour key")
        .bind()?;
    let mp_conn::Address::Inet(address) = listener.address().clone() else {
        return Err("not a TCP address".into());
    };
    let script = format!(
        "from multiprocessing.connection import Client\n\
         with Client(('{}', {}), authkey=b'tour key') as c:\n\
         \x20   c.send_bytes(b'hello from ' + __import__('sys').version.split()[0].encode())\n\
         \x20   print(c.recv_bytes().decode())\n",
        address.ip(),
        address.port()
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Never wait forever for a client that failed to start.
    if wait(&[&listener], Some(PATIENCE))?.is_empty() {
        let _ = child.kill();
        return Err("CPython did not connect".into());
    }
    let mut conn = listener.accept()?;
    let greeting = conn.recv_bytes()?;
    conn.send_bytes(&[b"rust echoes: ".as_slice(), &greeting].concat())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(format!(
        "{version} client -> our Listener: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// What a child sends back: its start method, pid and parent's pid.
fn report(conn: Connection) {
    let me = mp_context::current_process();
    let parent = mp_context::parent_process().map(|p| p.pid());
    conn.send(&(me.name().to_string(), me.pid(), parent))
        .expect("send to parent");
}

/// The same plain function and serde arguments under fork, spawn and the
/// fork server; a Connection travels as an argument each time.
fn processes_under_every_method() -> Outcome {
    let mut lines = Vec::new();
    for method in mp_context::get_all_start_methods() {
        let ctx = get_context(method)?;
        let (mut ours, theirs) = pipe(true)?;
        let p: Process = ctx.process(report, theirs);
        let started = Instant::now();
        p.start()?;
        if wait(&[&ours], Some(PATIENCE))?.is_empty() {
            p.kill()?;
            return Err(format!("{method}: no word from the child").into());
        }
        let (name, pid, parent): (String, i32, Option<i32>) = ours.recv()?;
        let took = started.elapsed();
        p.join(Some(PATIENCE))?;
        if p.exitcode()? != Some(0) || parent != Some(std::process::id() as i32) {
            return Err(format!("{method}: exit {:?}, parent {parent:?}", p.exitcode()?).into());
        }
        lines.push(format!("{method} {name} pid {pid} in {took:.1?}"));
    }
    Ok(format!(
        "default {}; {}",
        mp_context::get_start_method(false).map_or("unset", |m| m.name()),
        lines.join(", ")
    ))
}

fn returns(_: ()) {}
fn exits(code: i32) {
    mp_context::exit(code)
}
fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Exit codes as CPython reports them: 0, the code given to exit, and
/// -SIGTERM for a terminated child, whose sentinel wakes `wait()`.
fn exit_codes() -> Outcome {
    let ctx = get_context(StartMethod::ForkServer)?;
    let ok = ctx.process(returns, ());
    let three = ctx.process(exits, 3);
    let sleeper = ctx.process(sleeps, 60_000);
    for p in [&ok, &three, &sleeper] {
        p.start()?;
    }
    sleeper.terminate()?;
    let sentinel = sleeper.sentinel()?;
    if wait(&[&sentinel], Some(PATIENCE))?.is_empty() {
        return Err("the terminated child's sentinel never became ready".into());
    }
    let mut codes = Vec::new();
    for p in [&ok, &three, &sleeper] {
        p.join(Some(PATIENCE))?;
        codes.push(p.exitcode()?.ok_or("child still running")?);
    }
    if codes != [0, 3, -15] {
        return Err(format!("exit codes {codes:?}").into());
    }
    Ok(format!("return, exit(3), terminate -> {codes:?}"))
}

const INCREMENTS: u64 = 1000;

/// Counts up a shared total under its cross-process lock, and its own slot.
fn count_up((total, slots, me): (Arc<Value<u64>>, Arc<Array<u64>>, usize)) {
    for _ in 0..INCREMENTS {
        // `Err` only when a process died holding the lock.
        total.lock().unwrap().update(|n| n + 1);
        slots.lock().unwrap().update(me, |n| n + 1);
    }
}

/// Writes a greeting into the shared bytes it was given.
fn greet(mut buf: SharedBuffer) {
    let text = format!("written by pid {}", std::process::id());
    buf[..text.len()].copy_from_slice(text.as_bytes());
}

/// Shared memory from mp-heap as process arguments: a locked counter and
/// an array that four children update, and raw bytes a child writes.
fn shared_memory() -> Outcome {
    const CHILDREN: usize = 4;
    let total = Arc::new(Value::new(0_u64)?);
    let slots = Arc::new(Array::<u64>::zeroed(CHILDREN)?);
    let procs: Vec<Process> = (0..CHILDREN)
        .map(|me| Process::new(count_up, (total.clone(), slots.clone(), me)))
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join(Some(PATIENCE))?;
    }
    let expected = CHILDREN as u64 * INCREMENTS;
    let (total, slots) = (total.get()?, slots.to_vec()?);
    if total != expected || slots != vec![INCREMENTS; CHILDREN] {
        return Err(format!("total {total} slots {slots:?}").into());
    }
    let buf = SharedBuffer::zeroed(64)?;
    let p = Process::new(greet, buf.share()?);
    p.start()?;
    p.join(Some(PATIENCE))?;
    let text = String::from_utf8_lossy(&buf[..])
        .trim_end_matches('\0')
        .to_string();
    if !text.starts_with("written by pid") {
        return Err(format!("shared bytes read {text:?}").into());
    }
    Ok(format!(
        "{CHILDREN} children x {INCREMENTS} locked increments = {total}; a child's bytes: {text:?}"
    ))
}

const WORKERS: u64 = 4;
const JOBS: u64 = 100;

/// Takes numbers until a `None`, puts their squares on `results` and adds
/// them to the total under the shared Lock; `task_done` for each.
fn square_jobs(
    (jobs, results, total): (
        mp_queue::JoinableQueue<Option<u64>>,
        mp_queue::Queue<u64>,
        Arc<Value<u64>>,
    ),
) {
    while let Ok(Some(n)) = jobs.get(true, Some(PATIENCE)) {
        results.put(&(n * n), true, None).expect("put a result");
        // The Value's lock is the tour's Lock: held across the update.
        total.lock().expect("no holder died").update(|t| t + n * n);
        jobs.task_done().expect("one task_done per job");
    }
    jobs.task_done().expect("and one for the stop sign");
}

/// Queues and a lock between processes on built-in defaults: workers of
/// the default start method take jobs from a JoinableQueue, put results on
/// a Queue, and update a total under a shared Lock.
fn queues_and_a_lock() -> Outcome {
    let jobs = mp_queue::JoinableQueue::new(0)?;
    let results = mp_queue::Queue::new(0)?;
    let lock = mp_sync::Lock::new()?;
    let total = Arc::new(Value::with_lock(0_u64, &lock)?);
    let workers: Vec<Process> = (0..WORKERS)
        .map(|_| Process::new(square_jobs, (jobs.clone(), results.clone(), total.clone())))
        .collect();
    for w in &workers {
        w.start()?;
    }
    for n in 1..=JOBS {
        jobs.put(&Some(n), true, None)?;
    }
    for _ in 0..WORKERS {
        jobs.put(&None, true, None)?;
    }
    if !jobs.join_timeout(PATIENCE)? {
        return Err("join() never saw every task done".into());
    }
    let squares: u64 = (0..JOBS)
        .map(|_| results.get(true, Some(PATIENCE)))
        .sum::<Result<u64, _>>()?;
    for w in &workers {
        w.join(Some(PATIENCE))?;
    }
    let want = JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6;
    let total = total.get()?;
    if squares != want || total != want || lock.is_locked() {
        return Err(format!("squares {squares}, total {total}, want {want}").into());
    }
    Ok(format!(
        "{WORKERS} processes: {JOBS} jobs from a JoinableQueue (join() after every task_done), \
         squares back on a Queue: {squares}; the total kept under a shared Lock: {total}"
    ))
}

/// heap.py's allocator: arenas double, blocks are best fit and coalesce,
/// and everything is handed back.
fn heap_statistics() -> Outcome {
    let heap = Heap::with_discard_threshold(0);
    let blocks: Vec<_> = [100, 5000, 64, 70_000, 8]
        .iter()
        .map(|&n| heap.malloc(n))
        .collect::<Result<_, _>>()?;
    let busy = heap.stats();
    drop(blocks);
    let idle = heap.stats();
    if idle.arenas != 0 || idle.used_bytes != 0 {
        return Err(format!("heap not empty after frees: {idle:?}").into());
    }
    Ok(format!(
        "5 blocks: {} arenas, {} bytes used, {} free; after drop: {} arenas, {} mallocs = {} frees",
        busy.arenas, busy.used_bytes, busy.free_bytes, idle.arenas, idle.mallocs, idle.frees
    ))
}

fn square(n: u64) -> u64 {
    n * n
}

fn exits_inside_a_task(code: i32) -> u64 {
    mp_context::exit(code)
}

/// mp-pool on its defaults: a map over the usable CPUs' worth of workers
/// (forkserver), and a task that ends its worker failing alone while the
/// pool replaces the worker and goes on.
fn pool_at_work() -> Outcome {
    let pool = mp_pool::Pool::new(None)?;
    let total: u64 = pool.map(square, 0..1000, None)?.iter().sum();
    let lost = pool.apply(exits_inside_a_task, 9);
    let after = pool.apply(square, 12)?;
    pool.close();
    pool.join()?;
    if total != 332_833_500 || after != 144 {
        return Err(format!("map sum {total}, then {after}").into());
    }
    match lost {
        Err(mp_pool::Error::WorkerLost { exitcode: 9, .. }) => Ok(format!(
            "{} workers: 1000 squares sum to {total}; a task that calls exit(9) fails alone \
             (WorkerLost, exit code 9), the pool replaces the worker and goes on",
            pool.processes()
        )),
        other => Err(format!("the exiting task gave {other:?}").into()),
    }
}

/// What a manager's worker does: takes numbers from a shared queue until
/// `None`, adds their squares to a shared dict under a shared lock.
fn square_worker(
    (tasks, results, lock): (
        mp_manager::QueueProxy<Option<i64>>,
        mp_manager::DictProxy<String, i64>,
        mp_manager::LockProxy,
    ),
) {
    while let Ok(Some(n)) = tasks.get() {
        let _held = lock.lock().expect("lock");
        let sum = results.get(&"sum".into()).expect("get").unwrap_or(0);
        results
            .set_item(&"sum".into(), &(sum + n * n))
            .expect("set");
    }
}

/// A SyncManager: a queue, a dict and a lock in the manager's process,
/// used by three workers under the default start method; every object is
/// freed once the proxies are gone.
fn manager_at_work() -> Outcome {
    let ctx = get_context(None)?;
    let manager = mp_manager::SyncManager::started(&ctx)?;
    let tasks = manager.queue::<Option<i64>>(0)?;
    let results = manager.dict::<String, i64>()?;
    let lock = manager.lock()?;
    let workers: Vec<Process> = (0..3)
        .map(|_| {
            ctx.process(
                square_worker,
                (tasks.clone(), results.clone(), lock.clone()),
            )
        })
        .collect();
    for w in &workers {
        w.start()?;
    }
    for n in 1..=10 {
        tasks.put(&Some(n))?;
    }
    for _ in &workers {
        tasks.put(&None)?;
    }
    for w in &workers {
        w.join(Some(PATIENCE))?;
        if w.exitcode()? != Some(0) {
            return Err(format!("a worker exited with {:?}", w.exitcode()?).into());
        }
    }
    let sum = results.get_item(&"sum".into())?;
    if sum != 385 {
        return Err(format!("sum of squares {sum}, expected 385").into());
    }
    drop((tasks, results, lock));
    let left = manager.number_of_objects()?;
    manager.shutdown()?;
    Ok(format!(
        "3 {} workers summed squares 1..10 = {sum} through a shared queue, dict and lock; {left} objects left",
        ctx.start_method()
    ))
}

/// A Rust manager server speaking pickle, and an unmodified CPython
/// client (the documentation's remote-manager code) using its dict; the
/// result is read back through a Rust proxy.
fn cpython_uses_our_manager() -> Outcome {
    let Ok(version) = Command::new("python3").arg("--version").output() else {
        return Ok("skipped: no python3 on PATH".into());
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let mut registry = mp_manager::Registry::new();
    mp_manager::SyncManager::register_types(&mut registry);
    let shared = registry
        .instantiate("dict", mp_manager::Args::default())
        .map_err(|e| format!("{e:?}"))?;
    registry.register_shared("get_results", shared);
    let server = mp_manager::Server::bind(
        registry,
        Some(&"127.0.0.1:0".parse()?),
        b"tour key",
        Arc::new(mp_manager::Pickle::new()),
    )?;
    let address = server.address().clone();
    let handle = server.handle();
    let serving = std::thread::spawn(move || server.serve_forever());
    let mp_conn::Address::Inet(at) = &address else {
        return Err("not a TCP address".into());
    };
    let script = format!(
        "import sys\n\
         from multiprocessing.managers import BaseManager\n\
         class M(BaseManager): pass\n\
         M.register('get_results')\n\
         m = M(address=('{}', {}), authkey=b'tour key')\n\
         m.connect()\n\
         r = m.get_results()\n\
         r.update(python=sys.version.split()[0], squares=[i * i for i in range(5)])\n\
         try:\n\
         \x20   r['missing']\n\
         except KeyError as e:\n\
         \x20   r['raised'] = type(e).__name__\n",
        at.ip(),
        at.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .stderr(Stdio::piped())
        .output()?;
    let read_back = (|| -> Outcome {
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        let ctx = get_context(None)?;
        let manager = mp_manager::BaseManager::<mp_manager::NoTypes>::new(&ctx)
            .with_address(address.clone())
            .with_authkey(*b"tour key")
            .with_codec(Arc::new(mp_manager::Pickle::new()));
        manager.connect()?;
        let results: mp_manager::Proxy = manager.create("get_results", &())?;
        let squares: Vec<i64> = results.call("__getitem__", &("squares",))?;
        let raised: String = results.call("__getitem__", &("raised",))?;
        drop(results);
        let left = manager.number_of_objects()?;
        Ok(format!(
            "{version} client set squares {squares:?} and caught {raised} on our manager; {left} objects left"
        ))
    })();
    handle.shutdown();
    let _ = serving.join();
    read_back
}

/// A worker of [`squares_on`]: waits for the start signal, then puts the
/// squares of its numbers, each under the lock (a failure panics: the
/// child exits 1 and the parent's `get` reports the missing results).
fn square_numbers<B: multiprocessing::backend::Backend>(
    (numbers, results, lock, go): (Vec<u64>, B::Queue<u64>, B::Lock, B::Event),
) {
    use multiprocessing::backend::{EventApi, LockApi, QueueApi};
    assert!(go.wait(Some(PATIENCE)), "the start signal never came");
    for n in numbers {
        assert!(lock.acquire(true, Some(PATIENCE)).expect("the lock"));
        results.put(n * n, true, Some(PATIENCE)).expect("a put");
        lock.release().expect("the lock");
    }
}

/// The generic function: two workers and a pool square 1..=100 on backend
/// `B`; the sums of what came back through the queue and from the pool.
fn squares_on<B: multiprocessing::backend::PoolBackend>(
    backend: &B,
) -> Result<(u64, u64), multiprocessing::backend::Error> {
    use multiprocessing::backend::{EventApi, PoolApi, ProcessApi, QueueApi};
    let (results, lock, go) = (backend.queue(0)?, backend.lock()?, backend.event()?);
    let workers: Vec<B::Process> = [1..=50, 51..=100]
        .into_iter()
        .map(|numbers| {
            let args = (numbers.collect(), results.clone(), lock.clone(), go.clone());
            backend.process(square_numbers::<B>, args)
        })
        .collect();
    for w in &workers {
        w.start()?;
    }
    go.set();
    let mut through_queue = 0;
    for _ in 0..100 {
        through_queue += results.get(true, Some(PATIENCE))?;
    }
    for w in &workers {
        w.join(Some(PATIENCE))?;
    }
    let pool = backend.pool(Some(2))?;
    let from_pool = pool.map(square, 1..=100, None)?.iter().sum();
    pool.close();
    pool.join()?;
    Ok((through_queue, from_pool))
}

/// The one-line switch: the same generic function on `Threads` and on
/// `Processes` (the default start method), the same results.
fn one_line_switch() -> Outcome {
    use multiprocessing::backend::{Backend, Processes, Threads};
    let on_threads = squares_on(&Threads)?;
    let processes = Processes::default();
    let on_processes = squares_on(&processes)?;
    if on_threads != on_processes || on_threads != (338_350, 338_350) {
        return Err(format!("threads gave {on_threads:?}, processes {on_processes:?}").into());
    }
    Ok(format!(
        "squares_on::<B>: 2 workers + a queue + a lock + an event, then a pool map, on {} and on {}: \
         both sum to {}",
        Threads.name(),
        processes.name(),
        on_threads.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_have_unique_names_and_help_lists_them() {
        let help = usage();
        for (i, s) in STEPS.iter().enumerate() {
            assert!(help.contains(s.name) && help.contains(s.function), "{help}");
            assert!(
                STEPS[..i].iter().all(|t| t.name != s.name),
                "{} twice",
                s.name
            );
        }
        assert!(help.contains("multiprocessing/examples/tour.rs"), "{help}");
        let (text, code) = select(&["--help".to_string()]).err().unwrap();
        assert_eq!((text, code), (help, 0));
    }

    #[test]
    fn steps_can_be_chosen_by_name() {
        let chosen = select(&["heap".to_string(), "pipe".to_string()])
            .ok()
            .unwrap();
        let names: Vec<_> = chosen.iter().map(|s| s.name).collect();
        assert_eq!(names, ["pipe", "heap"]);
        assert_eq!(select(&[]).ok().unwrap().len(), STEPS.len());
        let (text, code) = select(&["nope".to_string()]).err().unwrap();
        assert_eq!(code, 2);
        assert!(text.starts_with("tour: no step named \"nope\""), "{text}");
    }

    #[test]
    fn the_summary_says_how_many_passed_and_which_failed() {
        let took = Duration::from_millis(1200);
        let all = summary(9, &[], took);
        assert!(all.starts_with("9/9 ok (1.2s). "), "{all}");
        assert!(all.contains("multiprocessing/examples/tour.rs"), "{all}");
        let some = summary(9, &["cpython", "heap"], took);
        assert!(
            some.starts_with("7/9 ok, FAILED: cpython, heap (1.2s)"),
            "{some}"
        );
    }
}
