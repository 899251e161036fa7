//! The protocol as a CPython client speaks it: public functions on fresh
//! connections, `accept_connection` then method calls, global reference
//! counts (MGR-40..44).

use mp_value::Value;

use crate::support::{Raw, Served, no_args};

#[test]
fn cpython_style_create_incref_decref() {
    let s = Served::new();
    // create on a fresh connection: (ident, exposed), one reference.
    let mut c1 = Raw::connect(&s);
    let (kind, created) = c1.request(Value::None, "create", Value::from(("Queue",)));
    assert_eq!(kind, "#RETURN");
    let parts = created.as_seq().unwrap();
    let ident = parts[0].clone();
    let exposed: Vec<&str> = parts[1]
        .as_seq()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(exposed.contains(&"put") && exposed.contains(&"get_nowait"));
    // The proxy increfs, the creator decrefs: one reference left.
    let mut c2 = Raw::connect(&s);
    assert_eq!(
        c2.request(Value::None, "incref", Value::from((ident.clone(),)))
            .0,
        "#RETURN"
    );
    let mut c3 = Raw::connect(&s);
    assert_eq!(
        c3.request(Value::None, "decref", Value::from((ident.clone(),)))
            .0,
        "#RETURN"
    );
    // Calls on a thread connection.
    let mut t = Raw::connect(&s);
    assert_eq!(
        t.request(
            Value::None,
            "accept_connection",
            Value::from(("MainProcess",))
        )
        .0,
        "#RETURN"
    );
    assert_eq!(
        t.request(ident.clone(), "put", Value::from((1,))).0,
        "#RETURN"
    );
    let (kind, v) = t.request(ident.clone(), "get", no_args());
    assert_eq!((kind.as_str(), v), ("#RETURN", Value::from(1)));
    // The referent's own exception is #ERROR with its class.
    let (kind, e) = t.request(ident.clone(), "get_nowait", no_args());
    assert_eq!(kind, "#ERROR");
    let e = mp_manager::Exception::from_value(&e).unwrap();
    assert!(e.is("queue.Empty"));
    // Fallbacks: __repr__, __str__, #GETVALUE are allowed unexposed.
    assert_eq!(t.request(ident.clone(), "__repr__", no_args()).0, "#RETURN");
    let (kind, text) = t.request(ident.clone(), "no_such_method", no_args());
    assert_eq!(kind, "#TRACEBACK");
    assert!(text.as_str().unwrap().contains("is not in exposed="));
    // number_of_objects and debug_info on fresh connections.
    let mut c4 = Raw::connect(&s);
    assert_eq!(
        c4.request(Value::None, "number_of_objects", no_args()).1,
        Value::from(1)
    );
    let mut c5 = Raw::connect(&s);
    let (_, info) = c5.request(Value::None, "debug_info", no_args());
    assert!(info.as_str().unwrap().contains("refcount=1"));
    // The last decref frees it; one more is an AssertionError.
    let mut c6 = Raw::connect(&s);
    assert_eq!(
        c6.request(Value::None, "decref", Value::from((ident.clone(),)))
            .0,
        "#RETURN"
    );
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
    let mut c7 = Raw::connect(&s);
    let (kind, _) = c7.request(Value::None, "decref", Value::from((ident,)));
    assert_eq!(kind, "#TRACEBACK");
}

#[test]
fn method_to_typeid_gives_a_proxy_reply_with_a_token() {
    let s = Served::new();
    let mut c = Raw::connect(&s);
    let (_, created) = c.request(Value::None, "create", Value::from(("dict",)));
    let ident = created.as_seq().unwrap()[0].clone();
    let mut t = Raw::connect(&s);
    t.request(
        Value::None,
        "accept_connection",
        Value::from(("MainProcess",)),
    );
    let (kind, payload) = t.request(ident.clone(), "__iter__", no_args());
    assert_eq!(kind, "#PROXY");
    let parts = payload.as_seq().unwrap();
    let token = mp_manager::Token::from_value(&parts[1]).unwrap();
    assert_eq!(token.typeid, "Iterator");
    assert_eq!(&token.address, s.handle.address());
    // CPython's client then increfs and decrefs once; the create's and
    // the #PROXY's references stay until decref'd.
    assert_eq!(s.manager.number_of_objects().unwrap(), 2);
    for id in [Value::from(token.id.as_str()), ident] {
        let mut d = Raw::connect(&s);
        assert_eq!(
            d.request(Value::None, "decref", Value::from((id,))).0,
            "#RETURN"
        );
    }
    drop(t);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.manager.number_of_objects().unwrap() != 0 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn shutdown_is_answered_before_the_server_stops() {
    let s = Served::new();
    let mut c = Raw::connect(&s);
    let (kind, v) = c.request(Value::None, "shutdown", no_args());
    assert_eq!((kind.as_str(), v), ("#RETURN", Value::None));
}
