//! Typed shared memory on the heap, as CPython's `sharedctypes`:
//! [`RawValue`], [`RawArray`], and the locked [`Value`] and [`Array`].
//!
//! # Safety
//!
//! This module views heap blocks as `T` and `[T]`. That is sound because:
//!
//! - `T: Pod` promises that every bit pattern is a valid `T` and that `T`
//!   has no padding, so bytes written by anyone (another process, or an
//!   earlier user of reused memory) are a valid `T`;
//! - blocks start on 8-byte boundaries and `T`'s alignment is checked at
//!   compile time to be at most 8; buffers rebuilt with `from_buffer` are
//!   checked;
//! - a buffer is exclusively owned within the process (see
//!   [`SharedBuffer`]); the raw types' `&mut` views need `&mut self`;
//! - the locked types never make a reference to their elements: their
//!   guards copy elements in and out with relaxed atomic loads and stores
//!   of `align_of::<T>()` bytes each ([`load`], [`store`]). Their lock is
//!   recursive by default and may be a caller's plain lock that another
//!   thread can release, so two guards of one value can coexist in one
//!   process; atomic copies make that a possible torn value (any bits are
//!   a valid `T`), never a data race.

#![allow(unsafe_code)]

use std::{
    fmt,
    marker::PhantomData,
    mem::{MaybeUninit, align_of, size_of},
    ops::{Deref, DerefMut},
};

use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::{
    Heap, HeapError, LockResult, ProcessLockGuard, SharedBuffer, SharedLock, heap::ALIGNMENT,
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
/// assert_eq!(v.get().unwrap().tag, 3);
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
    exact: Option<usize>,
) -> Result<(), HeapError> {
    let have = buf.len();
    let need = exact.unwrap_or(0) * size_of::<T>();
    let fits = match exact {
        Some(_) => have == need,
        None => have.is_multiple_of(size_of::<T>()),
    };
    if !fits || !(buf.as_ptr() as usize).is_multiple_of(ALIGNMENT) {
        return Err(HeapError::BadLayout { what, need, have });
    }
    Ok(())
}

/// A heap block seen as `len` elements of `T`: the allocation, layout
/// checks and pointers that the four public types share.
struct Block<T: Pod> {
    buf: SharedBuffer,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Block<T> {
    /// `len` zeroed elements, from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`]; [`HeapError::TooLarge`] when the byte size
    /// overflows.
    fn zeroed_in(heap: &Heap, len: usize) -> Result<Self, HeapError> {
        const { check_layout::<T>() };
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or(HeapError::TooLarge { size: usize::MAX })?;
        Ok(Self {
            buf: heap.malloc_zeroed(bytes)?,
            len,
            _t: PhantomData,
        })
    }

    /// Views `buf` as the block of a `what` holding exactly `exact`
    /// elements, or with `None` as many as its bytes hold.
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
        check_buffer::<T>(&buf, what, exact)?;
        let len = buf.len() / size_of::<T>();
        Ok(Self {
            buf,
            len,
            _t: PhantomData,
        })
    }

    /// The first element.
    fn data(&self) -> *mut T {
        self.buf.nonnull().cast::<T>().as_ptr()
    }

    /// Element `i`, if it exists.
    fn element(&self, i: usize) -> Option<*mut T> {
        // SAFETY: `i < len`, so the element lies inside the block.
        (i < self.len).then(|| unsafe { self.data().add(i) })
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
    /// caller holds `&mut` of the owner.
    #[expect(clippy::mut_from_ref, reason = "exclusivity is the caller's promise")]
    unsafe fn slice_mut(&self) -> &mut [T] {
        // SAFETY: as in `slice`; the caller makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.data(), self.len) }
    }
}

/// Reads the `T` at `src` with relaxed atomic loads of `align_of::<T>()`
/// bytes each: never a data race, though a `T` being written meanwhile may
/// come out torn (any bits are a valid `Pod`).
///
/// # Safety
///
/// `src` is aligned and points to `size_of::<T>()` readable bytes that are
/// only ever accessed atomically (or by other processes).
unsafe fn load<T: Pod>(src: *const T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    macro_rules! copy {
        ($atomic:ty, $int:ty) => {{
            let n = size_of::<T>() / size_of::<$int>();
            let (s, d) = (src.cast::<$atomic>(), out.as_mut_ptr().cast::<$int>());
            for k in 0..n {
                // SAFETY: `T`'s size is a multiple of its alignment, the
                // chunk size, so chunk `k < n` lies in `src` and in `out`,
                // aligned for the atomic type (the caller's promise).
                unsafe { d.add(k).write((*s.add(k)).load(Ordering::Relaxed)) };
            }
        }};
    }
    match align_of::<T>() {
        1 => copy!(AtomicU8, u8),
        2 => copy!(AtomicU16, u16),
        4 => copy!(AtomicU32, u32),
        _ => copy!(AtomicU64, u64),
    }
    // SAFETY: every byte of `out` was written, and any bits are a valid
    // `T: Pod`.
    unsafe { out.assume_init() }
}

/// Writes `v` to `dst` with relaxed atomic stores, as [`load`] reads.
///
/// # Safety
///
/// As [`load`], with the bytes writable.
unsafe fn store<T: Pod>(dst: *mut T, v: T) {
    macro_rules! copy {
        ($atomic:ty, $int:ty) => {{
            let n = size_of::<T>() / size_of::<$int>();
            let (s, d) = ((&raw const v).cast::<$int>(), dst.cast::<$atomic>());
            for k in 0..n {
                // SAFETY: as in `load`; `v` is a local `T` (no padding, so
                // every chunk is initialised).
                unsafe { (*d.add(k)).store(s.add(k).read(), Ordering::Relaxed) };
            }
        }};
    }
    match align_of::<T>() {
        1 => copy!(AtomicU8, u8),
        2 => copy!(AtomicU16, u16),
        4 => copy!(AtomicU32, u32),
        _ => copy!(AtomicU64, u64),
    }
}

/// One `T` in shared memory, without a lock (CPython's `RawValue`).
///
/// Reads and writes are single copies of `T`, not atomic: another process
/// may see a torn value, as CPython documents. Use [`Value`] for a lock.
pub struct RawValue<T: Pod> {
    block: Block<T>,
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
            block: Block::zeroed_in(heap, 1)?,
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
            block: Block::from_buffer(buf, "RawValue", Some(1))?,
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
    block: Block<T>,
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
            block: Block::zeroed_in(heap, len)?,
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
            block: Block::from_buffer(buf, "RawArray", None)?,
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

/// One `T` in shared memory guarded by a [`SharedLock`] (CPython's
/// `Value(typecode, v)`): by default a new recursive lock of its own, as
/// CPython's default `RLock`; or a caller's lock, which several values may
/// share (`Value(typecode, v, lock=my_lock)`). For `lock=False` (no lock,
/// CPython returns the raw object) see [`Value::without_lock`].
///
/// The holder may take the lock again: `get`, `set` and nested `lock`
/// calls inside a guard never block on themselves.
///
/// ```
/// let v = mp_heap::Value::new(7_i64)?;
/// {
///     let mut g = v.lock().unwrap();
///     g.set(g.get() + 1); // read-modify-write under the lock
///     assert_eq!(v.get().unwrap(), 8); // re-entering the lock is fine
/// }
/// // Two values sharing one lock.
/// let w = mp_heap::Value::with_lock(0_u8, v.get_lock().clone())?;
/// assert!(mp_heap::Shared::ptr_eq(w.get_lock(), v.get_lock()));
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
///
/// # Owner death
///
/// When a process dies holding the lock, the next acquisition returns
/// [`OwnerDied`](crate::OwnerDied) around its guard (or around the value, for `get` and
/// `set`): the value may be half-written; `into_inner()` carries on.
pub struct Value<T: Pod> {
    lock: SharedLock,
    block: Block<T>,
}

impl<T: Pod> Value<T> {
    /// A value holding `v`, with a new recursive lock, from the
    /// process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new(v: T) -> Result<Self, HeapError> {
        Self::new_in(Heap::global(), v)
    }

    /// A value holding `v`, with a new recursive lock, both from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new_in(heap: &Heap, v: T) -> Result<Self, HeapError> {
        let lock = SharedLock::new_in(heap, crate::ProcessLock::new(true))?;
        Self::build(heap, v, lock)
    }

    /// A value holding `v`, guarded by `lock` (CPython's `lock=` argument
    /// given a `Lock` or `RLock`): every value and process that holds a
    /// clone of it shares it. mp-sync's `Lock` and `RLock` convert into a
    /// [`SharedLock`].
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn with_lock(v: T, lock: impl Into<SharedLock>) -> Result<Self, HeapError> {
        Self::build(Heap::global(), v, lock.into())
    }

    /// CPython's `Value(typecode, v, lock=False)`: the value without any
    /// lock, which is a [`RawValue`].
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn without_lock(v: T) -> Result<RawValue<T>, HeapError> {
        RawValue::new(v)
    }

    fn build(heap: &Heap, v: T, lock: SharedLock) -> Result<Self, HeapError> {
        let block = Block::zeroed_in(heap, 1)?;
        // SAFETY: a fresh one-element block, aligned; no one else sees it.
        unsafe { store(block.data(), v) };
        Ok(Self { lock, block })
    }

    /// Rebuilds a value from the parts [`Value::into_parts`] gave (perhaps
    /// in another process), sharing its lock, whose state is taken as
    /// found.
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the buffer is not exactly one `T` at
    /// an aligned address.
    pub fn from_parts(lock: SharedLock, buf: SharedBuffer) -> Result<Self, HeapError> {
        Ok(Self {
            lock,
            block: Block::from_buffer(buf, "Value", Some(1))?,
        })
    }

    /// The lock and the block, to send them elsewhere.
    pub fn into_parts(self) -> (SharedLock, SharedBuffer) {
        (self.lock, self.block.buf)
    }

    /// The lock (CPython's `get_lock()`); clone it to share it.
    pub fn get_lock(&self) -> &SharedLock {
        &self.lock
    }

    /// The block holding the value (CPython's `get_obj()`, as bytes).
    pub fn buffer(&self) -> &SharedBuffer {
        &self.block.buf
    }

    /// Takes the lock and gives access to the value until the guard drops.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) around the guard when the previous holder died.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        let wrap = |guard| ValueGuard {
            value: self,
            _guard: guard,
        };
        self.lock.lock().map(wrap).map_err(|e| e.map(wrap))
    }

    /// Reads the value under the lock (CPython's `.value`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) around the value read, as for [`Value::lock`].
    pub fn get(&self) -> LockResult<T> {
        with_guard(self.lock(), |g| g.get())
    }

    /// Writes the value under the lock (`.value = v`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (the value was written), as for [`Value::lock`].
    pub fn set(&self, v: T) -> LockResult<()> {
        with_guard(self.lock(), |mut g| g.set(v))
    }
}

/// Runs `f` on the guard of a lock result, keeping the owner-died notice.
fn with_guard<G, R>(locked: LockResult<G>, f: impl FnOnce(G) -> R) -> LockResult<R> {
    match locked {
        Ok(g) => Ok(f(g)),
        Err(died) => Err(died.map(f)),
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Without the lock: Debug must not block.
        // SAFETY: in bounds, aligned, only accessed atomically.
        let v = unsafe { load(self.block.data()) };
        f.debug_struct("Value")
            .field("value", &v)
            .field("lock", &*self.lock)
            .finish()
    }
}

/// Access to a [`Value`] while holding its lock. Values are copied in and
/// out; no reference to the shared memory is ever handed out.
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    _guard: ProcessLockGuard<'a>,
}

impl<T: Pod> ValueGuard<'_, T> {
    /// Reads the value.
    pub fn get(&self) -> T {
        // SAFETY: aligned, in bounds, only accessed atomically (module docs).
        unsafe { load(self.value.block.data()) }
    }

    /// Writes the value.
    pub fn set(&mut self, v: T) {
        // SAFETY: as in `get`.
        unsafe { store(self.value.block.data(), v) }
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

/// A fixed-length array of `T` in shared memory guarded by a
/// [`SharedLock`] (CPython's `Array(typecode, n)`): by default a new
/// recursive lock of its own, as CPython's default `RLock`, or a caller's
/// ([`Array::with_lock`]); zero-filled when made from a length, even on
/// reused memory. For `lock=False` see [`Array::without_lock`].
///
/// Elements are copied in and out under the lock (`get`, `set`, `update`,
/// `read`, `write`, `to_vec`); like a `ReentrantLock`'s, its guard never
/// hands out `&mut [T]`, because the holder may re-enter.
///
/// ```
/// let a = mp_heap::Array::<i32>::zeroed(10)?;
/// assert_eq!(a.to_vec().unwrap(), vec![0; 10]);
/// let mut g = a.lock().unwrap();
/// assert!(g.write(0, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
/// g.update(9, |x| x * 10);
/// assert_eq!(a.get(9).unwrap(), Some(100)); // re-entering the lock
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
///
/// # Owner death
///
/// As for [`Value`]: [`OwnerDied`](crate::OwnerDied) around the guard or the result.
pub struct Array<T: Pod> {
    lock: SharedLock,
    block: Block<T>,
}

impl<T: Pod> Array<T> {
    /// `len` zeros with a new recursive lock, from the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`]; [`HeapError::TooLarge`] when the byte size
    /// overflows.
    pub fn zeroed(len: usize) -> Result<Self, HeapError> {
        Self::zeroed_in(Heap::global(), len)
    }

    /// `len` zeros with a new recursive lock, both from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Array::zeroed`].
    pub fn zeroed_in(heap: &Heap, len: usize) -> Result<Self, HeapError> {
        let lock = SharedLock::new_in(heap, crate::ProcessLock::new(true))?;
        Ok(Self {
            lock,
            block: Block::zeroed_in(heap, len)?,
        })
    }

    /// A copy of `items` with a new recursive lock, from the process-wide
    /// heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn from_slice(items: &[T]) -> Result<Self, HeapError> {
        Self::from_slice_in(Heap::global(), items)
    }

    /// A copy of `items` with a new recursive lock, both from `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn from_slice_in(heap: &Heap, items: &[T]) -> Result<Self, HeapError> {
        let this = Self::zeroed_in(heap, items.len())?;
        this.fill_from(items);
        Ok(this)
    }

    /// A copy of `items` guarded by `lock` (CPython's `lock=` argument
    /// given a `Lock` or `RLock`), shared with whatever else holds it.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn with_lock(items: &[T], lock: impl Into<SharedLock>) -> Result<Self, HeapError> {
        let this = Self {
            lock: lock.into(),
            block: Block::zeroed_in(Heap::global(), items.len())?,
        };
        this.fill_from(items);
        Ok(this)
    }

    /// CPython's `Array(typecode, items, lock=False)`: the elements without
    /// any lock, which is a [`RawArray`]. (`RawArray::zeroed` for a length.)
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn without_lock(items: &[T]) -> Result<RawArray<T>, HeapError> {
        RawArray::from_slice(items)
    }

    /// Writes `items` into a block nobody else sees yet.
    fn fill_from(&self, items: &[T]) {
        for (i, &v) in items.iter().enumerate() {
            if let Some(p) = self.block.element(i) {
                // SAFETY: in bounds, aligned; the block is not shared yet.
                unsafe { store(p, v) };
            }
        }
    }

    /// Rebuilds an array from the parts [`Array::into_parts`] gave (perhaps
    /// in another process), sharing its lock, taken as found.
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the length is not a multiple of
    /// `size_of::<T>()` or the address is not aligned.
    pub fn from_parts(lock: SharedLock, buf: SharedBuffer) -> Result<Self, HeapError> {
        Ok(Self {
            lock,
            block: Block::from_buffer(buf, "Array", None)?,
        })
    }

    /// The lock and the block, to send them elsewhere.
    pub fn into_parts(self) -> (SharedLock, SharedBuffer) {
        (self.lock, self.block.buf)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// The lock (CPython's `get_lock()`); clone it to share it.
    pub fn get_lock(&self) -> &SharedLock {
        &self.lock
    }

    /// The block holding the elements (CPython's `get_obj()`, as bytes).
    pub fn buffer(&self) -> &SharedBuffer {
        &self.block.buf
    }

    /// Takes the lock and gives access to the elements until the guard
    /// drops. The holder may take it again (nested guards, `get`, ...).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) around the guard when the previous holder died.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        let wrap = |guard| ArrayGuard {
            array: self,
            _guard: guard,
        };
        self.lock.lock().map(wrap).map_err(|e| e.map(wrap))
    }

    /// Element `i` under the lock, `None` past the end.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) around the result, as for [`Array::lock`].
    pub fn get(&self, i: usize) -> LockResult<Option<T>> {
        with_guard(self.lock(), |g| g.get(i))
    }

    /// Writes element `i` under the lock; `false` past the end.
    ///
    /// # Errors
    ///
    /// As [`Array::get`].
    pub fn set(&self, i: usize, v: T) -> LockResult<bool> {
        with_guard(self.lock(), |mut g| g.set(i, v))
    }

    /// A copy of every element, under the lock (CPython's `a[:]`).
    ///
    /// # Errors
    ///
    /// As [`Array::get`].
    pub fn to_vec(&self) -> LockResult<Vec<T>> {
        with_guard(self.lock(), |g| g.to_vec())
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len())
            .field("lock", &*self.lock)
            .finish()
    }
}

/// Access to an [`Array`]'s elements while holding its lock, by copy.
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _guard: ProcessLockGuard<'a>,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// Element `i`, `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        let p = self.array.block.element(i)?;
        // SAFETY: in bounds, aligned, only accessed atomically (module docs).
        Some(unsafe { load(p) })
    }

    /// Writes element `i`; `false` past the end.
    pub fn set(&mut self, i: usize, v: T) -> bool {
        match self.array.block.element(i) {
            Some(p) => {
                // SAFETY: as in `get`.
                unsafe { store(p, v) };
                true
            }
            None => false,
        }
    }

    /// Replaces element `i` by `f(element)` and returns the new value;
    /// `None` past the end.
    pub fn update(&mut self, i: usize, f: impl FnOnce(T) -> T) -> Option<T> {
        let v = f(self.get(i)?);
        self.set(i, v);
        Some(v)
    }

    /// Copies elements `start..start + dst.len()` into `dst`; `false` (and
    /// nothing copied) when that range does not fit.
    pub fn read(&self, start: usize, dst: &mut [T]) -> bool {
        if start
            .checked_add(dst.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        for (k, d) in dst.iter_mut().enumerate() {
            if let Some(v) = self.get(start + k) {
                *d = v;
            }
        }
        true
    }

    /// Copies `src` into elements `start..start + src.len()`; `false` (and
    /// nothing written) when that range does not fit.
    pub fn write(&mut self, start: usize, src: &[T]) -> bool {
        if start
            .checked_add(src.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        for (k, &v) in src.iter().enumerate() {
            self.set(start + k, v);
        }
        true
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&self.to_vec()).finish()
    }
}

// ----- serde: typed shared memory as process arguments -----

/// `Serialize`/`Deserialize` through the block: the value travels as its
/// [`SharedBuffer`] (arena fd beside the bytes) and is rebuilt with
/// `from_buffer`, which checks the layout.
macro_rules! serde_raw {
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
serde_raw!(RawValue, RawArray);

/// `Serialize`/`Deserialize` as `(lock, block)`: the receiver shares the
/// lock (a caller's lock too) and the elements; `from_parts` checks the
/// layout.
macro_rules! serde_locked {
    ($($ty:ident),*) => { $(
        impl<T: Pod> serde::Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                (&self.lock, &self.block.buf).serialize(serializer)
            }
        }

        impl<'de, T: Pod> serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let (lock, buf) = <(SharedLock, SharedBuffer)>::deserialize(deserializer)?;
                Self::from_parts(lock, buf).map_err(D::Error::custom)
            }
        }
    )* };
}
serde_locked!(Value, Array);
