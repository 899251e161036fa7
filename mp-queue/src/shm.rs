//! The shared memory of a queue, declared safe to place there: the ring's
//! header (a [`SharedState`]) and the ring's bytes.
//!
//! # Safety
//!
//! The only `unsafe` of this crate:
//!
//! - [`Header`] is `#[repr(C)]` (its layout asserted beside it), made only
//!   of atomics, of mp-heap's `ProcessLock` (a [`SharedState`]) and of
//!   this crate's `Waiters` (atomics), so every bit pattern is valid;
//!   it holds no pointers, has no `Drop`, and is used only through `&Self`,
//!   exactly what [`SharedState`] asks.
//! - [`RingBytes`] copies bytes in and out of a [`SharedBuffer`] through its
//!   raw pointer (the mapping's own pointer, not one derived from a
//!   reference), always inside `0..len`, checked before each copy. The
//!   bytes are shared memory that other processes write: well-behaved
//!   peers only touch them under the ring's lock (so no two copies
//!   overlap in time), and a faulty one can at worst make us copy
//!   garbage, which every reader validates; no reference to the bytes is
//!   ever formed.
//! - [`advise_huge_pages`] gives `madvise(2)` a page-aligned range inside
//!   a vector's own allocation; the advice changes how the kernel backs
//!   the pages, never their contents or who owns them.
//! - [`pread_append`] lets `pread(2)` write into a vector's spare capacity
//!   and then counts, with `set_len`, exactly the bytes it wrote.

#![allow(unsafe_code)]

use mp_heap::{SharedBuffer, SharedState};

use crate::ring::Header;

// SAFETY: see the module docs.
unsafe impl SharedState for Header {}

/// The ring's data area: a block of shared memory, copied in and out at
/// offsets, never borrowed.
#[derive(Debug)]
pub(crate) struct RingBytes {
    buf: SharedBuffer,
}

impl RingBytes {
    pub(crate) fn new(buf: SharedBuffer) -> RingBytes {
        RingBytes { buf }
    }

    pub(crate) fn buffer(&self) -> &SharedBuffer {
        &self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Copies `src` to `offset`; `false` (nothing copied) if it does not
    /// fit inside the area.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> bool {
        if offset
            .checked_add(src.len())
            .is_none_or(|end| end > self.buf.len())
        {
            return false;
        }
        // SAFETY: `offset..offset + src.len()` lies inside the block
        // (checked above), which stays mapped while `self.buf` lives; the
        // pointer is the mapping's own, so writing through it is allowed;
        // `src` is private memory and cannot overlap shared memory we are
        // writing (see the module docs for concurrent writers).
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.buf.as_ptr().cast_mut().add(offset),
                src.len(),
            );
        }
        true
    }

    /// Copies `dst.len()` bytes from `offset`; `false` (nothing copied) if
    /// they do not lie inside the area.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.buf.len())
        {
            return false;
        }
        // SAFETY: as in `write`, reading the block into private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.buf.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        true
    }

    /// Appends `len` bytes from `offset` to `out`; `false` (nothing
    /// appended) if they do not lie inside the area.
    pub(crate) fn read_into_vec(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.buf.len())
        {
            return false;
        }
        out.reserve(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        // SAFETY: the source range lies inside the block (checked above);
        // `spare` is `len` bytes of `out`'s allocation, which the copy
        // initializes before `set_len` exposes them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.buf.as_ptr().add(offset),
                spare.as_mut_ptr().cast::<u8>(),
                len,
            );
            out.set_len(out.len() + len);
        }
        true
    }
}

/// Destinations at least this big are backed by transparent huge pages
/// where the system allows (`MADV_HUGEPAGE`): filling a fresh 64 MiB
/// vector then faults 32 pages instead of 16384, some 5x faster on the
/// development VM. Allocations this big are always their own mapping under
/// glibc (its mmap threshold stops growing at 32 MiB), so the advice
/// splits no shared heap mapping.
pub(crate) const HUGE_PAGE_THRESHOLD: usize = 32 << 20;

/// Asks for transparent huge pages under the spare capacity of `buf` (the
/// 2 MiB-aligned part of it), when it is at least [`HUGE_PAGE_THRESHOLD`]
/// bytes. Only advice: failure changes nothing.
pub(crate) fn advise_huge_pages(buf: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let spare = buf.spare_capacity_mut();
    if spare.len() < HUGE_PAGE_THRESHOLD {
        return;
    }
    let start = spare.as_mut_ptr() as usize;
    let end = start + spare.len();
    let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if hi <= lo {
        return;
    }
    // SAFETY: `lo..hi` is page-aligned and lies inside `buf`'s allocation
    // (its spare capacity), which outlives the call; MADV_HUGEPAGE only
    // changes the size of the pages that back the range.
    let _ = unsafe {
        rustix::mm::madvise(
            lo as *mut std::ffi::c_void,
            hi - lo,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

/// Appends exactly `len` bytes read at `offset` of `fd` to `out`
/// (`pread(2)`, retried on `EINTR` and short reads); `Ok(false)` if the
/// file ended first (what was read stays appended).
pub(crate) fn pread_append(
    fd: &std::os::fd::OwnedFd,
    mut offset: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    out.reserve(len);
    let goal = out.len() + len;
    while out.len() < goal {
        let want = goal - out.len();
        let spare = &mut out.spare_capacity_mut()[..want];
        match rustix::io::pread(fd, spare, offset) {
            Ok(([], _)) => return Ok(false),
            Ok((read, _)) => {
                let n = read.len();
                offset += n as u64;
                // SAFETY: `pread` initialised the first `n` bytes of the
                // spare capacity (`n <= want`), right after the vector's
                // current length.
                unsafe { out.set_len(out.len() + n) };
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
