//! [`Manager`]: the seed's `Manager()` (which returns the
//! `multiprocessing.dummy` module itself): in-process shared objects, with
//! the method names of mp-manager's proxies. [`DictProxy`] and
//! [`ListProxy`] are a shared dict and list; the other factories give this
//! crate's thread objects. Nothing runs in another process, so
//! [`Manager::shutdown`] has nothing to do.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::error::{Error, Result};
use crate::queue::{JoinableQueue, Queue};
use crate::sync::{
    Barrier, BoundedSemaphore, Condition, ConditionLock, Event, Lock, RLock, Semaphore,
};
use crate::value::{Array, Namespace, Value};
use crate::wait::lock;

/// CPython's `multiprocessing.dummy.Manager()`: makes shared objects for
/// threads. Cheap to create and to clone; there is no server.
///
/// ```
/// let m = mp_dummy::Manager::new();
/// let d = m.dict::<String, u32>();
/// d.set_item("a".into(), 1)?;
/// let l = m.list_from(&[3, 1, 2]);
/// l.sort(false)?;
/// assert_eq!((d.get_item(&"a".into())?, l.copy()?), (1, vec![1, 2, 3]));
/// m.shutdown(); // nothing to stop
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Manager;

/// CPython's `Manager()`: a [`Manager`].
pub fn manager() -> Manager {
    Manager
}

impl Manager {
    /// A manager.
    pub fn new() -> Manager {
        Manager
    }

    /// CPython's `start()`: nothing to start.
    pub fn start(&self) {}

    /// CPython's `shutdown()`: nothing to stop (the seed's `shutdown` is
    /// `pass`); the objects it made stay usable.
    pub fn shutdown(&self) {}

    /// `Manager().dict()`: an empty shared dict.
    pub fn dict<K: Eq + Hash + Clone, V: Clone>(&self) -> DictProxy<K, V> {
        DictProxy::new()
    }

    /// `Manager().dict(pairs)`.
    pub fn dict_from<K: Eq + Hash + Clone, V: Clone>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> DictProxy<K, V> {
        let d = DictProxy::new();
        d.insert_all(pairs);
        d
    }

    /// `Manager().list()`: an empty shared list.
    pub fn list<T: Clone>(&self) -> ListProxy<T> {
        ListProxy::new(Vec::new())
    }

    /// `Manager().list(items)`.
    pub fn list_from<T: Clone>(&self, items: &[T]) -> ListProxy<T> {
        ListProxy::new(items.to_vec())
    }

    /// `Manager().Namespace()`.
    pub fn namespace(&self) -> Namespace {
        Namespace::new()
    }

    /// `Manager().Queue(maxsize)`.
    pub fn queue<T>(&self, maxsize: usize) -> Queue<T> {
        Queue::new(maxsize)
    }

    /// `Manager().JoinableQueue(maxsize)`.
    pub fn joinable_queue<T>(&self, maxsize: usize) -> JoinableQueue<T> {
        JoinableQueue::new(maxsize)
    }

    /// `Manager().Event()`.
    pub fn event(&self) -> Event {
        Event::new()
    }

    /// `Manager().Lock()`.
    pub fn lock(&self) -> Lock {
        Lock::new()
    }

    /// `Manager().RLock()`.
    pub fn rlock(&self) -> RLock {
        RLock::new()
    }

    /// `Manager().Semaphore(value)`.
    pub fn semaphore(&self, value: u32) -> Semaphore {
        Semaphore::new(value)
    }

    /// `Manager().BoundedSemaphore(value)`.
    pub fn bounded_semaphore(&self, value: u32) -> BoundedSemaphore {
        BoundedSemaphore::new(value)
    }

    /// `Manager().Condition(lock=None)`.
    pub fn condition(&self, lock: Option<ConditionLock>) -> Condition {
        match lock {
            Some(l) => Condition::with_lock(l),
            None => Condition::new(),
        }
    }

    /// `Manager().Barrier(parties, timeout=None)`.
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`].
    pub fn barrier(&self, parties: u32, timeout: Option<Duration>) -> Result<Barrier> {
        Barrier::new(parties, timeout)
    }

    /// `Manager().Value(typecode, value)`.
    pub fn value<T>(&self, value: T) -> Value<T> {
        Value::new(value)
    }

    /// `Manager().Array(typecode, items)`.
    pub fn array<T: Clone>(&self, items: &[T]) -> Array<T> {
        Array::new(items.to_vec())
    }
}

/// A dict in insertion order: entries by insertion number, and each
/// key's number.
struct OrderedDict<K, V> {
    entries: BTreeMap<u64, (K, V)>,
    index: HashMap<K, u64>,
    next: u64,
}

impl<K: Eq + Hash + Clone, V> OrderedDict<K, V> {
    fn insert(&mut self, key: K, value: V) {
        match self.index.get(&key) {
            // An existing key keeps its place, as in a Python dict.
            Some(n) => {
                if let Some(entry) = self.entries.get_mut(n) {
                    entry.1 = value;
                }
            }
            None => {
                self.index.insert(key.clone(), self.next);
                self.entries.insert(self.next, (key, value));
                self.next += 1;
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let n = self.index.remove(key)?;
        self.entries.remove(&n).map(|(_, v)| v)
    }
}

/// A shared dict (mp-manager's `DictProxy`, CPython's `dict` under the
/// dummy manager), in insertion order. Clones share it.
pub struct DictProxy<K, V> {
    inner: Arc<Mutex<OrderedDict<K, V>>>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            inner: self.inner.clone(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for DictProxy<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = lock(&self.inner);
        f.debug_map()
            .entries(d.entries.values().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Default for DictProxy<K, V> {
    fn default() -> Self {
        DictProxy::new()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> DictProxy<K, V> {
    /// An empty dict.
    pub fn new() -> DictProxy<K, V> {
        DictProxy {
            inner: Arc::new(Mutex::new(OrderedDict {
                entries: BTreeMap::new(),
                index: HashMap::new(),
                next: 0,
            })),
        }
    }

    fn insert_all(&self, pairs: impl IntoIterator<Item = (K, V)>) {
        let mut d = lock(&self.inner);
        for (k, v) in pairs {
            d.insert(k, v);
        }
    }

    /// `len(d)`.
    ///
    /// # Errors
    ///
    /// None here; a `Result` as mp-manager's (whose errors are the
    /// connection's).
    pub fn len(&self) -> Result<usize> {
        Ok(lock(&self.inner).entries.len())
    }

    /// `not d`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(lock(&self.inner).entries.is_empty())
    }

    /// `d[key]`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyError`] for a missing key.
    pub fn get_item(&self, key: &K) -> Result<V> {
        self.get(key)?.ok_or(Error::KeyError)
    }

    /// `d.get(key)`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let d = lock(&self.inner);
        Ok(d.index
            .get(key)
            .and_then(|n| d.entries.get(n))
            .map(|(_, v)| v.clone()))
    }

    /// `d[key] = value`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn set_item(&self, key: K, value: V) -> Result<()> {
        lock(&self.inner).insert(key, value);
        Ok(())
    }

    /// `del d[key]`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyError`] for a missing key.
    pub fn del_item(&self, key: &K) -> Result<()> {
        lock(&self.inner)
            .remove(key)
            .map(drop)
            .ok_or(Error::KeyError)
    }

    /// `key in d`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(lock(&self.inner).index.contains_key(key))
    }

    /// `list(d.keys())`, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(lock(&self.inner)
            .entries
            .values()
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// `list(d.values())`, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(lock(&self.inner)
            .entries
            .values()
            .map(|(_, v)| v.clone())
            .collect())
    }

    /// `list(d.items())`, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        Ok(lock(&self.inner).entries.values().cloned().collect())
    }

    /// `list(reversed(d))`: the keys, last inserted first.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn reversed(&self) -> Result<Vec<K>> {
        let mut keys = self.keys()?;
        keys.reverse();
        Ok(keys)
    }

    /// `d.pop(key)`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyError`] for a missing key.
    pub fn pop(&self, key: &K) -> Result<V> {
        lock(&self.inner).remove(key).ok_or(Error::KeyError)
    }

    /// `d.pop(key, default)`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn pop_or(&self, key: &K, default: V) -> Result<V> {
        Ok(lock(&self.inner).remove(key).unwrap_or(default))
    }

    /// `d.popitem()`: the last inserted pair (LIFO).
    ///
    /// # Errors
    ///
    /// [`Error::KeyError`] for an empty dict.
    pub fn popitem(&self) -> Result<(K, V)> {
        let mut d = lock(&self.inner);
        let (_, (k, v)) = d.entries.pop_last().ok_or(Error::KeyError)?;
        d.index.remove(&k);
        Ok((k, v))
    }

    /// `d.setdefault(key, default)`: the value at `key`, set to `default`
    /// first if missing.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        let mut d = lock(&self.inner);
        if let Some(v) = d.index.get(&key).and_then(|n| d.entries.get(n)) {
            return Ok(v.1.clone());
        }
        d.insert(key, default.clone());
        Ok(default)
    }

    /// `d.update(pairs)`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        self.insert_all(pairs);
        Ok(())
    }

    /// `d.clear()`.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn clear(&self) -> Result<()> {
        let mut d = lock(&self.inner);
        d.entries.clear();
        d.index.clear();
        Ok(())
    }

    /// `d.copy()`: a plain, unshared copy.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn copy(&self) -> Result<HashMap<K, V>> {
        self.to_map()
    }

    /// `dict(d)`: a plain, unshared copy.
    ///
    /// # Errors
    ///
    /// As [`len`](DictProxy::len).
    pub fn to_map(&self) -> Result<HashMap<K, V>> {
        Ok(lock(&self.inner).entries.values().cloned().collect())
    }
}

/// A shared list (mp-manager's `ListProxy`, CPython's `list` under the
/// dummy manager), indexed as Python lists are (negative from the end).
/// Clones share it.
pub struct ListProxy<T> {
    inner: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy {
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for ListProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*lock(&self.inner), f)
    }
}

impl<T: Clone> Default for ListProxy<T> {
    fn default() -> Self {
        ListProxy::new(Vec::new())
    }
}

/// Python's index rule: negative from the end; `None` out of range.
fn position(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if index < 0 { index + len } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// Python's slice-bound rule: negative from the end, clamped to the list.
fn clamp(bound: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let i = if bound < 0 { bound + len_i } else { bound };
    i.clamp(0, len_i) as usize
}

/// `items * n`, for items that are `Clone` (std's `repeat` wants `Copy`).
fn repeat<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(items.len().saturating_mul(n));
    for _ in 0..n {
        v.extend_from_slice(items);
    }
    v
}

fn out_of_range(what: &str) -> Error {
    Error::IndexError(format!("{what} index out of range"))
}

impl<T: Clone> ListProxy<T> {
    /// A shared list holding `items`.
    pub fn new(items: Vec<T>) -> ListProxy<T> {
        ListProxy {
            inner: Arc::new(Mutex::new(items)),
        }
    }

    /// `len(l)`.
    ///
    /// # Errors
    ///
    /// None here; a `Result` as mp-manager's.
    pub fn len(&self) -> Result<usize> {
        Ok(lock(&self.inner).len())
    }

    /// `not l`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(lock(&self.inner).is_empty())
    }

    /// `l[index]` (negative from the end).
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] out of range.
    pub fn get(&self, index: i64) -> Result<T> {
        let l = lock(&self.inner);
        let i = position(index, l.len()).ok_or_else(|| out_of_range("list"))?;
        Ok(l[i].clone())
    }

    /// `l[start:stop]` (out-of-range bounds clamp).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn slice(&self, start: Option<i64>, stop: Option<i64>) -> Result<Vec<T>> {
        let l = lock(&self.inner);
        let start = start.map_or(0, |s| clamp(s, l.len()));
        let stop = stop.map_or(l.len(), |s| clamp(s, l.len()));
        Ok(l.get(start..stop.max(start)).unwrap_or_default().to_vec())
    }

    /// `l[index] = value`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] out of range.
    pub fn set(&self, index: i64, value: T) -> Result<()> {
        let mut l = lock(&self.inner);
        let i = position(index, l.len()).ok_or_else(|| out_of_range("list assignment"))?;
        l[i] = value;
        Ok(())
    }

    /// `del l[index]`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] out of range.
    pub fn del(&self, index: i64) -> Result<()> {
        let mut l = lock(&self.inner);
        let i = position(index, l.len()).ok_or_else(|| out_of_range("list assignment"))?;
        l.remove(i);
        Ok(())
    }

    /// `l.append(value)`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn append(&self, value: T) -> Result<()> {
        lock(&self.inner).push(value);
        Ok(())
    }

    /// `l.extend(values)`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        lock(&self.inner).extend(values);
        Ok(())
    }

    /// `l.insert(index, value)` (Python's rule: the index clamps).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn insert(&self, index: i64, value: T) -> Result<()> {
        let mut l = lock(&self.inner);
        let i = clamp(index, l.len());
        l.insert(i, value);
        Ok(())
    }

    /// `l.pop()`: the last item.
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] for an empty list.
    pub fn pop(&self) -> Result<T> {
        lock(&self.inner)
            .pop()
            .ok_or_else(|| Error::IndexError("pop from empty list".to_owned()))
    }

    /// `l.pop(index)`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] out of range.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        let mut l = lock(&self.inner);
        if l.is_empty() {
            return Err(Error::IndexError("pop from empty list".to_owned()));
        }
        let i = position(index, l.len()).ok_or_else(|| out_of_range("pop"))?;
        Ok(l.remove(i))
    }

    /// `l.remove(value)`: the first equal item.
    ///
    /// # Errors
    ///
    /// [`Error::NotInList`] when no item equals it.
    pub fn remove(&self, value: &T) -> Result<()>
    where
        T: PartialEq,
    {
        let mut l = lock(&self.inner);
        let i = l
            .iter()
            .position(|x| x == value)
            .ok_or(Error::NotInList("list.remove(x): x"))?;
        l.remove(i);
        Ok(())
    }

    /// `l.index(value)`: where the first equal item is.
    ///
    /// # Errors
    ///
    /// [`Error::NotInList`] when no item equals it.
    pub fn index(&self, value: &T) -> Result<usize>
    where
        T: PartialEq,
    {
        lock(&self.inner)
            .iter()
            .position(|x| x == value)
            .ok_or(Error::NotInList("the value"))
    }

    /// `l.count(value)`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn count(&self, value: &T) -> Result<usize>
    where
        T: PartialEq,
    {
        Ok(lock(&self.inner).iter().filter(|x| *x == value).count())
    }

    /// `value in l`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn contains(&self, value: &T) -> Result<bool>
    where
        T: PartialEq,
    {
        Ok(lock(&self.inner).contains(value))
    }

    /// `l.reverse()`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn reverse(&self) -> Result<()> {
        lock(&self.inner).reverse();
        Ok(())
    }

    /// `list(reversed(l))`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn reversed(&self) -> Result<Vec<T>> {
        Ok(lock(&self.inner).iter().rev().cloned().collect())
    }

    /// `l.sort(reverse=reverse)` (stable, as Python's).
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn sort(&self, reverse: bool) -> Result<()>
    where
        T: Ord,
    {
        let mut l = lock(&self.inner);
        if reverse {
            l.sort_by(|a, b| b.cmp(a));
        } else {
            l.sort();
        }
        Ok(())
    }

    /// `l.clear()`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn clear(&self) -> Result<()> {
        lock(&self.inner).clear();
        Ok(())
    }

    /// `l[:]` / `list(l)`: a plain, unshared copy.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn copy(&self) -> Result<Vec<T>> {
        Ok(lock(&self.inner).clone())
    }

    /// `l + other`: a plain list.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn add(&self, other: &[T]) -> Result<Vec<T>> {
        let mut v = self.copy()?;
        v.extend_from_slice(other);
        Ok(v)
    }

    /// `l * n`: a plain list.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn mul(&self, n: usize) -> Result<Vec<T>> {
        Ok(repeat(&lock(&self.inner), n))
    }

    /// `l *= n`.
    ///
    /// # Errors
    ///
    /// As [`len`](ListProxy::len).
    pub fn imul(&self, n: usize) -> Result<()> {
        let mut l = lock(&self.inner);
        *l = repeat(&l, n);
        Ok(())
    }
}
