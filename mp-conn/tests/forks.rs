//! Connections across raw `fork(2)`s: an end that forked children read in
//! turn, read-ahead bytes held at the time of a fork (never delivered
//! twice, never lost), and ends and fds that a child sends to its parent
//! with `send`.
//!
//! A `harness = false` target, so that nothing else runs while it forks;
//! prints libtest's summary line so the workspace's test driver counts it.
//! Every wait in a child or the parent is bounded, so a regression fails
//! instead of hanging.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

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

/// A child makes ends after the fork (so that the parent cannot have them
/// by inheritance) and sends them with `send`: a duplex end, an OS pipe's
/// write end as a `Connection`, and a plain fd; the parent uses each.
/// (mp-context's `tests/connections.rs` sends shared memory too, under
/// every start method.)
fn a_child_sends_ends_it_made_to_its_parent() {
    let (mut carrier_r, carrier_w) = pipe(true).unwrap();
    let pid = fork(|| {
        let (duplex, duplex_peer) = pipe(true).unwrap();
        let (mut from_parent, to_child) = pipe(false).unwrap();
        let (raw_r, raw_w) = rustix::pipe::pipe().unwrap();
        let ends = vec![duplex_peer, to_child];
        carrier_w.send(&(ends, Fd::from(raw_w))).unwrap();
        let mut raw = [0u8; 3];
        std::fs::File::from(raw_r).read_exact(&mut raw).unwrap();
        let over_pipe = recv_within(&mut from_parent);
        let ok = &raw == b"fd!" && over_pipe.as_deref() == Some(&b"via the pipe end"[..]);
        duplex
            .send_bytes(if ok { b"ok" } else { b"mismatch" })
            .unwrap();
        0
    });
    assert!(carrier_r.poll(LONG).unwrap());
    let (mut ends, fd): (Vec<Connection>, Fd) = carrier_r.recv().unwrap();
    assert_eq!(ends.len(), 2);
    assert!(ends[0].is_unix_socket() && !ends[1].readable() && ends[1].writable());
    std::fs::File::from(fd.into_inner())
        .write_all(b"fd!")
        .unwrap();
    ends[1].send_bytes(b"via the pipe end").unwrap();
    assert_eq!(recv_within(&mut ends[0]).unwrap(), b"ok");
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
            "a_child_sends_ends_it_made_to_its_parent",
            a_child_sends_ends_it_made_to_its_parent,
        ),
        (
            "a_child_gets_a_clear_error_over_a_pipe",
            a_child_gets_a_clear_error_over_a_pipe,
        ),
    ];
    let ok = mp_testsupport::harness::run_tests(tests);
    std::process::exit(mp_testsupport::harness::exit_code(ok));
}
