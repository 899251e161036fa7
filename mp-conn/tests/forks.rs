//! Connections across raw `fork(2)`s: an end that forked children read in
//! turn, read-ahead bytes held at the time of a fork (never delivered
//! twice, never lost), and values holding fds that a child sends to its
//! parent with `send`.
//!
//! A `harness = false` target, so that nothing else runs while it forks;
//! prints libtest's summary line so the workspace's test driver counts it.
//! Every wait in a child or the parent is bounded, so a regression fails
//! instead of hanging.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_conn::{Connection, Error, pipe};
use mp_reduction::Fd;

const LONG: Option<Duration> = Some(Duration::from_secs(60));

/// Forks; the child runs `child` and `_exit`s with its result (1 if it
/// panics). Returns the child's pid.
fn fork(child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: this binary is single-threaded (harness = false, and no test
    // starts a thread), so the child may run anything.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(1);
        // SAFETY: `_exit` ends the child at once, running none of the
        // parent's exit handlers.
        unsafe { libc::_exit(code) }
    }
    pid
}

/// Waits for `pid` and asserts that it exited with 0.
fn join(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {pid} failed: status {status:#x}"
    );
}

/// Receives one message, waiting at most a minute: `None` on timeout.
fn recv_within(conn: &mut Connection) -> Option<Vec<u8>> {
    if !conn.poll(LONG).unwrap() {
        return None;
    }
    Some(conn.recv_bytes().unwrap())
}

/// The CPython `SimpleQueue` pattern: an end created before the forks,
/// read by each forked child in turn. Each child must take exactly one
/// message and leave the next to the next child.
fn forked_children_read_one_end_in_turn() {
    let (mut reader, writer) = pipe(true).unwrap();
    let (mut report_r, report_w) = pipe(true).unwrap();
    for i in 0..3u8 {
        writer.send_bytes(&[b'a' + i]).unwrap();
    }
    for _ in 0..3 {
        let pid = fork(|| {
            let got = recv_within(&mut reader).unwrap_or_else(|| b"timeout".to_vec());
            report_w.send_bytes(&got).unwrap();
            0
        });
        join(pid);
    }
    let got: Vec<Vec<u8>> = (0..3)
        .map(|_| recv_within(&mut report_r).unwrap())
        .collect();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert!(!reader.poll(Some(Duration::ZERO)).unwrap(), "all taken");
}

/// Messages read ahead before a raw fork stay with the parent's handle;
/// the child's handle reads on from the fd. Both read exactly afterwards.
fn read_ahead_at_a_fork_is_the_parents() {
    let (mut reader, writer) = pipe(true).unwrap();
    let (mut report_r, report_w) = pipe(true).unwrap();
    for m in ["m1", "m2", "m3", "m4"] {
        writer.send_bytes(m.as_bytes()).unwrap();
    }
    assert_eq!(reader.recv_bytes().unwrap(), b"m1");
    assert!(reader.buffered_len() > 0, "the test needs read-ahead");
    assert!(!reader.exact_reads());
    let pid = fork(|| {
        assert!(reader.exact_reads(), "a fork child's copy reads exactly");
        assert_eq!(reader.buffered_len(), 0, "the read-ahead is the parent's");
        let got = recv_within(&mut reader).unwrap_or_else(|| b"timeout".to_vec());
        report_w.send_bytes(&got).unwrap();
        0
    });
    assert!(
        reader.exact_reads(),
        "the parent's handle reads exactly too"
    );
    for m in ["m2", "m3", "m4"] {
        assert_eq!(reader.recv_bytes().unwrap(), m.as_bytes());
    }
    // The parent has nothing buffered now: "m5" is for the child.
    writer.send_bytes(b"m5").unwrap();
    assert_eq!(recv_within(&mut report_r).unwrap(), b"m5");
    join(pid);
    writer.send_bytes(b"m6").unwrap();
    writer.send_bytes(b"m7").unwrap();
    assert_eq!(reader.recv_bytes().unwrap(), b"m6");
    assert_eq!(reader.buffered_len(), 0, "exact: m7 is still in the fd");
    // A handle known to be alone again may read ahead.
    reader.set_exact_reads(false);
    writer.send_bytes(b"m8").unwrap();
    assert_eq!(reader.recv_bytes().unwrap(), b"m7");
    assert!(reader.buffered_len() > 0);
    assert_eq!(reader.recv_bytes().unwrap(), b"m8");
}

/// Read-ahead that ends inside a message at the time of a fork: the rest
/// of the message is the parent's, and the child's handle says it cannot
/// find the next boundary instead of reading the middle of a message.
fn part_of_a_message_read_ahead_at_a_fork() {
    let (mut reader, mut writer) = pipe(true).unwrap();
    let (mut report_r, report_w) = pipe(true).unwrap();
    let big = vec![9u8; 40_000];
    writer.send_bytes(b"small").unwrap();
    writer.send_bytes(&big).unwrap();
    writer.send_bytes(b"after").unwrap();
    assert_eq!(reader.recv_bytes().unwrap(), b"small");
    let buffered = reader.buffered_len();
    assert!(buffered > 0 && buffered < big.len(), "{buffered}");
    let pid = fork(|| {
        let verdict: &[u8] = match reader.recv_bytes() {
            Err(Error::LostBoundary) => b"lost",
            Ok(_) => b"received",
            Err(_) => b"other error",
        };
        // Sending still works on the child's handle.
        reader.send_bytes(b"from the child").unwrap();
        report_w.send_bytes(verdict).unwrap();
        0
    });
    assert_eq!(recv_within(&mut report_r).unwrap(), b"lost");
    join(pid);
    assert_eq!(reader.recv_bytes().unwrap(), big);
    assert_eq!(reader.recv_bytes().unwrap(), b"after");
    assert_eq!(recv_within(&mut writer).unwrap(), b"from the child");
}

/// What a child creates after the fork (so the parent cannot have it by
/// inheritance) and sends to its parent.
#[derive(serde::Serialize, serde::Deserialize)]
struct FromChild {
    conn: Connection,
    buffer: mp_heap::SharedBuffer,
    value: Arc<mp_heap::Value<u64>>,
    fd: Fd,
}

fn a_child_sends_values_holding_fds_to_its_parent() {
    let (mut carrier_r, carrier_w) = pipe(true).unwrap();
    let pid = fork(|| {
        let (mut ours, theirs) = pipe(true).unwrap();
        let mut buffer = mp_heap::SharedBuffer::zeroed(4096).unwrap();
        buffer[..5].copy_from_slice(b"child");
        let value = Arc::new(mp_heap::Value::new(10u64).unwrap());
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        carrier_w
            .send(&FromChild {
                conn: theirs,
                buffer: buffer.share().unwrap(),
                value: value.clone(),
                fd: Fd::from(pipe_w),
            })
            .unwrap();
        // The parent answers over the connection it was sent, once it has
        // used everything else.
        if recv_within(&mut ours).as_deref() != Some(b"hello from the parent") {
            return 2;
        }
        let mut from_pipe = [0u8; 8];
        std::fs::File::from(pipe_r)
            .read_exact(&mut from_pipe)
            .unwrap();
        let ok = &from_pipe == b"via fd!!" && value.get() == 11 && buffer[5] == b'P';
        ours.send_bytes(if ok { b"all good" } else { b"mismatch" })
            .unwrap();
        0
    });
    assert!(carrier_r.poll(LONG).unwrap());
    let mut got: FromChild = carrier_r.recv().unwrap();
    assert_eq!(&got.buffer[..5], b"child");
    got.buffer[5] = b'P';
    got.value.lock().update(|n| n + 1);
    std::fs::File::from(got.fd.into_inner())
        .write_all(b"via fd!!")
        .unwrap();
    got.conn.send_bytes(b"hello from the parent").unwrap();
    assert_eq!(recv_within(&mut got.conn).unwrap(), b"all good");
    join(pid);
}

/// A value holding fds that the child cannot send over a pipe: the error
/// names the type, and nothing reaches the parent.
fn a_child_gets_a_clear_error_over_a_pipe() {
    let (mut r, w) = pipe(false).unwrap();
    let pid = fork(|| {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        match w.send(&Fd::from(OwnedFd::from(a))) {
            Err(Error::FdsNeedUnixSocket { type_name, .. }) if type_name.contains("Fd") => 0,
            _ => 3,
        }
    });
    join(pid);
    assert!(!r.poll(Some(Duration::ZERO)).unwrap());
    w.send(&1u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 1);
}

fn main() {
    let tests: &[(&str, fn())] = &[
        (
            "forked_children_read_one_end_in_turn",
            forked_children_read_one_end_in_turn,
        ),
        (
            "read_ahead_at_a_fork_is_the_parents",
            read_ahead_at_a_fork_is_the_parents,
        ),
        (
            "part_of_a_message_read_ahead_at_a_fork",
            part_of_a_message_read_ahead_at_a_fork,
        ),
        (
            "a_child_sends_values_holding_fds_to_its_parent",
            a_child_sends_values_holding_fds_to_its_parent,
        ),
        (
            "a_child_gets_a_clear_error_over_a_pipe",
            a_child_gets_a_clear_error_over_a_pipe,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let t0 = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2}s)", t0.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out"
    );
    std::process::exit(if failed == 0 { 0 } else { 101 });
}
