//! Connections between `mp_context` processes under every start method:
//! one end that several children read in turn (CPython's `SimpleQueue`
//! pattern), a connection with messages read ahead passed to a child (they
//! arrive there, in order, exactly once), arguments that do not serialize
//! (the error says why), and values holding fds that a child sends back
//! with `send`.
//!
//! A `harness = false` target: `main` calls `mp_context::init()` first, so
//! that this binary can serve as a spawned child and as the fork server.
//! Prints libtest's summary line so the workspace's test driver counts it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_conn::{Connection, pipe};
use mp_context::{Error, get_context};
use mp_reduction::Fd;

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];
const LONG: Option<Duration> = Some(Duration::from_secs(60));

fn ctx(m: &str) -> mp_context::Context {
    get_context(Some(m)).unwrap()
}

/// Receives one message, waiting at most a minute: `None` on timeout.
fn recv_within(conn: &mut Connection) -> Option<Vec<u8>> {
    if !conn.poll(LONG).unwrap() {
        return None;
    }
    Some(conn.recv_bytes().unwrap())
}

fn run(p: &mp_context::Process) {
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0), "{p:?}");
}

/// Takes one message from the shared end and reports it.
fn take_one((mut reader, report): (Connection, Connection)) {
    let got = recv_within(&mut reader).unwrap_or_else(|| b"timeout".to_vec());
    report.send_bytes(&got).unwrap();
}

/// The end that fork children reach through a static, as CPython's fork
/// children reach a module-level `SimpleQueue`.
static SHARED_READER: Mutex<Option<Connection>> = Mutex::new(None);

fn take_one_from_the_static(report: Connection) {
    let mut reader = SHARED_READER.lock().unwrap();
    let reader = reader.as_mut().expect("set by the parent");
    let got = recv_within(reader).unwrap_or_else(|| b"timeout".to_vec());
    report.send_bytes(&got).unwrap();
}

fn children_read_one_end_in_turn() {
    for m in METHODS {
        let (mut reader, writer) = pipe(true).unwrap();
        let (mut report_r, mut report_w) = pipe(true).unwrap();
        for i in 0..3u8 {
            writer.send_bytes(&[b'a' + i]).unwrap();
        }
        // Each child gets a handle of the same end (and keeps none of the
        // messages meant for the next one).
        for _ in 0..3 {
            let args = (reader.try_clone().unwrap(), report_w.try_clone().unwrap());
            run(&ctx(m).process(take_one, args));
        }
        let got: Vec<Vec<u8>> = (0..3)
            .map(|_| recv_within(&mut report_r).unwrap())
            .collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], "{m}");
        // The parent reads the same end in turn with them.
        writer.send_bytes(b"parent's").unwrap();
        writer.send_bytes(b"child's").unwrap();
        assert_eq!(reader.recv_bytes().unwrap(), b"parent's", "{m}");
        let args = (reader.try_clone().unwrap(), report_w.try_clone().unwrap());
        run(&ctx(m).process(take_one, args));
        assert_eq!(recv_within(&mut report_r).unwrap(), b"child's", "{m}");
    }
    // Fork children that reach the end through a static, never passed.
    let (reader, writer) = pipe(true).unwrap();
    let (mut report_r, mut report_w) = pipe(true).unwrap();
    *SHARED_READER.lock().unwrap() = Some(reader);
    for i in 0..3u8 {
        writer.send_bytes(&[b'x' + i]).unwrap();
    }
    for _ in 0..3 {
        let p = ctx("fork").process(take_one_from_the_static, report_w.try_clone().unwrap());
        run(&p);
    }
    let got: Vec<Vec<u8>> = (0..3)
        .map(|_| recv_within(&mut report_r).unwrap())
        .collect();
    assert_eq!(got, [b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
    SHARED_READER.lock().unwrap().take();
}

/// Receives what was read ahead for it and one more message, and reports
/// them in one message.
fn receive_four((mut reader, report): (Connection, Connection)) {
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = recv_within(&mut reader).unwrap_or_else(|| b"timeout".to_vec());
        got.push(String::from_utf8_lossy(&m).into_owned());
    }
    report.send_bytes(got.join(",").as_bytes()).unwrap();
}

fn read_ahead_travels_with_a_passed_connection() {
    for m in METHODS {
        let (mut reader, writer) = pipe(true).unwrap();
        let (mut report_r, report_w) = pipe(true).unwrap();
        for msg in ["m1", "m2", "m3", "m4"] {
            writer.send_bytes(msg.as_bytes()).unwrap();
        }
        assert_eq!(reader.recv_bytes().unwrap(), b"m1");
        assert!(reader.buffered_len() > 0, "the test needs read-ahead");
        let p = ctx(m).process(receive_four, (reader, report_w));
        p.start().unwrap();
        writer.send_bytes(b"m5").unwrap();
        assert_eq!(
            recv_within(&mut report_r).as_deref(),
            Some(&b"m2,m3,m4,m5"[..]),
            "{m}"
        );
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
    }
}

/// A handle kept by the parent (in an `Arc`, whose clone went to the
/// child) while the child took the read-ahead: the parent's handle gives
/// it up, so nothing is received twice.
fn receive_two((reader, report): (Arc<Connection>, Connection)) {
    let mut reader = Arc::try_unwrap(reader).expect("a received Arc has one owner");
    let a = recv_within(&mut reader).unwrap_or_default();
    let b = recv_within(&mut reader).unwrap_or_default();
    report.send_bytes(&[a, b].concat()).unwrap();
}

fn a_handle_the_parent_keeps_gives_up_what_went_to_the_child() {
    for m in ["spawn", "forkserver"] {
        let (mut reader, writer) = pipe(true).unwrap();
        let (mut report_r, report_w) = pipe(true).unwrap();
        for msg in ["1", "2", "3"] {
            writer.send_bytes(msg.as_bytes()).unwrap();
        }
        assert_eq!(reader.recv_bytes().unwrap(), b"1");
        let mut shared = Arc::new(reader);
        run(&ctx(m).process(receive_two, (shared.clone(), report_w)));
        assert_eq!(recv_within(&mut report_r).unwrap(), b"23", "{m}");
        let reader = Arc::get_mut(&mut shared).expect("the child's clone is gone");
        assert_eq!(reader.buffered_len(), 0, "{m}: given up");
        writer.send_bytes(b"4").unwrap();
        assert_eq!(reader.recv_bytes().unwrap(), b"4", "{m}");
    }
}

fn nothing(_: Connection) {}

fn start_says_why_arguments_do_not_serialize() {
    for m in ["spawn", "forkserver"] {
        let (mut closed, _other) = pipe(true).unwrap();
        closed.close();
        let err = ctx(m).process(nothing, closed).start().unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{m}: {err:?}");
        let text = format!("{err:?}");
        assert!(
            text.contains("handle is closed") && text.contains("Connection"),
            "{m}: {text}"
        );
    }
}

/// What a child creates (so that no parent has it by inheritance) and
/// sends back.
#[derive(serde::Serialize, serde::Deserialize)]
struct FromChild {
    conn: Connection,
    buffer: mp_heap::SharedBuffer,
    value: Arc<mp_heap::Value<u64>>,
    fd: Fd,
}

fn send_fd_values_back(carrier: Connection) {
    let (mut ours, theirs) = pipe(true).unwrap();
    let mut buffer = mp_heap::SharedBuffer::zeroed(4096).unwrap();
    buffer[..5].copy_from_slice(b"child");
    let value = Arc::new(mp_heap::Value::new(10u64).unwrap());
    let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
    carrier
        .send(&FromChild {
            conn: theirs,
            buffer: buffer.share().unwrap(),
            value: value.clone(),
            fd: Fd::from(pipe_w),
        })
        .unwrap();
    assert_eq!(
        recv_within(&mut ours).as_deref(),
        Some(&b"hello from the parent"[..])
    );
    let mut from_pipe = [0u8; 8];
    std::fs::File::from(pipe_r)
        .read_exact(&mut from_pipe)
        .unwrap();
    assert_eq!(&from_pipe, b"via fd!!");
    assert_eq!(value.get(), 11);
    assert_eq!(buffer[5], b'P');
    ours.send_bytes(b"all good").unwrap();
}

fn a_child_sends_values_holding_fds_back() {
    for m in METHODS {
        let (mut carrier_r, carrier_w) = pipe(true).unwrap();
        let p = ctx(m).process(send_fd_values_back, carrier_w);
        p.start().unwrap();
        assert!(carrier_r.poll(LONG).unwrap(), "{m}");
        let mut got: FromChild = carrier_r.recv().unwrap();
        assert_eq!(&got.buffer[..5], b"child", "{m}");
        got.buffer[5] = b'P';
        got.value.lock().update(|n| n + 1);
        std::fs::File::from(got.fd.into_inner())
            .write_all(b"via fd!!")
            .unwrap();
        got.conn.send_bytes(b"hello from the parent").unwrap();
        assert_eq!(
            recv_within(&mut got.conn).as_deref(),
            Some(&b"all good"[..]),
            "{m}"
        );
        p.join(LONG).unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0), "{m}");
    }
}

fn main() {
    mp_context::init();
    let tests: &[(&str, fn())] = &[
        (
            "children_read_one_end_in_turn",
            children_read_one_end_in_turn,
        ),
        (
            "read_ahead_travels_with_a_passed_connection",
            read_ahead_travels_with_a_passed_connection,
        ),
        (
            "a_handle_the_parent_keeps_gives_up_what_went_to_the_child",
            a_handle_the_parent_keeps_gives_up_what_went_to_the_child,
        ),
        (
            "start_says_why_arguments_do_not_serialize",
            start_says_why_arguments_do_not_serialize,
        ),
        (
            "a_child_sends_values_holding_fds_back",
            a_child_sends_values_holding_fds_back,
        ),
    ];
    let ok = mp_testsupport::harness::run_tests(tests);
    mp_context::shutdown();
    std::process::exit(mp_testsupport::harness::exit_code(ok));
}
