//! Property: any value we write, CPython reads into the same value; and
//! what CPython writes of it (protocols 2 to 5) we read back equal, and
//! write back (protocol 4) byte for byte.

use mp_value::{Dict, Global, Object, Set, Tuple, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::peer::{Echo, Python, each_cpython, hex};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (0i64..70_000).prop_map(Value::Int),
        any::<i128>().prop_map(Value::int),
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| Value::int(mp_value::BigInt::from_signed_bytes_le(&b))),
        any::<f64>().prop_map(Value::Float),
        ".{0,12}".prop_map(Value::from),
        "[a-z]{250,300}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::from),
    ]
}

fn hashable() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| Value::Tuple(v.into())),
            prop::collection::vec(inner, 0..4)
                .prop_map(|v| Value::FrozenSet(Set::from_values(v).expect("hashable"))),
        ]
    })
}

/// Values CPython can load: data, and objects of classes it can import.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        scalar(),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::ByteArray(b.into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| Value::List(v.into())),
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| Value::Tuple(v.into())),
            prop::collection::vec((hashable(), inner.clone()), 0..6)
                .prop_map(|p| Value::Dict(Dict::from_pairs(p).expect("hashable keys"))),
            prop::collection::vec(hashable(), 0..6)
                .prop_map(|v| Value::Set(Set::from_values(v).expect("hashable"))),
            inner.clone().prop_map(|v| {
                Object::reduce(Global::new("builtins", "KeyError"), Tuple::from(vec![v])).into()
            }),
            Just(Object::reduce(Global::new("_queue", "Empty"), Tuple::new()).into()),
            ("[a-z]{1,8}", any::<u16>(), "[0-9a-f]{12}").prop_map(|(t, port, id)| {
                Object::new_obj(
                    Global::new("multiprocessing.managers", "Token"),
                    Tuple::new(),
                )
                .with_state((t, ("127.0.0.1", port), id))
                .into()
            }),
            // One object shared twice.
            inner.prop_map(|v| {
                let shared = Value::from(vec![v]);
                Value::from((shared.clone(), shared))
            }),
        ]
    })
}

fn has_nan(v: &Value) -> bool {
    v.to_string().contains("nan")
}

fn check(python: &Python) {
    let echo = std::cell::RefCell::new(Echo::start(python));
    let minor = python.minor;
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&value(), |v| {
            let ours = mp_pickle::dumps(&v);
            let theirs = echo.borrow_mut().round(&ours).map_err(|e| {
                TestCaseError::fail(format!("3.{minor} refused {}: {e}", hex(&ours)))
            })?;
            for (pickle, proto) in theirs.iter().zip(2..) {
                let back = mp_pickle::loads(pickle).map_err(|e| {
                    TestCaseError::fail(format!("3.{minor} protocol {proto}: {e:?}"))
                })?;
                if !has_nan(&v) {
                    prop_assert_eq!(&back, &v, "3.{} protocol {}", minor, proto);
                }
                if proto == 4 {
                    prop_assert_eq!(
                        hex(&mp_pickle::dumps(&back)),
                        hex(pickle),
                        "3.{} rewrite",
                        minor
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

each_cpython!(check);
