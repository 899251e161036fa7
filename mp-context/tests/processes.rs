//! Cross-process tests of `mp-context`, after CPython's `_TestProcess`,
//! `TestStartMethod` and the forkserver tests (FS-xx, CTX-xx in the
//! project's behaviour list), in our own words.
//!
//! A `harness = false` target: `main` calls `mp_context::init()` first, so
//! that this binary can serve as a spawned child and as the fork server,
//! and nothing else runs while the fork tests fork. Prints libtest's
//! summary line so the workspace's test driver counts it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_context::{Error, Process, StartMethod, get_context};
use mp_reduction::Fd;

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];
const LONG: Option<Duration> = Some(Duration::from_secs(60));

fn ctx(m: &str) -> mp_context::Context {
    get_context(Some(m)).unwrap()
}

fn run(p: &Process) -> Option<i32> {
    p.start().unwrap();
    p.join(LONG).unwrap();
    p.exitcode().unwrap()
}

fn nothing(_: ()) {}
fn exit_with(code: i32) {
    mp_context::exit(code)
}
fn panics(_: ()) {
    panic!("this panic is expected by the test");
}
/// [`panics`] with this child's stderr sent to /dev/null first: where only
/// the exit code is checked, the message and backtrace (RUST_BACKTRACE is
/// often set) would only clutter a passing run's output.
fn panics_quietly(_: ()) {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    panics(())
}
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn exit_codes() {
    for m in METHODS {
        let c = ctx(m);
        assert_eq!(run(&c.process(nothing, ())), Some(0), "{m}: return");
        assert_eq!(run(&c.process(exit_with, 7)), Some(7), "{m}: exit(7)");
        assert_eq!(run(&c.process(exit_with, 0)), Some(0), "{m}: exit(0)");
        assert_eq!(run(&c.process(panics_quietly, ())), Some(1), "{m}: panic");
        for (sig, code) in [("term", -15), ("kill", -9)] {
            let p = c.process(sleep_ms, 60_000);
            p.start().unwrap();
            if sig == "term" {
                p.terminate().unwrap()
            } else {
                p.kill().unwrap()
            }
            p.join(LONG).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(code), "{m}: {sig}");
        }
    }
}

fn join_with_an_endless_timeout() {
    for m in METHODS {
        let p = ctx(m).process(sleep_ms, 50);
        p.start().unwrap();
        p.join(Some(Duration::MAX)).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
    }
}

fn join_timeout_and_lifecycle() {
    for m in METHODS {
        let p = ctx(m).process(sleep_ms, 60_000);
        assert!(!p.is_alive().unwrap());
        assert_eq!(p.exitcode().unwrap(), None);
        assert_eq!(p.pid().unwrap(), None);
        assert!(matches!(p.join(None), Err(Error::NotStarted(_))));
        assert!(matches!(p.sentinel(), Err(Error::NotStarted(_))));
        p.start().unwrap();
        assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
        assert!(p.pid().unwrap().is_some());
        assert!(
            mp_context::active_children()
                .iter()
                .any(|c| c.pid().unwrap() == p.pid().unwrap())
        );
        let t0 = Instant::now();
        p.join(Some(Duration::from_millis(200))).unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{m}: join(timeout) returned late"
        );
        assert!(
            p.is_alive().unwrap(),
            "{m}: still alive after join(timeout)"
        );
        assert_eq!(p.exitcode().unwrap(), None);
        // The sentinel is not ready while the child runs, ready after.
        let s = p.sentinel().unwrap();
        assert!(!readable(&s, Duration::ZERO));
        assert!(matches!(p.close(), Err(Error::StillRunning)));
        p.terminate().unwrap();
        assert!(readable(&s, Duration::from_secs(60)));
        p.join(None).unwrap();
        assert!(!p.is_alive().unwrap());
        assert!(
            !mp_context::active_children()
                .iter()
                .any(|c| c.pid().ok().flatten() == p.pid().ok().flatten())
        );
        p.close().unwrap();
        p.close().unwrap();
        assert!(matches!(p.is_alive(), Err(Error::Closed)));
        assert!(matches!(p.join(None), Err(Error::Closed)));
        assert!(matches!(p.terminate(), Err(Error::Closed)));
        assert!(matches!(p.exitcode(), Err(Error::Closed)));
    }
}

/// A join blocked in one thread does not hold up a terminate from another,
/// and a sentinel asked for after the child was reaped is ready at once.
fn terminate_during_join_and_late_sentinel() {
    for m in METHODS {
        let p = ctx(m).process(sleep_ms, 60_000);
        p.start().unwrap();
        let joiner = {
            let p = p.clone();
            std::thread::spawn(move || p.join(None))
        };
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        p.terminate().unwrap();
        joiner.join().unwrap().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{m}: terminate waited for join"
        );
        assert_eq!(p.exitcode().unwrap(), Some(-15), "{m}");
        let s = p.sentinel().unwrap();
        // Under forkserver the status pipe reaches end of file once the
        // server has closed its end, a moment after the status it wrote
        // (which the join consumed): wait for it rather than poll once.
        assert!(
            readable(&s, Duration::from_secs(10)),
            "{m}: late sentinel not ready"
        );
        // Signals to a reaped child are no-ops, not errors.
        p.kill().unwrap();
    }
}

fn readable(fd: &impl AsFd, t: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: t.subsec_nanos() as i64,
    };
    rustix::event::poll(&mut fds, Some(&ts)).unwrap() > 0
}

fn many_children() {
    for m in METHODS {
        let c = ctx(m);
        let procs: Vec<_> = (0..100).map(|_| c.process(nothing, ())).collect();
        for p in &procs {
            p.start().unwrap();
        }
        for p in &procs {
            p.join(LONG).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
        }
        let procs: Vec<_> = (0..100).map(|_| c.process(sleep_ms, 60_000)).collect();
        for p in &procs {
            p.start().unwrap();
        }
        for p in &procs {
            p.terminate().unwrap();
        }
        for p in &procs {
            p.join(LONG).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(-15), "{m}");
        }
    }
}

/// The child checks that it was given exactly these fds (plus stdio).
#[derive(serde::Serialize, serde::Deserialize)]
struct FdCheck {
    fds: Vec<Fd>,
    expect_extra: usize,
}

fn open_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn check_fds(arg: FdCheck) {
    // Each fd given must work: write a byte to its peer.
    for fd in &arg.fds {
        rustix::io::write(fd, b"x").unwrap();
    }
    // stdio, the fds given, the parent sentinel; minus the read_dir fd.
    let n = open_fds().len() - 1;
    let expected = 3 + arg.fds.len() + arg.expect_extra;
    if n != expected {
        eprintln!("child has {n} fds, expected {expected}: {:?}", open_fds());
        mp_context::exit(3);
    }
}

fn child_sees_exactly_its_fds() {
    // An unrelated socket the children must not get.
    let (_unrelated, _unrelated_peer) = std::os::unix::net::UnixStream::pair().unwrap();
    for (m, extra) in [("spawn", 1), ("forkserver", 2)] {
        let pairs: Vec<_> = (0..5)
            .map(|_| std::os::unix::net::UnixStream::pair().unwrap())
            .collect();
        let (ours, peers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let fds = ours
            .into_iter()
            .map(|s| Fd::from(OwnedFd::from(s)))
            .collect();
        // A sibling alive at the same time, holding fds of its own.
        let sibling = ctx(m).process(sleep_ms, 60_000);
        sibling.start().unwrap();
        let p = ctx(m).process(
            check_fds,
            FdCheck {
                fds,
                expect_extra: extra,
            },
        );
        assert_eq!(
            run(&p),
            Some(0),
            "{m}: the child saw other fds than it was given"
        );
        for peer in &peers {
            let mut b = [0u8; 1];
            assert_eq!(rustix::io::read(peer, &mut b).unwrap(), 1);
        }
        sibling.kill().unwrap();
        sibling.join(LONG).unwrap();
    }
}

fn too_many_fds() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    for (m, n) in [("spawn", 254), ("forkserver", 252)] {
        let fds = (0..n)
            .map(|_| Fd::from(a.as_fd().try_clone_to_owned().unwrap()))
            .collect();
        let p = ctx(m).process(
            check_fds,
            FdCheck {
                fds,
                expect_extra: 0,
            },
        );
        let err = p.start().unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooManyFds { .. }
                    | Error::ForkServer(mp_forkserver::Error::TooManyFds { .. })
            ),
            "{m}: {err:?}"
        );
        assert!(err.to_string().contains("too many fds"), "{err}");
        // Refused before anything started: the process can still start
        // with fewer fds? No: it holds its arguments; a new one with few
        // fds works.
        let fds = vec![Fd::from(a.as_fd().try_clone_to_owned().unwrap())];
        let p = ctx(m).process(
            check_fds,
            FdCheck {
                fds,
                expect_extra: if m == "spawn" { 1 } else { 2 },
            },
        );
        assert_eq!(run(&p), Some(0), "{m}");
    }
}

fn forkserver_restarts_after_sigkill() {
    let c = ctx("forkserver");
    assert_eq!(run(&c.process(nothing, ())), Some(0));
    let server = mp_forkserver::ForkServer::global()
        .pid()
        .expect("a server runs");
    let before = c.process(sleep_ms, 500);
    before.start().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let after = c.process(nothing, ());
    assert_eq!(run(&after), Some(0));
    assert_ne!(
        mp_forkserver::ForkServer::global().pid(),
        Some(server),
        "a new server was started"
    );
    before.join(LONG).unwrap();
    // 0 if the old server lived long enough to report, 255 if the status
    // pipe hit EOF when it died (CPython's FS-02 accepts both).
    let code = before.exitcode().unwrap();
    assert!(matches!(code, Some(0) | Some(255)), "{code:?}");
}

fn forkserver_exits_with_its_parent() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MP_CONTEXT_TEST_ROLE", "forkserver-parent")
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let pid: i32 = text.lines().last().unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Gone, or a zombie waiting for a reaper that is not ours.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        match stat {
            Err(_) => break,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                break;
            }
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "fork server {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn preload_hook() {
    // Runs in the (new) server; children inherit its effect.
    PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
}
static PRELOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
fn check_preloaded(_: ()) {
    if !PRELOADED.load(std::sync::atomic::Ordering::Relaxed) {
        mp_context::exit(4);
    }
}

fn forkserver_preload_and_auth() {
    mp_context::set_forkserver_preload(preload_hook);
    let server = mp_forkserver::ForkServer::global();
    server.stop();
    assert_eq!(
        run(&ctx("forkserver").process(check_preloaded, ())),
        Some(0)
    );
    // A client with a wrong key is refused, and the server survives it.
    let address = server.address().unwrap();
    let key = server.authkey().unwrap();
    assert_eq!(key.len(), 32);
    let mut bad = key;
    bad[0] ^= 1;
    let connect = |key: &[u8]| {
        mp_conn::ClientBuilder::new()
            .authkey(key.to_vec())
            .connect(&mp_conn::Address::Unix(address.clone()))
    };
    let err = connect(&bad).unwrap_err();
    assert!(matches!(err, mp_conn::Error::Authentication(_)), "{err:?}");
    // The right key passes; a client that then sends no request is dropped.
    drop(connect(&key).unwrap());
    let mode = std::fs::metadata(&address).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert_eq!(run(&ctx("forkserver").process(nothing, ())), Some(0));
    // Fork and spawn children do not see the server's preload.
    assert_eq!(run(&ctx("spawn").process(check_preloaded, ())), Some(4));
}

/// Clients that connect to the fork server and stay silent, one in the
/// middle of its handshake and one (holding the key) after it, must not
/// stall the server: children still start and their exits are still
/// reported promptly (not after the server's 10 s client timeout).
fn forkserver_serves_beside_silent_clients() {
    let c = ctx("forkserver");
    assert_eq!(run(&c.process(nothing, ())), Some(0));
    let server = mp_forkserver::ForkServer::global();
    let address = server.address().expect("a server runs");
    let key = server.authkey().expect("a server runs");
    let mut silent = std::os::unix::net::UnixStream::connect(&address).unwrap();
    // The server's challenge arriving shows it took this client and now
    // waits for its answer, which never comes.
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut challenge = [0u8; 4];
    std::io::Read::read_exact(&mut silent, &mut challenge).expect("the server's challenge");
    for authenticated_too in [false, true] {
        // This one knows the key, passes the handshake, and then sends no
        // request.
        let no_request = authenticated_too.then(|| {
            mp_conn::ClientBuilder::new()
                .authkey(key.to_vec())
                .connect(&mp_conn::Address::Unix(address.clone()))
                .unwrap()
        });
        for code in [7, 0] {
            let t0 = Instant::now();
            let p = c.process(exit_with, code);
            p.start().unwrap();
            p.join(Some(Duration::from_secs(30))).unwrap();
            let elapsed = t0.elapsed();
            assert_eq!(p.exitcode().unwrap(), Some(code), "exit not reported");
            assert!(
                elapsed < Duration::from_secs(5),
                "a silent client held the server up: {elapsed:?}"
            );
        }
        drop(no_request);
    }
    drop(silent);
    assert_eq!(run(&c.process(exit_with, 3)), Some(3));
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Expect {
    name: String,
    identity: Vec<u32>,
    authkey: Vec<u8>,
    parent_pid: i32,
    method: String,
}

fn check_identity(e: Expect) {
    let me = mp_context::current_process();
    let parent = mp_context::parent_process().expect("a child has a parent");
    let ok = me.name() == e.name
        && me.identity() == e.identity.as_slice()
        && me.authkey() == e.authkey.as_slice()
        && parent.pid() == e.parent_pid
        && parent.name() == "MainProcess"
        && parent.is_alive()
        && mp_context::get_start_method(false).map(|m| m.name().to_string())
            == Some(e.method.clone());
    if !ok {
        eprintln!("child sees {me:?}, parent {parent:?}");
        mp_context::exit(5);
    }
}

fn identity_and_contexts() {
    assert!(mp_context::parent_process().is_none());
    let me = mp_context::current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.authkey().len(), 32);
    for m in METHODS {
        let p = ctx(m).process(
            check_identity,
            Expect {
                name: String::new(),
                identity: Vec::new(),
                authkey: me.authkey().to_vec(),
                parent_pid: std::process::id() as i32,
                method: m.to_string(),
            },
        );
        let id = p.identity();
        assert_eq!(p.name(), format!("Process-{}", id[0]));
        // The argument can only be built after the identity is known.
        let p = ctx(m)
            .process(
                check_identity,
                Expect {
                    name: "named".into(),
                    identity: vec![id[0] + 1],
                    authkey: me.authkey().to_vec(),
                    parent_pid: std::process::id() as i32,
                    method: m.to_string(),
                },
            )
            .with_name("named");
        assert_eq!(run(&p), Some(0), "{m}");
        assert_eq!(p.start_method().unwrap().map(StartMethod::name), Some(m));
    }
    // Contexts, after CPython's TestStartMethod.
    assert_eq!(
        mp_context::get_all_start_methods()[0],
        mp_context::DEFAULT_START_METHOD
    );
    assert!(mp_context::get_all_start_methods().contains(&StartMethod::Spawn));
    assert!(matches!(
        get_context(Some("nope")),
        Err(Error::UnknownStartMethod(_))
    ));
    assert!(matches!(
        ctx("fork").set_start_method(Some("spawn"), false),
        Err(Error::ConcreteContext)
    ));
    assert_eq!(ctx("spawn").get_context(None).unwrap(), ctx("spawn"));
    mp_context::set_start_method(None, true).unwrap();
    assert_eq!(mp_context::get_start_method(true), None);
    mp_context::set_start_method(Some("spawn"), false).unwrap();
    assert!(matches!(
        mp_context::set_start_method(Some("fork"), false),
        Err(Error::ContextAlreadySet)
    ));
    assert_eq!(
        mp_context::get_start_method(false),
        Some(StartMethod::Spawn)
    );
    mp_context::set_start_method(Some("fork"), true).unwrap();
    assert_eq!(get_context(None).unwrap().start_method(), StartMethod::Fork);
    mp_context::set_start_method(None, true).unwrap();
    assert_eq!(
        mp_context::get_start_method(false),
        Some(StartMethod::ForkServer)
    );
    assert!(mp_context::cpu_count().unwrap() >= 1);
}

fn daemonic_children_cannot_start_children(_: ()) {
    let p = get_context(Some("fork")).unwrap().process(nothing, ());
    if !matches!(p.start(), Err(Error::DaemonicChildren)) {
        mp_context::exit(6);
    }
}

fn daemon_flag() {
    for m in METHODS {
        let p = ctx(m)
            .process(daemonic_children_cannot_start_children, ())
            .with_daemon(true);
        assert!(p.daemon());
        assert_eq!(run(&p), Some(0), "{m}");
    }
}

/// Echoes what arrives on `conn`, doubled, then exits.
fn echo_doubled(mut conn: mp_conn::Connection) {
    let n: u64 = conn.recv().unwrap();
    conn.send(&(n * 2)).unwrap();
}

fn connection_as_argument() {
    for m in METHODS {
        let (mut ours, theirs) = mp_conn::pipe(true).unwrap();
        let p = ctx(m).process(echo_doubled, theirs);
        p.start().unwrap();
        ours.send(&21u64).unwrap();
        let sentinel = p.sentinel().unwrap();
        let ready = mp_conn::wait(&[&ours, &sentinel], Some(Duration::from_secs(60))).unwrap();
        assert!(ready.contains(&0), "{m}: {ready:?}");
        assert_eq!(ours.recv::<u64>().unwrap(), 42, "{m}");
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
        assert!(
            !mp_conn::wait(&[&sentinel], LONG).unwrap().is_empty(),
            "{m}: sentinel not ready after join"
        );
        // The parent's copy went with the process: the peer sees EOF.
        assert!(
            matches!(ours.recv::<u64>(), Err(mp_conn::Error::Eof)),
            "{m}"
        );
    }
}

/// A `pipe_pair` end holds two fds (read and write); the child checks it
/// got both (it can receive and answer) and answers.
fn pipe_pair_echo(mut conn: mp_conn::Connection) {
    assert!(conn.has_write_fd(), "the write fd travelled");
    let n: u64 = conn.recv().unwrap();
    conn.send(&(n * 2)).unwrap();
    // A second round, the other way about.
    conn.send(&"child first".to_string()).unwrap();
    let reply: String = conn.recv().unwrap();
    assert_eq!(reply, "parent second");
}

fn pipe_pair_as_argument() {
    for m in METHODS {
        let (mut ours, theirs) = mp_conn::pipe_pair().unwrap();
        let p = ctx(m).process(pipe_pair_echo, theirs);
        p.start().unwrap();
        ours.send(&21u64).unwrap();
        let sentinel = p.sentinel().unwrap();
        let ready = mp_conn::wait(&[&ours, &sentinel], Some(Duration::from_secs(60))).unwrap();
        assert!(ready.contains(&0), "{m}: {ready:?}");
        assert_eq!(ours.recv::<u64>().unwrap(), 42, "{m}");
        assert_eq!(ours.recv::<String>().unwrap(), "child first", "{m}");
        ours.send(&"parent second".to_string()).unwrap();
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
        // Both of the parent's copies went with the process: EOF.
        assert!(
            matches!(ours.recv::<u64>(), Err(mp_conn::Error::Eof)),
            "{m}"
        );
    }
}

/// Writes a pattern the parent checks into the bytes it was given.
fn fill_buffer(mut buf: mp_heap::SharedBuffer) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8 ^ 0x5a;
    }
}

fn shared_buffer_as_argument() {
    for m in METHODS {
        // The parent keeps its buffer and gives the child a second view of
        // the same bytes (what a received buffer is anyway).
        let buf = mp_heap::SharedBuffer::zeroed(10_000).unwrap();
        let p = ctx(m).process(fill_buffer, buf.share().unwrap());
        assert_eq!(run(&p), Some(0), "{m}");
        let ok = buf
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8 ^ 0x5a);
        assert!(ok, "{m}: the parent does not see what the child wrote");
    }
}

const INCREMENTS: u64 = 200;

/// Counts up a shared total under its lock, and its own slot of an array.
fn count_up((total, slots, me): (Arc<mp_heap::Value<u64>>, Arc<mp_heap::Array<u64>>, usize)) {
    for _ in 0..INCREMENTS {
        total.lock().unwrap().update(|n| n + 1);
        slots.lock().unwrap().update(me, |n| n + 1);
    }
}

fn values_and_arrays_add_up() {
    const CHILDREN: usize = 4;
    for m in METHODS {
        let total = Arc::new(mp_heap::Value::new(0_u64).unwrap());
        let slots = Arc::new(mp_heap::Array::<u64>::zeroed(CHILDREN).unwrap());
        let procs: Vec<_> = (0..CHILDREN)
            .map(|me| ctx(m).process(count_up, (total.clone(), slots.clone(), me)))
            .collect();
        for p in &procs {
            p.start().unwrap();
        }
        for p in &procs {
            p.join(LONG).unwrap();
            assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
        }
        assert_eq!(total.get().unwrap(), CHILDREN as u64 * INCREMENTS, "{m}");
        assert_eq!(slots.to_vec().unwrap(), vec![INCREMENTS; CHILDREN], "{m}");
    }
}

/// Runs this test binary again as `role` (see `main`), with stdin closed
/// and stdout/stderr captured; fails the test if it takes over two
/// minutes.
fn run_role(role: &str) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MP_CONTEXT_TEST_ROLE", role)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("role {role} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Exits 8 unless stdin is the null device and reads nothing.
fn check_stdin_is_null(_: ()) {
    let null = rustix::fs::stat("/dev/null").unwrap();
    let stdin = rustix::fs::fstat(rustix::stdio::stdin()).unwrap();
    let mut buf = [0u8; 16];
    let read = rustix::io::read(rustix::stdio::stdin(), &mut buf);
    if stdin.st_rdev != null.st_rdev || stdin.st_ino != null.st_ino || !matches!(read, Ok(0)) {
        eprintln!("child stdin is not the null device: {stdin:?}, read {read:?}");
        mp_context::exit(8);
    }
}

/// CPython's `_bootstrap` gives every child the null device as stdin: here
/// the parent's stdin is a pipe holding data, which no child may see.
fn child_stdin_is_the_null_device() {
    let saved = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3).unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    rustix::io::write(&w, b"for the parent only").unwrap();
    rustix::stdio::dup2_stdin(&r).unwrap();
    let codes: Vec<_> = METHODS
        .iter()
        .map(|m| run(&ctx(m).process(check_stdin_is_null, ())))
        .collect();
    rustix::stdio::dup2_stdin(&saved).unwrap();
    assert_eq!(codes, [Some(0); 3], "exit codes for {METHODS:?}");
    // The data is still there for the parent.
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"for the parent only");
}

/// The role: a panicking child under every method; prints `pid name` of
/// each on stdout.
fn role_panicking_children() {
    for m in METHODS {
        let p = ctx(m).process(panics, ());
        assert_eq!(run(&p), Some(1), "{m}");
        println!("{} {}", p.pid().unwrap().unwrap(), p.name());
    }
    // A hook the program sets afterwards is wrapped in turn (the fork
    // method wraps the parent's hook, which its children inherit).
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload().downcast_ref::<&str>().unwrap_or(&"?");
        eprintln!("custom hook panicked at x\ncustom hook: {message}");
    }));
    let p = ctx("fork").process(panics, ());
    assert_eq!(run(&p), Some(1));
    println!("{} {}", p.pid().unwrap().unwrap(), p.name());
}

/// A panicking child's message is introduced by `Process NAME (pid N):`,
/// as CPython's `Process Process-1:` before the traceback.
fn panic_header_names_the_process() {
    let (status, out, err) = run_role("panicking-children");
    assert!(status.success(), "{status}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    let children: Vec<&str> = out.lines().collect();
    assert_eq!(children.len(), 4, "{out}");
    for child in children {
        let (pid, name) = child.split_once(' ').unwrap();
        let header = format!("Process {name} (pid {pid}):");
        let at = lines
            .iter()
            .position(|l| *l == header)
            .unwrap_or_else(|| panic!("no {header:?} in:\n{err}"));
        // The panic hook's own lines follow at once (after the blank line
        // std's hook starts with).
        let mut rest = lines[at + 1..].iter().filter(|l| !l.is_empty());
        let next = rest.next().copied().unwrap_or("");
        assert!(next.contains("panicked at"), "{header:?} then {next:?}");
        let message = rest.next().copied().unwrap_or("");
        assert!(
            message.contains("this panic is expected by the test"),
            "{header:?} then {message:?}"
        );
    }
}

/// The role: multiprocessing's logger to stderr at INFO, one child under
/// each method, and a daemonic child left to the exit handler.
fn role_logging() {
    let logger = mp_context::log_to_stderr(Some(mp_context::LevelFilter::Info)).unwrap();
    assert_eq!(logger.level(), mp_context::LevelFilter::Info);
    assert!(
        mp_context::log_to_stderr(None).is_ok(),
        "a second call is fine"
    );
    for m in METHODS {
        let p = ctx(m).process(nothing, ());
        assert_eq!(run(&p), Some(0));
        println!("{}", p.name());
    }
    let daemon = ctx("forkserver")
        .process(sleep_ms, 60_000)
        .with_daemon(true);
    daemon.start().unwrap();
    println!("{}", daemon.name());
    // Returning from main runs the exit handler (shutdown).
}

/// Messages where CPython's `util.info` speaks, in CPython's format, from
/// the parent and from children of every method.
fn logging_where_cpython_logs() {
    let (status, out, err) = run_role("logging");
    assert!(status.success(), "{status}: {err}");
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(names.len(), 4, "{out}");
    let expect = |line: String| assert!(err.lines().any(|l| l == line), "no {line:?} in:\n{err}");
    for name in &names[..3] {
        expect(format!("[INFO/{name}] child process calling self.run()"));
        expect(format!("[INFO/{name}] process exiting with exitcode 0"));
    }
    expect("[INFO/MainProcess] process shutting down".into());
    expect(format!(
        "[INFO/MainProcess] calling terminate() for daemon {}",
        names[3]
    ));
    expect(format!(
        "[INFO/MainProcess] calling join() for process {}",
        names[3]
    ));
    assert!(
        err.lines()
            .any(|l| l.starts_with("[INFO/MainProcess] fork server started (pid ")),
        "{err}"
    );
    // INFO, not DEBUG: the parent's debug line is filtered out.
    assert!(!err.contains("[DEBUG/"), "{err}");
}

/// The child's processes, by `/proc/*/stat`'s ppid field.
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn report_ppid(conn: mp_conn::Connection) {
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    conn.send(&ppid).unwrap();
}

/// A forkserver child that starts a grandchild: (the server pid it knows,
/// the grandchild's parent, its own children meanwhile).
fn start_grandchild(report: mp_conn::Connection) {
    let (mut ours, theirs) = mp_conn::pipe(true).unwrap();
    let g = get_context(Some("forkserver"))
        .unwrap()
        .process(report_ppid, theirs);
    g.start().unwrap();
    let grandchild_ppid: i32 = ours.recv().unwrap();
    let own_children = children_of(std::process::id() as i32).len();
    g.join(LONG).unwrap();
    let server = mp_forkserver::ForkServer::global().pid();
    report
        .send(&(server, grandchild_ppid, own_children, g.exitcode().unwrap()))
        .unwrap();
}

/// CPython's forkserver children inherit the server's alive fd, address
/// and key, and their own children come from the same server.
fn forkserver_child_reuses_its_parents_server() {
    let c = ctx("forkserver");
    assert_eq!(run(&c.process(nothing, ())), Some(0));
    let server = mp_forkserver::ForkServer::global().pid().unwrap();
    let (mut ours, theirs) = mp_conn::pipe(true).unwrap();
    let p = c.process(start_grandchild, theirs);
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    let ready = mp_conn::wait(&[&ours, &sentinel], LONG).unwrap();
    assert!(ready.contains(&0), "the child reported nothing");
    let (known, grandchild_ppid, own_children, code): (Option<i32>, i32, usize, Option<i32>) =
        ours.recv().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert_eq!(code, Some(0), "the grandchild's exit code");
    assert_eq!(known, Some(server), "the child's fork server");
    assert_eq!(grandchild_ppid, server, "the grandchild's parent");
    assert_eq!(own_children, 0, "the child started a server of its own");
    assert_eq!(mp_forkserver::ForkServer::global().pid(), Some(server));
}

/// The worker example, built beside this test by `cargo test` (as every
/// example is).
fn worker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/processes-<hash> -> target/<profile>/examples/worker
    let worker = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/worker");
    assert!(
        worker.is_file(),
        "{} is not built: run `cargo build -p mp-context --example worker` \
         (plain `cargo test -p mp-context` builds it)",
        worker.display()
    );
    worker
}

/// spawn and forkserver children run another binary of the same code,
/// finding their target there by name; an unregistered target is a clear
/// failure in the child, and fork refuses the setting.
fn set_executable_runs_a_worker_binary() {
    use mp_testsupport::targets;
    let worker = worker_binary();
    let before = mp_context::get_executable();
    let server = mp_forkserver::ForkServer::global();
    // A running server keeps its binary (as CPython's): start a new one.
    server.stop();
    let err = ctx("fork").set_executable(&worker).unwrap_err();
    assert!(matches!(err, Error::ExecutableForFork), "{err:?}");
    assert!(err.to_string().contains("spawn and forkserver"), "{err}");
    let err = ctx("spawn")
        .set_executable("/nonexistent/worker")
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/worker"), "{err}");
    let dir = std::env::temp_dir().join(format!("mp-context-exe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The children below fail on purpose (a panic, unregistered targets):
    // what they print goes to a file, checked below, instead of cluttering
    // a passing run's output. The fork server is stopped, so the one
    // started in here writes there too.
    let captured = dir.join("stderr.txt");
    let saved_stderr = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stderr(), 3).unwrap();
    let file = std::fs::File::create(&captured).unwrap();
    rustix::stdio::dup2_stderr(&file).unwrap();
    let result = std::panic::catch_unwind(|| {
        ctx("spawn").set_executable(&worker).unwrap();
        assert_eq!(mp_context::get_executable(), worker);
        for m in ["spawn", "forkserver"] {
            let report = dir.join(format!("{m}.txt"));
            let p = ctx(m).process(
                targets::report_executable,
                report.to_str().unwrap().to_string(),
            );
            assert_eq!(run(&p), Some(0), "{m}");
            let ran = std::fs::read_to_string(&report).unwrap();
            assert_eq!(
                std::path::Path::new(ran.trim()),
                worker.canonicalize().unwrap(),
                "{m}: the child ran another binary"
            );
            // Registered: found and run (and its panic is exit code 1).
            let p = ctx(m).process(targets::panic_with, "expected in the worker".into());
            assert_eq!(run(&p), Some(1), "{m}");
            // Not registered in the worker: refused there, never called.
            assert_eq!(
                run(&ctx(m).process(targets::not_registered, 5)),
                Some(1),
                "{m}"
            );
            // A function of this test binary alone cannot be found there.
            assert_eq!(run(&ctx(m).process(nothing, ())), Some(1), "{m}");
        }
        // Fork children are copies of this process, whatever is set.
        assert_eq!(run(&ctx("fork").process(nothing, ())), Some(0));
    });
    mp_context::set_executable(&before).unwrap();
    server.stop();
    rustix::stdio::dup2_stderr(&saved_stderr).unwrap();
    let printed = std::fs::read_to_string(&captured).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        eprintln!("what the children printed:\n{printed}");
        std::panic::resume_unwind(panic);
    }
    for expected in [
        "expected in the worker",
        "has no registered target mp_testsupport::targets::not_registered taking u32",
        "has no registered target processes::nothing taking ()",
    ] {
        assert!(printed.contains(expected), "no {expected:?} in:\n{printed}");
    }
    assert_eq!(run(&ctx("forkserver").process(nothing, ())), Some(0));
    assert_eq!(run(&ctx("spawn").process(nothing, ())), Some(0));
}

/// Ignores SIGINT, then sends it to itself: still here to exit with 7.
fn ignores_sigint(_: ()) {
    mp_context::ignore_sigint().unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    mp_context::exit(7)
}

fn an_ignored_sigint_leaves_a_child_running() {
    for method in ["fork", "spawn", "forkserver"] {
        assert_eq!(
            run(&ctx(method).process(ignores_sigint, ())),
            Some(7),
            "{method}"
        );
        // Without it, the same signal ends the child.
        let p = ctx(method).process(sleeps, ());
        p.start().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        p.interrupt().unwrap();
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(-2), "{method}");
    }
}

fn sleeps(_: ()) {
    std::thread::sleep(std::time::Duration::from_secs(60));
}

fn main() {
    mp_context::init();
    if std::env::var("MP_CONTEXT_TEST_ROLE").as_deref() == Ok("forkserver-parent") {
        // Start the fork server, report its pid, and go away.
        assert_eq!(run(&ctx("forkserver").process(nothing, ())), Some(0));
        println!("{}", mp_forkserver::ForkServer::global().pid().unwrap());
        std::process::exit(0);
    }
    match std::env::var("MP_CONTEXT_TEST_ROLE").as_deref() {
        Ok("panicking-children") => {
            role_panicking_children();
            std::process::exit(0)
        }
        Ok("logging") => {
            role_logging();
            std::process::exit(0)
        }
        _ => {}
    }
    let tests: &[(&str, fn())] = &[
        (
            "an_ignored_sigint_leaves_a_child_running",
            an_ignored_sigint_leaves_a_child_running,
        ),
        (
            "child_stdin_is_the_null_device",
            child_stdin_is_the_null_device,
        ),
        (
            "panic_header_names_the_process",
            panic_header_names_the_process,
        ),
        ("logging_where_cpython_logs", logging_where_cpython_logs),
        (
            "forkserver_child_reuses_its_parents_server",
            forkserver_child_reuses_its_parents_server,
        ),
        (
            "set_executable_runs_a_worker_binary",
            set_executable_runs_a_worker_binary,
        ),
        ("exit_codes", exit_codes),
        ("join_with_an_endless_timeout", join_with_an_endless_timeout),
        ("join_timeout_and_lifecycle", join_timeout_and_lifecycle),
        ("many_children", many_children),
        (
            "terminate_during_join_and_late_sentinel",
            terminate_during_join_and_late_sentinel,
        ),
        ("child_sees_exactly_its_fds", child_sees_exactly_its_fds),
        ("too_many_fds", too_many_fds),
        (
            "forkserver_restarts_after_sigkill",
            forkserver_restarts_after_sigkill,
        ),
        (
            "forkserver_exits_with_its_parent",
            forkserver_exits_with_its_parent,
        ),
        ("forkserver_preload_and_auth", forkserver_preload_and_auth),
        (
            "forkserver_serves_beside_silent_clients",
            forkserver_serves_beside_silent_clients,
        ),
        ("identity_and_contexts", identity_and_contexts),
        ("daemon_flag", daemon_flag),
        ("connection_as_argument", connection_as_argument),
        ("pipe_pair_as_argument", pipe_pair_as_argument),
        ("shared_buffer_as_argument", shared_buffer_as_argument),
        ("values_and_arrays_add_up", values_and_arrays_add_up),
    ];
    let ok = mp_testsupport::harness::run_tests(tests);
    mp_context::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(ok));
}
