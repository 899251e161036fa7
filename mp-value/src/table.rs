//! The ordered hash table behind [`Dict`] and [`Set`], laid out as
//! CPython's compact dict: entries in insertion order, and a separate
//! open-addressing index of entry positions. Removed entries leave a hole
//! (`None`) until the next rebuild, so order is kept without shifting.
//!
//! Keys are hashed with [`Value::py_hash`] and compared with Python's
//! `==`, which is not a Rust `Eq` (NaN is not equal to itself), so the
//! table is ours rather than a `HashMap` with a key wrapper.

use std::fmt;

use crate::eq::py_eq;
use crate::value::{Dict, Set, Value};

/// Index slot that never held an entry: a probe stops here.
const EMPTY: u32 = u32::MAX;
/// Index slot of a removed entry: a probe steps over it, an insertion may
/// reuse it.
const REMOVED: u32 = u32::MAX - 1;

#[derive(Clone)]
pub(crate) struct Entry<V> {
    pub(crate) hash: u64,
    pub(crate) key: Value,
    pub(crate) value: V,
}

#[derive(Clone)]
pub(crate) struct Table<V> {
    entries: Vec<Option<Entry<V>>>,
    live: usize,
    /// Index slots that are not `EMPTY` (live or `REMOVED`): kept below two
    /// thirds of the index, so that every probe meets an `EMPTY` slot.
    used: usize,
    /// A power of two in length (or empty); each slot is `EMPTY`,
    /// `REMOVED`, or the position in `entries` of a live entry.
    index: Vec<u32>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
            live: 0,
            used: 0,
            index: Vec::new(),
        }
    }
}

/// A key that Python cannot hash: a `list`, `dict`, `set` or `bytearray`
/// (or a tuple or frozenset holding one). Python raises `TypeError` here.
#[derive(Clone, PartialEq, Eq)]
pub struct Unhashable {
    pub(crate) type_name: &'static str,
}

impl Unhashable {
    /// The Python type that cannot be hashed (`"list"`, `"dict"`, …).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Display for Unhashable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unhashable type: '{}'", self.type_name)
    }
}

impl fmt::Debug for Unhashable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Unhashable {}

impl<V> Table<V> {
    pub(crate) fn with_capacity(n: usize) -> Table<V> {
        let mut t = Table {
            entries: Vec::with_capacity(n),
            live: 0,
            used: 0,
            index: Vec::new(),
        };
        if n > 0 {
            t.index = vec![EMPTY; index_len_for(n)];
        }
        t
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Room for `n` more entries without growing.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        let want = self.live + n;
        if (self.used + n) * 3 > self.index.len() * 2 {
            self.rebuild(want);
        }
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry<V>> + Clone {
        self.entries.iter().flatten()
    }

    /// Moves every key and value that holds values into `out`, freeing
    /// the others (see `defer_drop`).
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Value>)
    where
        V: IntoValues,
    {
        for e in self.entries.drain(..).flatten() {
            crate::value::defer_drop(out, e.key);
            e.value.into_values(out);
        }
        self.live = 0;
        self.used = 0;
        self.index.clear();
    }

    /// The position in `entries` of `key` and its index slot, or the index
    /// slot to use for a new entry if it is absent.
    fn find(&self, hash: u64, key: &Value) -> (Option<usize>, usize) {
        if self.index.is_empty() {
            return (None, 0);
        }
        let mask = self.index.len() - 1;
        let mut i = hash as usize & mask;
        let mut free = None;
        loop {
            match self.index[i] {
                EMPTY => return (None, free.unwrap_or(i)),
                REMOVED => {
                    free.get_or_insert(i);
                }
                slot => {
                    if let Some(e) = &self.entries[slot as usize]
                        && e.hash == hash
                        && (e.key.is(key) || py_eq(&e.key, key))
                    {
                        return (Some(slot as usize), i);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The entries whose hash is `hash` (candidates for an equal key).
    pub(crate) fn with_hash(&self, hash: u64) -> impl Iterator<Item = &Entry<V>> {
        let mask = self.index.len().wrapping_sub(1);
        let mut i = hash as usize & mask;
        let mut done = self.index.is_empty();
        std::iter::from_fn(move || {
            while !done {
                let slot = self.index[i];
                i = (i + 1) & mask;
                match slot {
                    EMPTY => done = true,
                    REMOVED => {}
                    slot => {
                        if let Some(e) = &self.entries[slot as usize]
                            && e.hash == hash
                        {
                            return Some(e);
                        }
                    }
                }
            }
            None
        })
    }

    pub(crate) fn get(&self, key: &Value) -> Result<Option<&Entry<V>>, Unhashable> {
        let hash = key.py_hash()?;
        Ok(self
            .find(hash, key)
            .0
            .and_then(|p| self.entries[p].as_ref()))
    }

    /// Inserts or replaces (keeping the first key, as Python does); returns
    /// the old value.
    pub(crate) fn insert(&mut self, key: Value, value: V) -> Result<Option<V>, Unhashable> {
        let hash = key.py_hash()?;
        Ok(self.insert_hashed(hash, key, value))
    }

    pub(crate) fn insert_hashed(&mut self, mut hash: u64, key: Value, value: V) -> Option<V> {
        if matches!(key, Value::Float(f) if f.is_nan()) {
            // NaN equals no key, so it is never found and needs no lookup;
            // and with one hash for every NaN, n NaN keys would cost n²
            // probes (CPython 3.10 hashes NaN by identity for that). So
            // each NaN entry is placed by its position instead: lookups by
            // NaN still miss, as they must.
            hash = (self.entries.len() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        let (found, mut slot) = self.find(hash, &key);
        if let Some(e) = found.and_then(|pos| self.entries[pos].as_mut()) {
            return Some(std::mem::replace(&mut e.value, value));
        }
        if self.index.is_empty() || self.index[slot] == EMPTY {
            if (self.used + 1) * 3 > self.index.len() * 2 {
                self.rebuild(self.live + 1);
                slot = self.find(hash, &key).1;
            }
            self.used += 1;
        }
        self.index[slot] = self.entries.len() as u32;
        self.entries.push(Some(Entry { hash, key, value }));
        self.live += 1;
        None
    }

    pub(crate) fn remove(&mut self, key: &Value) -> Result<Option<(Value, V)>, Unhashable> {
        let hash = key.py_hash()?;
        Ok(match self.find(hash, key) {
            (Some(pos), slot) => {
                self.live -= 1;
                self.index[slot] = REMOVED;
                self.entries[pos].take().map(|e| (e.key, e.value))
            }
            (None, _) => None,
        })
    }

    /// Removes and returns the last entry (Python's `dict.popitem`).
    pub(crate) fn pop_last(&mut self) -> Option<(Value, V)> {
        // No index slot points at a removed entry, so trailing holes can go.
        while self.entries.last().is_some_and(Option::is_none) {
            self.entries.pop();
        }
        let e = self.entries.pop()??;
        let pos = self.entries.len() as u32;
        let mask = self.index.len() - 1;
        let mut i = e.hash as usize & mask;
        while self.index[i] != pos {
            i = (i + 1) & mask;
        }
        self.index[i] = REMOVED;
        self.live -= 1;
        Some((e.key, e.value))
    }

    /// Drops the holes and re-indexes for at least `want` entries.
    fn rebuild(&mut self, want: usize) {
        self.entries.retain(Option::is_some);
        self.index = vec![EMPTY; index_len_for(want.max(self.entries.len()))];
        // Every slot is EMPTY again, so the removed ones are forgotten.
        self.used = self.entries.len();
        let mask = self.index.len() - 1;
        for (pos, e) in self.entries.iter().enumerate() {
            let hash = e.as_ref().map_or(0, |e| e.hash);
            let mut i = hash as usize & mask;
            while self.index[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.index[i] = pos as u32;
        }
    }
}

/// An index of at least 8 slots, at most two thirds full with `n` entries.
fn index_len_for(n: usize) -> usize {
    (n * 3 / 2 + 1).next_power_of_two().max(8)
}

/// What a table entry's value holds for the iterative drop.
pub(crate) trait IntoValues {
    fn into_values(self, out: &mut Vec<Value>);
}

impl IntoValues for Value {
    fn into_values(self, out: &mut Vec<Value>) {
        crate::value::defer_drop(out, self);
    }
}

impl IntoValues for () {
    fn into_values(self, _: &mut Vec<Value>) {}
}

impl<V> Drop for Table<V> {
    fn drop(&mut self) {
        // Allocated only for keys that hold values (tuples, frozensets):
        // string keys are freed here.
        let mut children = Vec::new();
        for e in self.entries.drain(..).flatten() {
            crate::value::defer_drop(&mut children, e.key);
            // Values of a `Table<Value>` are dropped here one level deep;
            // their own children go through `drop_iteratively`.
            drop(e.value);
        }
        crate::value::drop_iteratively(children);
    }
}

macro_rules! table_basics {
    ($t:ident, $py:literal, $items:literal) => {
        impl $t {
            #[doc = concat!("An empty ", $py, ".")]
            pub fn new() -> $t {
                $t::default()
            }

            #[doc = concat!("An empty ", $py, " with room for `n` ", $items, ".")]
            pub fn with_capacity(n: usize) -> $t {
                $t(std::sync::Arc::new(Table::with_capacity(n)))
            }

            #[doc = concat!("The number of ", $items, ".")]
            pub fn len(&self) -> usize {
                self.0.len()
            }

            #[doc = concat!("Whether there are no ", $items, ".")]
            pub fn is_empty(&self) -> bool {
                self.0.len() == 0
            }

            #[doc = concat!("Whether another reference to this ", $py, " exists (a change would copy it first).")]
            pub fn is_shared(&self) -> bool {
                std::sync::Arc::strong_count(&self.0) > 1
            }
        }
    };
}

table_basics!(Dict, "dict", "entries");
table_basics!(Set, "set", "members");

impl Dict {
    /// The value for `key` (`d[key]`), or `Ok(None)` if absent.
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `key` cannot be hashed, as Python's `TypeError`.
    pub fn get(&self, key: &Value) -> Result<Option<&Value>, Unhashable> {
        Ok(self.0.get(key)?.map(|e| &e.value))
    }

    /// The key stored for `key` and its value: the stored key may differ
    /// in type (`1.0` for a lookup by `1`).
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `key` cannot be hashed.
    pub fn get_key_value(&self, key: &Value) -> Result<Option<(&Value, &Value)>, Unhashable> {
        Ok(self.0.get(key)?.map(|e| (&e.key, &e.value)))
    }

    /// Whether `key` is present (`key in d`).
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `key` cannot be hashed.
    pub fn contains_key(&self, key: &Value) -> Result<bool, Unhashable> {
        Ok(self.0.get(key)?.is_some())
    }

    /// `d[key] = value`: replaces the value of an equal key (keeping the
    /// key first inserted, as Python does) or appends a new entry; returns
    /// the old value. Copies the dict first if it is shared.
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `key` cannot be hashed; the dict is unchanged.
    pub fn insert(
        &mut self,
        key: impl Into<Value>,
        value: impl Into<Value>,
    ) -> Result<Option<Value>, Unhashable> {
        let key = key.into();
        let hash = key.py_hash()?;
        Ok(std::sync::Arc::make_mut(&mut self.0).insert_hashed(hash, key, value.into()))
    }

    /// `d.pop(key)`: removes the entry and returns its value.
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `key` cannot be hashed.
    pub fn remove(&mut self, key: &Value) -> Result<Option<Value>, Unhashable> {
        if !self.contains_key(key)? {
            return Ok(None);
        }
        Ok(std::sync::Arc::make_mut(&mut self.0)
            .remove(key)?
            .map(|(_, v)| v))
    }

    /// Makes room for `n` more entries (copying the dict first if it is
    /// shared).
    pub fn reserve(&mut self, n: usize) {
        std::sync::Arc::make_mut(&mut self.0).reserve(n);
    }

    /// `d.popitem()`: removes and returns the last entry inserted.
    pub fn pop_last(&mut self) -> Option<(Value, Value)> {
        if self.is_empty() {
            return None;
        }
        std::sync::Arc::make_mut(&mut self.0).pop_last()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Value, &Value)> + Clone {
        self.0.iter().map(|e| (&e.key, &e.value))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Value> + Clone {
        self.0.iter().map(|e| &e.key)
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + Clone {
        self.0.iter().map(|e| &e.value)
    }

    /// A dict of `pairs`, later duplicates replacing the values of earlier
    /// ones (as `dict(pairs)`).
    ///
    /// # Errors
    ///
    /// [`Unhashable`] for the first key that cannot be hashed.
    pub fn from_pairs<K: Into<Value>, V: Into<Value>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Dict, Unhashable> {
        let mut table = Table::default();
        for (k, v) in pairs {
            table.insert(k.into(), v.into())?;
        }
        Ok(Dict(std::sync::Arc::new(table)))
    }
}

impl Set {
    /// Whether `value` is a member (`value in s`).
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `value` cannot be hashed.
    pub fn contains(&self, value: &Value) -> Result<bool, Unhashable> {
        Ok(self.0.get(value)?.is_some())
    }

    /// `s.add(value)`: returns whether it was new. Copies the set first if
    /// it is shared.
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `value` cannot be hashed; the set is unchanged.
    pub fn insert(&mut self, value: impl Into<Value>) -> Result<bool, Unhashable> {
        let value = value.into();
        let hash = value.py_hash()?;
        Ok(std::sync::Arc::make_mut(&mut self.0)
            .insert_hashed(hash, value, ())
            .is_none())
    }

    /// `s.discard(value)`: returns whether it was a member.
    ///
    /// # Errors
    ///
    /// [`Unhashable`] if `value` cannot be hashed.
    pub fn remove(&mut self, value: &Value) -> Result<bool, Unhashable> {
        if !self.contains(value)? {
            return Ok(false);
        }
        Ok(std::sync::Arc::make_mut(&mut self.0)
            .remove(value)?
            .is_some())
    }

    /// The members in insertion order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Value> + Clone {
        self.0.iter().map(|e| &e.key)
    }

    /// A set of `values` (duplicates kept once).
    ///
    /// # Errors
    ///
    /// [`Unhashable`] for the first value that cannot be hashed.
    pub fn from_values<T: Into<Value>>(
        values: impl IntoIterator<Item = T>,
    ) -> Result<Set, Unhashable> {
        let mut table = Table::default();
        for v in values {
            table.insert(v.into(), ())?;
        }
        Ok(Set(std::sync::Arc::new(table)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_keys_collapse_and_order_is_kept() {
        let mut d = Dict::new();
        d.insert(1, "int").unwrap();
        d.insert(1.0, "float").unwrap();
        d.insert(true, "bool").unwrap();
        d.insert("a", 2).unwrap();
        assert_eq!(d.len(), 2);
        // The first key stays, the last value wins (as in CPython).
        let (k, v) = d.iter().next().unwrap();
        assert!(matches!(k, Value::Int(1)));
        assert_eq!(v.as_str(), Some("bool"));
        assert_eq!(
            d.get(&Value::Float(1.0)).unwrap().unwrap().as_str(),
            Some("bool")
        );
        let err = d.insert(Value::List(Default::default()), 0).unwrap_err();
        assert_eq!(err.to_string(), "unhashable type: 'list'");
    }

    #[test]
    fn removal_keeps_order_and_lookups_work_after_rebuilds() {
        let mut d = Dict::new();
        for i in 0..1000 {
            d.insert(i, i * 2).unwrap();
        }
        for i in (0..1000).step_by(2) {
            assert!(d.remove(&Value::Int(i)).unwrap().is_some());
        }
        for i in 1000..1500 {
            d.insert(i, 0).unwrap();
        }
        assert_eq!(d.len(), 1000);
        let keys: Vec<i64> = d.keys().filter_map(Value::as_i64).collect();
        assert_eq!(keys[..3], [1, 3, 5]);
        assert_eq!(*keys.last().unwrap(), 1499);
        assert_eq!(
            d.get(&Value::Int(999)).unwrap().and_then(Value::as_i64),
            Some(1998)
        );
        assert!(d.get(&Value::Int(998)).unwrap().is_none());
        assert_eq!(d.pop_last().unwrap().0.as_i64(), Some(1499));
        d.insert(7, 7).unwrap(); // present: replaced in place
        d.insert(2, 2).unwrap(); // removed earlier: appended
        assert_eq!(d.keys().last().unwrap().as_i64(), Some(2));
        assert_eq!(d.keys().nth(3).unwrap().as_i64(), Some(7));
        assert_eq!(d.len(), 1000);
    }

    #[test]
    fn many_nan_keys_cost_no_quadratic_probing() {
        let mut d = Dict::new();
        for i in 0..200_000 {
            d.insert(f64::NAN, i).unwrap();
        }
        assert_eq!(d.len(), 200_000);
        assert!(d.get(&Value::Float(f64::NAN)).unwrap().is_none());
        assert_eq!(d.pop_last().unwrap().1.as_i64(), Some(199_999));
    }

    #[test]
    fn nan_keys_are_never_found() {
        let mut s = Set::new();
        assert!(s.insert(f64::NAN).unwrap());
        assert!(s.insert(f64::NAN).unwrap());
        assert_eq!(s.len(), 2);
        assert!(!s.contains(&Value::Float(f64::NAN)).unwrap());
        assert!(s.insert(-0.0).unwrap());
        assert!(!s.insert(0).unwrap());
    }

    #[test]
    fn shared_dicts_copy_on_write() {
        let mut a = Dict::new();
        a.insert("k", 1).unwrap();
        let b = a.clone();
        a.insert("k", 2).unwrap();
        assert_eq!(b.get(&"k".into()).unwrap().and_then(Value::as_i64), Some(1));
        assert_eq!(a.get(&"k".into()).unwrap().and_then(Value::as_i64), Some(2));
    }
}
