//! The protocol end to end: create, call, refcounts.

use crate::support::Served;

#[test]
fn dict_round_trip_and_refcounts() {
    let s = Served::new();
    let d = s.manager.dict::<String, i64>().unwrap();
    d.set_item(&"a".into(), &1).unwrap();
    assert_eq!(d.get_item(&"a".into()).unwrap(), 1);
    assert!(d.get_item(&"b".into()).unwrap_err().is("KeyError"));
    assert_eq!(s.manager.number_of_objects().unwrap(), 1);
    let d2 = d.clone();
    drop(d);
    assert_eq!(s.manager.number_of_objects().unwrap(), 1);
    drop(d2);
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}
