//! The manager server's request handling: decoding a frame's payload,
//! checking the request's shape, and dispatching it to the public
//! functions or to a method of every SyncManager type, with hostile
//! arguments.

use mp_manager::Codec;
use mp_value::{Dict, Tuple, Value};

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mp_manager::Postcard
        .encode(v, &mut out)
        .expect("seeds encode");
    out
}

/// A call on a fresh object of type number `kind` (see
/// `mp_manager::server::fuzz_request`).
fn call(kind: u8, method: &str, args: Value) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(encode(&Value::from((
        method,
        args,
        Value::Dict(Dict::new()),
    ))));
    out
}

/// Valid and interesting requests to mutate from.
pub(super) fn manager_seeds() -> Vec<Vec<u8>> {
    let empty = || Value::Tuple(Tuple::new());
    let whole = |v: Value| {
        let mut out = vec![0];
        out.extend(encode(&v));
        out
    };
    vec![
        whole(Value::from((
            Value::None,
            "create",
            ("dict",),
            Value::Dict(Dict::new()),
        ))),
        whole(Value::from((
            Value::None,
            "number_of_objects",
            empty(),
            Value::Dict(Dict::new()),
        ))),
        whole(Value::from((
            Value::None,
            "#mp_rs.transfer",
            ("x",),
            Value::Dict(Dict::new()),
        ))),
        whole(Value::from((
            "deadbeef",
            "get",
            empty(),
            Value::Dict(Dict::new()),
        ))),
        whole(Value::from((1, 2))),
        call(1, "__setitem__", Value::from(("k", 1))),
        call(1, "update", Value::from((vec![Value::from((1, 2))],))),
        call(2, "__getitem__", Value::from((-1,))),
        call(2, "sort", empty()),
        call(3, "__or__", Value::from((vec![Value::from(1)],))),
        call(4, "put", Value::from((1, true, 0.5))),
        call(4, "get", Value::from((true, 1.0))),
        call(5, "acquire", Value::from((true, 0.1))),
        call(7, "release", Value::from((3,))),
        call(9, "wait", Value::from((0.1,))),
        call(11, "wait", empty()),
        call(12, "set", Value::from(("x",))),
        call(13, "__setitem__", Value::from((0, 1))),
        call(14, "__getattribute__", Value::from(("missing",))),
    ]
}

/// Hostile request payloads must get a reply (or be dropped), never a
/// panic; every reply must decode as a `(kind, payload)` pair.
pub fn manager_request(data: &[u8]) {
    let reply = mp_manager::server::fuzz_request(data);
    if reply.is_empty() {
        return;
    }
    let value = mp_manager::Postcard
        .decode(&reply)
        .expect("our replies decode");
    mp_manager::server::decode_reply_kind(value).expect("our replies have a known kind");
}
