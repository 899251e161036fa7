//! `to_value`/`from_value`: the mapping a Python programmer expects, the
//! leniency Python has, and clear errors elsewhere.

use std::collections::{BTreeMap, HashSet};

use mp_value::{Constructor, Dict, Error, Global, Object, Tuple, Value, from_value, to_value};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Point {
    x: i32,
    y: f64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u8, u8),
    Named { name: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Blob {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    plain: Vec<u8>,
}

fn repr<T: Serialize>(v: &T) -> String {
    to_value(v).unwrap().to_string()
}

#[test]
fn rust_types_map_onto_python_types() {
    assert_eq!(
        repr(&(true, 1u8, -2i64, 1.5f32, 'c', "s")),
        "(True, 1, -2, 1.5, 'c', 's')"
    );
    assert_eq!(repr(&u64::MAX), "18446744073709551615");
    assert!(matches!(to_value(&u64::MAX).unwrap(), Value::BigInt(_)));
    assert_eq!(repr(&i128::MIN), "-170141183460469231731687303715884105728");
    assert_eq!(repr(&vec![1, 2]), "[1, 2]");
    assert_eq!(repr(&()), "None");
    assert_eq!(repr(&Some(3)), "3");
    assert_eq!(repr(&None::<u8>), "None");
    assert_eq!(repr(&Point { x: 1, y: 2.0 }), "{'x': 1, 'y': 2.0}");
    let mut m = BTreeMap::new();
    m.insert((1, 2), "pair");
    assert_eq!(repr(&m), "{(1, 2): 'pair'}");
    assert_eq!(repr(&Shape::Empty), "'Empty'");
    assert_eq!(repr(&Shape::Circle(1.0)), "{'Circle': 1.0}");
    assert_eq!(repr(&Shape::Rect(1, 2)), "{'Rect': (1, 2)}");
    assert_eq!(
        repr(&Shape::Named { name: "n".into() }),
        "{'Named': {'name': 'n'}}"
    );
    let blob = Blob {
        data: vec![0, 255],
        plain: vec![1],
    };
    assert_eq!(repr(&blob), "{'data': b'\\x00\\xff', 'plain': [1]}");
}

#[test]
fn everything_comes_back() {
    fn round<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: T) {
        let value = to_value(&v).unwrap();
        assert_eq!(from_value::<T>(&value).unwrap(), v, "through {value}");
    }
    round(Point { x: -1, y: 0.5 });
    round(vec![
        Shape::Empty,
        Shape::Circle(2.0),
        Shape::Rect(3, 4),
        Shape::Named { name: "a".into() },
    ]);
    round((u64::MAX, i128::MIN, u128::MAX, -0.0f64));
    round(Blob {
        data: vec![1, 2, 3],
        plain: vec![4, 5],
    });
    round(Some(Some(1)));
    round(BTreeMap::from([
        ("a".to_string(), vec![1, 2]),
        ("b".to_string(), vec![]),
    ]));
    round('é');
    round(String::from("text"));
}

#[test]
fn lenient_where_python_is() {
    let t = Value::from((1, 2, 3));
    assert_eq!(from_value::<Vec<u8>>(&t).unwrap(), [1, 2, 3]);
    let floats: Vec<f64> =
        from_value(&Value::from(vec![Value::Int(1), Value::Float(2.5)])).unwrap();
    assert_eq!(floats, [1.0, 2.5]);
    assert_eq!(
        from_value::<f64>(&Value::int(1u128 << 80)).unwrap(),
        2f64.powi(80)
    );
    let bytes = Value::from(b"ab".to_vec());
    assert_eq!(from_value::<Vec<u8>>(&bytes).unwrap(), b"ab");
    let set: HashSet<i32> = from_value(&Value::FrozenSet(
        mp_value::Set::from_values([1, 2]).unwrap(),
    ))
    .unwrap();
    assert_eq!(set, HashSet::from([1, 2]));
    // A tuple for a struct, fields in order.
    assert_eq!(
        from_value::<Point>(&Value::from((1, 2))).unwrap(),
        Point { x: 1, y: 2.0 }
    );
    // A dataclass instance (NEWOBJ + BUILD with its __dict__).
    let cls = Global::new("__main__", "Point");
    let state = Dict::from_pairs([("x", Value::Int(3)), ("y", Value::Float(4.5))]).unwrap();
    let obj = Object::new_obj(cls.clone(), Tuple::new()).with_state(state.clone());
    assert_eq!(
        from_value::<Point>(&obj.into()).unwrap(),
        Point { x: 3, y: 4.5 }
    );
    // A class with __slots__: state (None, slots).
    let slots = Object::new_obj(cls.clone(), Tuple::new()).with_state((Value::None, state));
    assert_eq!(
        from_value::<Point>(&slots.into()).unwrap(),
        Point { x: 3, y: 4.5 }
    );
    // A named tuple: created with its fields as arguments.
    let nt = Object::new(Constructor::NewObj, cls.into(), (5, 6.5).into());
    assert_eq!(
        from_value::<Point>(&nt.clone().into()).unwrap(),
        Point { x: 5, y: 6.5 }
    );
    assert_eq!(from_value::<(i32, f64)>(&nt.into()).unwrap(), (5, 6.5));
    // A value that reduces itself to a built-in container: a manager's
    // `dict.keys()` (`builtins.list(['a', 'b'])`), `set(())`.
    let keys = Object::reduce(
        Global::new("builtins", "list"),
        (vec![Value::from("a"), Value::from("b")],),
    );
    assert_eq!(from_value::<Vec<String>>(&keys.into()).unwrap(), ["a", "b"]);
    let empty = Object::reduce(Global::new("builtins", "set"), Tuple::new());
    assert!(
        from_value::<HashSet<i32>>(&empty.into())
            .unwrap()
            .is_empty()
    );
    let other = Object::reduce(Global::new("collections", "deque"), (vec![Value::Int(1)],));
    assert!(from_value::<Vec<i32>>(&other.into()).is_err());
}

#[test]
fn strict_elsewhere_with_clear_errors() {
    let err = |v: Value| -> String {
        match from_value::<i32>(&v) {
            Err(e) => e.to_string(),
            Ok(n) => panic!("{v} became {n}"),
        }
    };
    assert_eq!(
        err(Value::Float(1.5)),
        "invalid type: floating point `1.5`, expected i32"
    );
    assert_eq!(
        err(Value::Bool(true)),
        "invalid type: boolean `true`, expected i32"
    );
    assert_eq!(
        err(Value::from("1")),
        "invalid type: string \"1\", expected i32"
    );
    assert_eq!(
        err(Value::int(1u64 << 40)),
        "invalid value: integer `1099511627776`, expected i32"
    );
    assert!(from_value::<Vec<u8>>(&Value::from("ab")).is_err());
    assert!(from_value::<String>(&Value::from(b"ab".to_vec())).is_err());
    assert!(from_value::<()>(&Value::Int(0)).is_err());
    let e = from_value::<Point>(&Value::Dict(Dict::from_pairs([("x", 1)]).unwrap())).unwrap_err();
    assert_eq!(e.to_string(), "missing field `y`");
    let e = from_value::<Shape>(&Value::from("Square")).unwrap_err();
    assert!(e.to_string().starts_with("unknown variant `Square`"), "{e}");
    let e = from_value::<(u8, u8)>(&Value::from((1, 2, 3))).unwrap_err();
    assert!(e.to_string().contains("too many items"), "{e}");
    let e = from_value::<i32>(&Value::Global(Global::new("m", "f"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid type: class or function reference, expected i32"
    );
}

#[test]
fn unhashable_map_keys_are_refused() {
    let mut m = BTreeMap::new();
    m.insert(vec![1], 2);
    let e = to_value(&m).unwrap_err();
    assert!(matches!(e, Error::Unhashable(_)));
    // The Debug form names the cause, for `main() -> Result<..>`.
    assert_eq!(
        format!("{e:?}"),
        "a dict key or set member cannot be hashed: unhashable type: 'list'"
    );
}

#[test]
fn values_pass_through_whole_with_identity() {
    let shared = Value::from(vec![Value::Int(1)]);
    let obj = Value::Object(Object::reduce(Global::new("builtins", "KeyError"), ("k",)));
    #[derive(Serialize, Deserialize)]
    struct Holder {
        a: Value,
        b: Value,
        e: Value,
    }
    let v = to_value(&Holder {
        a: shared.clone(),
        b: shared.clone(),
        e: obj.clone(),
    })
    .unwrap();
    let Value::Dict(d) = &v else { panic!("{v}") };
    let a = d.get(&"a".into()).unwrap().unwrap();
    let b = d.get(&"b".into()).unwrap().unwrap();
    assert!(a.is(&shared) && b.is(&shared));
    let back: Holder = from_value(&v).unwrap();
    assert!(back.a.is(&shared));
    assert!(back.e.is(&obj));
    assert!(from_value::<Value>(&obj).unwrap().is(&obj));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut v = Value::None;
    for _ in 0..10_000 {
        v = Value::from(vec![v]);
    }
    #[derive(Deserialize, Debug)]
    #[serde(untagged)]
    #[allow(dead_code, reason = "only deserialized")]
    enum Tree {
        Leaf(()),
        Node(Vec<Tree>),
    }
    let e = from_value::<Tree>(&v).unwrap_err();
    assert!(
        e.to_string().contains("MAX_SERDE_DEPTH") || e.to_string().contains("did not match"),
        "{e}"
    );
    #[derive(Deserialize, Debug)]
    #[allow(dead_code, reason = "only deserialized")]
    struct Node(Option<Box<Node>>);
    let e = from_value::<Node>(&v).unwrap_err();
    assert!(
        matches!(e, Error::TooDeep) || e.to_string().contains("MAX_SERDE_DEPTH"),
        "{e:?}"
    );
    assert!(postcard::to_allocvec(&v).is_err());
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: u64,
    small: i8,
    wide: i128,
    name: String,
    score: Option<f64>,
    flags: Vec<bool>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    pairs: Vec<(u16, char)>,
    by_name: BTreeMap<String, i32>,
    shape: Shape,
    unit: (),
}

fn shape() -> impl proptest::strategy::Strategy<Value = Shape> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Shape::Empty),
        (-1e9f64..1e9).prop_map(Shape::Circle),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Shape::Rect(a, b)),
        ".{0,6}".prop_map(|name| Shape::Named { name }),
    ]
}

proptest::proptest! {
    #[test]
    fn typed_values_round_trip(
        id in proptest::prelude::any::<u64>(),
        small in proptest::prelude::any::<i8>(),
        wide in proptest::prelude::any::<i128>(),
        name in ".{0,10}",
        score in proptest::option::of(-1e300f64..1e300),
        flags in proptest::collection::vec(proptest::prelude::any::<bool>(), 0..4),
        blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10),
        pairs in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<char>()), 0..4),
        by_name in proptest::collection::btree_map(".{0,4}", proptest::prelude::any::<i32>(), 0..4),
        shape in shape(),
    ) {
        let r = Record { id, small, wide, name, score, flags, blob, pairs, by_name, shape, unit: () };
        let v = to_value(&r).unwrap();
        proptest::prop_assert_eq!(from_value::<Record>(&v).unwrap(), r.clone());
        // And through Value's own serde form.
        let bytes = postcard::to_allocvec(&v).unwrap();
        let back: Value = postcard::from_bytes(&bytes).unwrap();
        proptest::prop_assert_eq!(from_value::<Record>(&back).unwrap(), r);
    }
}

#[test]
fn values_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Value>();
    both::<Dict>();
    both::<Object>();
    both::<Error>();
}
