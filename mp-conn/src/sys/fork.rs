//! Fork generations: how a connection learns that the process forked since
//! it last read, without a system call per receive.
//!
//! `pthread_atfork` handlers (registered once, when the first connection is
//! made) count forks: after each `fork(2)` through the C library, the
//! parent and the child both add one to [`generation`], and the child also
//! records the generation at which it became a child. A connection
//! remembers the generation it last read at; a different one means that a
//! copy of it may now exist in another process.
//!
//! `posix_spawn` (what `std::process::Command` uses on Linux) runs no fork
//! handlers, and a spawned program starts with fresh memory, so spawning
//! counts as no fork. A raw `clone`/`fork` system call that bypasses the C
//! library is not seen.
//!
//! # Safety
//!
//! The handlers only touch atomics, which is async-signal-safe, as a fork
//! handler in a multi-threaded process must be.

#![allow(unsafe_code)]

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Forks seen by this process and its ancestors since the handlers were
/// registered (parent and child of a fork both count it).
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The generation at which this process became a fork child (0: it is not
/// a fork child since registration).
static BECAME_CHILD_AT: AtomicU64 = AtomicU64::new(0);
/// Whether the handlers are registered (`pthread_atfork` can fail with
/// `ENOMEM`).
static WATCHING: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

extern "C" fn after_fork_in_parent() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn after_fork_in_child() {
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    BECAME_CHILD_AT.store(generation, Ordering::Relaxed);
}

/// Registers the fork handlers (once per process; a fork child inherits
/// them) and says whether forks are being counted.
pub(crate) fn watch() -> bool {
    REGISTER.call_once(|| {
        // SAFETY: the handlers are `extern "C"` functions with static
        // lifetime that touch only atomics and never unwind.
        let rc = unsafe {
            libc::pthread_atfork(None, Some(after_fork_in_parent), Some(after_fork_in_child))
        };
        WATCHING.store(rc == 0, Ordering::Relaxed);
    });
    WATCHING.load(Ordering::Relaxed)
}

/// The current fork generation (one relaxed load).
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// The generation at which this process became a fork child; 0 if it
/// never did.
pub(crate) fn became_child_at() -> u64 {
    BECAME_CHILD_AT.load(Ordering::Relaxed)
}
