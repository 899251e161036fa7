//! # mp-context
//!
//! Processes and start methods, after CPython's `multiprocessing` (`context.py`,
//! `process.py`, the `popen_*` modules and `spawn.py`).
//!
//! A [`Process`] runs a plain function with serde arguments, `fn(A)`, in a
//! child process. Because the target captures nothing, the same call works
//! under every start method:
//!
//! - **fork**: the child is a copy of this process and calls the target
//!   directly; it ends with `_exit`, never running this process's exit
//!   handlers. Fastest, but see *Fork safety* below.
//! - **spawn**: this executable is started again (`/proc/self/exe`, with
//!   `MP_RS_ROLE=spawn`); [`init`] at the top of `main` recognises the
//!   child, reads the target and arguments from its stdin (a unix socket,
//!   fds included), runs it and exits, so the rest of `main` never runs.
//! - **forkserver** (the default, as in CPython 3.14 on Linux): a server,
//!   started once by re-executing the binary, forks each child on request
//!   (see `mp-forkserver`). Children start from a small single-threaded
//!   process, which is safe whatever threads this process runs.
//!
//! ## Finding the target in a child
//!
//! For spawn and forkserver the child must find `target` again. The parent
//! sends the function's offset from a fixed symbol of this binary (the
//! approach of the `procspawn` crate), together with the offset of a second
//! symbol, the argument type's name and which file it runs (device and
//! inode of `/proc/self/exe`); the child runs exactly the same file, checks
//! all three, and only then rebuilds the pointer. A mismatch is an error
//! message and exit code 1, never a call through a wrong pointer. Targets
//! must live in the executable itself, not in a dynamically loaded library.
//!
//! ## A separate worker binary
//!
//! [`set_executable`] (CPython's) makes spawn and forkserver children run
//! another binary of the program, built from the same code, whose `main`
//! registers the targets it serves with [`register_target`] and then calls
//! [`init`]. Offsets mean nothing in another binary, so the parent also
//! sends the target's symbol names, read from its own symbol table, and
//! the worker calls the registered target of those names and that argument
//! type, through its own entry for that type. Put the targets in a library
//! crate both binaries link, and strip neither binary's symbols; an
//! unregistered target is an error message in the child and exit code 1.
//! The fork method has no executable: [`Context::set_executable`] refuses
//! it.
//!
//! ## What a child starts with
//!
//! As CPython's `_bootstrap`: stdin is the null device (under every start
//! method), and a panic of the target is introduced on stderr by a line
//! naming the process, `Process Process-1 (pid 1234):` (CPython's
//! `Process Process-1:` before the traceback). A forkserver child that
//! starts processes itself has them forked by the same fork server, which
//! it keeps running while it lives (CPython's inherited alive fd).
//!
//! ## Logging
//!
//! [`get_logger`] and [`log_to_stderr`] are CPython's, over the `log`
//! facade: messages of the target [`LOGGER_NAME`] (`multiprocessing`) at
//! the places CPython's `util.info` speaks (a child's run and exit, the
//! exit handler's terminate and join calls, a fork server's start) go to
//! the program's logger, or to stderr as `[INFO/Process-1] ...` after
//! `log_to_stderr`, which spawn and forkserver children then call too.
//!
//! [`FnRef`] does the same for functions `fn(A) -> R` that a child is sent
//! and calls many times (the tasks of `mp-pool`'s workers): a serde value
//! holding the offsets, checked once by [`FnRef::resolve`].
//!
//! ## Arguments that hold fds or shared memory
//!
//! Under fork the arguments are moved into the child as they are. Under
//! spawn and forkserver they are serialized with postcard (as an
//! `mp_conn::Parcel`): an `mp_conn::Connection`, an `mp_reduction::Fd`, or
//! an `mp_heap::SharedBuffer`, `Arena`, `Value` or `Array` puts its fd in
//! the table, and the fds travel with `SCM_RIGHTS` (the child maps a
//! received arena again and never frees a received block). To keep seeing
//! what a child writes, keep the buffer and pass `buf.share()`, or clones
//! of an `Arc<mp_heap::Value<T>>`.
//!
//! A connection argument with messages already read ahead takes them
//! along under every start method: the child receives them first, and the
//! parent's handle (if it kept one, through an `Arc`) gives them up once
//! the child has its arguments. An argument that cannot be serialized
//! fails `start()` with [`Error::Encode`], whose cause is serde's own
//! explanation ("handle is closed", ...).
//!
//! ## Calling [`init`]
//!
//! `mp_context::init()` must be the first thing `main` does (a worker
//! binary's [`register_target`] calls may come before it). Forgetting it
//! is caught in the parent: spawn and forkserver starts return
//! [`Error::InitNotCalled`], whose message says what to do. In `cargo test`,
//! put cross-process tests in a `harness = false` target whose `main` calls
//! `init()` and then the tests (this crate's `tests/processes.rs` is one);
//! examples call it first in their `main`.
//!
//! ## Exit codes
//!
//! As CPython's: 0 when the target returns, the code given to [`exit`], 1
//! after a panic (the message goes to stderr as usual; with
//! `panic = "abort"` a panic is SIGABRT, `-6`), and `-N` when signal `N`
//! ended the child.
//!
//! ## Shutdown
//!
//! When the main process exits (returning from `main` or
//! `std::process::exit`), an `atexit` hook registered by the first
//! [`Process::start`] (or the first [`register_finalizer`]) runs
//! [`shutdown`]: finalizers of priority 0 and above, then daemonic children
//! are terminated and every child is joined, then the other finalizers
//! run, as CPython's exit handler does. A child runs [`shutdown`] when its
//! target returns, panics or calls [`exit`], under every start method (and
//! through the inherited hook when its target calls `std::process::exit`).
//! Call [`shutdown`] yourself to do it earlier; a process killed by a signal
//! runs no hook.
//!
//! ## Fork safety
//!
//! A forked child has only the thread that called `start`. If another
//! thread held a lock at that moment (a `Mutex` of the program, stdout's
//! lock, a logger), the child waits forever when it takes it. `mp-context`
//! holds its own locks across the fork and flushes stdout before it, and
//! glibc's `fork` resets the allocator's locks; anything else the target
//! touches is the caller's concern. Use the fork method only in programs
//! that are single-threaded when they start processes, or whose targets
//! take no lock another thread may hold; otherwise use forkserver.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! fn work(n: u32) {
//!     if n == 3 {
//!         mp_context::exit(3);
//!     }
//! }
//!
//! fn main() -> Result<(), mp_context::Error> {
//!     mp_context::init();
//!     let ctx = mp_context::get_context(Some("fork"))?;
//!     let procs: Vec<_> = (1..=3).map(|n| ctx.process(work, n)).collect();
//!     for p in &procs {
//!         p.start()?;
//!     }
//!     for p in &procs {
//!         p.join(Some(Duration::from_secs(10)))?;
//!     }
//!     let codes: Vec<_> = procs.iter().map(|p| p.exitcode().unwrap()).collect();
//!     assert_eq!(codes, [Some(0), Some(0), Some(3)]);
//!     Ok(())
//! }
//! ```

#![deny(unsafe_code)]

mod args;
mod context;
mod current;
mod elf;
mod entry;
mod error;
mod executable;
mod finalize;
mod function;
mod logging;
mod process;
mod sys;

pub use args::ProcessArgs;
pub use context::{
    Context, DEFAULT_START_METHOD, IntoStartMethod, StartMethod, cpu_count, get_all_start_methods,
    get_context, get_start_method, set_start_method,
};
pub use current::{ParentProcess, ProcessInfo, active_children, current_process, parent_process};
pub use entry::{exit, init};
pub use error::{Error, Result};
pub use executable::{get_executable, register_target, set_executable};
pub use finalize::{Finalizer, register_finalizer};
pub use function::{CallError, FnRef, FnRefError, ResolvedFn};
pub use logging::{LOGGER_NAME, LevelFilter, Logger, get_logger, log_to_stderr};
pub use process::{Process, Sentinel};

/// Makes this process ignore SIGINT (`signal.signal(signal.SIGINT,
/// signal.SIG_IGN)`), as CPython's manager server and fork server do, so
/// that Ctrl-C in the terminal, which the kernel sends to the whole
/// foreground process group, leaves a helper process running until its
/// parent shuts it down (bpo-36368). The setting is inherited by the
/// processes it starts, under every start method (an ignored signal
/// stays ignored across `fork` and `exec`).
///
/// # Errors
///
/// `sigaction`'s error (none is expected for SIGINT).
///
/// # Examples
///
/// ```no_run
/// // In a helper process's target, before it serves:
/// mp_context::ignore_sigint()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn ignore_sigint() -> std::io::Result<()> {
    sys::ignore_sigint()
}

/// Runs the finalizers of priority 0 and above, terminates daemonic
/// children, joins every child, then runs the remaining finalizers
/// (CPython's `util._exit_function`; see [`register_finalizer`]). Runs by
/// itself whenever a process ends normally (see the crate docs); calling it
/// earlier is harmless, and each finalizer runs once.
pub fn shutdown() {
    log::info!(target: LOGGER_NAME, "process shutting down");
    finalize::run_finalizers(Some(0));
    let children = active_children();
    for p in &children {
        if p.daemon() {
            log::info!(target: LOGGER_NAME, "calling terminate() for daemon {}", p.name());
            let _ = p.terminate();
        }
    }
    for p in &children {
        log::info!(target: LOGGER_NAME, "calling join() for process {}", p.name());
        let _ = p.join(None);
    }
    finalize::run_finalizers(None);
}

/// Functions that run around each fork of the `fork` start method
/// (CPython's `os.register_at_fork`): `before` in the parent just before
/// the fork (most recently registered first), then `after_in_parent` in the
/// parent and `after_in_child` in the child, before its target (in
/// registration order). Crates that keep per-process state which a forked
/// child must not share (a manager's connections) register them.
///
/// The hooks run outside this crate's locks; `after_in_child` runs in the
/// single-threaded child, so it must not wait for a lock that another
/// thread of the parent may have held at the fork.
#[derive(Clone, Copy, Debug)]
pub struct ForkHooks {
    /// Runs in the parent before the fork.
    pub before: fn(),
    /// Runs in the parent after the fork.
    pub after_in_parent: fn(),
    /// Runs in the child after the fork, before the target.
    pub after_in_child: fn(),
}

static FORK_HOOKS: std::sync::Mutex<Vec<ForkHooks>> = std::sync::Mutex::new(Vec::new());

/// Registers `hooks` to run around every later fork of the `fork` start
/// method (see [`ForkHooks`]).
pub fn register_at_fork(hooks: ForkHooks) {
    FORK_HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(hooks);
}

/// The registered fork hooks (a copy, taken before the fork).
pub(crate) fn fork_hooks() -> Vec<ForkHooks> {
    FORK_HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets the preload hook of the fork server (CPython's
/// `set_forkserver_preload`): `hook` runs once in the server before it
/// forks any child, so children inherit whatever it initialised. Like
/// CPython's, it only affects a server started afterwards. The hook must
/// not leave threads running.
pub fn set_forkserver_preload(hook: fn()) {
    let data = entry::Preload {
        exe: executable::self_id(),
        check: sys::check_value(),
        hook: sys::offset_of(hook as usize),
    };
    let bytes = postcard::to_allocvec(&data).expect("two integers always serialize");
    mp_forkserver::ForkServer::global().set_preload(bytes);
}

/// This crate's README example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
