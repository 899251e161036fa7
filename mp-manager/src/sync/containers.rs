//! The container types of `SyncManager`, as the server holds them: `dict`,
//! `list`, `set`, `Namespace`, `Value`, `Array` and the dict `Iterator`,
//! on the value model of `mp-value` (keys compare as Python compares
//! them: `1 == 1.0 == True`).

use std::cmp::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use mp_value::{Dict, Global, List, Object, Set, Value};

use crate::error::Exception;
use crate::shared::{Args, Call, Output, Raise, Shared};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ok(v: impl Into<Value>) -> Result<Output, Raise> {
    Ok(Output::Value(v.into()))
}

fn none() -> Result<Output, Raise> {
    Ok(Output::Value(Value::None))
}

/// Positional argument `i` of `method`, which must be given.
fn nth<'a>(a: &'a [Value], i: usize, method: &str) -> Result<&'a Value, Raise> {
    a.get(i).ok_or_else(|| {
        Exception::type_error(format!("{method}() missing required argument")).into()
    })
}

fn unhashable(e: mp_value::Unhashable) -> Raise {
    Exception::type_error(e.to_string()).into()
}

/// The items of an iterable argument (a list, tuple, set, dict's keys, a
/// str's characters, bytes' ints), as Python's `list(x)`.
pub(crate) fn iterate(v: &Value) -> Result<Vec<Value>, Raise> {
    Ok(match v {
        Value::List(l) => l.to_vec(),
        Value::Tuple(t) => t.to_vec(),
        Value::Set(s) | Value::FrozenSet(s) => s.iter().cloned().collect(),
        Value::Dict(d) => d.keys().cloned().collect(),
        Value::Str(s) => s.chars().map(|c| Value::from(c.to_string())).collect(),
        Value::Bytes(b) => b.iter().map(|x| Value::from(*x)).collect(),
        Value::ByteArray(b) => b.iter().map(|x| Value::from(*x)).collect(),
        other => {
            return Err(Exception::type_error(format!(
                "'{}' object is not iterable",
                other.type_name()
            ))
            .into());
        }
    })
}

/// Python's `<` ordering for `sort`, `min`…: numbers with numbers, strings
/// with strings, bytes with bytes, sequences item by item.
pub(crate) fn py_cmp(a: &Value, b: &Value) -> Result<Ordering, Raise> {
    fn num(v: &Value) -> Option<f64> {
        match v {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::BigInt(b) => b.to_f64(),
            _ => None,
        }
    }
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x.cmp(y)),
        (Value::List(x), Value::List(y)) => seq_cmp(x, y),
        (Value::Tuple(x), Value::Tuple(y)) => seq_cmp(x, y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal)),
            _ => Err(Exception::type_error(format!(
                "'<' not supported between instances of '{}' and '{}'",
                a.type_name(),
                b.type_name()
            ))
            .into()),
        },
    }
}

fn seq_cmp(x: &[Value], y: &[Value]) -> Result<Ordering, Raise> {
    for (a, b) in x.iter().zip(y) {
        if a != b {
            return py_cmp(a, b);
        }
    }
    Ok(x.len().cmp(&y.len()))
}

/// A Python index (negative from the end) into a sequence of `len`.
fn index(v: &Value, len: usize, what: &str) -> Result<usize, Raise> {
    let i = v
        .as_i64()
        .filter(|_| !matches!(v, Value::Float(_)))
        .ok_or_else(|| {
            Exception::type_error(format!(
                "{what} indices must be integers or slices, not {}",
                v.type_name()
            ))
        })?;
    let len = len as i64;
    let at = if i < 0 { i + len } else { i };
    if at < 0 || at >= len {
        return Err(Exception::index_error(format!("{what} index out of range")).into());
    }
    Ok(at as usize)
}

/// `slice(start, stop, step)` as pickle carries it (`REDUCE` of
/// `builtins.slice`).
pub(crate) fn slice_value(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> Value {
    Value::Object(Object::reduce(
        Global::new("builtins", "slice"),
        Value::from((start, stop, step)),
    ))
}

/// The indices a slice selects in a sequence of `len` (Python's
/// `slice.indices`), if `v` is a slice.
fn slice_indices(v: &Value, len: usize) -> Option<Result<Vec<usize>, Raise>> {
    let Value::Object(o) = v else { return None };
    if !o.global()?.is("builtins", "slice") {
        return None;
    }
    let parts = o.args().as_seq()?.to_vec();
    let get = |i: usize| -> Result<Option<i64>, Raise> {
        match parts.get(i) {
            None | Some(Value::None) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                Exception::type_error("slice indices must be integers or None").into()
            }),
        }
    };
    Some((|| {
        let (start, stop, step) = (get(0)?, get(1)?, get(2)?.unwrap_or(1));
        if step == 0 {
            return Err(Exception::value_error("slice step cannot be zero").into());
        }
        let len = len as i64;
        let clamp = |v: Option<i64>, default: i64, lo: i64, hi: i64| match v {
            None => default,
            Some(x) if x < 0 => (x + len).max(lo),
            Some(x) => x.min(hi),
        };
        let mut out = Vec::new();
        if step > 0 {
            let (mut i, stop) = (clamp(start, 0, 0, len), clamp(stop, len, 0, len));
            while i < stop {
                out.push(i as usize);
                i += step;
            }
        } else {
            let (mut i, stop) = (
                clamp(start, len - 1, -1, len - 1),
                clamp(stop, -1, -1, len - 1),
            );
            while i > stop {
                out.push(i as usize);
                i += step;
            }
        }
        Ok(out)
    })())
}

/// `dict`.
pub(crate) struct SharedDict(pub(crate) Arc<Mutex<Dict>>);

impl SharedDict {
    pub(crate) fn new(args: Args) -> Result<SharedDict, Raise> {
        let mut d = Dict::new();
        let kwds = args.kwds.clone();
        match args.args.as_slice() {
            [] => {}
            [source] => update_from(&mut d, source)?,
            more => {
                return Err(Exception::type_error(format!(
                    "dict expected at most 1 argument, got {}",
                    more.len()
                ))
                .into());
            }
        }
        for (k, v) in kwds.iter() {
            d.insert(k.clone(), v.clone()).map_err(unhashable)?;
        }
        Ok(SharedDict(Arc::new(Mutex::new(d))))
    }
}

/// `d.update(source)`: a dict, or pairs.
fn update_from(d: &mut Dict, source: &Value) -> Result<(), Raise> {
    match source {
        Value::Dict(src) => {
            for (k, v) in src.iter() {
                d.insert(k.clone(), v.clone()).map_err(unhashable)?;
            }
        }
        other => {
            for pair in iterate(other)? {
                let kv = pair.as_seq().filter(|p| p.len() == 2).ok_or_else(|| {
                    Exception::value_error("dictionary update sequence element has length != 2")
                })?;
                d.insert(kv[0].clone(), kv[1].clone()).map_err(unhashable)?;
            }
        }
    }
    Ok(())
}

/// The dict methods CPython's `DictProxy` exposes (3.14's list).
pub(crate) const DICT_EXPOSED: &[&str] = &[
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__ior__",
    "__iter__",
    "__len__",
    "__or__",
    "__reversed__",
    "__ror__",
    "__setitem__",
    "clear",
    "copy",
    "fromkeys",
    "get",
    "items",
    "keys",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
];

impl Shared for SharedDict {
    fn type_name(&self) -> &str {
        "dict"
    }

    fn methods(&self) -> Vec<&'static str> {
        DICT_EXPOSED.to_vec()
    }

    fn call(&self, method: &str, args: Args, _: &Call<'_>) -> Result<Output, Raise> {
        let a = args.args;
        let kwds = args.kwds;
        let arg = |i: usize| nth(&a, i, method);
        let mut d = lock(&self.0);
        match method {
            "__len__" => ok(d.len()),
            "__getitem__" => match d.get(arg(0)?).map_err(unhashable)? {
                Some(v) => ok(v.clone()),
                None => Err(Exception::key_error(arg(0)?.clone()).into()),
            },
            "get" => {
                let default = a.get(1).cloned().unwrap_or_default();
                ok(d.get(arg(0)?)
                    .map_err(unhashable)?
                    .cloned()
                    .unwrap_or(default))
            }
            "__setitem__" => {
                d.insert(arg(0)?.clone(), arg(1)?.clone())
                    .map_err(unhashable)?;
                none()
            }
            "__delitem__" => match d.remove(arg(0)?).map_err(unhashable)? {
                Some(_) => none(),
                None => Err(Exception::key_error(arg(0)?.clone()).into()),
            },
            "__contains__" => ok(d.contains_key(arg(0)?).map_err(unhashable)?),
            "keys" | "__reversed__" => {
                let mut keys: Vec<Value> = d.keys().cloned().collect();
                if method == "__reversed__" {
                    keys.reverse();
                }
                ok(Value::List(List::from(keys)))
            }
            "values" => ok(Value::List(d.values().cloned().collect())),
            "items" => ok(Value::List(
                d.iter()
                    .map(|(k, v)| Value::from((k.clone(), v.clone())))
                    .collect(),
            )),
            "copy" => ok(Value::Dict(d.clone())),
            "clear" => {
                *d = Dict::new();
                none()
            }
            "pop" => match d.remove(arg(0)?).map_err(unhashable)? {
                Some(v) => ok(v),
                None => match a.get(1) {
                    Some(default) => ok(default.clone()),
                    None => Err(Exception::key_error(arg(0)?.clone()).into()),
                },
            },
            "popitem" => match d.pop_last() {
                Some((k, v)) => ok(Value::from((k, v))),
                None => Err(Exception::key_error("popitem(): dictionary is empty").into()),
            },
            "setdefault" => {
                let key = arg(0)?;
                if let Some(v) = d.get(key).map_err(unhashable)? {
                    return ok(v.clone());
                }
                let default = a.get(1).cloned().unwrap_or_default();
                d.insert(key.clone(), default.clone()).map_err(unhashable)?;
                ok(default)
            }
            "update" | "__ior__" => {
                if let Some(src) = a.first() {
                    update_from(&mut d, src)?;
                }
                for (k, v) in kwds.iter() {
                    d.insert(k.clone(), v.clone()).map_err(unhashable)?;
                }
                none()
            }
            "__or__" | "__ror__" => {
                let Value::Dict(other) = arg(0)? else {
                    return ok(not_implemented());
                };
                let (first, second) = if method == "__or__" {
                    (d.clone(), other.clone())
                } else {
                    (other.clone(), d.clone())
                };
                let mut out = first;
                for (k, v) in second.iter() {
                    out.insert(k.clone(), v.clone()).map_err(unhashable)?;
                }
                ok(Value::Dict(out))
            }
            "fromkeys" => {
                let value = a.get(1).cloned().unwrap_or_default();
                let mut out = Dict::new();
                for k in iterate(arg(0)?)? {
                    out.insert(k, value.clone()).map_err(unhashable)?;
                }
                ok(Value::Dict(out))
            }
            "__iter__" => {
                let keys: Vec<Value> = d.keys().cloned().collect();
                drop(d);
                Ok(Output::Object(Arc::new(Iter::over_dict(keys, self))))
            }
            other => Err(crate::typed::no_such_method("dict", other)),
        }
    }

    fn repr(&self) -> String {
        Value::Dict(lock(&self.0).clone()).to_string()
    }

    fn get_value(&self) -> Result<Value, Raise> {
        Ok(Value::Dict(lock(&self.0).clone()))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        let d = lock(&self.0);
        for (k, v) in d.iter() {
            f(k);
            f(v);
        }
    }
}

/// Python's `NotImplemented` has no value form; a binary operator that
/// does not apply returns this marker and the proxy raises `TypeError`.
fn not_implemented() -> Value {
    Value::Global(Global::new("builtins", "NotImplemented"))
}

/// The server-side iterator of `dict.__iter__` (CPython's `Iterator` type
/// id): it yields the keys, and fails as Python's does if the dict changed
/// size meanwhile.
pub(crate) struct Iter {
    state: Mutex<IterState>,
}

struct IterState {
    items: std::vec::IntoIter<Value>,
    /// The dict, to notice a change of size (not kept alive by us).
    dict: Weak<Mutex<Dict>>,
    len: usize,
    done: bool,
}

impl Iter {
    fn over_dict(keys: Vec<Value>, dict: &SharedDict) -> Iter {
        let len = keys.len();
        Iter {
            state: Mutex::new(IterState {
                items: keys.into_iter(),
                dict: Arc::downgrade(&dict.0),
                len,
                done: false,
            }),
        }
    }
}

impl Shared for Iter {
    fn type_name(&self) -> &str {
        "dict_keyiterator"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["__next__", "close", "send", "throw"]
    }

    fn call(&self, method: &str, _: Args, _: &Call<'_>) -> Result<Output, Raise> {
        let mut st = lock(&self.state);
        match method {
            "__next__" | "send" => {
                if st.done {
                    return Err(Exception::stop_iteration().into());
                }
                if let Some(dict) = st.dict.upgrade()
                    && lock(&dict).len() != st.len
                {
                    st.done = true;
                    return Err(Exception::runtime_error(
                        "dictionary changed size during iteration",
                    )
                    .into());
                }
                match st.items.next() {
                    Some(v) => ok(v),
                    None => {
                        st.done = true;
                        Err(Exception::stop_iteration().into())
                    }
                }
            }
            "close" => {
                st.done = true;
                none()
            }
            "throw" => Err(Exception::type_error("throw() on a dict iterator").into()),
            other => Err(crate::typed::no_such_method("iterator", other)),
        }
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for v in lock(&self.state).items.as_slice() {
            f(v);
        }
    }
}

/// `list`.
pub(crate) struct SharedList(pub(crate) Mutex<Vec<Value>>);

impl SharedList {
    pub(crate) fn new(args: Args) -> Result<SharedList, Raise> {
        let b = args.bind("list", &["iterable"])?;
        let items = match b.value(0) {
            None => Vec::new(),
            Some(v) => iterate(v)?,
        };
        Ok(SharedList(Mutex::new(items)))
    }
}

/// The list methods CPython's `ListProxy` exposes (3.14's list).
pub(crate) const LIST_EXPOSED: &[&str] = &[
    "__add__",
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__imul__",
    "__len__",
    "__mul__",
    "__reversed__",
    "__rmul__",
    "__setitem__",
    "append",
    "clear",
    "copy",
    "count",
    "extend",
    "index",
    "insert",
    "pop",
    "remove",
    "reverse",
    "sort",
];

/// The keys of `items` under a `sort(key=...)` key: the bytes of a
/// pair of `mp_context::FnRef`s, a trampoline of the client's
/// (`fn((FnRef, Value)) -> Value`, which converts an item to the key
/// function's argument type and its key back to a value) and the key
/// function itself. Nothing of the list changes if a key fails.
fn sort_keys(key: &Value, items: &[Value]) -> Result<Vec<Value>, Raise> {
    let refused = |why: String| Raise::from(Exception::type_error(format!("sort(key=...): {why}")));
    let Value::Bytes(bytes) = key else {
        return Err(refused(
            "the key must be a Rust client's key function (ListProxy::sort_by_key); \
             a Python callable cannot run here"
                .into(),
        ));
    };
    let (trampoline, user): (mp_context::FnRef, mp_context::FnRef) =
        postcard::from_bytes(bytes).map_err(|e| refused(format!("not a key function: {e}")))?;
    let call = trampoline.resolve().map_err(|e| refused(e.to_string()))?;
    let mut keys = Vec::with_capacity(items.len());
    let mut out = Vec::new();
    for item in items {
        let args = postcard::to_allocvec(&(&user, item))
            .map_err(|e| refused(format!("cannot pass an item: {e}")))?;
        out.clear();
        call.call(&args, &mut out).map_err(|e| {
            Raise::from(Exception::runtime_error(format!(
                "sort(key=...): the key function failed: {e}"
            )))
        })?;
        let k: Value = postcard::from_bytes(&out)
            .map_err(|e| refused(format!("the key function's result: {e}")))?;
        keys.push(k);
    }
    Ok(keys)
}

impl Shared for SharedList {
    fn type_name(&self) -> &str {
        "list"
    }

    fn methods(&self) -> Vec<&'static str> {
        LIST_EXPOSED.to_vec()
    }

    fn call(&self, method: &str, args: Args, _: &Call<'_>) -> Result<Output, Raise> {
        let a = args.args;
        let kwds = args.kwds;
        let arg = |i: usize| nth(&a, i, method);
        let mut l = lock(&self.0);
        match method {
            "__len__" => ok(l.len()),
            "__getitem__" => {
                let key = arg(0)?;
                if let Some(ix) = slice_indices(key, l.len()) {
                    let items: Vec<Value> = ix?.into_iter().map(|i| l[i].clone()).collect();
                    return ok(Value::List(List::from(items)));
                }
                let i = index(key, l.len(), "list")?;
                ok(l[i].clone())
            }
            "__setitem__" => {
                let key = arg(0)?;
                if let Some(ix) = slice_indices(key, l.len()) {
                    let ix = ix?;
                    let new = iterate(arg(1)?)?;
                    let contiguous = ix.windows(2).all(|w| w[1] == w[0] + 1);
                    if contiguous {
                        let start = ix
                            .first()
                            .copied()
                            .unwrap_or_else(|| slice_start(key, l.len()));
                        let end = start + ix.len();
                        l.splice(start..end, new);
                    } else {
                        if new.len() != ix.len() {
                            return Err(Exception::value_error(format!(
                                "attempt to assign sequence of size {} to extended slice of size {}",
                                new.len(),
                                ix.len()
                            ))
                            .into());
                        }
                        for (i, v) in ix.into_iter().zip(new) {
                            l[i] = v;
                        }
                    }
                    return none();
                }
                let i = index(key, l.len(), "list assignment")?;
                l[i] = arg(1)?.clone();
                none()
            }
            "__delitem__" => {
                let key = arg(0)?;
                if let Some(ix) = slice_indices(key, l.len()) {
                    let mut ix = ix?;
                    ix.sort_unstable();
                    for i in ix.into_iter().rev() {
                        l.remove(i);
                    }
                    return none();
                }
                let i = index(key, l.len(), "list assignment")?;
                l.remove(i);
                none()
            }
            "__contains__" => ok(l.contains(arg(0)?)),
            "append" => {
                l.push(arg(0)?.clone());
                none()
            }
            "extend" => {
                let items = iterate(arg(0)?)?;
                l.extend(items);
                none()
            }
            "insert" => {
                let i = arg(0)?
                    .as_i64()
                    .ok_or_else(|| Exception::type_error("insert(): an integer is required"))?;
                let len = l.len() as i64;
                let at = if i < 0 { (i + len).max(0) } else { i.min(len) };
                l.insert(at as usize, arg(1)?.clone());
                none()
            }
            "pop" => {
                if l.is_empty() {
                    return Err(Exception::index_error("pop from empty list").into());
                }
                let i = match a.first() {
                    None => l.len() - 1,
                    Some(v) => index(v, l.len(), "pop")?,
                };
                ok(l.remove(i))
            }
            "remove" => {
                let v = arg(0)?;
                match l.iter().position(|x| x == v) {
                    Some(i) => {
                        l.remove(i);
                        none()
                    }
                    None => Err(Exception::value_error("list.remove(x): x not in list").into()),
                }
            }
            "index" => {
                let v = arg(0)?;
                let len = l.len() as i64;
                let bound = |i: Option<&Value>, default: i64| -> usize {
                    let x = i.and_then(Value::as_i64).unwrap_or(default);
                    (if x < 0 { (x + len).max(0) } else { x.min(len) }) as usize
                };
                let (start, stop) = (bound(a.get(1), 0), bound(a.get(2), len));
                match l[start..stop.max(start)].iter().position(|x| x == v) {
                    Some(i) => ok(start + i),
                    None => Err(Exception::value_error(format!("{v} is not in list")).into()),
                }
            }
            "count" => {
                let v = arg(0)?;
                ok(l.iter().filter(|x| *x == v).count())
            }
            "reverse" => {
                l.reverse();
                none()
            }
            "__reversed__" => {
                let mut items = l.clone();
                items.reverse();
                ok(Value::List(List::from(items)))
            }
            "sort" => {
                let reverse = kwds
                    .get(&Value::from("reverse"))
                    .ok()
                    .flatten()
                    .is_some_and(crate::shared::truthy);
                let key = kwds.get(&Value::from("key")).ok().flatten();
                let keys = match key {
                    None | Some(Value::None) => None,
                    Some(k) => Some(sort_keys(k, &l)?),
                };
                let mut failure = None;
                let mut cmp = |x: &Value, y: &Value| {
                    // Reversed by comparing the other way round, so that
                    // equal items keep their order, as Python's sort does.
                    let (x, y) = if reverse { (y, x) } else { (x, y) };
                    match py_cmp(x, y) {
                        Ok(o) => o,
                        Err(e) => {
                            failure.get_or_insert(e);
                            Ordering::Equal
                        }
                    }
                };
                let items = std::mem::take(&mut *l);
                let sorted = match keys {
                    None => {
                        let mut items = items;
                        items.sort_by(|x, y| cmp(x, y));
                        items
                    }
                    Some(keys) => {
                        let mut pairs: Vec<(Value, Value)> = keys.into_iter().zip(items).collect();
                        pairs.sort_by(|(kx, _), (ky, _)| cmp(kx, ky));
                        pairs.into_iter().map(|(_, v)| v).collect()
                    }
                };
                *l = sorted;
                match failure {
                    Some(e) => Err(e),
                    None => none(),
                }
            }
            "clear" => {
                l.clear();
                none()
            }
            "copy" => ok(Value::List(List::from(l.clone()))),
            "__add__" => {
                let other = match arg(0)? {
                    Value::List(o) => o.to_vec(),
                    other => {
                        return Err(Exception::type_error(format!(
                            "can only concatenate list (not \"{}\") to list",
                            other.type_name()
                        ))
                        .into());
                    }
                };
                let mut out = l.clone();
                out.extend(other);
                ok(Value::List(List::from(out)))
            }
            "__mul__" | "__rmul__" | "__imul__" => {
                let n = arg(0)?
                    .as_i64()
                    .ok_or_else(|| Exception::type_error("can't multiply sequence by non-int"))?;
                let n = usize::try_from(n).unwrap_or(0);
                let total = l.len().checked_mul(n).filter(|t| *t <= 1 << 28);
                let total =
                    total.ok_or_else(|| Exception::builtin("MemoryError", "list too long"))?;
                let mut out = Vec::with_capacity(total);
                // An empty list times any `n` is empty: no loop of a
                // peer's length (the bound above holds `n` only when the
                // list has items).
                if !l.is_empty() {
                    for _ in 0..n {
                        out.extend(l.iter().cloned());
                    }
                }
                if method == "__imul__" {
                    *l = out;
                    none()
                } else {
                    ok(Value::List(List::from(out)))
                }
            }
            other => Err(crate::typed::no_such_method("list", other)),
        }
    }

    fn repr(&self) -> String {
        Value::List(List::from(lock(&self.0).clone())).to_string()
    }

    fn get_value(&self) -> Result<Value, Raise> {
        Ok(Value::List(List::from(lock(&self.0).clone())))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for v in lock(&self.0).iter() {
            f(v);
        }
    }
}

/// Where an empty slice assignment inserts: its clamped start.
fn slice_start(key: &Value, len: usize) -> usize {
    let Value::Object(o) = key else { return len };
    let start = o
        .args()
        .as_seq()
        .and_then(|p| p.first())
        .and_then(Value::as_i64);
    let len = len as i64;
    (match start {
        None => 0,
        Some(x) if x < 0 => (x + len).max(0),
        Some(x) => x.min(len),
    }) as usize
}

/// `set` (Python 3.14's `SyncManager.set`).
pub(crate) struct SharedSet(pub(crate) Mutex<Set>);

impl SharedSet {
    pub(crate) fn new(args: Args) -> Result<SharedSet, Raise> {
        let b = args.bind("set", &["iterable"])?;
        let items = match b.value(0) {
            None => Vec::new(),
            Some(v) => iterate(v)?,
        };
        Ok(SharedSet(Mutex::new(
            Set::from_values(items).map_err(unhashable)?,
        )))
    }
}

/// The set methods CPython's `SetProxy` exposes.
pub(crate) const SET_EXPOSED: &[&str] = &[
    "__and__",
    "__class_getitem__",
    "__contains__",
    "__iand__",
    "__ior__",
    "__isub__",
    "__iter__",
    "__ixor__",
    "__len__",
    "__or__",
    "__rand__",
    "__ror__",
    "__rsub__",
    "__rxor__",
    "__sub__",
    "__xor__",
    "__ge__",
    "__gt__",
    "__le__",
    "__lt__",
    "add",
    "clear",
    "copy",
    "difference",
    "difference_update",
    "discard",
    "intersection",
    "intersection_update",
    "isdisjoint",
    "issubset",
    "issuperset",
    "pop",
    "remove",
    "symmetric_difference",
    "symmetric_difference_update",
    "union",
    "update",
];

fn set_of(v: &Value) -> Result<Set, Raise> {
    match v {
        Value::Set(s) | Value::FrozenSet(s) => Ok(s.clone()),
        other => Set::from_values(iterate(other)?).map_err(unhashable),
    }
}

fn set_op(op: &str, a: &Set, b: &Set) -> Result<Set, Raise> {
    let keep = |s: &Set, v: &Value| s.contains(v).unwrap_or(false);
    let items: Vec<Value> = match op {
        "union" => a.iter().chain(b.iter()).cloned().collect(),
        "intersection" => a.iter().filter(|v| keep(b, v)).cloned().collect(),
        "difference" => a.iter().filter(|v| !keep(b, v)).cloned().collect(),
        _ => a
            .iter()
            .filter(|v| !keep(b, v))
            .chain(b.iter().filter(|v| !keep(a, v)))
            .cloned()
            .collect(),
    };
    Set::from_values(items).map_err(unhashable)
}

impl Shared for SharedSet {
    fn type_name(&self) -> &str {
        "set"
    }

    fn methods(&self) -> Vec<&'static str> {
        SET_EXPOSED.to_vec()
    }

    fn call(&self, method: &str, args: Args, _: &Call<'_>) -> Result<Output, Raise> {
        let a = args.args;
        let arg = |i: usize| nth(&a, i, method);
        let mut s = lock(&self.0);
        let others = || -> Result<Vec<Set>, Raise> { a.iter().map(set_of).collect() };
        let op_name = |m: &str| -> &'static str {
            match m {
                "__or__" | "__ror__" | "__ior__" | "union" | "update" => "union",
                "__and__" | "__rand__" | "__iand__" | "intersection" | "intersection_update" => {
                    "intersection"
                }
                "__sub__" | "__rsub__" | "__isub__" | "difference" | "difference_update" => {
                    "difference"
                }
                _ => "symmetric_difference",
            }
        };
        match method {
            "__len__" => ok(s.len()),
            "__contains__" => ok(s.contains(arg(0)?).map_err(unhashable)?),
            "add" => {
                s.insert(arg(0)?.clone()).map_err(unhashable)?;
                none()
            }
            "remove" => {
                if s.remove(arg(0)?).map_err(unhashable)? {
                    none()
                } else {
                    Err(Exception::key_error(arg(0)?.clone()).into())
                }
            }
            "discard" => {
                s.remove(arg(0)?).map_err(unhashable)?;
                none()
            }
            "pop" => {
                let Some(first) = s.iter().next().cloned() else {
                    return Err(Exception::key_error("pop from an empty set").into());
                };
                s.remove(&first).map_err(unhashable)?;
                ok(first)
            }
            "clear" => {
                *s = Set::new();
                none()
            }
            "copy" => ok(Value::Set(s.clone())),
            "__iter__" => {
                let items: Vec<Value> = s.iter().cloned().collect();
                ok(Value::List(List::from(items)))
            }
            "__class_getitem__" => ok(Value::Global(Global::new("builtins", "set"))),
            "union" | "intersection" | "difference" | "symmetric_difference" => {
                let mut out = s.clone();
                for o in others()? {
                    out = set_op(method, &out, &o)?;
                }
                ok(Value::Set(out))
            }
            "update"
            | "intersection_update"
            | "difference_update"
            | "symmetric_difference_update" => {
                let mut out = s.clone();
                for o in others()? {
                    out = set_op(op_name(method), &out, &o)?;
                }
                *s = out;
                none()
            }
            "__or__" | "__and__" | "__sub__" | "__xor__" => {
                let o = set_of(arg(0)?)?;
                ok(Value::Set(set_op(op_name(method), &s, &o)?))
            }
            "__ror__" | "__rand__" | "__rsub__" | "__rxor__" => {
                let o = set_of(arg(0)?)?;
                ok(Value::Set(set_op(op_name(method), &o, &s)?))
            }
            "__ior__" | "__iand__" | "__isub__" | "__ixor__" => {
                let o = set_of(arg(0)?)?;
                *s = set_op(op_name(method), &s, &o)?;
                none()
            }
            "isdisjoint" => {
                let o = set_of(arg(0)?)?;
                ok(!s.iter().any(|v| o.contains(v).unwrap_or(false)))
            }
            "issubset" | "__le__" | "__lt__" => {
                let o = set_of(arg(0)?)?;
                let sub = s.iter().all(|v| o.contains(v).unwrap_or(false));
                ok(sub && (method != "__lt__" || s.len() < o.len()))
            }
            "issuperset" | "__ge__" | "__gt__" => {
                let o = set_of(arg(0)?)?;
                let sup = o.iter().all(|v| s.contains(v).unwrap_or(false));
                ok(sup && (method != "__gt__" || s.len() > o.len()))
            }
            other => Err(crate::typed::no_such_method("set", other)),
        }
    }

    fn repr(&self) -> String {
        Value::Set(lock(&self.0).clone()).to_string()
    }

    fn get_value(&self) -> Result<Value, Raise> {
        Ok(Value::Set(lock(&self.0).clone()))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for v in lock(&self.0).iter() {
            f(v);
        }
    }
}

/// `multiprocessing.managers.Namespace`: attributes by name.
pub(crate) struct Namespace(Mutex<Dict>);

impl Namespace {
    pub(crate) fn new(args: Args) -> Result<Namespace, Raise> {
        if !args.args.is_empty() {
            return Err(Exception::type_error("Namespace() takes keyword arguments only").into());
        }
        Ok(Namespace(Mutex::new(args.kwds)))
    }
}

impl Shared for Namespace {
    fn type_name(&self) -> &str {
        "multiprocessing.managers.Namespace"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["__delattr__", "__getattribute__", "__setattr__"]
    }

    fn call(&self, method: &str, args: Args, _: &Call<'_>) -> Result<Output, Raise> {
        let a = args.args;
        let name = match a.first() {
            Some(Value::Str(s)) => s.clone(),
            _ => {
                return Err(Exception::type_error("attribute name must be string").into());
            }
        };
        let missing = || -> Raise {
            Exception::attribute_error(format!("'Namespace' object has no attribute '{name}'"))
                .into()
        };
        let mut d = lock(&self.0);
        let key = Value::Str(name.clone());
        match method {
            "__getattribute__" => match d.get(&key).map_err(unhashable)? {
                Some(v) => ok(v.clone()),
                None => Err(missing()),
            },
            "__setattr__" => {
                let value = a.get(1).cloned().unwrap_or_default();
                d.insert(key, value).map_err(unhashable)?;
                none()
            }
            "__delattr__" => match d.remove(&key).map_err(unhashable)? {
                Some(_) => none(),
                None => Err(missing()),
            },
            other => Err(crate::typed::no_such_method("Namespace", other)),
        }
    }

    fn repr(&self) -> String {
        let d = lock(&self.0);
        let mut parts: Vec<String> = d
            .iter()
            .filter_map(|(k, v)| {
                let k = k.as_str()?;
                (!k.starts_with('_')).then(|| format!("{k}={v}"))
            })
            .collect();
        parts.sort();
        format!("Namespace({})", parts.join(", "))
    }

    fn get_value(&self) -> Result<Value, Raise> {
        Ok(Value::Dict(lock(&self.0).clone()))
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for v in lock(&self.0).values() {
            f(v);
        }
    }
}

/// `multiprocessing.managers.Value(typecode, value)`.
pub(crate) struct SharedValue {
    typecode: String,
    value: Mutex<Value>,
}

impl SharedValue {
    pub(crate) fn new(args: Args) -> Result<SharedValue, Raise> {
        let mut b = args.bind("Value", &["typecode", "value", "lock"])?;
        let typecode = match b.required(0)? {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        };
        let value = b.required(1)?;
        Ok(SharedValue {
            typecode,
            value: Mutex::new(value),
        })
    }
}

impl Shared for SharedValue {
    fn type_name(&self) -> &str {
        "multiprocessing.managers.Value"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["get", "set"]
    }

    fn call(&self, method: &str, args: Args, _: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "get" => ok(lock(&self.value).clone()),
            "set" => {
                let mut b = args.bind("set", &["value"])?;
                *lock(&self.value) = b.required(0)?;
                none()
            }
            other => Err(crate::typed::no_such_method("Value", other)),
        }
    }

    fn repr(&self) -> String {
        format!(
            "Value({}, {})",
            Value::from(self.typecode.as_str()),
            lock(&self.value)
        )
    }

    fn get_value(&self) -> Result<Value, Raise> {
        Ok(lock(&self.value).clone())
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        f(&lock(&self.value));
    }
}

/// `array.array(typecode, sequence)` (what `SyncManager.Array` creates):
/// items checked against the typecode.
pub(crate) struct SharedArray {
    typecode: char,
    items: Mutex<Vec<Value>>,
}

impl SharedArray {
    pub(crate) fn new(args: Args) -> Result<SharedArray, Raise> {
        let b = args.bind("Array", &["typecode", "sequence", "lock"])?;
        let typecode: String = b.arg(0)?;
        let mut chars = typecode.chars();
        let (Some(tc), None) = (chars.next(), chars.next()) else {
            return Err(
                Exception::type_error("array() argument 1 must be a unicode character").into(),
            );
        };
        if !"bBuhHiIlLqQfd".contains(tc) {
            return Err(Exception::value_error(
                "bad typecode (must be b, B, u, h, H, i, I, l, L, q, Q, f or d)",
            )
            .into());
        }
        let items = match b.value(1) {
            None => Vec::new(),
            Some(v) => iterate(v)?,
        };
        let items = items
            .into_iter()
            .map(|v| check_item(tc, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SharedArray {
            typecode: tc,
            items: Mutex::new(items),
        })
    }
}

/// An array item of typecode `tc`: in range for integer codes, a float for
/// `f`/`d`, one character for `u`.
fn check_item(tc: char, v: Value) -> Result<Value, Raise> {
    let range = |lo: i128, hi: i128| -> Result<Value, Raise> {
        match &v {
            Value::Int(i) if i128::from(*i) >= lo && i128::from(*i) <= hi => Ok(v.clone()),
            Value::Int(_) | Value::BigInt(_) => {
                Err(Exception::builtin("OverflowError", "array item out of range").into())
            }
            other => Err(Exception::type_error(format!(
                "'{}' object cannot be interpreted as an integer",
                other.type_name()
            ))
            .into()),
        }
    };
    match tc {
        'b' => range(-128, 127),
        'B' => range(0, 255),
        'h' => range(-32768, 32767),
        'H' => range(0, 65535),
        'i' | 'l' => range(i128::from(i32::MIN), i128::from(i32::MAX)).or_else(|e| {
            if tc == 'l' {
                range(i128::from(i64::MIN), i128::from(i64::MAX))
            } else {
                Err(e)
            }
        }),
        'I' => range(0, i128::from(u32::MAX)),
        'L' | 'Q' => range(0, i128::from(u64::MAX)),
        'q' => range(i128::from(i64::MIN), i128::from(i64::MAX)),
        'f' | 'd' => match v {
            Value::Float(_) => Ok(v),
            Value::Int(i) => Ok(Value::Float(i as f64)),
            other => Err(Exception::type_error(format!(
                "must be real number, not {}",
                other.type_name()
            ))
            .into()),
        },
        _ => match &v {
            Value::Str(s) if s.chars().count() == 1 => Ok(v.clone()),
            _ => Err(Exception::type_error("array item must be a unicode character").into()),
        },
    }
}

impl Shared for SharedArray {
    fn type_name(&self) -> &str {
        "array.array"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["__getitem__", "__len__", "__setitem__"]
    }

    fn call(&self, method: &str, args: Args, _: &Call<'_>) -> Result<Output, Raise> {
        let a = args.args;
        let mut items = lock(&self.items);
        match method {
            "__len__" => ok(items.len()),
            "__getitem__" => {
                let key = a
                    .first()
                    .ok_or_else(|| Exception::type_error("__getitem__() needs an index"))?;
                if let Some(ix) = slice_indices(key, items.len()) {
                    let out: Vec<Value> = ix?.into_iter().map(|i| items[i].clone()).collect();
                    return ok(Value::List(List::from(out)));
                }
                let i = index(key, items.len(), "array")?;
                ok(items[i].clone())
            }
            "__setitem__" => {
                let (Some(key), Some(v)) = (a.first(), a.get(1)) else {
                    return Err(
                        Exception::type_error("__setitem__() needs an index and a value").into(),
                    );
                };
                if let Some(ix) = slice_indices(key, items.len()) {
                    let ix = ix?;
                    let new = iterate(v)?;
                    if new.len() != ix.len() {
                        return Err(Exception::value_error(
                            "can only assign array of the same length to a slice of an array",
                        )
                        .into());
                    }
                    for (i, v) in ix.into_iter().zip(new) {
                        items[i] = check_item(self.typecode, v)?;
                    }
                    return none();
                }
                let i = index(key, items.len(), "array assignment")?;
                items[i] = check_item(self.typecode, v.clone())?;
                none()
            }
            other => Err(crate::typed::no_such_method("array", other)),
        }
    }

    fn repr(&self) -> String {
        let items = lock(&self.items);
        if items.is_empty() {
            format!("array('{}')", self.typecode)
        } else {
            format!(
                "array('{}', {})",
                self.typecode,
                Value::List(List::from(items.clone()))
            )
        }
    }

    fn get_value(&self) -> Result<Value, Raise> {
        Ok(Value::List(List::from(lock(&self.items).clone())))
    }
}
