//! Python's `==` and `hash()` over [`Value`], without recursion.
//!
//! Both walk the value with an explicit work list, so comparing or hashing
//! a value nested a million deep uses constant stack. (A dict or set
//! lookup with two keys of one 64-bit hash asks a nested `==` about them;
//! that nests only as deep as keys hold dicts holding such keys.)
//!
//! Numbers compare by value across `bool`, `int` (any size) and `float`,
//! exactly (an `i64` is not rounded to `f64` first), and hash alike: each
//! number that equals an integer is hashed as that integer.
//!
//! The hash of strings and bytes is keyed per process (std's `RandomState`,
//! as Python's `PYTHONHASHSEED`), so a peer cannot choose keys that all
//! collide.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use crate::int::BigInt;
use crate::table::Unhashable;
use crate::value::{ObjectOp, Set, Value};

fn state() -> &'static RandomState {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new)
}

/// A number in the form it is hashed in: integers (from bools, ints and
/// integral floats) by value, other floats by their bits.
enum Num {
    Small(i64),
    Big(BigInt),
    Float(u64),
}

fn canonical(v: &Value) -> Option<Num> {
    Some(match v {
        Value::Bool(b) => Num::Small(i64::from(*b)),
        Value::Int(i) => Num::Small(*i),
        Value::BigInt(b) => match b.to_i64() {
            Some(i) => Num::Small(i),
            None => Num::Big(b.clone()),
        },
        Value::Float(f) => {
            // 2^63: the first float above every i64.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if *f == 0.0 {
                Num::Small(0)
            } else if f.is_finite() && f.fract() == 0.0 && *f >= -LIMIT && *f < LIMIT {
                Num::Small(*f as i64)
            } else if let Some(b) = BigInt::from_f64(*f) {
                Num::Big(b)
            } else {
                Num::Float(f.to_bits())
            }
        }
        _ => return None,
    })
}

/// Python's `==` between two numbers (`None` if either is not a number).
fn num_eq(a: &Value, b: &Value) -> Option<bool> {
    Some(match (canonical(a)?, canonical(b)?) {
        (Num::Small(x), Num::Small(y)) => x == y,
        (Num::Big(x), Num::Big(y)) => x == y,
        // Non-integral floats (and NaN, inf) equal no integer, and two of
        // them compare as f64 (NaN != NaN).
        (Num::Float(_), Num::Float(_)) => match (a, b) {
            (Value::Float(x), Value::Float(y)) => x == y,
            _ => false,
        },
        _ => false,
    })
}

/// `==` of two values that hold no other values, without the work list
/// (`None` when either is a container or an object).
fn flat_eq(a: &Value, b: &Value) -> Option<bool> {
    if let Some(eq) = num_eq(a, b) {
        return Some(eq);
    }
    Some(match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(_) | Value::ByteArray(_), Value::Bytes(_) | Value::ByteArray(_)) => {
            bytes_of(a) == bytes_of(b)
        }
        (Value::Global(x), Value::Global(y)) => x == y,
        (
            Value::List(_)
            | Value::Tuple(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Object(_),
            _,
        ) => return None,
        _ => false,
    })
}

/// Python's `a == b`.
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    if let Some(eq) = flat_eq(a, b) {
        return eq;
    }
    let mut work: Vec<(&Value, &Value)> = vec![(a, b)];
    // Every pair on the work list must be equal, so a pair met again (a
    // shared sub-object, compared against the same one) is settled: past
    // a few thousand steps, pairs of containers are remembered, and a
    // tuple nested as a DAG (t1 = (t0, t0), t2 = (t1, t1), ...) compares in
    // linear time, not exponential.
    let mut steps = 0usize;
    let mut seen: std::collections::HashSet<(usize, usize)> = Default::default();
    while let Some((a, b)) = work.pop() {
        if a.is(b) {
            continue;
        }
        steps += 1;
        if steps > MEMO_AFTER
            && let (Some(x), Some(y)) = (container_id(a), container_id(b))
            && !seen.insert((x, y))
        {
            continue;
        }
        if let Some(eq) = num_eq(a, b) {
            if !eq {
                return false;
            }
            continue;
        }
        match (a, b) {
            (Value::None, Value::None) => {}
            (Value::Str(x), Value::Str(y)) => {
                if x != y {
                    return false;
                }
            }
            (Value::Bytes(_) | Value::ByteArray(_), Value::Bytes(_) | Value::ByteArray(_)) => {
                if bytes_of(a) != bytes_of(b) {
                    return false;
                }
            }
            (Value::List(x), Value::List(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                work.extend(x.iter().zip(y.iter()).rev());
            }
            (Value::Tuple(x), Value::Tuple(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                work.extend(x.iter().zip(y.iter()).rev());
            }
            (Value::Dict(x), Value::Dict(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                for e in x.0.iter() {
                    match single_match(&y.0, e.hash, &e.key) {
                        Match::None => return false,
                        Match::One(other) => {
                            work.push((&e.value, &other.value));
                            work.push((&e.key, &other.key));
                        }
                    }
                }
            }
            (Value::Set(x) | Value::FrozenSet(x), Value::Set(y) | Value::FrozenSet(y)) => {
                if !set_members_match(x, y, &mut work) {
                    return false;
                }
            }
            (Value::Global(x), Value::Global(y)) => {
                if x != y {
                    return false;
                }
            }
            (Value::Object(x), Value::Object(y)) => {
                let (x, y) = (x.data(), y.data());
                if x.constructor != y.constructor
                    || x.kwargs.is_some() != y.kwargs.is_some()
                    || x.ops.len() != y.ops.len()
                {
                    return false;
                }
                work.push((&x.callable, &y.callable));
                work.push((&x.args, &y.args));
                if let (Some(a), Some(b)) = (&x.kwargs, &y.kwargs) {
                    work.push((a, b));
                }
                for (p, q) in x.ops.iter().zip(&y.ops) {
                    match (p, q) {
                        (ObjectOp::Build(s), ObjectOp::Build(t)) => work.push((s, t)),
                        (ObjectOp::Append(s), ObjectOp::Append(t)) if s.len() == t.len() => {
                            work.extend(s.iter().zip(t))
                        }
                        (ObjectOp::SetItems(s), ObjectOp::SetItems(t)) if s.len() == t.len() => {
                            for ((k1, v1), (k2, v2)) in s.iter().zip(t) {
                                work.push((k1, k2));
                                work.push((v1, v2));
                            }
                        }
                        _ => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

/// Steps of `==` or `hash()` after which shared sub-objects are
/// remembered, so that a small pickle of a DAG cannot make them take
/// exponential time (CPython takes it, there).
const MEMO_AFTER: usize = 4096;

/// The identity of a value that holds other values.
fn container_id(v: &Value) -> Option<usize> {
    match v {
        Value::List(_)
        | Value::Tuple(_)
        | Value::Dict(_)
        | Value::Set(_)
        | Value::FrozenSet(_)
        | Value::Object(_) => v.identity(),
        _ => None,
    }
}

fn set_members_match<'a>(x: &'a Set, y: &'a Set, work: &mut Vec<(&'a Value, &'a Value)>) -> bool {
    if x.len() != y.len() {
        return false;
    }
    for e in x.0.iter() {
        match single_match(&y.0, e.hash, &e.key) {
            Match::None => return false,
            Match::One(other) => work.push((&e.key, &other.key)),
        }
    }
    true
}

enum Match<'a, V> {
    None,
    /// The one entry that can equal the key: the caller checks it (if it
    /// does not, no entry does).
    One(&'a crate::table::Entry<V>),
}

/// The entry of `table` that may equal `key`: the only one of its hash,
/// or, when several share it, the one a nested `==` picks.
fn single_match<'a, V>(table: &'a crate::table::Table<V>, hash: u64, key: &Value) -> Match<'a, V> {
    let mut candidates = table.with_hash(hash);
    let Some(first) = candidates.next() else {
        return Match::None;
    };
    let Some(second) = candidates.next() else {
        return Match::One(first);
    };
    for e in [first, second].into_iter().chain(candidates) {
        if py_eq(&e.key, key) {
            return Match::One(e);
        }
    }
    Match::None
}

fn bytes_of(v: &Value) -> &[u8] {
    match v {
        Value::Bytes(b) => b,
        Value::ByteArray(b) => b,
        _ => &[],
    }
}

// Tags that keep the hashes of different types apart.
const T_NONE: u8 = 0;
const T_NUM: u8 = 1;
const T_BIG: u8 = 2;
const T_FLOAT: u8 = 3;
const T_STR: u8 = 4;
const T_BYTES: u8 = 5;
const T_TUPLE: u8 = 6;
const T_LIST: u8 = 7;
const T_SET: u8 = 8;
const T_DICT: u8 = 9;
const T_GLOBAL: u8 = 10;
const T_OBJECT: u8 = 11;

enum Combine {
    Ordered(u8),
    Unordered(u8),
    Pairs(u8),
}

enum Work<'a> {
    /// Hash this value; `structural` inside objects, where lists, dicts,
    /// sets and bytearrays are hashed by content instead of refused.
    Value(&'a Value, bool),
    Const(u64),
    /// Combine the last `n` results into one (the hash of the container
    /// at this address, in this mode, when remembered).
    Combine(Combine, usize, Option<(usize, bool)>),
}

/// Python's `hash(value)`, keyed per process: equal values hash alike
/// (`hash(1) == hash(1.0) == hash(True)`); lists, dicts, sets and
/// bytearrays (and tuples holding them) are refused as Python refuses them.
pub(crate) fn py_hash(value: &Value) -> Result<u64, Unhashable> {
    let s = state();
    // The common keys (numbers, strings) without the work lists.
    if let Some(num) = canonical(value) {
        return Ok(hash_num(s, num));
    }
    match value {
        Value::Str(x) => return Ok(s.hash_one((T_STR, x.as_bytes()))),
        Value::Bytes(x) => return Ok(s.hash_one((T_BYTES, &x[..]))),
        _ => {}
    }
    let mut work = vec![Work::Value(value, false)];
    let mut results: Vec<u64> = Vec::new();
    // Past MEMO_AFTER steps, hashes of containers are remembered by
    // address (as for `==`: a DAG of shared tuples hashes in linear time).
    let mut steps = 0usize;
    let mut known: std::collections::HashMap<(usize, bool), u64> = Default::default();
    while let Some(w) = work.pop() {
        let (v, structural) = match w {
            Work::Const(c) => {
                results.push(c);
                continue;
            }
            Work::Combine(how, n, id) => {
                let parts = results.split_off(results.len() - n);
                let h = match how {
                    Combine::Ordered(tag) => s.hash_one((tag, &parts[..])),
                    Combine::Unordered(tag) => {
                        let sum = parts.iter().fold(0u64, |a, h| a.wrapping_add(*h));
                        s.hash_one((tag, sum, n))
                    }
                    Combine::Pairs(tag) => {
                        let sum = parts
                            .chunks(2)
                            .fold(0u64, |a, kv| a.wrapping_add(s.hash_one(kv)));
                        s.hash_one((tag, sum, n))
                    }
                };
                if let Some(key) = id {
                    known.insert(key, h);
                }
                results.push(h);
                continue;
            }
            Work::Value(v, structural) => (v, structural),
        };
        steps += 1;
        let remember = if steps > MEMO_AFTER {
            match container_id(v) {
                Some(id) => match known.get(&(id, structural)) {
                    Some(h) => {
                        results.push(*h);
                        continue;
                    }
                    None => Some((id, structural)),
                },
                None => None,
            }
        } else {
            None
        };
        if let Some(num) = canonical(v) {
            results.push(hash_num(s, num));
            continue;
        }
        let unhashable = || Unhashable {
            type_name: v.type_name(),
        };
        match v {
            Value::None => results.push(s.hash_one(T_NONE)),
            Value::Str(x) => results.push(s.hash_one((T_STR, x.as_bytes()))),
            Value::Bytes(x) => results.push(s.hash_one((T_BYTES, &x[..]))),
            Value::ByteArray(x) if structural => results.push(s.hash_one((T_BYTES, &x[..]))),
            Value::Tuple(t) => {
                work.push(Work::Combine(Combine::Ordered(T_TUPLE), t.len(), remember));
                work.extend(t.iter().rev().map(|c| Work::Value(c, structural)));
            }
            Value::List(l) if structural => {
                work.push(Work::Combine(Combine::Ordered(T_LIST), l.len(), remember));
                work.extend(l.iter().rev().map(|c| Work::Value(c, true)));
            }
            Value::FrozenSet(x) => push_set(&mut work, x, structural, remember),
            Value::Set(x) if structural => push_set(&mut work, x, true, remember),
            Value::Dict(d) if structural => {
                work.push(Work::Combine(Combine::Pairs(T_DICT), 2 * d.len(), remember));
                for (k, v) in d.iter().rev() {
                    work.push(Work::Value(v, true));
                    work.push(Work::Value(k, true));
                }
            }
            Value::Global(g) => results.push(s.hash_one((T_GLOBAL, g.module(), g.name()))),
            Value::Object(o) => {
                let d = o.data();
                let mut parts: Vec<Work<'_>> = vec![
                    Work::Const(d.constructor as u64),
                    Work::Value(&d.callable, true),
                    Work::Value(&d.args, true),
                ];
                if let Some(k) = &d.kwargs {
                    parts.push(Work::Value(k, true));
                }
                for op in &d.ops {
                    match op {
                        ObjectOp::Build(state) => {
                            parts.push(Work::Const(1));
                            parts.push(Work::Value(state, true));
                        }
                        ObjectOp::Append(items) => {
                            parts.push(Work::Const(2));
                            parts.extend(items.iter().map(|i| Work::Value(i, true)));
                        }
                        ObjectOp::SetItems(pairs) => {
                            parts.push(Work::Const(3));
                            for (k, v) in pairs {
                                parts.push(Work::Value(k, true));
                                parts.push(Work::Value(v, true));
                            }
                        }
                    }
                }
                work.push(Work::Combine(
                    Combine::Ordered(T_OBJECT),
                    parts.len(),
                    remember,
                ));
                work.extend(parts.into_iter().rev());
            }
            _ => return Err(unhashable()),
        }
    }
    Ok(results.pop().unwrap_or_default())
}

fn hash_num(s: &RandomState, num: Num) -> u64 {
    match num {
        Num::Small(i) => s.hash_one((T_NUM, i)),
        Num::Big(b) => s.hash_one((T_BIG, b.is_negative(), b.magnitude())),
        Num::Float(bits) => s.hash_one((T_FLOAT, bits)),
    }
}

fn push_set<'a>(
    work: &mut Vec<Work<'a>>,
    set: &'a Set,
    structural: bool,
    remember: Option<(usize, bool)>,
) {
    work.push(Work::Combine(
        Combine::Unordered(T_SET),
        set.len(),
        remember,
    ));
    work.extend(set.iter().map(|m| Work::Value(m, structural)));
}

impl Value {
    /// Python's `hash(self)`, consistent with `==` (equal values hash
    /// alike), keyed per process.
    ///
    /// # Errors
    ///
    /// [`Unhashable`] for a `list`, `dict`, `set` or `bytearray`, or a
    /// tuple or frozenset holding one (Python's `TypeError`). Objects hash
    /// by their construction, whatever they hold.
    pub fn py_hash(&self) -> Result<u64, Unhashable> {
        py_hash(self)
    }
}

impl PartialEq for Value {
    /// Python's `==`.
    fn eq(&self, other: &Value) -> bool {
        py_eq(self, other)
    }
}

macro_rules! eq_via_from {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Value {
            fn eq(&self, other: &$t) -> bool {
                py_eq(self, &Value::from(other.clone()))
            }
        }
    )*};
}

eq_via_from!(bool, i32, i64, u64, f64, &str, String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dict, Tuple};

    fn h(v: impl Into<Value>) -> u64 {
        v.into().py_hash().unwrap()
    }

    #[test]
    fn numbers_compare_and_hash_across_types() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_eq!(Value::Bool(true), Value::Int(1));
        assert_eq!(h(1), h(1.0));
        assert_eq!(h(true), h(1));
        assert_eq!(h(-0.0), h(0));
        assert_eq!(Value::Float(-0.0), Value::Int(0));
        assert_ne!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        let big = Value::int(1u128 << 100);
        assert_eq!(big, Value::Float(2f64.powi(100)));
        assert_eq!(h(big), h(2f64.powi(100)));
        // i64::MAX is not a float; the nearest float is 2^63, unequal.
        assert_ne!(Value::Int(i64::MAX), Value::Float(i64::MAX as f64));
        assert_eq!(Value::Int(i64::MIN), Value::Float(i64::MIN as f64));
        assert_eq!(h(i64::MIN), h(i64::MIN as f64));
        assert_ne!(Value::Float(0.5), Value::Int(0));
    }

    #[test]
    fn str_and_bytes_never_equal_and_containers_by_kind() {
        assert_ne!(Value::from("a"), Value::from(&b"a"[..]));
        assert_eq!(
            Value::from(&b"a"[..]),
            Value::ByteArray(std::sync::Arc::new(b"a".to_vec()))
        );
        let l = Value::List(vec![Value::Int(1)].into());
        let t = Value::Tuple(vec![Value::Int(1)].into());
        assert_ne!(l, t);
        assert_eq!(t, Value::Tuple(vec![Value::Float(1.0)].into()));
        assert!(l.py_hash().is_err());
        let t_list = Value::Tuple(Tuple::from(vec![l.clone()]));
        assert_eq!(t_list.py_hash().unwrap_err().type_name(), "list");
    }

    #[test]
    fn dicts_and_sets_compare_without_order() {
        let a = Dict::from_pairs([(1, "x"), (2, "y")]).unwrap();
        let b = Dict::from_pairs([(2.0, "y"), (1.0, "x")]).unwrap();
        assert_eq!(Value::Dict(a.clone()), Value::Dict(b));
        let c = Dict::from_pairs([(1, "x"), (3, "y")]).unwrap();
        assert_ne!(Value::Dict(a), Value::Dict(c));
        let s = Set::from_values([1, 2, 3]).unwrap();
        let f = Set::from_values([3.0, 2.0, 1.0]).unwrap();
        assert_eq!(Value::Set(s), Value::FrozenSet(f.clone()));
        assert_eq!(
            h(Value::FrozenSet(f)),
            h(Value::FrozenSet(Set::from_values([1, 2, 3]).unwrap()))
        );
    }

    #[test]
    fn shared_dags_hash_and_compare_in_linear_time() {
        // 2^80 paths, 80 distinct tuples: CPython would never finish.
        let dag = |leaf: i64| {
            let mut t = Value::from((leaf,));
            for _ in 0..80 {
                t = Value::from((t.clone(), t));
            }
            t
        };
        let (a, b) = (dag(1), dag(1));
        assert_eq!(a.py_hash().unwrap(), b.py_hash().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, dag(2));
    }

    #[test]
    fn deep_values_compare_hash_and_drop_without_recursion() {
        let mut a = Value::None;
        let mut b = Value::None;
        for _ in 0..200_000 {
            a = Value::Tuple(vec![a].into());
            b = Value::Tuple(vec![b].into());
        }
        assert_eq!(a, b);
        assert_eq!(a.py_hash().unwrap(), b.py_hash().unwrap());
        drop(a);
        drop(b);
        let mut d = Value::None;
        for i in 0..200_000 {
            d = Value::Dict(Dict::from_pairs([(Value::Int(i), d)]).unwrap());
            d = Value::List(vec![d].into());
        }
        drop(d);
    }
}
