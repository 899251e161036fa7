//! Cheap fork detection (the pid, and the lock owners' stamp, kept in a
//! wipe-on-fork page) and the cell that holds a heap's per-process state.

use std::{
    ptr,
    sync::{
        OnceLock,
        atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering},
    },
};

use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};

/// What a process knows about itself, in a page the kernel zeroes in every
/// forked child (`MADV_WIPEONFORK`, Linux 4.14+): a child reads zeros
/// there, asks the kernel once, and stores its own values.
#[repr(C)]
struct SelfIds {
    /// The pid of the process that last wrote the page, or 0.
    pid: AtomicU32,
    _pad: AtomicU32,
    /// [`current_stamp`] of that process, or 0.
    stamp: AtomicU64,
}

/// The page, or `None` when the kernel refuses the advice; then every call
/// asks the kernel (`getpid()`, `/proc/self/stat`).
static IDS_PAGE: OnceLock<Option<&'static SelfIds>> = OnceLock::new();

#[inline]
fn ids_page() -> Option<&'static SelfIds> {
    *IDS_PAGE.get_or_init(|| {
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
        // SAFETY: the page is page-aligned (so aligned for `SelfIds`),
        // zero-filled (valid atomics), larger than `SelfIds`, and never
        // unmapped, so a `'static` shared reference is valid; all access
        // is atomic.
        Some(unsafe { &*ptr.cast::<SelfIds>() })
    })
}

fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The id of the calling process, without a system call in the common case.
///
/// glibc stopped caching `getpid()`, and the heap checks the pid on every
/// `malloc` and `free` (CPython's `os.getpid() != self._lastpid`), as every
/// lock acquisition does, so the value is kept in a wipe-on-fork page.
#[inline]
pub(crate) fn current_pid() -> u32 {
    match ids_page() {
        Some(page) => {
            let pid = page.pid.load(Ordering::Relaxed);
            if pid != 0 {
                return pid;
            }
            let pid = getpid();
            page.pid.store(pid, Ordering::Relaxed);
            pid
        }
        None => getpid(),
    }
}

/// Bits of a stamp that hold the start time; the pid sits above them.
pub(crate) const STAMP_START_BITS: u32 = 42;

/// This process's identity for lock owners: its pid in the top 22 bits
/// and its start time (clock ticks after boot, `/proc/self/stat` field
/// 22) in the low 42, which tells it apart from a later process that gets
/// the same pid. The start time is 0 when `/proc` cannot say.
#[inline]
pub(crate) fn current_stamp() -> u64 {
    let compute = || {
        let pid = getpid();
        let start = match super::proc_stat(pid) {
            Ok(Some(stat)) => stat.start_ticks,
            _ => 0,
        };
        make_stamp(pid, start)
    };
    match ids_page() {
        Some(page) => {
            let stamp = page.stamp.load(Ordering::Relaxed);
            if stamp != 0 {
                return stamp;
            }
            let stamp = compute();
            page.stamp.store(stamp, Ordering::Relaxed);
            stamp
        }
        None => compute(),
    }
}

/// The stamp of process `pid` started at `start_ticks`.
pub(crate) fn make_stamp(pid: u32, start_ticks: u64) -> u64 {
    (u64::from(pid) << STAMP_START_BITS) | (start_ticks & ((1 << STAMP_START_BITS) - 1))
}

struct Node<T> {
    value: T,
    older: *mut Node<T>,
}

/// A value that a forked child can replace without taking any lock the
/// parent may have held at fork time: per-process state (a heap's free
/// lists, a queue's feeder buffer) kept in memory that `fork` copies.
///
/// Replaced values are kept (not freed) until the cell is dropped, so that
/// references into them, such as blocks the parent allocated and the child
/// inherited, stay valid; there is one value per process in the fork
/// lineage, so the chain stays short. A replaced value is dropped with the
/// cell, in whatever process drops it: its `Drop` should do nothing that
/// only the process that made it may do (compare a pid it recorded with
/// [`current_pid`](crate::current_pid)).
///
/// ```
/// use mp_heap::{ForkCell, current_pid};
///
/// struct PerProcess { pid: u32 }
/// let cell = ForkCell::new(PerProcess { pid: current_pid() });
/// // In a forked child the pid differs, and the child gets a fresh value.
/// let mine = cell.replace_if(|s| s.pid != current_pid(), || PerProcess { pid: current_pid() });
/// assert_eq!(mine.pid, std::process::id());
/// ```
pub struct ForkCell<T> {
    head: AtomicPtr<Node<T>>,
}

// SAFETY: the cell hands out `&T` to any thread and drops `T` on whichever
// thread drops the cell, which is what `T: Send + Sync` allows.
unsafe impl<T: Send + Sync> Send for ForkCell<T> {}
// SAFETY: as above; all mutation of the chain goes through atomics.
unsafe impl<T: Send + Sync> Sync for ForkCell<T> {}

impl<T> ForkCell<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        let node = Box::into_raw(Box::new(Node {
            value,
            older: ptr::null_mut(),
        }));
        Self {
            head: AtomicPtr::new(node),
        }
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> &T {
        let node = self.head.load(Ordering::Acquire);
        // SAFETY: `head` always points to a live node (set in `new` or by a
        // successful CAS in `replace_if`), and nodes are freed only in
        // `Drop`, which needs `&mut self`.
        unsafe { &(*node).value }
    }

    /// If `stale(current)`, installs `make()` as the new current value
    /// (keeping the old one alive) and returns it; otherwise returns the
    /// current value. Racing callers agree on one winner.
    pub fn replace_if(&self, stale: impl Fn(&T) -> bool, make: impl Fn() -> T) -> &T {
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
