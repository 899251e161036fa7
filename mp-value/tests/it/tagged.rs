//! `Value`'s own serde form: postcard between Rust peers, and hostile
//! postcard input.

use mp_value::{BigInt, Dict, Global, Object, Set, Tuple, Value};

#[test]
fn every_variant_survives_postcard() {
    let obj = Object::new_obj(
        Global::new("multiprocessing.managers", "Token"),
        Tuple::new(),
    )
    .with_state(("Queue", ("127.0.0.1", 50000), "7f00"));
    let v = Value::Tuple(Tuple::from(vec![
        Value::None,
        true.into(),
        (-5).into(),
        Value::int(BigInt::from(-(1i128 << 100))),
        1.25.into(),
        "str".into(),
        Value::from(b"bytes".to_vec()),
        Value::ByteArray(b"ba".to_vec().into()),
    ]));
    let w = Value::from(vec![
        v,
        Value::Dict(Dict::from_pairs([(1, "a"), (2, "b")]).unwrap()),
        Value::Set(Set::from_values([1, 2]).unwrap()),
        Value::FrozenSet(Set::from_values(["x"]).unwrap()),
        Value::Global(Global::new("queue", "Full")),
        Value::Object(obj),
    ]);
    let bytes = postcard::to_allocvec(&w).unwrap();
    let back: Value = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, w);
    assert_eq!(back.to_string(), w.to_string());
    let Value::List(items) = &back else { panic!() };
    assert!(matches!(items[3], Value::FrozenSet(_)));
}

#[test]
fn hostile_postcard_is_an_error() {
    // A list tag nested far past the depth limit: [8, 1, 8, 1, ...].
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend([8, 1]);
    }
    deep.push(0);
    assert!(postcard::from_bytes::<Value>(&deep).is_err());
    // A list that claims 2^60 items.
    let mut huge = vec![8];
    huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(postcard::from_bytes::<Value>(&huge).is_err());
    // An unknown variant, and an unhashable dict key.
    assert!(postcard::from_bytes::<Value>(&[99]).is_err());
    let list_key = [10, 1, 8, 0, 0];
    assert!(postcard::from_bytes::<Value>(&list_key).is_err());
}
