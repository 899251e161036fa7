//! The manager server's request handling: decoding a frame's payload
//! (postcard from Rust clients, pickle from CPython clients), checking the
//! request's shape, and dispatching it to the public functions or to a
//! method of every SyncManager type, with hostile arguments.

use mp_manager::Codec;

use super::pickle::unhex;
use mp_value::{Dict, Global, Object, Tuple, Value};

/// The first byte's bit that selects the pickle codec (see
/// `mp_manager::server::fuzz_request`).
const PICKLED: u8 = 0x80;

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mp_manager::Postcard
        .encode(v, &mut out)
        .expect("seeds encode");
    out
}

/// Requests of real CPython 3.11 clients (wire_manager.txt): `create`,
/// `accept_connection`, `put(1)` and `get_nowait()` on an object.
const CAPTURED: [&str; 4] = [
    "8004951e00000000000000284e8c06637265617465948c096765745f71756575659485947d9474942e",
    "8004952b00000000000000284e8c116163636570745f636f6e6e656374696f6e948c0b4d61696e50726f636573739485947d9474942e",
    "8004951f00000000000000288c0c376664656438333064653530948c03707574944b0185947d9474942e",
    "8004952300000000000000288c0c376666346162653039323130948c0a6765745f6e6f7761697494297d9474942e",
];

/// The seeds again, their payloads pickled as a CPython client would
/// send them.
fn pickled(seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    seeds
        .iter()
        .filter_map(|seed| {
            let (&first, rest) = seed.split_first()?;
            let value = mp_manager::Postcard.decode(rest).ok()?;
            let mut out = vec![first | PICKLED];
            mp_manager::Pickle::new().encode(&value, &mut out).ok()?;
            Some(out)
        })
        .collect()
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
    let seeds = vec![
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
    ];
    let mut all = pickled(&seeds);
    all.extend(seeds);
    all.extend(
        CAPTURED
            .iter()
            .map(|h| [&[PICKLED][..], &unhex(h)].concat()),
    );
    // What only pickle carries: a proxy (RebuildProxy of a Token) and an
    // object of a class the server does not know, as arguments.
    let token = Object::new_obj(
        Global::new("multiprocessing.managers", "Token"),
        Tuple::new(),
    )
    .with_state(("Queue", ("127.0.0.1", 50000), "10000000001"));
    let proxy = Object::reduce(
        Global::new("multiprocessing.managers", "RebuildProxy"),
        (
            Value::Global(Global::new("multiprocessing.managers", "AutoProxy")),
            Value::from(token),
            "pickle",
            Dict::from_pairs([("exposed", ("put", "get"))]).unwrap_or_default(),
        ),
    );
    let point = Object::new_obj(Global::new("__main__", "Point"), Tuple::new())
        .with_state(Dict::from_pairs([("x", 1)]).unwrap_or_default());
    for (kind, method, args) in [
        (
            1,
            "__setitem__",
            Value::from(("q", Value::from(proxy.clone()))),
        ),
        (2, "append", Value::from((Value::from(point),))),
        (9, "__init__", Value::from((Value::from(proxy),))),
    ] {
        let mut out = vec![kind | PICKLED];
        let request = Value::from((method, args, Value::Dict(Dict::new())));
        mp_manager::Pickle::new()
            .encode(&request, &mut out)
            .expect("seeds encode");
        all.push(out);
    }
    all
}

/// Hostile request payloads must get a reply (or be dropped), never a
/// panic; every reply must decode as a `(kind, payload)` pair.
pub fn manager_request(data: &[u8]) {
    let reply = mp_manager::server::fuzz_request(data);
    if reply.is_empty() {
        return;
    }
    let value = if data[0] & PICKLED != 0 {
        mp_manager::Pickle::new().decode(&reply)
    } else {
        mp_manager::Postcard.decode(&reply)
    }
    .expect("our replies decode");
    mp_manager::server::decode_reply_kind(value).expect("our replies have a known kind");
}
