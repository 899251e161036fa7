//! The syscalls and pointer tricks that need `unsafe`: `fork`, `_exit`,
//! `atexit`, `sigaction` (SIGINT ignored), and turning a function's offset back into a function pointer.
//!
//! # Safety
//!
//! - [`fork`] duplicates only the calling thread. Until the child exits it
//!   must not wait for a lock that another thread of the parent may have
//!   held at the time of the fork. `mp-context` holds its own locks across
//!   the fork (so the child's copies are consistent) and the C library's
//!   `fork` resets malloc's locks; what the target touches is the caller's
//!   responsibility, documented on the `fork` start method.
//! - The function offsets are distances from [`anchor`] in this same
//!   executable. A spawned child runs the very file the parent runs
//!   (`/proc/self/exe`), and checks [`check_value`] and the argument type's
//!   name before it resolves anything, so a pointer is only rebuilt where
//!   the parent had a function of exactly that type.

#![allow(unsafe_code)]

use std::io;

/// `fork(2)` through the C library: `Ok(None)` in the child, the pid in the
/// parent. See the module's `# Safety` for what the child may touch.
pub(crate) fn fork() -> io::Result<Option<i32>> {
    // SAFETY: `fork` itself has no memory-safety preconditions; the
    // restrictions on the child (no lock another thread held) are upheld by
    // `process::start_fork`, which holds this crate's locks across the call,
    // and are documented for the user's target.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// `_exit(2)`: ends the process at once, running no exit handlers (a forked
/// child must not run its parent's) and no destructors.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Registers `f` to run when the process exits normally (`atexit(3)`):
/// returning from `main` or `std::process::exit`.
pub(crate) fn register_atexit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain `extern "C" fn()` with static lifetime; the
    // callers' functions catch panics, so none unwinds into C.
    unsafe {
        libc::atexit(f);
    }
}

/// Sets SIGINT's disposition to `SIG_IGN` (`sigaction(2)`).
pub(crate) fn ignore_sigint() -> io::Result<()> {
    // SAFETY: `sigaction` with a zeroed, then filled-in struct whose
    // handler is `SIG_IGN`: no handler of ours ever runs, so there is no
    // async-signal-safety to uphold, and the call only changes the
    // process's disposition (thread-safe in the kernel).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The run-time address of this executable's entry point
/// (`getauxval(AT_ENTRY)`): with the ELF header's `e_entry`, it gives the
/// load bias that turns symbol values into addresses (see `elf.rs`).
pub(crate) fn entry_point() -> u64 {
    // SAFETY: `getauxval` only reads the auxiliary vector the kernel gave
    // this process; an absent entry is 0, never an error.
    unsafe { libc::getauxval(libc::AT_ENTRY) }
}

/// The base all offsets are measured from.
#[inline(never)]
fn anchor() -> u32 {
    std::hint::black_box(0x6d70_5f31)
}

/// A second symbol whose offset from [`anchor`] identifies the binary's
/// layout. Its body differs from `anchor`'s so the two are never merged.
#[inline(never)]
fn check_anchor() -> u64 {
    std::hint::black_box(0x6d70_5f32_6d70_5f33)
}

/// The distance from the anchor to `addr`, a function's address.
pub(crate) fn offset_of(addr: usize) -> u64 {
    let base = anchor as fn() -> u32 as usize;
    addr.wrapping_sub(base) as u64
}

/// What [`offset_of`] says about the check symbol: equal in parent and
/// child exactly when they run the same layout.
pub(crate) fn check_value() -> u64 {
    offset_of(check_anchor as fn() -> u64 as usize)
}

/// Turns an offset back into a `fn(A)`.
///
/// Sound only if the offset was made by [`offset_of`] from a `fn(A)` in
/// this same binary: callers check [`check_value`] and the type name of `A`
/// first (see `entry::run_child`).
pub(crate) fn resolve_target<A>(offset: u64) -> fn(A) {
    resolve_fn(offset)
}

/// The signature of the per-argument-type entry (`entry::trampoline::<A>`).
pub(crate) type Trampoline = fn(u64, &str, &[u8], Vec<std::os::fd::OwnedFd>) -> Result<(), String>;

/// Turns an offset back into a [`Trampoline`], under the same contract as
/// [`resolve_target`].
pub(crate) fn resolve_trampoline(offset: u64) -> Trampoline {
    resolve_fn(offset)
}

/// Turns an offset back into a preload hook `fn()`, under the same
/// contract as [`resolve_target`].
pub(crate) fn resolve_preload(offset: u64) -> fn() {
    resolve_fn(offset)
}

/// Turns an offset back into a function pointer of type `F` (the one
/// place where an offset becomes a pointer).
///
/// Sound only if the offset was made by [`offset_of`] from a function of
/// exactly type `F` in this same binary: callers check [`check_value`]
/// first, and the argument type's name (`entry::trampoline`) or the
/// function's types (`FnRef::resolve`) before calling what they get.
pub(crate) fn resolve_fn<F: Copy>(offset: u64) -> F {
    const {
        assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>());
    }
    let addr = (anchor as fn() -> u32 as usize).wrapping_add(offset as usize);
    // SAFETY: per the contract above, `addr` is the address of a function
    // of type `F` in this executable, and `F` (a function pointer) is
    // pointer-sized (checked at compile time).
    unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
}
