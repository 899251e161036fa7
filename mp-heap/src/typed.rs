//! Typed shared memory on the heap, as CPython's `sharedctypes`:
//! [`RawValue`], [`RawArray`], and the locked [`Value`] and [`Array`].
//!
//! # Safety
//!
//! This module views heap blocks as `T`, `[T]` and [`ProcessLock`]. That
//! is sound because:
//!
//! - `T: Pod` promises that every bit pattern is a valid `T` and that `T`
//!   has no padding, so bytes written by anyone (another process, or an
//!   earlier user of reused memory) are a valid `T`;
//! - blocks start on 8-byte boundaries and `T`'s alignment is checked at
//!   compile time to be at most 8; the lock takes the first 16 bytes, so
//!   data stays 8-aligned; buffers rebuilt with `from_buffer` are checked;
//! - a buffer is exclusively owned within the process (see
//!   [`SharedBuffer`]); `&mut` views need `&mut self` or the lock, and the
//!   lock of an [`Array`] is not recursive (a second acquire by the holder
//!   panics rather than creating a second `&mut`). A [`Value`]'s lock is
//!   recursive, so its guard only copies values in and out.

#![allow(unsafe_code)]

use std::{
    fmt,
    marker::PhantomData,
    mem::{align_of, size_of},
    ops::{Deref, DerefMut},
};

use crate::{
    Heap, HeapError, ProcessLock, ProcessLockGuard, SharedBuffer, heap::ALIGNMENT, lock::LOCK_SIZE,
};

/// Plain old data that may live in shared memory.
///
/// # Safety
///
/// Implement it only for types that are `#[repr(C)]` (or primitive), have
/// no padding bytes, no pointers or references (a pointer is meaningless in
/// another process), and for which every bit pattern is a valid value.
/// Alignment above 8 bytes is refused at compile time.
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Point { x: f64, y: f64, tag: i64 }
/// // Check the layout at compile time: 24 bytes, no padding.
/// const _: () = assert!(std::mem::size_of::<Point>() == 3 * 8);
/// // SAFETY: repr(C), three 8-byte fields, no padding, any bits are valid.
/// unsafe impl mp_heap::Pod for Point {}
///
/// let v = mp_heap::Value::new(Point { x: 1.0, y: 2.0, tag: 3 })?;
/// assert_eq!(v.get().tag, 3);
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive number: no padding, every bit pattern valid.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);
// SAFETY: an array of `Pod` has no padding between elements and every bit
// pattern of each element is valid.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Refuses, at compile time, a `T` the heap cannot align or size.
const fn check_layout<T>() {
    assert!(
        align_of::<T>() <= ALIGNMENT,
        "mp-heap blocks are 8-byte aligned; T needs more"
    );
    assert!(size_of::<T>() > 0, "zero-sized types have nothing to share");
}

fn check_buffer<T>(
    buf: &SharedBuffer,
    what: &'static str,
    header: usize,
    exact: Option<usize>,
) -> Result<(), HeapError> {
    let have = buf.len();
    let need = header + exact.unwrap_or(0) * size_of::<T>();
    let fits = match exact {
        Some(_) => have == need,
        None => have >= header && (have - header) % size_of::<T>() == 0,
    };
    if !fits || buf.as_ptr() as usize % ALIGNMENT != 0 {
        return Err(HeapError::BadLayout { what, need, have });
    }
    Ok(())
}

/// A heap block seen as `HEADER` bytes (none, or a [`ProcessLock`]) then
/// `len` elements of `T`: the allocation, layout checks and pointers that
/// the four public types share.
struct Block<T: Pod, const HEADER: usize> {
    buf: SharedBuffer,
    len: usize,
    _t: PhantomData<T>,
}

/// The block of a [`RawValue`] or [`RawArray`]: elements only.
type RawBlock<T> = Block<T, 0>;

/// The block of a [`Value`] or [`Array`]: a lock word, then the elements.
type LockedBlock<T> = Block<T, LOCK_SIZE>;

impl<T: Pod, const HEADER: usize> Block<T, HEADER> {
    /// `len` zeroed elements behind a zeroed header, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`]; [`HeapError::TooLarge`] when the byte size
    /// overflows.
    fn zeroed_in(heap: &Heap, len: usize) -> Result<Self, HeapError> {
        const { check_layout::<T>() };
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(HEADER))
            .ok_or(HeapError::TooLarge { size: usize::MAX })?;
        Ok(Self {
            buf: heap.malloc_zeroed(bytes)?,
            len,
            _t: PhantomData,
        })
    }

    /// Views `buf` as the block of a `what` holding exactly `exact`
    /// elements, or with `None` as many as the bytes after the header hold.
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the size or alignment is wrong.
    fn from_buffer(
        buf: SharedBuffer,
        what: &'static str,
        exact: Option<usize>,
    ) -> Result<Self, HeapError> {
        const { check_layout::<T>() };
        check_buffer::<T>(&buf, what, HEADER, exact)?;
        let len = (buf.len() - HEADER) / size_of::<T>();
        Ok(Self {
            buf,
            len,
            _t: PhantomData,
        })
    }

    /// The first element, just after the header.
    fn data(&self) -> *mut T {
        // SAFETY: the header and the elements lie inside the block.
        unsafe { self.buf.nonnull().add(HEADER).cast::<T>().as_ptr() }
    }

    /// The elements as a slice.
    ///
    /// # Safety
    ///
    /// No `&mut` view of the elements may exist while the slice lives.
    unsafe fn slice(&self) -> &[T] {
        // SAFETY: `len` elements fit in the block, aligned (module docs);
        // the caller rules out `&mut` views.
        unsafe { std::slice::from_raw_parts(self.data(), self.len) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other view of the elements may exist while the slice lives: the
    /// caller holds `&mut` of the owner, or the owner's plain lock.
    #[expect(clippy::mut_from_ref, reason = "exclusivity is the caller's promise")]
    unsafe fn slice_mut(&self) -> &mut [T] {
        // SAFETY: as in `slice`; the caller makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.data(), self.len) }
    }
}

impl<T: Pod> LockedBlock<T> {
    /// As [`Block::zeroed_in`], with the lock word made ready: recursive
    /// for a [`Value`] (CPython's default `RLock`), plain for an [`Array`].
    ///
    /// # Errors
    ///
    /// As [`Block::zeroed_in`].
    fn locked_in(heap: &Heap, len: usize, recursive: bool) -> Result<Self, HeapError> {
        let block = Self::zeroed_in(heap, len)?;
        block.lock().init(recursive);
        Ok(block)
    }

    /// The lock word at the start of the block.
    fn lock(&self) -> &ProcessLock {
        // SAFETY: the block starts with a 16-byte lock word, 8-aligned (so
        // 4-aligned as `ProcessLock` needs); all its fields are atomics, valid
        // for any bits, and only ever accessed through shared references.
        unsafe { self.buf.nonnull().cast::<ProcessLock>().as_ref() }
    }
}

/// One `T` in shared memory, without a lock (CPython's `RawValue`).
///
/// Reads and writes are single copies of `T`, not atomic: another process
/// may see a torn value, as CPython documents. Use [`Value`] for a lock.
pub struct RawValue<T: Pod> {
    block: RawBlock<T>,
}

impl<T: Pod> RawValue<T> {
    /// A value holding `v`, from the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new(v: T) -> Result<Self, HeapError> {
        Self::new_in(Heap::global(), v)
    }

    /// A value holding `v`, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new_in(heap: &Heap, v: T) -> Result<Self, HeapError> {
        let mut this = Self {
            block: RawBlock::zeroed_in(heap, 1)?,
        };
        this.set(v);
        Ok(this)
    }

    /// Views a buffer (for instance one rebuilt in another process) as a
    /// `RawValue`.
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the buffer is not exactly
    /// `size_of::<T>()` bytes at an 8-aligned address.
    pub fn from_buffer(buf: SharedBuffer) -> Result<Self, HeapError> {
        Ok(Self {
            block: RawBlock::from_buffer(buf, "RawValue", Some(1))?,
        })
    }

    /// Reads the value.
    pub fn get(&self) -> T {
        // SAFETY: aligned, in bounds, any bits are a valid `T` (module
        // docs); volatile, since another process may write it.
        unsafe { self.block.data().read_volatile() }
    }

    /// Writes the value.
    pub fn set(&mut self, v: T) {
        // SAFETY: as in `get`; `&mut self` excludes other writers here.
        unsafe { self.block.data().write_volatile(v) }
    }

    /// The underlying block.
    pub fn buffer(&self) -> &SharedBuffer {
        &self.block.buf
    }

    /// Gives the block back, to send it elsewhere.
    pub fn into_buffer(self) -> SharedBuffer {
        self.block.buf
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

/// A fixed-length array of `T` in shared memory, without a lock (CPython's
/// `RawArray`). Derefs to `[T]`; always zero-filled when made from a length,
/// even when the block reuses freed memory.
pub struct RawArray<T: Pod> {
    block: RawBlock<T>,
}

impl<T: Pod> RawArray<T> {
    /// `len` zeros, from the process-wide heap (`RawArray('i', 10)`).
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`]; [`HeapError::TooLarge`] when the byte size
    /// overflows.
    pub fn zeroed(len: usize) -> Result<Self, HeapError> {
        Self::zeroed_in(Heap::global(), len)
    }

    /// `len` zeros, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`RawArray::zeroed`].
    pub fn zeroed_in(heap: &Heap, len: usize) -> Result<Self, HeapError> {
        Ok(Self {
            block: RawBlock::zeroed_in(heap, len)?,
        })
    }

    /// A copy of `items`, from the process-wide heap (`RawArray('i', seq)`).
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn from_slice(items: &[T]) -> Result<Self, HeapError> {
        Self::from_slice_in(Heap::global(), items)
    }

    /// A copy of `items`, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn from_slice_in(heap: &Heap, items: &[T]) -> Result<Self, HeapError> {
        let mut this = Self::zeroed_in(heap, items.len())?;
        this.copy_from_slice(items);
        Ok(this)
    }

    /// Views a buffer as a `RawArray` of `buf.len() / size_of::<T>()`
    /// elements.
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the length is not a multiple of
    /// `size_of::<T>()` or the address is not 8-aligned.
    pub fn from_buffer(buf: SharedBuffer) -> Result<Self, HeapError> {
        Ok(Self {
            block: RawBlock::from_buffer(buf, "RawArray", None)?,
        })
    }

    /// The underlying block.
    pub fn buffer(&self) -> &SharedBuffer {
        &self.block.buf
    }

    /// Gives the block back, to send it elsewhere.
    pub fn into_buffer(self) -> SharedBuffer {
        self.block.buf
    }
}

impl<T: Pod> Deref for RawArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `&self` rules out a `&mut` view from `deref_mut`.
        unsafe { self.block.slice() }
    }
}

impl<T: Pod> DerefMut for RawArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: exclusive through `&mut self`.
        unsafe { self.block.slice_mut() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&&**self).finish()
    }
}

/// One `T` in shared memory guarded by a recursive [`ProcessLock`]
/// (CPython's `Value(typecode, v)` with its default `RLock`).
///
/// ```
/// let v = mp_heap::Value::new(7_i64)?;
/// {
///     let mut g = v.lock();
///     g.set(g.get() + 1); // read-modify-write under the lock
///     assert_eq!(v.get(), 8); // re-entering the lock is fine
/// }
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
pub struct Value<T: Pod> {
    block: LockedBlock<T>,
}

impl<T: Pod> Value<T> {
    /// A locked value holding `v`, from the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new(v: T) -> Result<Self, HeapError> {
        Self::new_in(Heap::global(), v)
    }

    /// A locked value holding `v`, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new_in(heap: &Heap, v: T) -> Result<Self, HeapError> {
        let this = Self {
            block: LockedBlock::locked_in(heap, 1, true)?,
        };
        this.lock().set(v);
        Ok(this)
    }

    /// Views a buffer made by [`Value::into_buffer`] (perhaps in another
    /// process) as a `Value`, sharing its lock.
    ///
    /// The lock word is taken as found: if the sender never releases it,
    /// [`Value::lock`] waits forever, so code that cannot trust its peer
    /// should use [`ProcessLock::acquire_timeout`] on [`Value::get_lock`].
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the size or alignment is wrong.
    pub fn from_buffer(buf: SharedBuffer) -> Result<Self, HeapError> {
        Ok(Self {
            block: LockedBlock::from_buffer(buf, "Value", Some(1))?,
        })
    }

    /// The lock (CPython's `get_lock()`).
    pub fn get_lock(&self) -> &ProcessLock {
        self.block.lock()
    }

    /// Takes the lock and gives access to the value until the guard drops.
    pub fn lock(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            value: self,
            _guard: self.get_lock().acquire(),
        }
    }

    /// Reads the value under the lock (CPython's `.value`).
    pub fn get(&self) -> T {
        self.lock().get()
    }

    /// Writes the value under the lock (`.value = v`).
    pub fn set(&self, v: T) {
        self.lock().set(v);
    }

    /// Gives the block back, to send it elsewhere.
    pub fn into_buffer(self) -> SharedBuffer {
        self.block.buf
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

/// Access to a [`Value`] while holding its lock.
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    _guard: ProcessLockGuard<'a>,
}

impl<T: Pod> ValueGuard<'_, T> {
    /// Reads the value.
    pub fn get(&self) -> T {
        // SAFETY: aligned, in bounds, any bits valid; the lock keeps other
        // lock users out, and no reference to the value ever exists.
        unsafe { self.value.block.data().read_volatile() }
    }

    /// Writes the value.
    pub fn set(&mut self, v: T) {
        // SAFETY: as in `get`.
        unsafe { self.value.block.data().write_volatile(v) }
    }

    /// Replaces the value by `f(value)` and returns the new value.
    pub fn update(&mut self, f: impl FnOnce(T) -> T) -> T {
        let v = f(self.get());
        self.set(v);
        v
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.get()).finish()
    }
}

/// A fixed-length array of `T` in shared memory guarded by a plain
/// [`ProcessLock`] (CPython's `Array(typecode, n)`); zero-filled when made
/// from a length, even on reused memory.
///
/// ```
/// let a = mp_heap::Array::<i32>::zeroed(10)?;
/// assert_eq!(a.to_vec(), vec![0; 10]);
/// a.lock().copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
/// assert_eq!(a.get(9), Some(10));
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
pub struct Array<T: Pod> {
    block: LockedBlock<T>,
}

impl<T: Pod> Array<T> {
    /// `len` zeros, from the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`]; [`HeapError::TooLarge`] when the byte size
    /// overflows.
    pub fn zeroed(len: usize) -> Result<Self, HeapError> {
        Self::zeroed_in(Heap::global(), len)
    }

    /// `len` zeros, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Array::zeroed`].
    pub fn zeroed_in(heap: &Heap, len: usize) -> Result<Self, HeapError> {
        Ok(Self {
            block: LockedBlock::locked_in(heap, len, false)?,
        })
    }

    /// A copy of `items`, from the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn from_slice(items: &[T]) -> Result<Self, HeapError> {
        Self::from_slice_in(Heap::global(), items)
    }

    /// A copy of `items`, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn from_slice_in(heap: &Heap, items: &[T]) -> Result<Self, HeapError> {
        let this = Self::zeroed_in(heap, items.len())?;
        this.lock().copy_from_slice(items);
        Ok(this)
    }

    /// Views a buffer made by [`Array::into_buffer`] (perhaps in another
    /// process) as an `Array`, sharing its lock (taken as found; see
    /// [`Value::from_buffer`]).
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the size or alignment is wrong.
    pub fn from_buffer(buf: SharedBuffer) -> Result<Self, HeapError> {
        Ok(Self {
            block: LockedBlock::from_buffer(buf, "Array", None)?,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// The lock (CPython's `get_lock()`).
    pub fn get_lock(&self) -> &ProcessLock {
        self.block.lock()
    }

    /// Takes the lock; the guard derefs to `[T]`.
    ///
    /// # Panics
    ///
    /// When this thread already holds the lock (it is not recursive).
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            array: self,
            _guard: self.get_lock().acquire(),
        }
    }

    /// Element `i` under the lock, `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        self.lock().get(i).copied()
    }

    /// Writes element `i` under the lock; `false` past the end.
    pub fn set(&self, i: usize, v: T) -> bool {
        match self.lock().get_mut(i) {
            Some(slot) => {
                *slot = v;
                true
            }
            None => false,
        }
    }

    /// A copy of every element, under the lock (CPython's `a[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().to_vec()
    }

    /// Gives the block back, to send it elsewhere.
    pub fn into_buffer(self) -> SharedBuffer {
        self.block.buf
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

/// Access to an [`Array`]'s elements while holding its lock.
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _guard: ProcessLockGuard<'a>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: in bounds and aligned (module docs); the plain lock makes
        // this guard the only view in this process.
        unsafe { self.array.block.slice() }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, exclusive through the lock and `&mut self`.
        unsafe { self.array.block.slice_mut() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

// ----- serde: typed shared memory as process arguments -----

/// `Serialize`/`Deserialize` through the block: the value travels as its
/// [`SharedBuffer`] (arena fd beside the bytes) and is rebuilt with
/// `from_buffer`, which checks the layout. A `Value`'s or `Array`'s lock is
/// in the block, so the receiver shares it.
macro_rules! serde_through_buffer {
    ($($ty:ident),*) => { $(
        impl<T: Pod> serde::Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.block.buf.serialize(serializer)
            }
        }

        impl<'de, T: Pod> serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let buf = <SharedBuffer as serde::Deserialize>::deserialize(deserializer)?;
                Self::from_buffer(buf).map_err(D::Error::custom)
            }
        }
    )* };
}
serde_through_buffer!(RawValue, RawArray, Value, Array);
