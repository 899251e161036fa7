//! Proptest strategies for arbitrary values (shared with the law tests).

use mp_value::{BigInt, Constructor, Dict, Global, Object, ObjectData, ObjectOp, Set, Value};
use proptest::prelude::*;

/// Values that Python can hash: numbers, strings, bytes, tuples and
/// frozensets of those, globals.
pub(crate) fn hashable() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::Tuple(v.into())),
            prop::collection::vec(inner, 0..4)
                .prop_map(|v| Value::FrozenSet(Set::from_values(v).expect("hashable"))),
        ]
    })
}

pub(crate) fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-3i64..3).prop_map(Value::Int),
        any::<i128>().prop_map(Value::int),
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| Value::int(BigInt::from_signed_bytes_le(&b))),
        any::<f64>().prop_map(Value::Float),
        (-3i32..3).prop_map(|i| Value::Float(f64::from(i))),
        Just(Value::Float(-0.0)),
        ".{0,8}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::from),
        ("[a-z_.]{1,8}", "[A-Za-z_.]{1,8}").prop_map(|(m, n)| Value::Global(Global::new(m, n))),
    ]
}

/// Any value, containers and objects included.
pub(crate) fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        scalar(),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::ByteArray(b.into())),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| Value::List(v.into())),
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| Value::Tuple(v.into())),
            prop::collection::vec((hashable(), inner.clone()), 0..5)
                .prop_map(|p| Value::Dict(Dict::from_pairs(p).expect("hashable keys"))),
            prop::collection::vec(hashable(), 0..5)
                .prop_map(|v| Value::Set(Set::from_values(v).expect("hashable"))),
            (
                inner.clone(),
                prop::collection::vec(inner.clone(), 0..3),
                prop::option::of(inner)
            )
                .prop_map(|(state, items, extra)| {
                    let mut ops = vec![ObjectOp::Build(state)];
                    if !items.is_empty() {
                        ops.push(ObjectOp::Append(items));
                    }
                    Value::Object(Object::from(ObjectData {
                        constructor: Constructor::NewObj,
                        callable: Value::Global(Global::new("m", "C")),
                        args: Value::Tuple(extra.into_iter().collect()),
                        kwargs: None,
                        ops,
                    }))
                }),
        ]
    })
}
