//! dict, list, set, Value, Array, Namespace through their typed proxies,
//! with Python's semantics (MGR-09..15, MGR-17..26).

use std::collections::{BTreeMap, HashMap};

use mp_manager::ProxyType;
use mp_value::Value;

use crate::support::Served;

#[test]
fn dict_methods_follow_python() {
    let s = Served::new();
    let m = &s.manager;
    let d = m
        .dict_from(&[("foo".to_string(), 1), ("bar".to_string(), 2)])
        .unwrap();
    assert_eq!(d.len().unwrap(), 2);
    assert_eq!(d.get(&"foo".into()).unwrap(), Some(1));
    assert_eq!(d.get(&"nope".into()).unwrap(), None);
    assert_eq!(d.keys().unwrap(), ["foo", "bar"]);
    assert_eq!(d.values().unwrap(), [1, 2]);
    assert_eq!(d.items().unwrap(), [("foo".into(), 1), ("bar".into(), 2)]);
    assert_eq!(d.reversed().unwrap(), ["bar", "foo"]);
    let copy: HashMap<String, i64> = d.copy().unwrap();
    assert_eq!(copy.len(), 2);
    // `d | other` and `other | d`: plain dicts, the right operand wins.
    let other = BTreeMap::from([("foo".to_string(), 10), ("baz".to_string(), 3)]);
    let or: BTreeMap<String, i64> = d.or(&other).unwrap();
    assert_eq!(or["foo"], 10);
    let ror: BTreeMap<String, i64> = d.ror(&other).unwrap();
    assert_eq!(ror["foo"], 1);
    d.ior(&other).unwrap();
    assert_eq!(d.get_item(&"baz".into()).unwrap(), 3);
    let fk: BTreeMap<String, i64> = d.fromkeys(&["x".into(), "y".into()], &0).unwrap();
    assert_eq!(fk.len(), 2);
    // popitem is LIFO.
    assert_eq!(d.popitem().unwrap(), ("baz".to_string(), 3));
    assert_eq!(d.setdefault(&"new".into(), &7).unwrap(), 7);
    assert_eq!(d.setdefault(&"new".into(), &8).unwrap(), 7);
    assert_eq!(d.pop(&"new".into()).unwrap(), 7);
    assert!(d.pop(&"new".into()).unwrap_err().is("KeyError"));
    assert_eq!(d.pop_or(&"new".into(), &5).unwrap(), 5);
    d.update([(&"z".to_string(), &26)]).unwrap();
    assert!(d.contains(&"z".into()).unwrap());
    d.del_item(&"z".into()).unwrap();
    assert!(d.del_item(&"z".into()).unwrap_err().is("KeyError"));
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    assert!(d.popitem().unwrap_err().is("KeyError"));
}

#[test]
fn dict_keys_compare_as_in_python() {
    let s = Served::new();
    let d = s.manager.dict::<Value, String>().unwrap();
    d.set_item(&Value::Int(1), &"int".into()).unwrap();
    d.set_item(&Value::Float(1.0), &"float".into()).unwrap();
    d.set_item(&Value::Bool(true), &"bool".into()).unwrap();
    assert_eq!(d.len().unwrap(), 1);
    assert_eq!(d.get_item(&Value::Int(1)).unwrap(), "bool");
    let err = d
        .set_item(&Value::from(vec![Value::Int(1)]), &"list".into())
        .unwrap_err();
    assert!(err.is("TypeError"), "{err:?}");
}

#[test]
fn dict_iteration_lives_in_the_manager() {
    let s = Served::new();
    let d = s.manager.dict_from(&[(1, 'a'), (2, 'b')]).unwrap();
    let keys: Vec<i64> = d.iter().unwrap().map(|k| k.unwrap()).collect();
    assert_eq!(keys, [1, 2]);
    let it = d.iter().unwrap();
    assert_eq!(it.next_item().unwrap(), Some(1));
    d.clear().unwrap();
    let err = it.next_item().unwrap_err();
    assert!(err.is("RuntimeError"), "{err:?}");
    assert_eq!(it.next_item().unwrap(), None);
    drop((d, it));
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}

#[test]
fn list_methods_follow_python() {
    let s = Served::new();
    let l = s.manager.list_from(&[5, 6, 7]).unwrap();
    assert_eq!(l.get(0).unwrap(), 5);
    assert_eq!(l.get(-1).unwrap(), 7);
    assert!(l.get(3).unwrap_err().is("IndexError"));
    assert_eq!(l.slice(Some(1), None).unwrap(), [6, 7]);
    assert_eq!(l.slice(Some(-10), Some(100)).unwrap(), [5, 6, 7]);
    l.extend(&[1, 2]).unwrap();
    assert_eq!(l.len().unwrap(), 5);
    assert_eq!(l.count(&1).unwrap(), 1);
    assert_eq!(l.index(&7).unwrap(), 2);
    assert!(l.index(&42).unwrap_err().is("ValueError"));
    // `l + x`, `l * n` and `copy()` are plain lists; `*=` changes it.
    assert_eq!(l.add(&[9]).unwrap().len(), 6);
    assert_eq!(l.mul(2).unwrap().len(), 10);
    assert_eq!(l.copy().unwrap(), [5, 6, 7, 1, 2]);
    l.imul(2).unwrap();
    assert_eq!(l.len().unwrap(), 10);
    l.sort(false).unwrap();
    assert_eq!(l.slice(None, Some(3)).unwrap(), [1, 1, 2]);
    l.sort(true).unwrap();
    assert_eq!(l.get(0).unwrap(), 7);
    l.reverse().unwrap();
    assert_eq!(l.reversed().unwrap()[0], 7);
    assert_eq!(l.pop_at(0).unwrap(), 1);
    assert_eq!(l.pop().unwrap(), 7);
    l.insert(0, &100).unwrap();
    l.remove(&100).unwrap();
    assert!(l.remove(&100).unwrap_err().is("ValueError"));
    l.set(0, &3).unwrap();
    l.del(0).unwrap();
    let all: Vec<i64> = l.iter().map(|x| x.unwrap()).collect();
    assert_eq!(all.len(), 7);
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    assert!(l.pop().unwrap_err().is("IndexError"));
    let mixed = s
        .manager
        .list_from(&[Value::from(1), Value::from("a")])
        .unwrap();
    assert!(mixed.sort(false).unwrap_err().is("TypeError"));
}

fn last_digit(n: i64) -> i64 {
    n % 10
}

fn refuses_negatives(n: i64) -> i64 {
    assert!(n >= 0, "a negative item (expected by the test)");
    n
}

#[test]
fn list_sort_by_key_runs_the_key_in_the_manager() {
    let s = Served::new();
    let l = s.manager.list_from(&[21_i64, 13, 11, 3, 22, 1]).unwrap();
    // Stable: equal keys keep their order, reversed or not (as Python's).
    l.sort_by_key(last_digit, false).unwrap();
    assert_eq!(l.copy().unwrap(), [21, 11, 1, 22, 13, 3]);
    l.sort_by_key(last_digit, true).unwrap();
    assert_eq!(l.copy().unwrap(), [13, 3, 22, 21, 11, 1]);
    l.sort(true).unwrap();
    assert_eq!(l.copy().unwrap(), [22, 21, 13, 11, 3, 1]);
    // A failing key leaves the list as it was.
    l.append(&-5).unwrap();
    let err = l.sort_by_key(refuses_negatives, false).unwrap_err();
    assert!(err.is("RuntimeError"), "{err:?}");
    assert_eq!(l.copy().unwrap(), [22, 21, 13, 11, 3, 1, -5]);
    // So does an item that does not fit the key's argument type.
    let mixed = s
        .manager
        .list_from(&[Value::from(1), Value::from("a")])
        .unwrap();
    let typed: mp_manager::ListProxy<i64> =
        mp_manager::ProxyType::from_proxy(mp_manager::ProxyType::proxy(&mixed).clone());
    assert!(
        typed
            .sort_by_key(last_digit, false)
            .unwrap_err()
            .is("RuntimeError")
    );
    // A Python-style key (not a Rust key function) is refused.
    let mut kw = mp_value::Dict::new();
    kw.insert("key", Value::from("len")).unwrap();
    let err = mp_manager::ProxyType::proxy(&l)
        .call_kw::<()>("sort", &(), kw)
        .unwrap_err();
    assert!(err.is("TypeError"), "{err:?}");
}

#[test]
fn list_iteration_sees_later_changes() {
    let s = Served::new();
    let l = s.manager.list_from(&[1, 2]).unwrap();
    let mut it = l.iter();
    assert_eq!(it.next().unwrap().unwrap(), 1);
    l.append(&3).unwrap();
    let rest: Vec<i64> = it.map(|x| x.unwrap()).collect();
    assert_eq!(rest, [2, 3]);
}

#[test]
fn sets_follow_python() {
    let s = Served::new();
    let set = s.manager.set(&[1, 2, 3]).unwrap();
    assert_eq!(set.len().unwrap(), 3);
    set.add(&4).unwrap();
    assert!(set.contains(&4).unwrap());
    assert!(set.remove(&10).unwrap_err().is("KeyError"));
    set.discard(&10).unwrap();
    let mut u = set.op("union", &[5]).unwrap();
    u.sort();
    assert_eq!(u, [1, 2, 3, 4, 5]);
    assert_eq!(set.op("__and__", &[1, 9]).unwrap(), [1]);
    assert_eq!(set.op("__rsub__", &[1, 9]).unwrap(), [9]);
    let mut x = set.op("__xor__", &[1, 9]).unwrap();
    x.sort();
    assert_eq!(x, [2, 3, 4, 9]);
    set.op_in_place("__isub__", &[4]).unwrap();
    assert!(set.test("issubset", &[1, 2, 3, 4]).unwrap());
    assert!(set.test("__lt__", &[1, 2, 3, 4]).unwrap());
    assert!(!set.test("__lt__", &[1, 2, 3]).unwrap());
    assert!(set.test("isdisjoint", &[7]).unwrap());
    set.op_in_place("symmetric_difference_update", &[3, 8])
        .unwrap();
    let mut now = set.to_vec().unwrap();
    now.sort();
    assert_eq!(now, [1, 2, 8]);
    set.pop().unwrap();
    set.clear().unwrap();
    assert!(set.pop().unwrap_err().is("KeyError"));
    // A non-iterable initial value fails on the server.
    let err = s
        .manager
        .create::<mp_manager::Proxy>("set", &(1234,))
        .unwrap_err();
    assert!(matches!(err, mp_manager::Error::Remote(_)), "{err:?}");
}

#[test]
fn value_array_and_namespace() {
    let s = Served::new();
    let v = s.manager.value("i", &1_i64).unwrap();
    assert_eq!(v.get().unwrap(), 1);
    v.set(&2).unwrap();
    assert_eq!(v.get().unwrap(), 2);
    assert_eq!(v.proxy().referent_repr().unwrap(), "Value('i', 2)");

    let a = s.manager.array("i", &[0_i64, 1]).unwrap();
    assert_eq!(a.len().unwrap(), 2);
    a.set(1, &5).unwrap();
    assert_eq!(a.to_vec().unwrap(), [0, 5]);
    assert!(a.set(0, &(1_i64 << 40)).unwrap_err().is("OverflowError"));
    assert!(a.get(2).unwrap_err().is("IndexError"));
    let bad = s.manager.array("z", &[1]).unwrap_err();
    assert!(matches!(bad, mp_manager::Error::Remote(_)), "{bad:?}");

    let ns = s.manager.namespace().unwrap();
    ns.set("name", &"Bob").unwrap();
    assert_eq!(ns.get::<String>("name").unwrap(), "Bob");
    assert_eq!(ns.repr().unwrap(), "Namespace(name='Bob')");
    ns.del("name").unwrap();
    assert!(ns.get::<String>("name").unwrap_err().is("AttributeError"));
    assert!(ns.del("name").unwrap_err().is("AttributeError"));
}
