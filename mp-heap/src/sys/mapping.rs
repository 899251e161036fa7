//! `mmap(MAP_SHARED)` regions owned by an [`Arena`](crate::Arena).

use std::{io, os::fd::BorrowedFd, ptr::NonNull};

use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// A read-write `MAP_SHARED` mapping of the first `len` bytes of a file,
/// unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is a plain region of process memory; it carries no
// thread-affine state, and unmapping from another thread is fine.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out the base pointer; what callers do with it
// is governed by their own `unsafe` blocks.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`.
    ///
    /// The caller has checked that the file is at least `len` bytes long, so
    /// that touching the mapping cannot raise `SIGBUS`.
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: we ask the kernel for a fresh region (no fixed address), so
        // no existing Rust object is affected; the result is owned by `Self`.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Self { ptr, len })
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned, and this is
        // the only place that unmaps them. Views into the mapping borrow
        // the arena that owns this `Mapping`, so none outlives it. An error
        // here cannot be acted upon (and must not panic in `Drop`).
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
