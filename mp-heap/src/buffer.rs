//! [`SharedBuffer`]: an owned block of shared memory (CPython's
//! `BufferWrapper`).
//!
//! # Safety
//!
//! This module turns a block's address into `&[u8]`/`&mut [u8]`. That is
//! sound because:
//!
//! - the bytes stay mapped for the buffer's whole life: a heap never unmaps
//!   an arena that still has allocated blocks, a forked child never frees
//!   or unmaps its parent's arenas, and a buffer from
//!   [`SharedBuffer::from_parts`] holds its arena;
//! - within a process, each block belongs to exactly one `SharedBuffer`
//!   (the heap hands a range out once until it is freed, and `from_parts`
//!   makes its caller promise the same), so `&mut self` is exclusive.
//!   [`SharedBuffer::share`] and deserialization keep that promise by
//!   mapping the arena again for each buffer they make: the new buffer's
//!   addresses belong to it alone, and what it shares with another buffer
//!   in this process is the memory behind a separate mapping, exactly what
//!   it shares with a buffer in another process.
//!
//! Other processes may write the same bytes at any time; that is the point
//! of shared memory, and as in CPython, synchronising them is the user's
//! job (use [`Value`](crate::Value) and [`Array`](crate::Array) for a lock).

#![allow(unsafe_code)]

use std::{
    fmt,
    ops::{Deref, DerefMut},
    os::fd::AsFd,
    ptr::NonNull,
    sync::Arc,
};

use crate::{
    Arena, BlockInfo, Heap, HeapError,
    heap::{BlockRef, HeapRef},
};

/// An owned block of shared memory that derefs to `[u8]` and is freed on
/// drop (CPython's `multiprocessing.heap.BufferWrapper`).
///
/// A buffer travels to another process in either of two ways:
///
/// - **fork**: the child inherits the mapping and sees the same bytes. The
///   child never frees the parent's block (dropping it there does nothing;
///   [`SharedBuffer::free`] says [`HeapError::WrongProcess`]).
/// - **by descriptor**: send [`arena`](SharedBuffer::arena)'s fd (for
///   instance with `SCM_RIGHTS`) together with
///   [`arena().size()`](Arena::size), [`offset`](SharedBuffer::offset) and
///   [`len`](SharedBuffer::len); the receiver rebuilds the arena with
///   [`Arena::from_fd`] and the buffer with [`SharedBuffer::from_parts`].
///   Such a buffer is not the receiver's heap's to free: dropping it only
///   drops its hold on the arena.
///
/// These four values (fd, arena size, offset, len) are all a serializer
/// needs, and `SharedBuffer` is a serde type built on them: serialized
/// inside `mp_reduction::collect_fds` (as `mp-context` does with process
/// arguments under spawn and forkserver), the arena's fd goes into the fd
/// table and the three numbers into the bytes; deserialized inside
/// `mp_reduction::provide_fds`, the arena is mapped again
/// ([`Arena::from_fd`]) and the buffer rebuilt over the same bytes. A
/// buffer received this way is never freed by the receiver's heap. Under
/// `fork` nothing is serialized: the child gets the buffer itself.
///
/// To keep a handle while another process writes, [`share`](Self::share)
/// makes a second buffer over the same bytes.
///
/// # Examples
///
/// ```
/// use mp_heap::SharedBuffer;
///
/// let mut buf = SharedBuffer::new(16)?;
/// buf.copy_from_slice(b"0123456789abcdef");
/// assert_eq!(&buf[..4], b"0123");
/// assert_eq!(buf.offset() % 8, 0);
/// # Ok::<(), mp_heap::HeapError>(())
/// ```
pub struct SharedBuffer {
    ptr: NonNull<u8>,
    len: usize,
    owner: Owner,
}

enum Owner {
    /// A block of a heap in process `pid`; `arena` stays alive while the
    /// block is allocated (and forever in a forked child).
    Heap {
        heap: HeapRef,
        pid: u32,
        block: BlockRef,
        arena: NonNull<Arena>,
    },
    /// Rebuilt from parts: keeps its arena mapped, frees nothing.
    Foreign { arena: Arc<Arena>, offset: usize },
    /// Already freed by [`SharedBuffer::free`].
    Released,
}

// SAFETY: the buffer owns its bytes (see the module's Safety notes); the
// arena pointer is only read through `&`, and `Arena` is `Sync`.
unsafe impl Send for SharedBuffer {}
// SAFETY: `&SharedBuffer` gives only `&[u8]` and `&Arena`.
unsafe impl Sync for SharedBuffer {}

impl SharedBuffer {
    /// Allocates `size` bytes from the process-wide heap (CPython's
    /// `BufferWrapper(size)`). The bytes are not cleared; see
    /// [`SharedBuffer::zeroed`].
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn new(size: usize) -> Result<Self, HeapError> {
        Heap::global().malloc(size)
    }

    /// Allocates `size` zero bytes from the process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`Heap::malloc`].
    pub fn zeroed(size: usize) -> Result<Self, HeapError> {
        Heap::global().malloc_zeroed(size)
    }

    pub(crate) fn from_heap(
        heap: HeapRef,
        pid: u32,
        block: BlockRef,
        arena: NonNull<Arena>,
        len: usize,
    ) -> Self {
        // SAFETY: `arena` points to the live arena the block was cut from.
        let base = unsafe { arena.as_ref() }.base();
        // SAFETY: `block.start + len <= block.stop <= arena size`, so the
        // result stays inside the same mapping.
        let ptr = unsafe { base.add(block.start) };
        Self {
            ptr,
            len,
            owner: Owner::Heap {
                heap,
                pid,
                block,
                arena,
            },
        }
    }

    /// Rebuilds a buffer of `len` bytes at `offset` in an arena received
    /// from another process (see the type's docs). Dropping it frees
    /// nothing.
    ///
    /// # Safety
    ///
    /// No other `SharedBuffer` (or typed value) in this process may cover
    /// any of these bytes while this one lives: `&mut` access must be
    /// exclusive within the process. Rebuild each block once.
    ///
    /// # Errors
    ///
    /// [`HeapError::OutOfBounds`] when the range does not lie inside the
    /// arena.
    pub unsafe fn from_parts(
        arena: Arc<Arena>,
        offset: usize,
        len: usize,
    ) -> Result<Self, HeapError> {
        let arena_size = arena.size();
        if offset.checked_add(len).is_none_or(|end| end > arena_size) {
            return Err(HeapError::OutOfBounds {
                offset,
                len,
                arena_size,
            });
        }
        // SAFETY: `offset + len <= arena size`, checked above.
        let ptr = unsafe { arena.base().add(offset) };
        Ok(Self {
            ptr,
            len,
            owner: Owner::Foreign { arena, offset },
        })
    }

    /// Another buffer over the same bytes, through a separate mapping of
    /// the arena (as another process would see them): what a receiver of a
    /// serialized buffer gets, made in this process. It frees nothing when
    /// dropped; the block stays this buffer's (or its owner's) to free.
    ///
    /// Writes through either are seen by the other, as with another
    /// process; synchronising them is the user's job.
    ///
    /// ```
    /// let mut buf = mp_heap::SharedBuffer::zeroed(8)?;
    /// let view = buf.share()?;
    /// buf[0] = 7;
    /// assert_eq!(view[0], 7);
    /// # Ok::<(), mp_heap::HeapError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`HeapError::Io`] if the arena's fd cannot be duplicated or mapped.
    pub fn share(&self) -> Result<SharedBuffer, HeapError> {
        let arena = self.arena();
        let fd = arena.as_fd().try_clone_to_owned()?;
        let arena = Arena::from_fd(fd, arena.size())?;
        rebuild_in_own_mapping(arena, self.offset(), self.len)
    }

    /// The number of bytes asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (asked for 0 bytes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The arena holding the bytes; its fd is what another process needs.
    pub fn arena(&self) -> &Arena {
        match &self.owner {
            // SAFETY: the arena outlives the allocated block (module docs).
            Owner::Heap { arena, .. } => unsafe { arena.as_ref() },
            Owner::Foreign { arena, .. } => arena,
            Owner::Released => unreachable!("a released buffer is never observed"),
        }
    }

    /// The offset of the first byte within [`SharedBuffer::arena`]; always
    /// a multiple of 8 for heap blocks.
    pub fn offset(&self) -> usize {
        match &self.owner {
            Owner::Heap { block, .. } => block.start,
            Owner::Foreign { offset, .. } => *offset,
            Owner::Released => unreachable!("a released buffer is never observed"),
        }
    }

    /// The heap block behind this buffer (rounded size, arena id as in
    /// [`Heap::snapshot`]); `None` for a buffer rebuilt from parts.
    pub fn block(&self) -> Option<BlockInfo> {
        match &self.owner {
            Owner::Heap { block, .. } => Some(BlockInfo {
                arena: block.arena,
                start: block.start,
                stop: block.stop,
            }),
            _ => None,
        }
    }

    /// The process that allocated the block; `None` for a buffer rebuilt
    /// from parts.
    pub fn owner_pid(&self) -> Option<u32> {
        match &self.owner {
            Owner::Heap { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Frees the block now, reporting what dropping would ignore.
    ///
    /// # Errors
    ///
    /// [`HeapError::WrongProcess`] in a process other than the allocator
    /// (a forked child); the block is left to its owner.
    pub fn free(mut self) -> Result<(), HeapError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), HeapError> {
        match std::mem::replace(&mut self.owner, Owner::Released) {
            Owner::Heap {
                heap, pid, block, ..
            } => heap.free(pid, block),
            Owner::Foreign { .. } | Owner::Released => Ok(()),
        }
    }

    /// A raw pointer to the first byte.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// A raw mutable pointer to the first byte.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn nonnull(&self) -> NonNull<u8> {
        self.ptr
    }
}

impl Deref for SharedBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is mapped for the buffer's life and owned
        // by it (module docs).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for SharedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the access exclusive
        // within this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for SharedBuffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for SharedBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Drop for SharedBuffer {
    fn drop(&mut self) {
        // In a forked child this is `WrongProcess`: the parent's block is
        // the parent's to free, so the error is the intended no-op.
        let _ = self.release();
    }
}

/// A buffer over `offset..offset + len` of `arena`, a mapping made for it
/// alone.
fn rebuild_in_own_mapping(
    arena: Arena,
    offset: usize,
    len: usize,
) -> Result<SharedBuffer, HeapError> {
    // SAFETY: `arena` is a fresh mapping that no other buffer uses, so no
    // other `SharedBuffer` in this process covers these addresses (the
    // module's Safety notes); `from_parts` checks the bounds.
    unsafe { SharedBuffer::from_parts(Arc::new(arena), offset, len) }
}

// ----- serde: a SharedBuffer as a process argument (mp-reduction) -----

/// Serializable only inside `mp_reduction::collect_fds`: the arena (its fd
/// in the fd table, its size), the offset and the length.
impl serde::Serialize for SharedBuffer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.arena(), self.offset() as u64, self.len as u64).serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`: maps the arena
/// again and rebuilds the buffer over the same bytes; it frees nothing when
/// dropped. Bounds that do not fit the arena are an error.
impl<'de> serde::Deserialize<'de> for SharedBuffer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let (arena, offset, len) = <(Arena, u64, u64)>::deserialize(deserializer)?;
        let offset = usize::try_from(offset).map_err(D::Error::custom)?;
        let len = usize::try_from(len).map_err(D::Error::custom)?;
        rebuild_in_own_mapping(arena, offset, len).map_err(D::Error::custom)
    }
}

impl fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("len", &self.len)
            .field("offset", &self.offset())
            .field("arena_size", &self.arena().size())
            .field("owner_pid", &self.owner_pid())
            .finish()
    }
}
