//! What CPython writes, we read; what we write is what CPython writes.
//!
//! For every value of `pickle_peer.py corpus` (manager requests and
//! replies, tokens and pickled proxies, exceptions, scalars at every
//! opcode boundary, shared sub-objects, batches, frames, big payloads,
//! objects of standard and user classes) and each protocol 2 to 5, we read
//! CPython's pickle; the protocol 4 one we write back byte for byte, the
//! others must give an equal value. (What CPython makes of the bytes we
//! write for values of our own making is `roundtrip.rs`.)

use std::collections::BTreeMap;

use mp_value::Value;

use crate::peer::{Python, each_cpython, run, unhex};

fn corpus(python: &Python) {
    let text = run(python, &["corpus", "with-proxy"]);
    let mut by_name: BTreeMap<String, BTreeMap<u8, Vec<u8>>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(name), Some(proto), Some(hex)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("bad corpus line {line:?}");
        };
        by_name
            .entry(name.to_string())
            .or_default()
            .insert(proto.parse().expect("a protocol"), unhex(hex));
    }
    assert!(by_name.len() > 30, "the corpus has all its values");
    for (name, pickles) in &by_name {
        let ours = |proto: u8| -> Value {
            mp_pickle::loads(&pickles[&proto])
                .unwrap_or_else(|e| panic!("3.{}: {name} protocol {proto}: {e:?}", python.minor))
        };
        let v4 = ours(4);
        let written = mp_pickle::dumps(&v4);
        assert!(
            written == pickles[&4],
            "3.{}: {name}: our protocol 4 bytes differ from CPython's\n ours: {}\n   py: {}",
            python.minor,
            crate::peer::hex(&written),
            crate::peer::hex(&pickles[&4]),
        );
        for proto in [2, 3, 5] {
            let v = ours(proto);
            if proto == 2 && name == "reply_oserror" {
                // Protocol 2 writes Python 2's name, exceptions.OSError (there
                // was no FileNotFoundError), and CPython's OSError(2, ...) turns
                // itself into FileNotFoundError when called; we keep the name.
                assert_eq!(
                    v.to_string(),
                    "('#ERROR', OSError(2, 'No such file', '/x'))"
                );
                continue;
            }
            assert_eq!(
                v, v4,
                "3.{}: {name}: protocol {proto} reads differently",
                python.minor
            );
        }
    }
}

each_cpython!(corpus);
