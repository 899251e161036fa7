//! The typed proxies of `SyncManager`'s types, with the methods of
//! CPython's proxy classes (3.14's lists: list `clear`/`copy`, dict `|`,
//! `reversed`, `fromkeys`, the `set` type).
//!
//! Blocking calls have a form with a timeout; a timeout that passes shows
//! as CPython shows it (`queue.Empty`, `False` from `acquire`).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use mp_value::Dict;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::proxy::ProxyType;

use super::containers::slice_value;

/// `len()` and `is_empty()` of the sized proxies.
macro_rules! sized {
    ($name:ident<$($t:ident),*>) => {
        impl<$($t: Serialize + DeserializeOwned),*> $name<$($t),*> {
            /// `len(x)`.
            ///
            /// # Errors
            ///
            /// Connection errors (and so for every method of every proxy;
            /// the others add the exceptions they name).
            pub fn len(&self) -> Result<usize> {
                self.proxy.call("__len__", &())
            }

            /// `len(x) == 0`.
            ///
            /// # Errors
            ///
            /// As `len`.
            pub fn is_empty(&self) -> Result<bool> {
                Ok(self.len()? == 0)
            }
        }
    };
}

sized!(DictProxy<K, V>);
sized!(ListProxy<T>);
sized!(ArrayProxy<T>);
sized!(SetProxy<T>);

/// A timeout in seconds, as the server reads it (`None`: no timeout).
fn secs(t: Option<Duration>) -> Option<f64> {
    t.map(|d| d.as_secs_f64())
}

crate::__proxy_type!(
    /// A proxy to a shared `dict` (CPython's `DictProxy`), with keys of
    /// type `K` and values of type `V`. Keys compare as Python compares
    /// them (`1`, `1.0` and `true` are one key).
    DictProxy<K, V>,
    "DictProxy"
);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d[key]`.
    ///
    /// # Errors
    ///
    /// `KeyError` ([`Error::Raised`](crate::Error::Raised)) for a missing key.
    pub fn get_item(&self, key: &K) -> Result<V> {
        self.proxy.call("__getitem__", &(key,))
    }

    /// `d.get(key)`: `None` for a missing key.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.proxy.call("get", &(key,))
    }

    /// `d[key] = value`.
    ///
    /// # Errors
    ///
    /// `TypeError` for a key Python cannot hash.
    pub fn set_item(&self, key: &K, value: &V) -> Result<()> {
        self.proxy.call("__setitem__", &(key, value))
    }

    /// `del d[key]`.
    ///
    /// # Errors
    ///
    /// `KeyError` for a missing key.
    pub fn del_item(&self, key: &K) -> Result<()> {
        self.proxy.call("__delitem__", &(key,))
    }

    /// `key in d`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn contains(&self, key: &K) -> Result<bool> {
        self.proxy.call("__contains__", &(key,))
    }

    /// `d.keys()` (a list, as the proxy returns it).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.proxy.call("keys", &())
    }

    /// `d.values()`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn values(&self) -> Result<Vec<V>> {
        self.proxy.call("values", &())
    }

    /// `d.items()`, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.proxy.call("items", &())
    }

    /// `list(reversed(d))`: the keys, last inserted first.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn reversed(&self) -> Result<Vec<K>> {
        self.proxy.call("__reversed__", &())
    }

    /// `d.pop(key)`.
    ///
    /// # Errors
    ///
    /// `KeyError` for a missing key.
    pub fn pop(&self, key: &K) -> Result<V> {
        self.proxy.call("pop", &(key,))
    }

    /// `d.pop(key, default)`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn pop_or(&self, key: &K, default: &V) -> Result<V> {
        self.proxy.call("pop", &(key, default))
    }

    /// `d.popitem()`: the last inserted pair (LIFO).
    ///
    /// # Errors
    ///
    /// `KeyError` for an empty dict.
    pub fn popitem(&self) -> Result<(K, V)> {
        self.proxy.call("popitem", &())
    }

    /// `d.setdefault(key, default)`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::set_item`].
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        self.proxy.call("setdefault", &(key, default))
    }

    /// `d.update(pairs)`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::set_item`].
    pub fn update<'a>(&self, pairs: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let pairs: Vec<(&K, &V)> = pairs.into_iter().collect();
        self.proxy.call("update", &(pairs,))
    }

    /// `d |= other` (in place, on the server).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::set_item`].
    pub fn ior<M: Serialize>(&self, other: &M) -> Result<()> {
        self.proxy.call("__ior__", &(other,))
    }

    /// `d | other`: a plain dict (the right operand's values win), read
    /// into `M` (a `HashMap`, a `BTreeMap`, a [`Value`](mp_value::Value)…).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn or<M: Serialize + DeserializeOwned>(&self, other: &M) -> Result<M> {
        self.proxy.call("__or__", &(other,))
    }

    /// `other | d`: a plain dict (`d`'s values win).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn ror<M: Serialize + DeserializeOwned>(&self, other: &M) -> Result<M> {
        self.proxy.call("__ror__", &(other,))
    }

    /// `d.copy()`: a plain dict, read into `M`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn copy<M: DeserializeOwned>(&self) -> Result<M> {
        self.proxy.call("copy", &())
    }

    /// `d.fromkeys(keys, value)`: a plain dict of `keys`, each with
    /// `value`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn fromkeys<M: DeserializeOwned>(&self, keys: &[K], value: &V) -> Result<M> {
        self.proxy.call("fromkeys", &(keys, value))
    }

    /// `d.clear()`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// `iter(d)`: an iterator that lives in the manager (CPython's
    /// `Iterator` type id), over the keys.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn iter(&self) -> Result<IteratorProxy<K>> {
        self.proxy.call_proxy("__iter__", &())
    }

    /// A copy of the whole dict as a `HashMap`.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::len`] (connection errors).
    pub fn to_map(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        self.proxy.get_value()
    }
}

crate::__proxy_type!(
    /// A proxy to an iterator in the manager (CPython's `IteratorProxy`):
    /// `next` until `StopIteration`, which is `None` here. Also an
    /// `Iterator` of `Result<T>`.
    IteratorProxy<T>,
    "IteratorProxy"
);

impl<T: DeserializeOwned> IteratorProxy<T> {
    /// `next(it)`: `None` once exhausted (and every time after).
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the dict changed size during iteration.
    pub fn next_item(&self) -> Result<Option<T>> {
        match self.proxy.call::<T>("__next__", &()) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is("StopIteration") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<T: DeserializeOwned> Iterator for IteratorProxy<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        self.next_item().transpose()
    }
}

/// What the manager calls for [`ListProxy::sort_by_key`]: the item as the
/// key function's `T`, the key back as a value. A failure panics, which the
/// manager's call catches and reports.
fn sort_key<T, K>((key, item): (mp_context::FnRef, mp_value::Value)) -> mp_value::Value
where
    T: Serialize + DeserializeOwned,
    K: Serialize + DeserializeOwned,
{
    let t: T = mp_value::from_value(&item).unwrap_or_else(|e| {
        panic!(
            "a list item does not fit {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let args = postcard::to_allocvec(&t).unwrap_or_else(|e| panic!("cannot encode an item: {e}"));
    let key = key.resolve().unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    key.call(&args, &mut out).unwrap_or_else(|e| panic!("{e}"));
    let k: K = postcard::from_bytes(&out).unwrap_or_else(|e| panic!("cannot decode a key: {e}"));
    mp_value::to_value(&k).unwrap_or_else(|e| panic!("a key is not a value: {e}"))
}

crate::__proxy_type!(
    /// A proxy to a shared `list` (CPython's `ListProxy`) of `T`.
    ListProxy<T>,
    "ListProxy"
);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l[index]` (negative from the end).
    ///
    /// # Errors
    ///
    /// `IndexError` out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.proxy.call("__getitem__", &(index,))
    }

    /// `l[start:stop]` (Python's slice rules: out-of-range bounds clamp).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn slice(&self, start: Option<i64>, stop: Option<i64>) -> Result<Vec<T>> {
        self.proxy
            .call("__getitem__", &(slice_value(start, stop, None),))
    }

    /// `l[index] = value`.
    ///
    /// # Errors
    ///
    /// `IndexError` out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.proxy.call("__setitem__", &(index, value))
    }

    /// `del l[index]`.
    ///
    /// # Errors
    ///
    /// `IndexError` out of range.
    pub fn del(&self, index: i64) -> Result<()> {
        self.proxy.call("__delitem__", &(index,))
    }

    /// `l.append(value)`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn append(&self, value: &T) -> Result<()> {
        self.proxy.call("append", &(value,))
    }

    /// `l.extend(values)` (also `l += values`).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn extend(&self, values: &[T]) -> Result<()> {
        self.proxy.call("extend", &(values,))
    }

    /// `l.insert(index, value)`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        self.proxy.call("insert", &(index, value))
    }

    /// `l.pop()`: the last item.
    ///
    /// # Errors
    ///
    /// `IndexError` for an empty list.
    pub fn pop(&self) -> Result<T> {
        self.proxy.call("pop", &())
    }

    /// `l.pop(index)`.
    ///
    /// # Errors
    ///
    /// `IndexError` out of range.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.proxy.call("pop", &(index,))
    }

    /// `l.remove(value)`: the first equal item.
    ///
    /// # Errors
    ///
    /// `ValueError` if there is none.
    pub fn remove(&self, value: &T) -> Result<()> {
        self.proxy.call("remove", &(value,))
    }

    /// `l.index(value)`.
    ///
    /// # Errors
    ///
    /// `ValueError` if it is not in the list.
    pub fn index(&self, value: &T) -> Result<usize> {
        self.proxy.call("index", &(value,))
    }

    /// `l.count(value)`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn count(&self, value: &T) -> Result<usize> {
        self.proxy.call("count", &(value,))
    }

    /// `value in l`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn contains(&self, value: &T) -> Result<bool> {
        self.proxy.call("__contains__", &(value,))
    }

    /// `l.reverse()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn reverse(&self) -> Result<()> {
        self.proxy.call("reverse", &())
    }

    /// `list(reversed(l))`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn reversed(&self) -> Result<Vec<T>> {
        self.proxy.call("__reversed__", &())
    }

    /// `l.sort(reverse=reverse)` (Python's ordering).
    ///
    /// # Errors
    ///
    /// `TypeError` for items Python cannot order.
    pub fn sort(&self, reverse: bool) -> Result<()> {
        let mut kw = Dict::new();
        kw.insert("reverse", reverse)?;
        self.proxy.call_kw("sort", &(), kw)
    }

    /// `l.sort(key=key, reverse=reverse)`: `key` is a plain function of
    /// this program, run in the manager on each item (converted to `T`),
    /// its results compared as Python compares them; equal keys keep
    /// their order. The manager must run this build of the program (a
    /// started one does).
    ///
    /// # Errors
    ///
    /// `TypeError` for keys Python cannot order, or from a manager that
    /// runs another build; `RuntimeError` if `key` panics or an item does
    /// not fit `T` (the list is then unchanged).
    ///
    /// # Examples
    ///
    /// ```
    /// fn length(s: String) -> usize {
    ///     s.len()
    /// }
    ///
    /// # mp_context::init();
    /// let manager = mp_manager::SyncManager::started(&mp_context::get_context(Some("fork"))?)?;
    /// let l = manager.list_from(&["ccc".to_string(), "a".into(), "bb".into()])?;
    /// l.sort_by_key(length, false)?;
    /// assert_eq!(l.copy()?, ["a", "bb", "ccc"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sort_by_key<K>(&self, key: fn(T) -> K, reverse: bool) -> Result<()>
    where
        T: 'static,
        K: Serialize + DeserializeOwned + 'static,
    {
        let pair = (
            mp_context::FnRef::new(sort_key::<T, K>),
            mp_context::FnRef::new(key),
        );
        let bytes = postcard::to_allocvec(&pair)
            .map_err(|e| crate::Error::Protocol(format!("cannot encode the key function: {e}")))?;
        let mut kw = Dict::new();
        kw.insert("key", mp_value::Value::Bytes(bytes.into()))?;
        kw.insert("reverse", reverse)?;
        self.proxy.call_kw("sort", &(), kw)
    }

    /// `l.clear()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// `l.copy()`: a plain list.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn copy(&self) -> Result<Vec<T>> {
        self.proxy.call("copy", &())
    }

    /// `l + other`: a plain list.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn add(&self, other: &[T]) -> Result<Vec<T>> {
        self.proxy.call("__add__", &(other,))
    }

    /// `l * n`: a plain list.
    ///
    /// # Errors
    ///
    /// `MemoryError` for a result too large for the manager.
    pub fn mul(&self, n: usize) -> Result<Vec<T>> {
        self.proxy.call("__mul__", &(n,))
    }

    /// `l *= n` (in place).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::mul`].
    pub fn imul(&self, n: usize) -> Result<()> {
        self.proxy.call("__imul__", &(n,))
    }

    /// The items, fetched by index as Python's sequence iteration does: a
    /// change made after this call is seen by the items not fetched yet.
    pub fn iter(&self) -> ListIter<'_, T> {
        ListIter {
            list: self,
            next: 0,
            done: false,
        }
    }
}

/// [`ListProxy::iter`]: index by index until `IndexError`, then nothing.
#[derive(Debug)]
pub struct ListIter<'a, T> {
    list: &'a ListProxy<T>,
    next: i64,
    done: bool,
}

impl<T: Serialize + DeserializeOwned> Iterator for ListIter<'_, T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        match self.list.get(self.next) {
            Ok(v) => {
                self.next += 1;
                Some(Ok(v))
            }
            Err(e) if e.is("IndexError") => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

crate::__proxy_type!(
    /// A proxy to a `queue.Queue` in the manager (CPython's `AutoProxy` of
    /// `Queue` and `JoinableQueue`) of `T`.
    QueueProxy<T>,
    "AutoProxy"
);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// `q.put(item)`: waits while the queue is full.
    ///
    /// # Errors
    ///
    /// `queue.ShutDown` after `shutdown()`.
    pub fn put(&self, item: &T) -> Result<()> {
        self.proxy.call("put", &(item,))
    }

    /// `q.put(item, block, timeout)`.
    ///
    /// # Errors
    ///
    /// `queue.Full` when the queue stays full (at once if not blocking).
    pub fn put_timeout(&self, item: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        self.proxy.call("put", &(item, block, secs(timeout)))
    }

    /// `q.put_nowait(item)`.
    ///
    /// # Errors
    ///
    /// `queue.Full` for a full queue.
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.proxy.call("put_nowait", &(item,))
    }

    /// `q.get()`: waits for an item.
    ///
    /// # Errors
    ///
    /// `queue.ShutDown` after `shutdown()` once empty.
    pub fn get(&self) -> Result<T> {
        self.proxy.call("get", &())
    }

    /// `q.get(block, timeout)`.
    ///
    /// # Errors
    ///
    /// `queue.Empty` when no item came (at once if not blocking).
    pub fn get_timeout(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.proxy.call("get", &(block, secs(timeout)))
    }

    /// `q.get_nowait()`.
    ///
    /// # Errors
    ///
    /// `queue.Empty` for an empty queue.
    pub fn get_nowait(&self) -> Result<T> {
        self.proxy.call("get_nowait", &())
    }

    /// `q.qsize()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn qsize(&self) -> Result<usize> {
        self.proxy.call("qsize", &())
    }

    /// `q.empty()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn empty(&self) -> Result<bool> {
        self.proxy.call("empty", &())
    }

    /// `q.full()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn full(&self) -> Result<bool> {
        self.proxy.call("full", &())
    }

    /// `q.task_done()`.
    ///
    /// # Errors
    ///
    /// `ValueError` when called more often than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call("task_done", &())
    }

    /// `q.join()`: waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn join(&self) -> Result<()> {
        self.proxy.call("join", &())
    }

    /// `q.shutdown(immediate)` (Python 3.13).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn shutdown(&self, immediate: bool) -> Result<()> {
        self.proxy.call("shutdown", &(immediate,))
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Value` (CPython's `ValueProxy`) of `T`.
    ValueProxy<T>,
    "ValueProxy"
);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.get()` (`v.value`).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn get(&self) -> Result<T> {
        self.proxy.call("get", &())
    }

    /// `v.set(value)` (`v.value = value`).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn set(&self, value: &T) -> Result<()> {
        self.proxy.call("set", &(value,))
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Array` (CPython's `ArrayProxy`) of `T`.
    ArrayProxy<T>,
    "ArrayProxy"
);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// `a[index]`.
    ///
    /// # Errors
    ///
    /// `IndexError` out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        self.proxy.call("__getitem__", &(index,))
    }

    /// `a[index] = value`.
    ///
    /// # Errors
    ///
    /// `IndexError` out of range, `OverflowError`/`TypeError` for a value
    /// the typecode does not hold.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.proxy.call("__setitem__", &(index, value))
    }

    /// `a[:]`: every item.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy
            .call("__getitem__", &(slice_value(None, None, None),))
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Namespace` (CPython's `NamespaceProxy`):
    /// attributes by name.
    NamespaceProxy,
    "NamespaceProxy"
);

impl NamespaceProxy {
    /// `ns.name`.
    ///
    /// # Errors
    ///
    /// `AttributeError` for a missing attribute.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.proxy.call("__getattribute__", &(name,))
    }

    /// `ns.name = value`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.proxy.call("__setattr__", &(name, value))
    }

    /// `del ns.name`.
    ///
    /// # Errors
    ///
    /// `AttributeError` for a missing attribute.
    pub fn del(&self, name: &str) -> Result<()> {
        self.proxy.call("__delattr__", &(name,))
    }

    /// `str(ns)`: `Namespace(a=1, b='x')`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn repr(&self) -> Result<String> {
        self.proxy.referent_str()
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Lock`, `RLock`, `Semaphore` or
    /// `BoundedSemaphore` (CPython's `AcquirerProxy`).
    AcquirerProxy,
    "AcquirerProxy"
);

/// A manager `Lock`.
pub type LockProxy = AcquirerProxy;
/// A manager `RLock`.
pub type RLockProxy = AcquirerProxy;
/// A manager `Semaphore` or `BoundedSemaphore`.
pub type SemaphoreProxy = AcquirerProxy;

impl AcquirerProxy {
    /// `acquire()`: waits until acquired.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn acquire(&self) -> Result<bool> {
        self.proxy.call("acquire", &())
    }

    /// `acquire(blocking, timeout)`: `false` if not acquired.
    ///
    /// # Errors
    ///
    /// `ValueError` for a timeout without blocking.
    pub fn acquire_timeout(&self, blocking: bool, timeout: Option<Duration>) -> Result<bool> {
        match timeout {
            None => self.proxy.call("acquire", &(blocking,)),
            Some(_) => self.proxy.call("acquire", &(blocking, secs(timeout))),
        }
    }

    /// `release()`. A `Lock` may be released by any process; an `RLock`
    /// only by the thread that acquired it.
    ///
    /// # Errors
    ///
    /// `RuntimeError` when not acquired (`release unlocked lock`), or a
    /// `ValueError` for a `BoundedSemaphore` released too many times.
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", &())
    }

    /// `locked()` (locks only).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn locked(&self) -> Result<bool> {
        self.proxy.call("locked", &())
    }

    /// `with lock:` acquires now and releases when the guard is dropped.
    ///
    /// # Errors
    ///
    /// As [`AcquirerProxy::acquire`].
    pub fn lock(&self) -> Result<AcquireGuard<'_>> {
        self.acquire()?;
        Ok(AcquireGuard(&self.proxy))
    }
}

/// Releases a manager lock when dropped ([`AcquirerProxy::lock`]).
#[derive(Debug)]
pub struct AcquireGuard<'a>(&'a crate::Proxy);

impl Drop for AcquireGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.call::<()>("release", &());
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Condition` (CPython's `ConditionProxy`).
    ConditionProxy,
    "ConditionProxy"
);

impl ConditionProxy {
    /// `acquire()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn acquire(&self) -> Result<bool> {
        self.proxy.call("acquire", &())
    }

    /// `release()`.
    ///
    /// # Errors
    ///
    /// `RuntimeError` when not acquired.
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", &())
    }

    /// `wait(timeout)`: releases the lock, waits for a notification (or the
    /// timeout), re-acquires; `true` if notified.
    ///
    /// # Errors
    ///
    /// `RuntimeError` when the lock is not held.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.proxy.call("wait", &(secs(timeout),))
    }

    /// `wait_for(predicate, timeout)` (run here, with waits in the
    /// manager, as CPython's proxy does): the predicate's last result.
    ///
    /// # Errors
    ///
    /// As [`ConditionProxy::wait`].
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        let mut result = predicate();
        while !result {
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    Some(left)
                }
                None => None,
            };
            self.wait(left)?;
            result = predicate();
        }
        Ok(result)
    }

    /// `notify(n)`.
    ///
    /// # Errors
    ///
    /// `RuntimeError` when the lock is not held.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.proxy.call("notify", &(n,))
    }

    /// `notify_all()`.
    ///
    /// # Errors
    ///
    /// `RuntimeError` when the lock is not held.
    pub fn notify_all(&self) -> Result<()> {
        self.proxy.call("notify_all", &())
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Event` (CPython's `EventProxy`).
    EventProxy,
    "EventProxy"
);

impl EventProxy {
    /// `is_set()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn is_set(&self) -> Result<bool> {
        self.proxy.call("is_set", &())
    }

    /// `set()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn set(&self) -> Result<()> {
        self.proxy.call("set", &())
    }

    /// `clear()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// `wait(timeout)`: `true` once set, `false` if the timeout passed.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.proxy.call("wait", &(secs(timeout),))
    }
}

crate::__proxy_type!(
    /// A proxy to a manager `Barrier` (CPython's `BarrierProxy`).
    BarrierProxy,
    "BarrierProxy"
);

impl BarrierProxy {
    /// `wait(timeout)`: this party's index (one party gets 0).
    ///
    /// # Errors
    ///
    /// `threading.BrokenBarrierError` when the barrier is broken or
    /// reset, or the timeout passed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize> {
        self.proxy.call("wait", &(secs(timeout),))
    }

    /// `abort()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn abort(&self) -> Result<()> {
        self.proxy.call("abort", &())
    }

    /// `reset()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn reset(&self) -> Result<()> {
        self.proxy.call("reset", &())
    }

    /// `parties`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn parties(&self) -> Result<usize> {
        self.proxy.call("__getattribute__", &("parties",))
    }

    /// `n_waiting`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn n_waiting(&self) -> Result<usize> {
        self.proxy.call("__getattribute__", &("n_waiting",))
    }

    /// `broken`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn broken(&self) -> Result<bool> {
        self.proxy.call("__getattribute__", &("broken",))
    }
}

crate::__proxy_type!(
    /// A proxy to a shared `set` (CPython 3.14's `SetProxy`) of `T`.
    SetProxy<T>,
    "SetProxy"
);

impl<T: Serialize + DeserializeOwned> SetProxy<T> {
    /// `x in s`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn contains(&self, x: &T) -> Result<bool> {
        self.proxy.call("__contains__", &(x,))
    }

    /// `s.add(x)`.
    ///
    /// # Errors
    ///
    /// `TypeError` for a value Python cannot hash.
    pub fn add(&self, x: &T) -> Result<()> {
        self.proxy.call("add", &(x,))
    }

    /// `s.remove(x)`.
    ///
    /// # Errors
    ///
    /// `KeyError` when `x` is not a member.
    pub fn remove(&self, x: &T) -> Result<()> {
        self.proxy.call("remove", &(x,))
    }

    /// `s.discard(x)`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn discard(&self, x: &T) -> Result<()> {
        self.proxy.call("discard", &(x,))
    }

    /// `s.pop()`.
    ///
    /// # Errors
    ///
    /// `KeyError` for an empty set.
    pub fn pop(&self) -> Result<T> {
        self.proxy.call("pop", &())
    }

    /// `s.clear()`.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// The members (`s.copy()`).
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.call("copy", &())
    }

    /// One of `union`, `intersection`, `difference`,
    /// `symmetric_difference`, or the operators `__or__`, `__and__`,
    /// `__sub__`, `__xor__` and their reflected `__r*__` forms: a plain set.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`](crate::Error::Remote) for another name.
    pub fn op(&self, name: &str, other: &[T]) -> Result<Vec<T>> {
        self.proxy.call(name, &(other,))
    }

    /// One of `update`, `intersection_update`, `difference_update`,
    /// `symmetric_difference_update`, or the in-place operators `__ior__`,
    /// `__iand__`, `__isub__`, `__ixor__`.
    ///
    /// # Errors
    ///
    /// As [`SetProxy::op`].
    pub fn op_in_place(&self, name: &str, other: &[T]) -> Result<()> {
        self.proxy.call(name, &(other,))
    }

    /// One of `isdisjoint`, `issubset`, `issuperset`, `__lt__`, `__le__`,
    /// `__gt__`, `__ge__`.
    ///
    /// # Errors
    ///
    /// As [`SetProxy::op`].
    pub fn test(&self, name: &str, other: &[T]) -> Result<bool> {
        self.proxy.call(name, &(other,))
    }
}

/// A lock proxy that `Condition(lock)` accepts.
pub trait LockLike: ProxyType {}
impl LockLike for AcquirerProxy {}
