//! [`Shared<T>`]: a `#[repr(C)]` structure of atomics in a heap block,
//! shared by cheap clones in this process and by every process it reaches
//! (fork, or serde through mp-reduction). [`SharedLock`] is the one mp-heap
//! uses itself; mp-sync builds its semaphores, conditions, events and
//! barriers the same way.
//!
//! # Safety
//!
//! This module views a heap block as `&T`. That is sound because:
//!
//! - `T: SharedState` promises a `#[repr(C)]` type whose every bit pattern
//!   is valid (atomics and plain integers, no pointers), used only through
//!   shared references, with nothing to drop; so bytes written by anyone
//!   (another process, an earlier user of the memory, a peer that sent a
//!   buffer) are a valid `T`, and concurrent access is atomic;
//! - the block is exactly `size_of::<T>()` bytes at an address aligned for
//!   `T` (heap blocks are 8-aligned, `T`'s alignment is checked at compile
//!   time to be at most 8; rebuilt buffers are checked at run time);
//! - the block stays mapped while the `SharedBuffer` owning it lives, and
//!   every `&T` borrows a handle that keeps that buffer alive.

#![allow(unsafe_code)]

use std::{fmt, marker::PhantomData, mem::size_of, ops::Deref, sync::Arc};

use crate::{Heap, HeapError, ProcessLock, SharedBuffer, heap::ALIGNMENT};

/// A `#[repr(C)]` structure that may live in shared memory and be used
/// from many processes at once through `&Self`.
///
/// # Safety
///
/// Implement it only for `#[repr(C)]` types made of atomics (and of other
/// `SharedState` types), for which every bit pattern is valid, that hold no
/// pointers (meaningless in another process), have no `Drop` and are only
/// ever used through shared references. Alignment above 8 bytes is
/// refused at compile time.
///
/// Implemented for [`ProcessLock`], the fixed-width atomic integers
/// (`AtomicU8` to `AtomicI64`: a counter shared as it is) and arrays of
/// `SharedState` types.
pub unsafe trait SharedState: Send + Sync + 'static {}

// SAFETY: repr(C), atomics only (every bit pattern is a valid lock word,
// kind, tid, count and stamp), no pointers, no Drop.
unsafe impl SharedState for ProcessLock {}

/// Fixed-width atomic integers: counters and flags shared as they are.
macro_rules! atomic_states {
    ($($t:ty),*) => {$(
        // SAFETY: an atomic integer has its integer's layout, every bit
        // pattern is a valid value, it holds no pointer and has no Drop.
        unsafe impl SharedState for $t {}
    )*};
}
atomic_states!(
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64
);

// SAFETY: an array lays its elements out one after another with no
// padding between them, so it keeps every property of `T` (valid for every
// bit pattern, no pointers, no Drop, used through `&`).
unsafe impl<T: SharedState, const N: usize> SharedState for [T; N] {}

/// Refuses, at compile time, a `T` the heap cannot hold as a `Shared`.
const fn check_state<T: SharedState>() {
    assert!(
        std::mem::align_of::<T>() <= ALIGNMENT,
        "mp-heap blocks are 8-byte aligned; T needs more"
    );
    assert!(size_of::<T>() > 0, "zero-sized types have nothing to share");
    assert!(
        !std::mem::needs_drop::<T>(),
        "a SharedState is never dropped"
    );
}

struct Inner<T> {
    buf: SharedBuffer,
    _t: PhantomData<T>,
}

/// A `T` in a block of shared memory, used through `&T` (it derefs), shared
/// by clones like an `Arc`, and by every process it reaches.
///
/// - **Clones** share the one block; it is freed when the last clone in the
///   allocating process drops.
/// - **Fork**: the child's copy sees the same memory.
/// - **Spawn, forkserver, connections**: a serde type through
///   mp-reduction, as [`SharedBuffer`] is (the arena fd beside the bytes);
///   the receiver maps the block and sees the same memory. The size is
///   checked when it arrives.
///
/// ```
/// use mp_heap::{ProcessLock, Shared, SharedLock};
///
/// let lock: SharedLock = Shared::new(ProcessLock::new(false))?;
/// let again = lock.clone(); // the same lock
/// let guard = lock.lock().unwrap();
/// assert!(again.is_locked());
/// drop(guard);
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
pub struct Shared<T: SharedState> {
    inner: Arc<Inner<T>>,
}

/// A [`ProcessLock`] of its own in shared memory: the lock of a
/// [`Value`](crate::Value) or [`Array`](crate::Array), and the handle
/// mp-sync's `Lock` and `RLock` are made of.
pub type SharedLock = Shared<ProcessLock>;

impl<T: SharedState> Shared<T> {
    /// `value`, moved into a new block of the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new(value: T) -> Result<Self, HeapError> {
        Self::new_in(Heap::global(), value)
    }

    /// `value`, moved into a new block of `heap`.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new_in(heap: &Heap, value: T) -> Result<Self, HeapError> {
        const { check_state::<T>() };
        let mut buf = heap.malloc(size_of::<T>())?;
        // SAFETY: the block is `size_of::<T>()` bytes, 8-aligned (so
        // aligned for `T`, checked above), owned by `buf` alone; nothing
        // else sees it before `value` is written.
        unsafe { buf.as_mut_ptr().cast::<T>().write(value) };
        Ok(Self::wrap(buf))
    }

    /// Views a buffer holding a `T` (from [`Shared::into_buffer`], perhaps
    /// in another process) as a `Shared<T>`, taking its contents as found.
    ///
    /// # Errors
    ///
    /// [`HeapError::BadLayout`] when the buffer is not exactly
    /// `size_of::<T>()` bytes at an 8-aligned address.
    pub fn from_buffer(buf: SharedBuffer) -> Result<Self, HeapError> {
        const { check_state::<T>() };
        if buf.len() != size_of::<T>() || !(buf.as_ptr() as usize).is_multiple_of(ALIGNMENT) {
            return Err(HeapError::BadLayout {
                what: std::any::type_name::<T>(),
                need: size_of::<T>(),
                have: buf.len(),
            });
        }
        Ok(Self::wrap(buf))
    }

    fn wrap(buf: SharedBuffer) -> Self {
        Self {
            inner: Arc::new(Inner {
                buf,
                _t: PhantomData,
            }),
        }
    }

    /// The block holding the `T`.
    pub fn buffer(&self) -> &SharedBuffer {
        &self.inner.buf
    }

    /// The block, once this is the last clone; otherwise `self` back.
    ///
    /// # Errors
    ///
    /// Gives `self` back while other clones live.
    pub fn into_buffer(self) -> Result<SharedBuffer, Self> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.buf),
            Err(inner) => Err(Self { inner }),
        }
    }

    /// Whether two handles are clones of one another (in this process).
    /// Handles received separately map the memory separately and are not.
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        Arc::ptr_eq(&this.inner, &other.inner)
    }
}

impl SharedLock {
    /// A new free `RLock`-style lock (recursive) in the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn recursive() -> Result<Self, HeapError> {
        Self::new(ProcessLock::new(true))
    }

    /// A new free `Lock`-style lock (plain) in the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn plain() -> Result<Self, HeapError> {
        Self::new(ProcessLock::new(false))
    }
}

impl<T: SharedState> Deref for Shared<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the block is a valid, aligned `T` for as long as `self`
        // keeps the buffer alive (module docs).
        unsafe { &*self.inner.buf.as_ptr().cast::<T>() }
    }
}

impl<T: SharedState> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: SharedState + fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&**self).finish()
    }
}

/// Serializable only inside `mp_reduction::collect_fds`: the block, as a
/// [`SharedBuffer`].
impl<T: SharedState> serde::Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.buf.serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`: maps the block
/// again and checks its size.
impl<'de, T: SharedState> serde::Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let buf = SharedBuffer::deserialize(deserializer)?;
        Self::from_buffer(buf).map_err(D::Error::custom)
    }
}
