//! `Manager()`'s list, dict and namespace, `Value` and `Array`:
//! CPython's `_TestContainers`, `_TestNamespace`-like and `_TestValue`
//! checks against the dummy objects.

use std::collections::HashMap;

use mp_dummy::{Array, DummyProcess, Error, Manager, Namespace, Value};

use crate::LONG;

#[test]
fn list() {
    // _TestContainers.test_list.
    let m = Manager::new();
    let a = m.list_from(&(0..10).collect::<Vec<i64>>());
    assert_eq!(a.copy().unwrap(), (0..10).collect::<Vec<_>>());
    let b = m.list::<i64>();
    assert!(b.is_empty().unwrap());
    b.extend(0..5).unwrap();
    assert_eq!(b.copy().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(b.get(-1).unwrap(), 4);
    assert_eq!(b.slice(Some(2), Some(5)).unwrap(), [2, 3, 4]);
    assert_eq!(b.slice(Some(-2), None).unwrap(), [3, 4]);
    assert_eq!(b.slice(Some(4), Some(1)).unwrap(), Vec::<i64>::new());
    assert_eq!(b.mul(2).unwrap(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    assert_eq!(b.add(&[5, 6]).unwrap(), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        a.copy().unwrap(),
        (0..10).collect::<Vec<_>>(),
        "add and mul leave it alone"
    );
    b.imul(2).unwrap();
    assert_eq!(b.len().unwrap(), 10);
    b.set(0, 100).unwrap();
    b.del(1).unwrap();
    b.insert(-100, -1).unwrap(); // clamps to the front
    b.insert(100, 999).unwrap(); // clamps to the end
    assert_eq!(b.copy().unwrap(), [-1, 100, 2, 3, 4, 0, 1, 2, 3, 4, 999]);
    assert_eq!(b.pop().unwrap(), 999);
    assert_eq!(b.pop_at(0).unwrap(), -1);
    assert_eq!(b.index(&2).unwrap(), 1);
    assert_eq!(b.count(&2).unwrap(), 2);
    assert!(b.contains(&100).unwrap() && !b.contains(&999).unwrap());
    b.remove(&100).unwrap();
    assert!(matches!(b.remove(&100), Err(Error::NotInList(_))));
    assert!(matches!(b.index(&100), Err(Error::NotInList(_))));
    b.sort(false).unwrap();
    assert_eq!(b.copy().unwrap(), [0, 1, 2, 2, 3, 3, 4, 4]);
    b.sort(true).unwrap();
    assert_eq!(b.copy().unwrap(), [4, 4, 3, 3, 2, 2, 1, 0]);
    b.reverse().unwrap();
    assert_eq!(b.reversed().unwrap(), [4, 4, 3, 3, 2, 2, 1, 0]);
    assert!(matches!(b.get(100), Err(Error::IndexError(_))));
    assert!(matches!(b.set(-100, 1), Err(Error::IndexError(_))));
    b.clear().unwrap();
    assert!(matches!(b.pop(), Err(Error::IndexError(m)) if m == "pop from empty list"));
}

#[test]
fn a_list_shared_by_processes() {
    let l = Manager::new().list::<u32>();
    let ps: Vec<_> = (0..4)
        .map(|i| {
            let l = l.clone();
            let p = DummyProcess::new(move |()| l.append(i).unwrap(), ());
            p.start().unwrap();
            p
        })
        .collect();
    for p in ps {
        p.join(LONG).unwrap();
    }
    l.sort(false).unwrap();
    assert_eq!(l.copy().unwrap(), [0, 1, 2, 3]);
}

#[test]
fn dict() {
    // _TestContainers.test_dict and test_dict_iter.
    let d = Manager::new().dict::<String, i32>();
    let indices: Vec<i32> = (65..70).collect();
    for i in &indices {
        d.set_item(char::from(*i as u8).to_string(), *i).unwrap();
    }
    assert_eq!(d.len().unwrap(), 5);
    assert_eq!(d.keys().unwrap(), ["A", "B", "C", "D", "E"]);
    assert_eq!(d.values().unwrap(), indices);
    assert_eq!(d.items().unwrap()[0], ("A".to_owned(), 65));
    assert_eq!(d.reversed().unwrap(), ["E", "D", "C", "B", "A"]);
    let copy: HashMap<String, i32> = d.copy().unwrap();
    assert_eq!(copy.len(), 5);
    assert_eq!(d.get_item(&"A".into()).unwrap(), 65);
    assert!(matches!(d.get_item(&"Z".into()), Err(Error::KeyError)));
    assert_eq!(d.get(&"Z".into()).unwrap(), None);
    assert!(d.contains(&"B".into()).unwrap());
    // Setting an existing key keeps its place.
    d.set_item("A".into(), 1).unwrap();
    assert_eq!(d.keys().unwrap()[0], "A");
    d.del_item(&"B".into()).unwrap();
    assert!(matches!(d.del_item(&"B".into()), Err(Error::KeyError)));
    assert_eq!(d.pop(&"C".into()).unwrap(), 67);
    assert!(matches!(d.pop(&"C".into()), Err(Error::KeyError)));
    assert_eq!(d.pop_or(&"C".into(), -1).unwrap(), -1);
    assert_eq!(d.setdefault("F".into(), 70).unwrap(), 70);
    assert_eq!(d.setdefault("F".into(), 0).unwrap(), 70);
    assert_eq!(d.popitem().unwrap(), ("F".into(), 70), "LIFO");
    d.update([("G".into(), 71), ("A".into(), 2)]).unwrap();
    assert_eq!(d.keys().unwrap(), ["A", "D", "E", "G"]);
    assert_eq!(d.to_map().unwrap()["A"], 2);
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    assert!(matches!(d.popitem(), Err(Error::KeyError)));
    let d2 = Manager::new().dict_from([(1, "one")]);
    assert_eq!(format!("{d2:?}"), r#"{1: "one"}"#);
}

#[test]
fn namespace() {
    // _TestNamespace.test_namespace.
    let n = Manager::new().namespace();
    n.set("name", "Bob".to_owned());
    n.set("job", "Builder".to_owned());
    n.set("_hidden", "not shown".to_owned());
    assert_eq!(n.get::<String>("name").unwrap(), "Bob");
    assert_eq!(n.repr(), r#"Namespace(job="Builder", name="Bob")"#);
    n.del("job").unwrap();
    assert_eq!(n.repr(), r#"Namespace(name="Bob")"#);
    assert!(matches!(n.get::<String>("job"), Err(Error::NoAttribute(a)) if a == "job"));
    assert!(matches!(n.del("job"), Err(Error::NoAttribute(_))));
    assert!(matches!(n.get::<u32>("name"), Err(Error::WrongType { .. })));
    assert!(n.contains("_hidden"));
    assert_eq!(n.names(), ["_hidden", "name"]);
    let shared = n.clone();
    shared.set("count", 1_u8);
    assert_eq!(n.get::<u8>("count").unwrap(), 1);
    assert!(Namespace::new().names().is_empty());
}

#[test]
fn value_and_array() {
    // _TestValue and _TestArray's shapes: a shared value and sequence.
    let v = Manager::new().value(1.5_f64);
    let v2 = v.clone();
    let p = DummyProcess::new(move |()| v2.set(v2.get() * 2.0), ());
    p.start().unwrap();
    p.join(LONG).unwrap();
    assert_eq!(v.get(), 3.0);
    let counter = Value::new(0_u64);
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let c = counter.clone();
            let p = DummyProcess::new(
                move |()| {
                    for _ in 0..100 {
                        c.update(|n| n + 1);
                    }
                },
                (),
            );
            p.start().unwrap();
            p
        })
        .collect();
    for p in ps {
        p.join(LONG).unwrap();
    }
    assert_eq!(counter.get(), 400);
    let a = Array::new(vec![0_i32; 4]);
    assert_eq!(a.len(), 4);
    a.set(3, 7).unwrap();
    assert!(matches!(a.set(4, 7), Err(Error::IndexError(_))));
    assert_eq!(a.to_vec(), [0, 0, 0, 7]);
    assert_eq!(format!("{a:?}"), "<Array([0, 0, 0, 7])>");
    let m = Manager::new().array(&[1_u8, 2]);
    assert_eq!(m.get(1).unwrap(), 2);
}

#[test]
fn the_manager_makes_every_thread_object_and_shutdown_does_nothing() {
    let m = Manager::new();
    m.start();
    let q = m.queue::<u8>(1);
    q.put(1, true, None).unwrap();
    let jq = m.joinable_queue::<u8>(0);
    jq.put(1, true, None).unwrap();
    let lock = m.lock();
    assert!(lock.acquire(false, None));
    assert!(m.rlock().acquire(false, None));
    assert!(m.semaphore(1).try_acquire());
    assert!(m.bounded_semaphore(1).release().is_err());
    let cond = m.condition(Some(lock.clone().into()));
    assert!(
        !cond.wait(Some(std::time::Duration::ZERO)).unwrap(),
        "the lock is held: waiting is allowed"
    );
    m.event().set();
    assert_eq!(m.barrier(1, None).unwrap().wait(None).unwrap(), 0);
    m.shutdown();
    // Still usable after shutdown.
    assert_eq!(q.get(false, None).unwrap(), 1);
    assert_eq!(mp_dummy::manager().list_from(&[1]).len().unwrap(), 1);
}
