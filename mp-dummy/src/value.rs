//! [`Value`], [`Array`] and [`Namespace`]: the seed's plain holders,
//! shared between threads (clones share one value), with mp-heap's
//! `get`/`set`/`lock` where they make sense.

use std::{
    any::{Any, type_name},
    collections::BTreeMap,
    fmt,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, MutexGuard},
};

use crate::error::{Error, Result};
use crate::wait::lock;

/// CPython's `multiprocessing.dummy.Value`: one value shared between
/// threads, behind a lock (mp-heap's `Value`, for any type).
///
/// ```
/// let counter = mp_dummy::Value::new(0_u64);
/// counter.set(1);
/// counter.lock().update(|n| n + 41);
/// assert_eq!(counter.get(), 42);
/// ```
pub struct Value<T> {
    inner: Arc<Mutex<T>>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Value({:?})>", *lock(&self.inner))
    }
}

impl<T: Default> Default for Value<T> {
    fn default() -> Self {
        Value::new(T::default())
    }
}

impl<T> Value<T> {
    /// A shared value.
    pub fn new(value: T) -> Value<T> {
        Value {
            inner: Arc::new(Mutex::new(value)),
        }
    }

    /// CPython's `value` (read).
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        lock(&self.inner).clone()
    }

    /// CPython's `value = v`.
    pub fn set(&self, value: T) {
        *lock(&self.inner) = value;
    }

    /// Replaces the value with `f(value)` under the lock, returning the
    /// new value (a read-modify-write no other thread interleaves with).
    pub fn update(&self, f: impl FnOnce(T) -> T) -> T
    where
        T: Clone,
    {
        self.lock().update(f)
    }

    /// CPython's `get_lock()` + `with`: the value, locked until the guard
    /// drops.
    pub fn lock(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            guard: lock(&self.inner),
        }
    }
}

/// A locked [`Value`] (or [`Array`]); it derefs to the value.
pub struct ValueGuard<'a, T> {
    guard: MutexGuard<'a, T>,
}

impl<T> ValueGuard<'_, T> {
    /// The value.
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        self.guard.clone()
    }

    /// Sets the value.
    pub fn set(&mut self, value: T) {
        *self.guard = value;
    }

    /// Replaces the value with `f(value)`, returning the new value.
    pub fn update(&mut self, f: impl FnOnce(T) -> T) -> T
    where
        T: Clone,
    {
        let new = f(self.guard.clone());
        *self.guard = new.clone();
        new
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.guard, f)
    }
}

/// CPython's `multiprocessing.dummy.Array`: a fixed-length sequence
/// shared between threads, behind a lock.
///
/// ```
/// let a = mp_dummy::Array::new(vec![1, 2, 3]);
/// a.set(0, 10)?;
/// assert_eq!(a.get(0)?, 10);
/// assert!(a.get(3).is_err());
/// a.lock().iter_mut().for_each(|x| *x *= 2);
/// assert_eq!(a.to_vec(), [20, 4, 6]);
/// # Ok::<(), mp_dummy::Error>(())
/// ```
pub struct Array<T> {
    inner: Arc<Mutex<Box<[T]>>>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Array({:?})>", &**lock(&self.inner))
    }
}

impl<T> Array<T> {
    /// A shared array of `items`.
    pub fn new(items: impl Into<Vec<T>>) -> Array<T> {
        Array {
            inner: Arc::new(Mutex::new(items.into().into_boxed_slice())),
        }
    }

    /// The number of items (fixed).
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] out of range.
    pub fn get(&self, index: usize) -> Result<T>
    where
        T: Clone,
    {
        let items = lock(&self.inner);
        items
            .get(index)
            .cloned()
            .ok_or_else(|| index_error(index, items.len()))
    }

    /// Sets the item at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexError`] out of range.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        let mut items = lock(&self.inner);
        let len = items.len();
        *items
            .get_mut(index)
            .ok_or_else(|| index_error(index, len))? = value;
        Ok(())
    }

    /// A copy of every item.
    pub fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        lock(&self.inner).to_vec()
    }

    /// The items, locked until the guard drops (a slice).
    pub fn lock(&self) -> ValueGuard<'_, Box<[T]>> {
        ValueGuard {
            guard: lock(&self.inner),
        }
    }
}

fn index_error(index: usize, len: usize) -> Error {
    Error::IndexError(format!(
        "index {index} out of range for an array of {len} items"
    ))
}

/// A value a [`Namespace`] holds: anything, printed by its `Debug`.
trait Attribute: Any + Send + Sync + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Send + Sync + fmt::Debug> Attribute for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// CPython's `multiprocessing.dummy.Namespace`: named attributes of any
/// type, shared between threads (clones share them).
///
/// ```
/// let ns = mp_dummy::Namespace::new();
/// ns.set("name", String::from("ada"));
/// ns.set("count", 3_u32);
/// assert_eq!(ns.get::<u32>("count")?, 3);
/// assert!(ns.get::<String>("count").is_err()); // the wrong type
/// assert_eq!(ns.repr(), r#"Namespace(count=3, name="ada")"#);
/// ns.del("count")?;
/// assert!(ns.get::<u32>("count").is_err());
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Namespace {
    attributes: Arc<Mutex<BTreeMap<String, Arc<dyn Attribute>>>>,
}

impl Namespace {
    /// An empty namespace.
    pub fn new() -> Namespace {
        Namespace::default()
    }

    /// The attribute `name`, as a `T`.
    ///
    /// # Errors
    ///
    /// [`Error::NoAttribute`] when it is not set, [`Error::WrongType`]
    /// when it holds another type.
    pub fn get<T: Any + Clone>(&self, name: &str) -> Result<T> {
        let attributes = lock(&self.attributes);
        let value = attributes
            .get(name)
            .ok_or_else(|| Error::NoAttribute(name.to_owned()))?;
        // `**`: the attribute itself (the blanket impl would take the Arc).
        (**value)
            .as_any()
            .downcast_ref::<T>()
            .cloned()
            .ok_or_else(|| Error::WrongType {
                name: name.to_owned(),
                expected: type_name::<T>(),
            })
    }

    /// Sets the attribute `name` (CPython's `ns.name = value`).
    pub fn set<T: Any + Send + Sync + fmt::Debug>(&self, name: &str, value: T) {
        lock(&self.attributes).insert(name.to_owned(), Arc::new(value));
    }

    /// Deletes the attribute `name` (CPython's `del ns.name`).
    ///
    /// # Errors
    ///
    /// [`Error::NoAttribute`] when it is not set.
    pub fn del(&self, name: &str) -> Result<()> {
        lock(&self.attributes)
            .remove(name)
            .map(drop)
            .ok_or_else(|| Error::NoAttribute(name.to_owned()))
    }

    /// Whether the attribute `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        lock(&self.attributes).contains_key(name)
    }

    /// The names set, sorted.
    pub fn names(&self) -> Vec<String> {
        lock(&self.attributes).keys().cloned().collect()
    }

    /// CPython's `repr(ns)`: `Namespace(a=1, b="x")`, sorted by name,
    /// without names that start with `_`.
    pub fn repr(&self) -> String {
        let attributes = lock(&self.attributes);
        let shown: Vec<String> = attributes
            .iter()
            .filter(|(name, _)| !name.starts_with('_'))
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        format!("Namespace({})", shown.join(", "))
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr())
    }
}
