//! Process-level syscalls the fork server needs and rustix does not wrap
//! safely: `fork`, `_exit`, signal dispositions, and removing an
//! environment variable.
//!
//! # Safety
//!
//! - `fork` duplicates only the calling thread. In the child, until it
//!   execs or exits, code must not wait for a lock that another thread of the
//!   parent may have held at the time of the fork (a `Mutex`, stdout's lock,
//!   an allocator that is not fork-aware). The fork server is
//!   single-threaded, so its children may do anything; `fork` here goes
//!   through the C library, whose atfork handlers reset malloc's locks.
//! - The SIGCHLD handler only calls `write(2)` on a non-blocking pipe and
//!   restores `errno`, both async-signal-safe.
//! - [`remove_env`] is called while the process is still single-threaded
//!   (first thing in `main`, through `mp_context::init`).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// `fork(2)` through the C library, from the server loop. `Ok(None)` in the
/// child, `Ok(Some(pid))` in the parent.
///
/// Only [`crate::server`] calls it, from the server process, which is
/// single-threaded: this crate starts no thread there, and the preload hook
/// is documented as not allowed to leave threads running.
pub(crate) fn fork_server_child() -> io::Result<Option<i32>> {
    // SAFETY: the server process has a single thread (see above), so the
    // child inherits no lock held by a thread that does not exist in it.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// `_exit(2)`: ends the process at once, running no exit handlers and no
/// destructors (stdout must have been flushed by the caller).
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// The write end of the self-pipe, for the SIGCHLD handler (-1: none).
static SIGCHLD_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_signum: libc::c_int) {
    let fd = SIGCHLD_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: `__errno_location` and `write` are async-signal-safe; the
        // byte lives on this frame; errno is restored for the interrupted
        // code.
        unsafe {
            let errno = *libc::__errno_location();
            let byte = 0u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

fn set_handler(
    signum: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `sigaction` with a zeroed, then filled-in struct; the handler
    // is either SIG_DFL/SIG_IGN or `on_sigchld`, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signum, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Routes SIGCHLD to one byte written to `wakeup` (non-blocking), and makes
/// the process ignore SIGINT, as `forkserver.main` does.
pub(crate) fn install_server_signals(wakeup: BorrowedFd<'_>) -> io::Result<()> {
    SIGCHLD_FD.store(wakeup.as_raw_fd(), Ordering::Relaxed);
    set_handler(
        libc::SIGCHLD,
        on_sigchld as extern "C" fn(libc::c_int) as libc::sighandler_t,
        libc::SA_RESTART | libc::SA_NOCLDSTOP,
    )?;
    set_handler(libc::SIGINT, libc::SIG_IGN, 0)
}

/// In a forked child of the server: SIGCHLD and SIGINT back to their
/// defaults, and the self-pipe forgotten.
pub(crate) fn restore_child_signals() -> io::Result<()> {
    SIGCHLD_FD.store(-1 as RawFd, Ordering::Relaxed);
    set_handler(libc::SIGCHLD, libc::SIG_DFL, 0)?;
    set_handler(libc::SIGINT, libc::SIG_DFL, 0)
}

/// Removes an environment variable.
///
/// Only sound while no other thread reads or writes the environment: call
/// it first thing in `main` (see [`crate::take_role`]).
pub(crate) fn remove_env(name: &str) {
    // SAFETY: documented precondition: the process is still single-threaded
    // (or at least no other thread touches the environment).
    unsafe { std::env::remove_var(name) }
}

/// Closes every fd from 3 up (`close_range(2)`, or a loop over
/// `/proc/self/fd` where the kernel lacks it): a re-executed child keeps
/// only stdio and what it is then sent, never fds its parent leaked by
/// leaving them inheritable (CPython's `close_fds=True`).
///
/// Only called by [`crate::take_role`] for a re-executed child, which runs
/// it first thing in `main`, before anything owns an fd above 2.
pub(crate) fn close_inherited_fds() {
    // SAFETY: `close_range` on fds this process does not use yet (see
    // above); no `OwnedFd` refers to them.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: as above; the read_dir fd is already closed (collected
        // first), and closing an fd that is gone is a harmless EBADF.
        unsafe {
            libc::close(fd);
        }
    }
}
