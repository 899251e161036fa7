//! Bad input after authentication, from a raw socket: each gets an error
//! for that client alone, the server keeps serving the others, and a
//! client that disappears mid-call takes nothing down and keeps nothing.

use std::time::Duration;

use mp_value::{Dict, Value};

use crate::support::{Raw, Served, no_args};

#[test]
fn undecodable_frames_and_bad_shapes_get_a_traceback() {
    let s = Served::new();
    let mut raw = Raw::connect(&s);
    let (kind, _) = raw.request(Value::None, "accept_connection", Value::from(("raw",)));
    assert_eq!(kind, "#RETURN");
    // Bytes that are no message at all: a traceback, and the connection
    // stays usable (the frame boundary is intact).
    raw.conn.send_bytes(&[0xff, 0xff, 0xff, 0x17]).unwrap();
    let reply = raw.recv();
    assert_eq!(reply.as_seq().unwrap()[0].as_str(), Some("#TRACEBACK"));
    // Not a 4-tuple.
    raw.send(&Value::from((1, 2)));
    let reply = raw.recv();
    let text = reply.as_seq().unwrap()[1].as_str().unwrap().to_owned();
    assert!(text.contains("ValueError"), "{text}");
    // An unknown id.
    let (kind, text) = raw.request(Value::from("deadbeef"), "get", no_args());
    assert_eq!(kind, "#TRACEBACK");
    assert!(text.as_str().unwrap().contains("KeyError"));
    // Bad argument and keyword shapes.
    raw.send(&Value::from((
        Value::from("x"),
        "m",
        5,
        Value::Dict(Dict::new()),
    )));
    assert_eq!(raw.recv().as_seq().unwrap()[0].as_str(), Some("#TRACEBACK"));
    raw.send(&Value::from((Value::from("x"), 5, no_args(), 1)));
    assert_eq!(raw.recv().as_seq().unwrap()[0].as_str(), Some("#TRACEBACK"));
    // A public function in-band on a plain connection is CPython's
    // KeyError: None.
    let (kind, text) = raw.request(Value::None, "number_of_objects", no_args());
    assert_eq!(kind, "#TRACEBACK");
    assert!(text.as_str().unwrap().contains("KeyError: None"));
    // The server still serves everybody.
    let d = s.manager.dict::<i64, i64>().unwrap();
    d.set_item(&1, &1).unwrap();
}

#[test]
fn an_unknown_first_request_is_refused() {
    let s = Served::new();
    let mut raw = Raw::connect(&s);
    let (kind, text) = raw.request(Value::None, "no_such_function", no_args());
    assert_eq!(kind, "#TRACEBACK");
    assert!(
        text.as_str()
            .unwrap()
            .contains("'no_such_function' unrecognized")
    );
    // CPython closes the connection after the one public call.
    assert!(raw.conn.recv_bytes().is_err());
}

#[test]
fn a_huge_length_closes_that_connection_only() {
    let s = Served::new();
    let mut raw = Raw::connect(&s);
    raw.request(Value::None, "accept_connection", Value::from(("raw",)));
    // A header claiming 2 GiB, and nothing behind it: refused unread.
    let header = [0x7f, 0xff, 0xff, 0xff];
    rustix::io::write(&raw.conn, &header).unwrap();
    let reply = raw.recv();
    let text = reply.as_seq().unwrap()[1].as_str().unwrap().to_owned();
    assert!(text.contains("bad message length"), "{text}");
    assert!(raw.conn.recv_bytes().is_err());
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}

#[test]
fn a_client_gone_mid_call_releases_its_references() {
    let s = Served::new();
    let q = s.manager.queue::<i64>(0).unwrap();
    // A raw session client creates a queue and blocks in get(); then it
    // disappears.
    let mut raw = Raw::connect(&s);
    let (kind, _) = raw.request(Value::None, "#mp_rs.session", Value::from((1,)));
    assert_eq!(kind, "#RETURN");
    let (kind, created) = raw.request(Value::None, "create", Value::from(("Queue",)));
    assert_eq!(kind, "#RETURN");
    let ident = created.as_seq().unwrap()[0].clone();
    assert_eq!(s.manager.number_of_objects().unwrap(), 2);
    raw.send(&Value::from((
        ident,
        "get",
        no_args(),
        Value::Dict(Dict::new()),
    )));
    std::thread::sleep(Duration::from_millis(50));
    drop(raw);
    // The blocked get gives up (nothing consumed), and the object it held
    // goes with its session.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.manager.number_of_objects().unwrap() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead client's queue was kept"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    q.put(&1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
}
