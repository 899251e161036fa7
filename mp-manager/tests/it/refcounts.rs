//! Reference counting: an object lives exactly as long as a proxy to it
//! exists anywhere, nested proxies and proxies in transit included
//! (CPython leaks the first, gh-103136, and can free the second early,
//! gh-119937).

use mp_manager::{DictProxy, ListProxy, ProxyType, QueueProxy};

use crate::support::Served;

#[test]
fn nested_proxies_live_while_a_container_holds_them() {
    let s = Served::new();
    let m = &s.manager;
    let outer = m.list::<DictProxy<String, i64>>().unwrap();
    let inner = m.dict::<String, i64>().unwrap();
    outer.append(&inner).unwrap();
    drop(inner);
    // Only the list holds the dict now: it stays.
    assert_eq!(m.number_of_objects().unwrap(), 2);
    let again = outer.get(0).unwrap();
    again.set_item(&"k".into(), &1).unwrap();
    drop(again);
    assert_eq!(outer.get(0).unwrap().get_item(&"k".into()).unwrap(), 1);
    // Removing it from the list frees it (gh-103136).
    outer.del(0).unwrap();
    assert_eq!(m.number_of_objects().unwrap(), 1);
    drop(outer);
    assert_eq!(m.number_of_objects().unwrap(), 0);
}

#[test]
fn proxies_given_to_a_constructor_live_while_the_new_object_holds_them() {
    // `manager.list([manager.list([i]) for i in range(3)])` in CPython: the
    // inner proxies are temporaries, the outer list keeps their referents.
    let s = Served::new();
    let m = &s.manager;
    let inner: Vec<ListProxy<i64>> = (0..3).map(|i| m.list_from(&[i]).unwrap()).collect();
    let outer = m.list_from(&inner).unwrap();
    drop(inner);
    assert_eq!(m.number_of_objects().unwrap(), 4);
    for i in 0..3 {
        assert_eq!(outer.get(i).unwrap().get(0).unwrap(), i);
    }
    drop(outer);
    assert_eq!(m.number_of_objects().unwrap(), 0);
}

#[test]
fn a_container_that_dies_frees_what_only_it_held() {
    let s = Served::new();
    let m = &s.manager;
    let d = m.dict::<String, ListProxy<i64>>().unwrap();
    for name in ["a", "b", "c"] {
        let l = m.list_from(&[1, 2]).unwrap();
        d.set_item(&name.into(), &l).unwrap();
    }
    let q = m.queue::<ListProxy<i64>>(0).unwrap();
    q.put(&d.get_item(&"a".into()).unwrap()).unwrap();
    assert_eq!(m.number_of_objects().unwrap(), 5);
    drop(d);
    // The queue still holds "a".
    assert_eq!(m.number_of_objects().unwrap(), 2);
    let a = q.get().unwrap();
    assert_eq!(a.len().unwrap(), 2);
    drop((a, q));
    assert_eq!(m.number_of_objects().unwrap(), 0);
}

#[test]
fn a_list_that_holds_itself_is_freed() {
    let s = Served::new();
    let l = s.manager.list::<mp_value::Value>().unwrap();
    let me = mp_value::to_value(&l).unwrap();
    l.append(&me).unwrap();
    drop(me);
    assert_eq!(s.manager.number_of_objects().unwrap(), 1);
    drop(l);
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}

#[test]
fn a_serialized_proxy_keeps_its_object_until_rebuilt() {
    let s = Served::new();
    let q = s.manager.queue::<i64>(0).unwrap();
    q.put(&7).unwrap();
    // Serialized (as for another process), then the original is dropped
    // before the copy is rebuilt.
    let bytes = postcard::to_allocvec(&q).unwrap();
    drop(q);
    assert_eq!(s.manager.number_of_objects().unwrap(), 1);
    let back: QueueProxy<i64> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back.get().unwrap(), 7);
    drop(back);
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
    // A copy rebuilt twice: the second takes a reference of its own.
    let d = s.manager.dict::<i64, i64>().unwrap();
    let bytes = postcard::to_allocvec(&d).unwrap();
    let one: DictProxy<i64, i64> = postcard::from_bytes(&bytes).unwrap();
    let two: DictProxy<i64, i64> = postcard::from_bytes(&bytes).unwrap();
    drop(d);
    one.set_item(&1, &1).unwrap();
    drop(one);
    assert_eq!(two.get_item(&1).unwrap(), 1);
    drop(two);
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}

#[test]
fn handles_share_one_server_reference() {
    let s = Served::new();
    let d = s.manager.dict::<i64, i64>().unwrap();
    let copies: Vec<_> = (0..10).map(|_| d.clone()).collect();
    let typed_again: DictProxy<i64, i64> = ProxyType::from_proxy(d.proxy().clone());
    drop(d);
    drop(copies);
    typed_again.set_item(&1, &2).unwrap();
    assert_eq!(s.manager.number_of_objects().unwrap(), 1);
    drop(typed_again);
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}

#[test]
fn threads_use_their_own_connections_and_refs_survive_thread_exit() {
    let s = Served::new();
    let d = s.manager.dict::<i64, i64>().unwrap();
    // A proxy made on another thread, whose thread then ends.
    let made = {
        let m = &s.manager;
        std::thread::scope(|sc| sc.spawn(|| m.list_from(&[1]).unwrap()).join().unwrap())
    };
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let d = d.clone();
            std::thread::spawn(move || {
                for j in 0..50 {
                    d.set_item(&(i * 100 + j), &j).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(d.len().unwrap(), 200);
    assert_eq!(made.len().unwrap(), 1);
    drop((d, made));
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}
