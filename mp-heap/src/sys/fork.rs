//! Cheap fork detection and the cell that holds a heap's per-process state.

use std::{
    ptr,
    sync::{
        OnceLock,
        atomic::{AtomicPtr, AtomicU32, Ordering},
    },
};

use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};

/// A page the kernel zeroes in every forked child (`MADV_WIPEONFORK`, Linux
/// 4.14+), holding the pid of the process that last wrote it; `None` when the
/// kernel refuses the advice, and then every call asks `getpid()`.
static PID_PAGE: OnceLock<Option<&'static AtomicU32>> = OnceLock::new();

fn pid_page() -> Option<&'static AtomicU32> {
    *PID_PAGE.get_or_init(|| {
        let len = super::page_size();
        // SAFETY: a fresh private anonymous mapping at an address of the
        // kernel's choosing aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .ok()?;
        // SAFETY: `ptr..ptr+len` is the mapping we just made.
        if unsafe { madvise(ptr, len, Advice::LinuxWipeOnFork) }.is_err() {
            // SAFETY: same region, not yet shared with anyone.
            let _ = unsafe { munmap(ptr, len) };
            return None;
        }
        // SAFETY: the page is page-aligned (so aligned for `AtomicU32`),
        // zero-filled (a valid `AtomicU32`), and never unmapped, so a
        // `'static` shared reference is valid; all access is atomic.
        Some(unsafe { &*ptr.cast::<AtomicU32>() })
    })
}

/// The id of the calling process, without a system call in the common case.
///
/// glibc stopped caching `getpid()`, and the heap checks the pid on every
/// `malloc` and `free` (CPython's `os.getpid() != self._lastpid`), so the
/// value is kept in a wipe-on-fork page: a child reads zero there, asks the
/// kernel once, and stores its own pid.
pub(crate) fn current_pid() -> u32 {
    match pid_page() {
        Some(page) => {
            let pid = page.load(Ordering::Relaxed);
            if pid != 0 {
                return pid;
            }
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            page.store(pid, Ordering::Relaxed);
            pid
        }
        None => rustix::process::getpid().as_raw_nonzero().get() as u32,
    }
}

struct Node<T> {
    value: T,
    older: *mut Node<T>,
}

/// A value that a forked child can replace without taking any lock the
/// parent may have held at fork time.
///
/// Replaced values are kept (not freed) until the cell is dropped, so that
/// references into them, such as blocks the parent allocated and the child
/// inherited, stay valid; there is one value per process in the fork
/// lineage, so the chain stays short.
pub(crate) struct ForkCell<T> {
    head: AtomicPtr<Node<T>>,
}

// SAFETY: the cell hands out `&T` to any thread and drops `T` on whichever
// thread drops the cell, which is what `T: Send + Sync` allows.
unsafe impl<T: Send + Sync> Send for ForkCell<T> {}
// SAFETY: as above; all mutation of the chain goes through atomics.
unsafe impl<T: Send + Sync> Sync for ForkCell<T> {}

impl<T> ForkCell<T> {
    /// A cell holding `value`.
    pub(crate) fn new(value: T) -> Self {
        let node = Box::into_raw(Box::new(Node {
            value,
            older: ptr::null_mut(),
        }));
        Self {
            head: AtomicPtr::new(node),
        }
    }

    /// The current value.
    pub(crate) fn get(&self) -> &T {
        let node = self.head.load(Ordering::Acquire);
        // SAFETY: `head` always points to a live node (set in `new` or by a
        // successful CAS in `replace_if`), and nodes are freed only in
        // `Drop`, which needs `&mut self`.
        unsafe { &(*node).value }
    }

    /// If `stale(current)`, installs `make()` as the new current value
    /// (keeping the old one alive) and returns it; otherwise returns the
    /// current value. Racing callers agree on one winner.
    pub(crate) fn replace_if(&self, stale: impl Fn(&T) -> bool, make: impl Fn() -> T) -> &T {
        loop {
            let cur = self.head.load(Ordering::Acquire);
            // SAFETY: as in `get`.
            let cur_ref = unsafe { &(*cur).value };
            if !stale(cur_ref) {
                return cur_ref;
            }
            let node = Box::into_raw(Box::new(Node {
                value: make(),
                older: cur,
            }));
            match self
                .head
                .compare_exchange(cur, node, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: `node` is now the live head; see `get`.
                Ok(_) => return unsafe { &(*node).value },
                Err(_) => {
                    // SAFETY: the CAS failed, so `node` was never published
                    // and we still own it.
                    drop(unsafe { Box::from_raw(node) });
                }
            }
        }
    }
}

impl<T> Drop for ForkCell<T> {
    fn drop(&mut self) {
        let mut node = *self.head.get_mut();
        while !node.is_null() {
            // SAFETY: we have `&mut self`, so no reference into the chain
            // is alive; each node was made by `Box::into_raw` and is freed
            // once here.
            let boxed = unsafe { Box::from_raw(node) };
            node = boxed.older;
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ForkCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkCell")
            .field("current", self.get())
            .finish()
    }
}
