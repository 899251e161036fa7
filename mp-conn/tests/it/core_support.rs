//! Helpers of conn-core's tests: child processes (the test binary
//! re-executed with a role), a SIGALRM handler, and round trips through
//! low-latency ends.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mp_conn::{Connection, Error};

/// The env var naming the role of a re-executed test binary.
const ROLE: &str = "MP_CONN_CORE_CHILD_ROLE";

/// What a finished child printed and how it exited.
#[derive(Debug)]
pub(crate) struct ChildResult {
    pub(crate) success: bool,
    pub(crate) stderr: String,
}

/// Runs this test binary as a child with `role`, `stdin` as its fd 0.
/// Waits at most 60 s (then kills it and fails).
pub(crate) fn run_child(role: &str, stdin: OwnedFd, during: impl FnOnce()) -> ChildResult {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "core_support::child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    during();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {role} timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    ChildResult {
        success: status.success(),
        stderr,
    }
}

/// The child's side: a connection over the inherited fd 0.
fn stdin_connection(readable: bool, writable: bool) -> Connection {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("dup stdin");
    Connection::new(fd, readable, writable).expect("connection on stdin")
}

/// The entry point of re-executed children; a no-op in a normal run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        // Echo every message until the parent closes (CONN-08).
        "echo" => {
            let mut conn = stdin_connection(true, true);
            loop {
                match conn.recv_bytes() {
                    Ok(m) => conn.send_bytes(&m).expect("echo"),
                    Err(Error::Eof) => break,
                    Err(e) => panic!("echo child: {e}"),
                }
            }
        }
        // Only poll, never receive (CONN-22).
        "poll_only" => {
            let mut conn = stdin_connection(true, false);
            for _ in 0..3 {
                assert!(conn.poll(Some(Duration::from_secs(10))).expect("poll"));
                assert!(conn.poll(Some(Duration::ZERO)).expect("poll"));
            }
        }
        // Receive two connections and use them in their directions (CONN-25).
        "recv_connections" => {
            let mut conn = stdin_connection(true, true);
            let mut reader = conn.recv_connection().expect("recv reader");
            let writer = conn.recv_connection().expect("recv writer");
            assert!(reader.readable() && !reader.writable());
            assert!(!writer.readable() && writer.writable());
            assert!(matches!(writer.send_bytes(b""), Ok(())));
            let got = reader.recv_bytes().expect("recv from passed reader");
            assert_eq!(got, b"all is well");
            writer
                .send_bytes(&b"foobar".repeat(2))
                .expect("send on passed writer");
            conn.send_bytes(b"done").expect("done");
        }
        // Receive 3 fds with room for only one more open fd: MSG_CTRUNC.
        "ctrunc" => {
            let mut conn = stdin_connection(true, true);
            // Wait until the fds are queued, so the limit applies to them only.
            assert!(conn.poll(Some(Duration::from_secs(10))).expect("poll"));
            let probe = rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 0).expect("dup");
            let lowest_free = std::os::fd::AsRawFd::as_raw_fd(&probe) as u64;
            drop(probe);
            let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let tight = rustix::process::Rlimit {
                current: Some(lowest_free + 1),
                maximum: old.maximum,
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, tight)
                .expect("setrlimit");
            let result = conn.recv_fds(10);
            rustix::process::setrlimit(rustix::process::Resource::Nofile, old)
                .expect("restore rlimit");
            match result {
                Err(Error::FdTransfer(msg)) => assert!(msg.contains("MSG_CTRUNC"), "{msg}"),
                other => panic!("expected a truncation error, got {other:?}"),
            }
            // The one fd that did arrive was closed with the error.
            let again = rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 0).expect("dup");
            assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&again) as u64, lowest_free);
            conn.send_bytes(b"checked").expect("report");
        }
        other => panic!("unknown child role {other}"),
    }
}

/// One side of a round-trip test: a duplex connection, or a
/// (receiving, sending) pair of one-way ones.
pub(crate) trait Side: Send + 'static {
    /// The next message; panics on an error.
    fn recv(&mut self) -> Vec<u8>;
    /// Sends `m`; panics on an error.
    fn send(&self, m: &[u8]);
}

impl Side for Connection {
    fn recv(&mut self) -> Vec<u8> {
        self.recv_bytes().unwrap()
    }
    fn send(&self, m: &[u8]) {
        self.send_bytes(m).unwrap();
    }
}

impl Side for (Connection, Connection) {
    fn recv(&mut self) -> Vec<u8> {
        self.0.recv_bytes().unwrap()
    }
    fn send(&self, m: &[u8]) {
        self.1.send_bytes(m).unwrap();
    }
}

/// 2000 quick round trips from `a` to a thread echoing on `b`, then a slow
/// round in which the low-latency spin runs out and the receive blocks.
/// Returns `b` once its thread is done.
pub(crate) fn round_trips_then_a_slow_one<S: Side>(a: &mut S, mut b: S) -> S {
    let peer = thread::spawn(move || {
        for i in 0..2000u32 {
            let m = b.recv();
            assert_eq!(m, i.to_le_bytes());
            b.send(&m);
        }
        // A slow round: the spin runs out and the receive blocks.
        let m = b.recv();
        b.send(&m);
        b
    });
    for i in 0..2000u32 {
        a.send(&i.to_le_bytes());
        assert_eq!(a.recv(), i.to_le_bytes());
    }
    thread::sleep(Duration::from_millis(50));
    a.send(b"slow");
    assert_eq!(a.recv(), b"slow");
    peer.join().unwrap()
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs a SIGALRM handler without `SA_RESTART`, so that blocking
/// system calls fail with `EINTR`; returns the running count of signals.
pub(crate) fn install_sigalrm_handler() -> &'static AtomicUsize {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // the handler only touches an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()),
            0
        );
    }
    &SIGNALS
}

/// Sends SIGALRM to `thread` `times` times, `gap` apart.
pub(crate) fn pester(thread: libc::pthread_t, times: usize, gap: Duration) {
    for _ in 0..times {
        std::thread::sleep(gap);
        // SAFETY: `thread` is alive: the caller joins it only after this returns.
        unsafe {
            libc::pthread_kill(thread, libc::SIGALRM);
        }
    }
}
