//! Cross-process tests of mp-manager, after CPython's
//! `TestSyncManagerTypes`, `_TestMyManager`, `_TestRemoteManager` and the
//! manager lifecycle tests (MGR-xx in the project's behaviour list), in
//! our own words.
//!
//! A `harness = false` target: `main` calls `mp_context::init()` first, so
//! that this binary serves as a spawned child and as the fork server.
//! Prints libtest's summary line so the workspace's test driver counts it.

use std::io::BufRead;
use std::time::{Duration, Instant};

use mp_conn::Address;
use mp_context::{Process, get_context};
use mp_manager::{
    AcquirerProxy, BarrierProxy, BaseManager, ConditionProxy, DictProxy, Error, EventProxy,
    Initializer, ListProxy, NamespaceProxy, PoolProxy, Proxy, QueueProxy, Registrar, Registry,
    SyncManager, ValueProxy,
};

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];
const LONG: Option<Duration> = Some(Duration::from_secs(60));
const SHORT: Duration = Duration::from_millis(100);

fn ctx(m: &str) -> mp_context::Context {
    get_context(Some(m)).unwrap()
}

/// Starts `p` and waits for it; returns its exit code.
fn run(p: &Process) -> Option<i32> {
    p.start().unwrap();
    p.join(LONG).unwrap();
    p.exitcode().unwrap()
}

/// Polls `f` until it holds, for at most 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_no_objects<R: Registrar>(m: &BaseManager<R>) {
    eventually("the manager to hold no objects", || {
        m.number_of_objects().unwrap() == 0
    });
}

// ----- every SyncManager type from two processes at once -----

fn child_lock((lock, step): (AcquirerProxy, QueueProxy<String>)) {
    assert!(lock.acquire().unwrap());
    assert!(lock.locked().unwrap());
    step.put(&"acquired".into()).unwrap();
}

fn child_rlock(rlock: AcquirerProxy) {
    assert!(rlock.acquire().unwrap());
    assert!(rlock.acquire().unwrap());
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert!(rlock.release().unwrap_err().is("RuntimeError"));
}

fn child_event(e: EventProxy) {
    assert!(e.is_set().unwrap());
    assert!(e.wait(None).unwrap());
    e.clear().unwrap();
    assert!(!e.wait(Some(Duration::from_millis(1))).unwrap());
}

fn child_queue(q: QueueProxy<i64>) {
    assert_eq!(q.qsize().unwrap(), 2);
    assert!(q.full().unwrap());
    assert!(!q.empty().unwrap());
    assert_eq!(q.get().unwrap(), 5);
    assert_eq!(q.get().unwrap(), 6);
    assert!(q.empty().unwrap());
}

fn child_containers(
    (d, l, v, ns): (
        DictProxy<String, i64>,
        ListProxy<i64>,
        ValueProxy<i64>,
        NamespaceProxy,
    ),
) {
    assert_eq!(d.get_item(&"a".into()).unwrap(), 1);
    d.set_item(&"from child".into(), &2).unwrap();
    // A proxy-returning method works in the process the proxy was sent to
    // (gh-99595).
    assert_eq!(d.iter().unwrap().count(), 2);
    l.extend(&[2, 3]).unwrap();
    assert_eq!(l.pop_at(0).unwrap(), 1);
    assert_eq!(v.get().unwrap(), 1);
    v.set(&2).unwrap();
    assert_eq!(ns.get::<String>("name").unwrap(), "parent");
    ns.set("child", &true).unwrap();
}

fn child_semaphores(
    (sem, bsem, arr, set): (
        AcquirerProxy,
        AcquirerProxy,
        mp_manager::ArrayProxy<i64>,
        mp_manager::SetProxy<i64>,
    ),
) {
    // MGR-04: the child acquires, the parent releases.
    assert!(sem.acquire().unwrap());
    assert!(bsem.acquire().unwrap());
    // MGR-12: indexing, len and iteration of an Array.
    assert_eq!(arr.len().unwrap(), 2);
    assert_eq!(arr.get(1).unwrap(), 1);
    assert_eq!(arr.to_vec().unwrap(), [0, 1]);
    arr.set(0, &7).unwrap();
    // The set type.
    set.add(&3).unwrap();
    assert!(set.remove(&42).unwrap_err().is("KeyError"));
}

fn child_barrier((b, rounds): (BarrierProxy, usize)) {
    for _ in 0..rounds {
        b.wait(Some(Duration::from_secs(60))).unwrap();
    }
}

/// Where a barrier's action writes: it runs in the manager, so a file
/// named after the test process (the manager's parent) is how the test
/// sees it.
fn barrier_log(test_pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mp-manager-barrier-{test_pid}"))
}

/// A barrier's action: appends a line to [`barrier_log`].
fn barrier_tripped(_: ()) {
    use std::io::Write;
    let parent = mp_context::parent_process().unwrap().pid();
    let path = barrier_log(parent as u32);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "tripped by {}", std::process::id()).unwrap();
}

fn barrier_action_fails(_: ()) {
    panic!("the action refuses (expected by the test)");
}

fn barrier_actions_run_in_the_manager() {
    let log = barrier_log(std::process::id());
    let _ = std::fs::remove_file(&log);
    let c = ctx("fork");
    let m = SyncManager::started(&c).unwrap();
    let server = m.process().unwrap().pid().unwrap().unwrap();
    let b = m.barrier_with_action(2, barrier_tripped, None).unwrap();
    let child = c.process(child_barrier, (b.clone(), 2));
    child.start().unwrap();
    for _ in 0..2 {
        b.wait(LONG).unwrap();
    }
    child.join(LONG).unwrap();
    assert_eq!(child.exitcode().unwrap(), Some(0));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, format!("tripped by {server}\ntripped by {server}\n"));
    let _ = std::fs::remove_file(&log);
    drop(b);

    // A failing action breaks the barrier.
    let b = m
        .barrier_with_action(2, barrier_action_fails, None)
        .unwrap();
    let other = b.clone();
    let waiter = std::thread::spawn(move || other.wait(LONG));
    std::thread::sleep(SHORT);
    let mine = b.wait(LONG);
    let theirs = waiter.join().unwrap();
    let (tripped, released) = if mine.as_ref().is_err_and(|e| e.is("RuntimeError")) {
        (mine, theirs)
    } else {
        (theirs, mine)
    };
    assert!(tripped.unwrap_err().is("RuntimeError"));
    assert!(released.unwrap_err().is("threading.BrokenBarrierError"));
    assert!(b.broken().unwrap());
    drop(b);
    // An action must take no arguments.
    let wrong = postcard::to_allocvec(&mp_context::FnRef::new(square)).unwrap();
    let mut kw = mp_value::Dict::new();
    kw.insert("action", mp_value::Value::Bytes(wrong.into()))
        .unwrap();
    let err = m
        .create_kw::<BarrierProxy>("Barrier", &(2,), kw)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote(t) if t.contains("TypeError") && t.contains("fn(())")),
        "{err:?}"
    );
    assert_no_objects(&m);
}

fn child_condition((c, counter): (ConditionProxy, ValueProxy<i64>)) {
    c.acquire().unwrap();
    counter.set(&(counter.get().unwrap() + 1)).unwrap();
    c.notify_all().unwrap();
    // Wait to be told to finish.
    let done = c
        .wait_for(|| counter.get().unwrap() < 0, Some(Duration::from_secs(60)))
        .unwrap();
    assert!(done);
    c.release().unwrap();
}

fn sync_types_from_two_processes() {
    for method in ["forkserver", "fork"] {
        let c = ctx(method);
        let m = SyncManager::started(&c).unwrap();
        // A lock taken in a child is released by the parent; a second
        // release is an error (MGR-02).
        let lock = m.lock().unwrap();
        let step = m.queue::<String>(0).unwrap();
        let p = c.process(child_lock, (lock.clone(), step.clone()));
        assert_eq!(run(&p), Some(0), "{method}: lock child");
        assert_eq!(step.get().unwrap(), "acquired");
        assert!(lock.locked().unwrap());
        lock.release().unwrap();
        assert!(lock.release().unwrap_err().is("RuntimeError"));
        // The parent's only proxy moves into the child: under fork too,
        // the child's copy holds the object (the fork transfer).
        assert_eq!(run(&c.process(child_rlock, m.rlock().unwrap())), Some(0));
        // Event (MGR-01).
        let e = m.event().unwrap();
        e.set().unwrap();
        assert_eq!(run(&c.process(child_event, e.clone())), Some(0));
        assert!(!e.is_set().unwrap());
        // Queue (MGR-08).
        let q = m.queue::<i64>(2).unwrap();
        q.put(&5).unwrap();
        q.put(&6).unwrap();
        assert_eq!(run(&c.process(child_queue, q.clone())), Some(0));
        assert!(q.empty().unwrap() && !q.full().unwrap());
        // Containers (MGR-09..13).
        let d = m.dict_from(&[("a".to_string(), 1)]).unwrap();
        let l = m.list_from(&[1]).unwrap();
        let v = m.value("i", &1_i64).unwrap();
        let ns = m.namespace().unwrap();
        ns.set("name", &"parent").unwrap();
        let args = (d.clone(), l.clone(), v.clone(), ns.clone());
        assert_eq!(run(&c.process(child_containers, args)), Some(0));
        assert_eq!(d.get_item(&"from child".into()).unwrap(), 2);
        assert_eq!(l.copy().unwrap(), [2, 3]);
        assert_eq!(v.get().unwrap(), 2);
        assert!(ns.get::<bool>("child").unwrap());
        // Semaphores, Array, set.
        let sem = m.semaphore(1).unwrap();
        let bsem = m.bounded_semaphore(1).unwrap();
        let arr = m.array("i", &[0_i64, 1]).unwrap();
        let set = m.set(&[1_i64, 2]).unwrap();
        let args = (sem.clone(), bsem.clone(), arr.clone(), set.clone());
        assert_eq!(run(&c.process(child_semaphores, args)), Some(0));
        assert!(!sem.acquire_timeout(false, None).unwrap());
        sem.release().unwrap();
        bsem.release().unwrap();
        assert!(bsem.release().unwrap_err().is("ValueError"));
        assert_eq!(arr.get(0).unwrap(), 7);
        assert!(set.contains(&3).unwrap());
        drop((sem, bsem, arr, set));
        // A barrier of five: four processes and the parent, 3 rounds.
        let b = m.barrier(5, None).unwrap();
        let procs: Vec<_> = (0..4)
            .map(|_| c.process(child_barrier, (b.clone(), 3)))
            .collect();
        for p in &procs {
            p.start().unwrap();
        }
        for _ in 0..3 {
            b.wait(Some(Duration::from_secs(60))).unwrap();
        }
        for p in &procs {
            p.join(LONG).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(0));
        }
        assert_eq!(b.n_waiting().unwrap(), 0);
        assert!(!b.broken().unwrap());
        // A condition with three processes.
        let cond = m.condition(None).unwrap();
        let counter = m.value("i", &0_i64).unwrap();
        let procs: Vec<_> = (0..3)
            .map(|_| c.process(child_condition, (cond.clone(), counter.clone())))
            .collect();
        for p in &procs {
            p.start().unwrap();
        }
        cond.acquire().unwrap();
        assert!(
            cond.wait_for(
                || counter.get().unwrap() == 3,
                Some(Duration::from_secs(60))
            )
            .unwrap()
        );
        counter.set(&-1).unwrap();
        cond.notify_all().unwrap();
        cond.release().unwrap();
        for p in &procs {
            p.join(LONG).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(0), "{method}: condition child");
        }
        drop((lock, step, e, q, d, l, v, ns, b, cond, counter));
        assert_no_objects(&m);
        m.shutdown().unwrap();
    }
}

// ----- managers under each start method, lifecycle -----

fn child_adds(d: DictProxy<String, i64>) {
    let n = d.get(&"n".into()).unwrap().unwrap_or(0);
    d.set_item(&"n".into(), &(n + 1)).unwrap();
}

fn manager_with_each_start_method() {
    for method in METHODS {
        let c = ctx(method);
        let m = SyncManager::new(&c);
        m.start().unwrap();
        assert!(matches!(
            m.start(),
            Err(Error::State("Already started server"))
        ));
        assert!(matches!(
            m.get_server(),
            Err(Error::State("Already started server"))
        ));
        let d = m.dict::<String, i64>().unwrap();
        for child in METHODS {
            assert_eq!(run(&ctx(child).process(child_adds, d.clone())), Some(0));
        }
        assert_eq!(d.get_item(&"n".into()).unwrap(), 3);
        drop(d);
        assert_no_objects(&m);
        let p = m.process().unwrap();
        m.shutdown().unwrap();
        m.shutdown().unwrap();
        // The server exited by itself, asked (MGR-27).
        assert_eq!(p.exitcode().unwrap(), Some(0), "{method}");
        assert!(matches!(
            m.start(),
            Err(Error::State("Manager has shut down"))
        ));
        assert!(matches!(
            m.dict::<i64, i64>(),
            Err(Error::State("Manager has shut down"))
        ));
    }
}

/// Sets a namespace attribute in the server process (MGR-35).
struct Init;
impl Initializer for Init {
    type Args = String;
    fn initialize(value: String) {
        INIT_VALUE.set(value).unwrap();
    }
}
static INIT_VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A type whose `new` reads what the initializer set.
#[derive(Default)]
struct Probe;

#[mp_manager::shared]
impl Probe {
    pub(crate) fn seen(&self) -> String {
        INIT_VALUE.get().cloned().unwrap_or_default()
    }
}

struct ProbeTypes;
impl Registrar for ProbeTypes {
    fn register(r: &mut Registry) {
        r.register_type::<Probe>("Probe");
    }
}

fn initializer_runs_in_the_server() {
    for method in ["spawn", "forkserver"] {
        let m = BaseManager::<ProbeTypes>::new(&ctx(method));
        m.start_with::<Init>("set by the initializer".into())
            .unwrap();
        let probe: ProbeProxy = m.create("Probe", &()).unwrap();
        assert_eq!(probe.seen().unwrap(), "set by the initializer");
        assert!(INIT_VALUE.get().is_none(), "ran in the parent");
        drop(probe);
        m.shutdown().unwrap();
    }
}

// ----- proxies that travel -----

fn child_uses_sent(q: QueueProxy<String>) {
    assert_eq!(q.get().unwrap(), "kept alive");
    q.put(&"done".into()).unwrap();
}

fn child_reads_stored(d: DictProxy<String, QueueProxy<i64>>) {
    // A proxy stored in the manager, used from another process.
    let q = d.get_item(&"q".into()).unwrap();
    q.put(&123).unwrap();
}

fn proxies_sent_to_other_processes() {
    for method in METHODS {
        let c = ctx(method);
        let m = SyncManager::started(&c).unwrap();
        // The parent's only proxy goes to the child as an argument (the
        // parent's copy is dropped as soon as it is sent): the serialized
        // copy keeps the object alive until the child has taken its own
        // reference (gh-119937).
        let q = m.queue::<String>(0).unwrap();
        q.put(&"kept alive".into()).unwrap();
        let p = c.process(child_uses_sent, q);
        p.start().unwrap();
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0), "{method}");
        // The object is gone now that nobody holds it.
        assert_no_objects(&m);
        // A proxy inside a stored value.
        let d = m.dict::<String, QueueProxy<i64>>().unwrap();
        let inner = m.queue::<i64>(0).unwrap();
        d.set_item(&"q".into(), &inner).unwrap();
        assert_eq!(run(&c.process(child_reads_stored, d.clone())), Some(0));
        assert_eq!(inner.get().unwrap(), 123);
        drop((d, inner));
        assert_no_objects(&m);
        m.shutdown().unwrap();
    }
}

// ----- remote manager over TCP -----

struct RemoteTypes;
impl Registrar for RemoteTypes {
    fn register(_: &mut Registry) {}
}

fn remote_client((address, key): (String, Vec<u8>)) {
    // CPython's `_TestRemoteManager`: a manager class that knows
    // `get_queue` only by name, then connect().
    let address: Address = address.parse().unwrap();
    let m = BaseManager::<RemoteTypes>::new(&get_context(None).unwrap())
        .with_address(address)
        .with_authkey(key);
    m.connect().unwrap();
    let q: QueueProxy<mp_value::Value> = m.create("get_queue", &()).unwrap();
    for v in [
        mp_value::Value::from("hello world"),
        mp_value::Value::None,
        mp_value::Value::Bool(true),
        mp_value::Value::Float(2.25),
        mp_value::Value::from("hall\u{e5} v\u{e4}rld"),
        mp_value::Value::from(b"\x19\x8e".to_vec()),
    ] {
        q.put(&v).unwrap();
    }
    // A wrong key is refused.
    let bad = BaseManager::<RemoteTypes>::new(&get_context(None).unwrap())
        .with_address(m.address().unwrap())
        .with_authkey(b"wrong".to_vec());
    assert!(matches!(bad.connect(), Err(Error::Connection { .. })));
}

fn remote_manager_over_tcp() {
    let queue = std::sync::Arc::new(queue_object());
    let mut registry = Registry::new();
    registry.register_shared("get_queue", queue);
    let key = vec![7u8; 32];
    let server = BaseManager::<RemoteTypes>::new(&ctx("spawn"))
        .with_address("127.0.0.1:0".parse().unwrap())
        .with_authkey(key.clone())
        .get_server_with(registry)
        .unwrap();
    let address = server.address().clone();
    assert!(matches!(address, Address::Inet(a) if a.port() != 0));
    let handle = server.handle();
    let serving = std::thread::spawn(move || server.serve_forever());
    for method in ["spawn", "fork"] {
        let p = ctx(method).process(remote_client, (address.to_string(), key.clone()));
        assert_eq!(run(&p), Some(0), "{method}");
    }
    let local = BaseManager::<RemoteTypes>::new(&ctx("spawn"))
        .with_address(address)
        .with_authkey(key);
    local.connect().unwrap();
    let q: QueueProxy<mp_value::Value> = local.create("get_queue", &()).unwrap();
    assert_eq!(q.qsize().unwrap(), 12);
    assert_eq!(q.get().unwrap(), mp_value::Value::from("hello world"));
    drop(q);
    assert_no_objects(&local);
    handle.shutdown();
    serving.join().unwrap().unwrap();
}

/// A queue object for `register_shared` (the server side of the remote
/// example): made through the registry's own constructor.
fn queue_object() -> impl mp_manager::Shared {
    QueueHolder(std::sync::Mutex::new(std::collections::VecDeque::new()))
}

/// A minimal queue with the methods the remote test calls.
struct QueueHolder(std::sync::Mutex<std::collections::VecDeque<mp_value::Value>>);

impl mp_manager::Shared for QueueHolder {
    fn type_name(&self) -> &str {
        "queue.Queue"
    }
    fn methods(&self) -> Vec<&'static str> {
        vec!["get", "put", "qsize"]
    }
    fn call(
        &self,
        method: &str,
        args: mp_manager::Args,
        _: &mp_manager::Call<'_>,
    ) -> Result<mp_manager::Output, mp_manager::Raise> {
        let mut q = self.0.lock().unwrap();
        let out = match method {
            "put" => {
                let mut b = args.bind("put", &["item"])?;
                q.push_back(b.required(0)?);
                mp_value::Value::None
            }
            "get" => q
                .pop_front()
                .ok_or_else(mp_manager::Exception::queue_empty)?,
            _ => mp_value::Value::from(q.len()),
        };
        Ok(mp_manager::Output::Value(out))
    }
}

// ----- shutdown, dead clients, dead parents -----

fn child_blocks_in_get(q: QueueProxy<i64>) {
    // Blocks until the manager goes away, then fails.
    let r = q.get();
    assert!(r.is_err());
}

fn shutdown_with_clients_connected() {
    let c = ctx("forkserver");
    let m = SyncManager::started(&c).unwrap();
    let q = m.queue::<i64>(0).unwrap();
    let p = c.process(child_blocks_in_get, q.clone());
    p.start().unwrap();
    eventually("the child to connect", || m.debug_info().is_ok());
    std::thread::sleep(Duration::from_millis(200));
    let server = m.process().unwrap();
    let t = Instant::now();
    m.shutdown().unwrap();
    // Asked, it ended by itself: no terminate after shutdown_timeout.
    assert_eq!(server.exitcode().unwrap(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(30));
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    // Calls now fail clearly.
    assert!(q.qsize().is_err());
}

fn child_holds_and_blocks((m_address, key): (String, Vec<u8>)) {
    let m = SyncManager::new(&get_context(None).unwrap())
        .with_address(m_address.parse().unwrap())
        .with_authkey(key);
    m.connect().unwrap();
    let held: Vec<_> = (0..3).map(|_| m.dict::<i64, i64>().unwrap()).collect();
    held[0].set_item(&1, &1).unwrap();
    let q = m.queue::<i64>(0).unwrap();
    // Blocks in a call until killed.
    q.get().unwrap();
}

fn a_killed_client_releases_its_references() {
    let c = ctx("forkserver");
    let m = SyncManager::started(&c).unwrap();
    let address = m.address().unwrap().to_string();
    let p = c.process(child_holds_and_blocks, (address, m.authkey().to_vec()));
    p.start().unwrap();
    eventually("the child to create its objects", || {
        m.number_of_objects().unwrap() >= 4
    });
    p.kill().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(-9));
    // Its session ended with its connections: everything it held is gone,
    // and the server still serves.
    assert_no_objects(&m);
    let d = m.dict::<i64, i64>().unwrap();
    d.set_item(&1, &2).unwrap();
    drop(d);
    m.shutdown().unwrap();
}

fn manager_parent_role(method: &str) -> ! {
    let m = SyncManager::started(&ctx(method)).unwrap();
    let pid = m.process().unwrap().pid().unwrap().unwrap();
    println!("{pid}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    std::process::exit(0);
}

/// Starts a manager, prints its pid, and exits without dropping it: the
/// exit handler must stop the manager (or this process would wait for it
/// forever).
fn manager_forgotten_role() -> ! {
    let m = SyncManager::started(&ctx("fork")).unwrap();
    let pid = m.process().unwrap().pid().unwrap().unwrap();
    println!("{pid}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::mem::forget(m);
    mp_context::exit(0);
}

fn gone_or_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

/// Runs this binary in `role`, which starts a manager and prints its pid
/// first; gives the process and that pid.
fn spawn_role(role: &str) -> (std::process::Child, i32) {
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MP_MANAGER_TEST_ROLE", role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (parent, line.trim().parse().unwrap())
}

fn manager_exits_when_its_parent_is_killed() {
    for method in METHODS {
        let (mut parent, pid) = spawn_role(&format!("manager-parent:{method}"));
        assert!(!gone_or_zombie(pid));
        parent.kill().unwrap(); // SIGKILL: no exit handler runs
        parent.wait().unwrap();
        let t = Instant::now();
        eventually("the orphaned manager to exit", || gone_or_zombie(pid));
        println!(
            "  {method}: manager {pid} gone {:.0} ms after its parent",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
}

fn exiting_without_dropping_the_manager_stops_it() {
    let (mut parent, pid) = spawn_role("manager-forgotten");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(parent.try_wait(), Ok(Some(_))) {
        if Instant::now() > deadline {
            // Leave nothing behind: the two would wait for each other.
            let _ = parent.kill();
            let _ = parent.wait();
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
            panic!("the process that forgot its manager did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eventually("its manager to exit", || gone_or_zombie(pid));
}

fn sigint_leaves_a_started_manager_serving() {
    for method in METHODS {
        let m = SyncManager::started(&ctx(method)).unwrap();
        let d = m.dict::<String, i64>().unwrap();
        let server = m.process().unwrap();
        // What Ctrl-C in the terminal sends the whole process group.
        server.interrupt().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(server.is_alive().unwrap(), "{method}");
        d.set_item(&"k".into(), &1).unwrap();
        assert_eq!(d.get_item(&"k".into()).unwrap(), 1);
        drop(d);
        m.shutdown().unwrap();
        // It was asked, and exited by itself.
        assert_eq!(server.exitcode().unwrap(), Some(0), "{method}");
    }
}

fn proxies_to_a_dead_manager_fail_clearly() {
    let c = ctx("fork");
    let m = SyncManager::started(&c).unwrap();
    let d = m.dict::<i64, i64>().unwrap();
    let server = m.process().unwrap();
    server.kill().unwrap();
    server.join(LONG).unwrap();
    let err = d.len().unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    let untyped: &Proxy = mp_manager::ProxyType::proxy(&d);
    assert!(untyped.call::<usize>("__len__", &()).is_err());
    drop(d);
    // Nothing of this process keeps its listening socket open (the parent
    // bound it): a new client is refused at once, not left in a backlog.
    let t = Instant::now();
    let r = mp_conn::ClientBuilder::new()
        .authkey(m.authkey().to_vec())
        .connect(&m.address().unwrap());
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(10));
    m.shutdown().unwrap();
}

/// A manager that dies before it ever serves: its clients fail, they do
/// not wait.
fn a_manager_that_dies_at_once_fails_its_clients() {
    for method in METHODS {
        let c = ctx(method);
        let m = SyncManager::started(&c).unwrap();
        let server = m.process().unwrap();
        server.kill().unwrap();
        server.join(LONG).unwrap();
        let t = Instant::now();
        assert!(m.dict::<i64, i64>().is_err(), "{method}");
        assert!(t.elapsed() < Duration::from_secs(10), "{method}");
        m.shutdown().unwrap();
    }
}

// ----- the manager's Pool -----

fn square(n: u64) -> u64 {
    n * n
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn worker_pid(_: u64) -> i32 {
    std::thread::sleep(Duration::from_millis(20));
    std::process::id() as i32
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn killed_by_sigkill(_: ()) -> u64 {
    let me = rustix::process::getpid();
    let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn fails_on_three(n: u64) -> u64 {
    assert!(n != 3, "three is refused (expected by the test)");
    n
}

/// What a second process does with the pool proxy it was sent.
fn child_uses_pool(pool: PoolProxy) {
    assert_eq!(pool.map(square, 0..20u64, Some(3)).unwrap()[19], 361);
    assert_eq!(pool.starmap(add, [(1, 2), (3, 4)], None).unwrap(), [3, 7]);
    assert_eq!(pool.apply(square, &12).unwrap(), 144);
    let r = pool.apply_async(square, &5).unwrap();
    assert_eq!(r.get(LONG).unwrap(), 25);
    let mut got: Vec<u64> = pool
        .imap_unordered(square, 0..10u64, 2)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..10).map(|n| n * n).collect::<Vec<_>>());
}

fn pool_through_the_manager_from_two_processes() {
    for method in METHODS {
        let c = ctx(method);
        let m = SyncManager::started(&c).unwrap();
        let pool = m.pool(Some(2)).unwrap();
        assert_eq!(pool.apply(square, &9).unwrap(), 81, "{method}");
        assert_eq!(
            pool.map(square, 0..100u64, None).unwrap(),
            (0..100).map(|n| n * n).collect::<Vec<_>>()
        );
        let r = pool.apply_async(sleep_ms, &200).unwrap();
        let all = pool.map_async(square, [1u64, 2, 3], None).unwrap();
        let child = c.process(child_uses_pool, pool.clone());
        child.start().unwrap();
        assert_eq!(r.get(LONG).unwrap(), 200);
        assert!(r.ready().unwrap() && r.successful().unwrap());
        assert!(r.wait(LONG).unwrap());
        assert_eq!(all.get(LONG).unwrap(), [1, 4, 9]);
        let ordered: Vec<u64> = pool
            .imap(square, 0..10u64, 3)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ordered, (0..10).map(|n| n * n).collect::<Vec<_>>());
        child.join(LONG).unwrap();
        assert_eq!(child.exitcode().unwrap(), Some(0), "{method}");

        // A task's error comes back with its kind, at its place.
        let items: Vec<_> = pool.imap(fails_on_three, 0..5u64, 1).unwrap().collect();
        assert!(
            matches!(
                items[3].as_ref().unwrap_err().pool_error(),
                Some(mp_pool::Error::Panicked { .. })
            ),
            "{items:?}"
        );
        assert_eq!(*items[4].as_ref().unwrap(), 4);
        let slow = pool.apply_async(sleep_ms, &2000).unwrap();
        let early = slow.get(Some(SHORT)).unwrap_err();
        assert!(
            matches!(early, Error::Pool(mp_pool::Error::Timeout)),
            "{early:?}"
        );
        assert!(matches!(
            slow.successful(),
            Err(Error::Pool(mp_pool::Error::NotReady))
        ));
        assert!(matches!(
            pool.join(),
            Err(Error::Pool(mp_pool::Error::StillRunning))
        ));
        pool.close().unwrap();
        assert!(matches!(
            pool.apply(square, &1),
            Err(Error::Pool(mp_pool::Error::NotRunning(
                mp_pool::PoolState::Closed
            )))
        ));
        pool.join().unwrap();
        assert_eq!(slow.get(LONG).unwrap(), 2000);
        drop((pool, r, all, slow));
        assert_no_objects(&m);
        m.shutdown().unwrap();
    }
}

fn a_killed_pool_worker_gives_the_client_worker_lost() {
    let m = SyncManager::started(&ctx("fork")).unwrap();
    let pool = m.pool(Some(1)).unwrap();
    let err = pool.apply(killed_by_sigkill, &()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pool(mp_pool::Error::WorkerLost { exitcode: -9, .. })
        ),
        "{err:?}"
    );
    let r = pool.apply_async(killed_by_sigkill, &()).unwrap();
    assert!(matches!(
        r.get(LONG),
        Err(Error::Pool(mp_pool::Error::WorkerLost { .. }))
    ));
    assert!(!r.successful().unwrap());
    // The pool replaced the worker and goes on.
    assert_eq!(pool.apply(square, &3).unwrap(), 9);
    // What a client that is not a Rust PoolProxy might send: refused with
    // a TypeError each, and the pool goes on.
    use mp_manager::ProxyType;
    use mp_value::Value;
    let raw = pool.proxy();
    let garbage = Value::Bytes(b"not an FnRef".to_vec().into());
    for (method, args) in [
        (
            "apply",
            vec![Value::from("len"), Value::Tuple(Default::default())],
        ),
        (
            "apply",
            vec![garbage.clone(), Value::Bytes(Vec::new().into())],
        ),
        ("map", vec![garbage.clone(), Value::from(3)]),
        ("imap", vec![garbage, Value::List(Default::default())]),
    ] {
        let err = raw
            .call::<Value>(method, &Value::Tuple(args.into()))
            .unwrap_err();
        assert!(err.is("TypeError"), "{method}: {err:?}");
    }
    let mut kw = mp_value::Dict::new();
    kw.insert("callback", Value::from(1)).unwrap();
    let f = Value::Bytes(
        postcard::to_allocvec(&mp_context::FnRef::new(square))
            .unwrap()
            .into(),
    );
    let err = raw
        .call_kw::<Value>("apply_async", &(f, Value::Bytes(Vec::new().into())), kw)
        .unwrap_err();
    assert!(err.is("TypeError"), "{err:?}");
    assert_eq!(pool.apply(square, &4).unwrap(), 16);
    drop((pool, r));
    assert_no_objects(&m);
}

fn the_pool_ends_with_the_manager() {
    let m = SyncManager::started(&ctx("fork")).unwrap();
    let pool = m.pool(Some(2)).unwrap();
    let mut pids: Vec<i32> = pool.map(worker_pid, 0..40u64, Some(1)).unwrap();
    pids.sort_unstable();
    pids.dedup();
    assert!(!pids.is_empty() && pids.iter().all(|p| !gone_or_zombie(*p)));
    let _busy = pool.apply_async(sleep_ms, &30_000).unwrap();
    m.shutdown().unwrap();
    for pid in pids {
        eventually("the manager's pool workers to exit", || gone_or_zombie(pid));
    }
}

fn main() {
    mp_context::init();
    if let Ok(role) = std::env::var("MP_MANAGER_TEST_ROLE") {
        if let Some(method) = role.strip_prefix("manager-parent:") {
            manager_parent_role(method);
        }
        if role == "manager-forgotten" {
            manager_forgotten_role();
        }
        eprintln!("unknown role {role:?}");
        std::process::exit(2);
    }
    let _ = SHORT;
    let tests: &[(&str, fn())] = &[
        (
            "sync_types_from_two_processes",
            sync_types_from_two_processes,
        ),
        (
            "manager_with_each_start_method",
            manager_with_each_start_method,
        ),
        (
            "initializer_runs_in_the_server",
            initializer_runs_in_the_server,
        ),
        (
            "proxies_sent_to_other_processes",
            proxies_sent_to_other_processes,
        ),
        ("remote_manager_over_tcp", remote_manager_over_tcp),
        (
            "shutdown_with_clients_connected",
            shutdown_with_clients_connected,
        ),
        (
            "a_killed_client_releases_its_references",
            a_killed_client_releases_its_references,
        ),
        (
            "manager_exits_when_its_parent_is_killed",
            manager_exits_when_its_parent_is_killed,
        ),
        (
            "proxies_to_a_dead_manager_fail_clearly",
            proxies_to_a_dead_manager_fail_clearly,
        ),
        (
            "a_manager_that_dies_at_once_fails_its_clients",
            a_manager_that_dies_at_once_fails_its_clients,
        ),
        (
            "barrier_actions_run_in_the_manager",
            barrier_actions_run_in_the_manager,
        ),
        (
            "sigint_leaves_a_started_manager_serving",
            sigint_leaves_a_started_manager_serving,
        ),
        (
            "exiting_without_dropping_the_manager_stops_it",
            exiting_without_dropping_the_manager_stops_it,
        ),
        (
            "pool_through_the_manager_from_two_processes",
            pool_through_the_manager_from_two_processes,
        ),
        (
            "a_killed_pool_worker_gives_the_client_worker_lost",
            a_killed_pool_worker_gives_the_client_worker_lost,
        ),
        (
            "the_pool_ends_with_the_manager",
            the_pool_ends_with_the_manager,
        ),
    ];
    // Panics the tests cause on purpose say so; only others are printed.
    mp_testsupport::harness::silence_expected_panics("expected by the test");
    let passed = mp_testsupport::harness::run_tests(tests);
    mp_context::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(passed));
}
