//! Bad input after authentication, from a raw socket: each gets an error
//! for that client alone, the server keeps serving the others, and a
//! client that disappears mid-call takes nothing down and keeps nothing.

use std::time::Duration;

use mp_manager::ProxyType;
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

/// Pickles a CPython client could send, hostile ones included, on a
/// pickle server: each bad one gets a `#TRACEBACK` on a connection that
/// stays usable (never a crash, a deep recursion or a huge allocation),
/// and a pickle naming something to run is only data.
#[test]
fn hostile_pickles_get_a_traceback_and_the_server_goes_on() {
    use mp_manager::{Codec, Pickle};
    let s = crate::cpython_client::served_for_cpython(None);
    let mut conn = mp_conn::client(s.handle.address(), Some(crate::support::KEY)).unwrap();
    let mut call = |bytes: &[u8]| -> Value {
        conn.send_bytes(bytes).unwrap();
        Pickle::new().decode(&conn.recv_bytes().unwrap()).unwrap()
    };
    let pickled = |v: &Value| {
        let mut out = Vec::new();
        Pickle::new().encode(v, &mut out).unwrap();
        out
    };
    let accept = Value::from((
        Value::None,
        "accept_connection",
        ("hostile",),
        Value::Dict(Dict::new()),
    ));
    assert_eq!(
        call(&pickled(&accept)).as_seq().unwrap()[0].as_str(),
        Some("#RETURN")
    );
    let deep: Vec<u8> = [
        &b"\x80\x04"[..],
        &vec![b']'; 100_000],
        &vec![b'a'; 99_999],
        b".",
    ]
    .concat();
    let mut huge = b"\x80\x04\x8d".to_vec();
    huge.extend((1u64 << 62).to_le_bytes());
    huge.push(b'.');
    let valid = pickled(&Value::from((
        Value::None,
        "dummy",
        no_args(),
        Value::Dict(Dict::new()),
    )));
    let bad: [(&str, Vec<u8>); 6] = [
        ("nested 100,000 deep", deep),
        ("truncated", valid[..valid.len() - 3].to_vec()),
        ("an unknown opcode", b"\x80\x04\xff.".to_vec()),
        ("a memo index never stored", b"\x80\x04h\x05.".to_vec()),
        ("a length of 2^62", huge),
        ("a persistent id", b"\x80\x04\x8c\x01x\x94Q.".to_vec()),
    ];
    for (what, bytes) in bad {
        let reply = call(&bytes);
        let items = reply.as_seq().unwrap();
        assert_eq!(items[0].as_str(), Some("#TRACEBACK"), "{what}: {reply}");
        assert!(
            items[1].as_str().unwrap().contains("could not decode"),
            "{what}: {reply}"
        );
    }
    // `os.system('...')` as a REDUCE is a value like any other: stored and
    // given back as it came, never called.
    let d = s.manager.dict::<String, Value>().unwrap();
    let id = Value::from(d.proxy().token().id.as_str());
    let run_me = Value::Object(mp_value::Object::reduce(
        mp_value::Global::new("posix", "system"),
        ("touch /tmp/never",),
    ));
    let set = Value::from((
        id.clone(),
        "__setitem__",
        ("cmd", run_me.clone()),
        Value::Dict(Dict::new()),
    ));
    assert_eq!(call(&pickled(&set)), Value::from(("#RETURN", Value::None)));
    let get = Value::from((id, "__getitem__", ("cmd",), Value::Dict(Dict::new())));
    assert_eq!(call(&pickled(&get)), Value::from(("#RETURN", run_me)));
    assert!(!std::path::Path::new("/tmp/never").exists());
    drop(d);
}

#[test]
fn a_semaphore_release_of_a_huge_n_is_quick_and_never_wraps() {
    // The request a fuzz run found: `release(n)` notified `n` times, a
    // loop as long as the peer asked for. Through the fuzz entry point:
    // the first byte picks the type (7: Semaphore, 8: BoundedSemaphore;
    // 0x80: pickle), the rest is (method, args, kwds).
    let call = |typeid: u8, n: i64| {
        let request = Value::from((
            "release",
            Value::Tuple(mp_value::Tuple::from(vec![Value::Int(n)])),
            Value::Dict(Dict::new()),
        ));
        let mut bytes = vec![0x80 | typeid];
        bytes.extend(mp_pickle::dumps(&request));
        let t = std::time::Instant::now();
        let reply = mp_pickle::loads(&mp_manager::server::fuzz_request(&bytes)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        reply
    };
    let ok = call(7, i64::MAX);
    assert_eq!(
        mp_manager::server::decode_reply_kind(ok.clone()),
        Ok("#RETURN"),
        "{ok}"
    );
    let bounded = call(8, i64::MAX);
    assert!(bounded.to_string().contains("ValueError"), "{bounded}");
}

#[test]
fn an_empty_list_times_a_huge_n_is_quick() {
    // `[] * n` looped n times extending nothing. Type 2 is list.
    let request = Value::from((
        "__mul__",
        Value::Tuple(mp_value::Tuple::from(vec![Value::Int(i64::MAX)])),
        Value::Dict(Dict::new()),
    ));
    let mut bytes = vec![0x80 | 2];
    bytes.extend(mp_pickle::dumps(&request));
    let t = std::time::Instant::now();
    let reply = mp_pickle::loads(&mp_manager::server::fuzz_request(&bytes)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(
        mp_manager::server::decode_reply_kind(reply.clone()),
        Ok("#RETURN"),
        "{reply}"
    );
}
