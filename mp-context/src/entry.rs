//! The child side: `init()`, running a target, exit codes, and the entry
//! points of spawned and forkserver children (`spawn.py`'s `_main`).

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{StartMethod, force_start_method};
use crate::current::{self, ProcessInfo};
use crate::executable::{self, ExeId};
use crate::{LOGGER_NAME, logging, sys};

/// The most bytes of process data a child accepts (the arguments are in
/// it): a guard against a corrupt length, not a practical limit.
const MAX_CHILD_DATA: usize = 1 << 30;

/// Everything a spawned or forkserver child needs, sent by the parent.
#[derive(Serialize, Deserialize)]
pub(crate) struct ChildData {
    /// [`sys::check_value`] in the parent.
    pub(crate) check: u64,
    /// The file the parent runs: the offsets below are only meaningful in
    /// a child of the same file.
    pub(crate) exe: Option<ExeId>,
    /// The parent's executable, for messages.
    pub(crate) parent_exe: String,
    pub(crate) trampoline: u64,
    pub(crate) target: u64,
    /// The target's symbol names (sorted), when the child may run another
    /// binary ([`crate::set_executable`]); empty otherwise.
    pub(crate) target_names: Vec<String>,
    pub(crate) type_name: String,
    /// The parent's `log_to_stderr` level, if it called it.
    pub(crate) log_level: Option<u8>,
    pub(crate) info: ProcessInfo,
    pub(crate) parent_pid: i32,
    pub(crate) parent_name: String,
    pub(crate) start_method: StartMethod,
    pub(crate) args: Vec<u8>,
    /// How many fds follow the data (spawn: `send_fds` on the same
    /// socket; forkserver: they come with the fork server's request).
    pub(crate) nfds: u32,
}

thread_local! {
    /// Whether this thread is running a process target (so that [`exit`]
    /// can unwind to it).
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    /// Whether a panic on this thread now becomes a value rather than the
    /// end of the process ([`ResolvedFn::call`](crate::ResolvedFn::call)):
    /// the process header is not printed for it.
    static PANIC_IS_A_VALUE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, whose panics the caller catches and turns into values (a
/// pool task's error), without the process header of a failing target.
pub(crate) fn with_panics_as_values<T>(f: impl FnOnce() -> T) -> T {
    let outer = PANIC_IS_A_VALUE.with(|p| p.replace(true));
    let result = f();
    PANIC_IS_A_VALUE.with(|p| p.set(outer));
    result
}

/// The payload [`exit`] unwinds with.
pub(crate) struct ExitRequest(pub(crate) i32);

/// Ends the current process with exit code `code` (CPython's
/// `sys.exit(code)`).
///
/// Inside a process target (on the thread that runs it), this unwinds to
/// the start of the target, running destructors on the way, and the child
/// exits with `code`; no panic message is printed. Anywhere else it runs
/// [`shutdown`](crate::shutdown) and then `std::process::exit(code)`.
pub fn exit(code: i32) -> ! {
    if IN_TARGET.with(Cell::get) {
        std::panic::resume_unwind(Box::new(ExitRequest(code)))
    }
    crate::shutdown();
    std::process::exit(code)
}

/// Whether this process's panic hook prints the process header: set while
/// our wrapper is (part of) the hook; fork children inherit both.
static PANIC_HEADER: AtomicBool = AtomicBool::new(false);

/// Lives inside our hook: when the program replaces the hook (dropping
/// ours), the next [`install_panic_header`] wraps the new one.
struct HeaderInstalled;

impl Drop for HeaderInstalled {
    fn drop(&mut self) {
        PANIC_HEADER.store(false, Ordering::Relaxed);
    }
}

/// Wraps the panic hook so that a panic on the thread running a target is
/// introduced by a line naming the process, `Process Process-1 (pid N):`,
/// as CPython prints `Process Process-1:` before the traceback of a target
/// that raised. The hook then runs as before (the message, a backtrace if
/// asked for); on any other thread, and in a process that runs no target,
/// it does nothing more than the hook it wraps.
///
/// The fork start method installs it in the parent, before the fork, so
/// that a fork child writes no memory for it (each page it writes is a
/// copy); the fork server installs it before it forks; a spawned child
/// before its target.
pub(crate) fn install_panic_header() {
    // A read first: in a child that inherited the hook, nothing is written.
    if PANIC_HEADER.load(Ordering::Relaxed) || PANIC_HEADER.swap(true, Ordering::Relaxed) {
        return;
    }
    let previous = std::panic::take_hook();
    let installed = HeaderInstalled;
    std::panic::set_hook(Box::new(move |info| {
        let _ = &installed;
        if IN_TARGET.with(Cell::get) && !PANIC_IS_A_VALUE.with(Cell::get) {
            // One write, so that the header stays on its own line even
            // when other processes share this stderr.
            let header = format!(
                "Process {} (pid {}):\n",
                current::current_process().name(),
                std::process::id()
            );
            let _ = std::io::stderr().write_all(header.as_bytes());
        }
        previous(info)
    }));
}

/// Runs a target and turns its outcome into an exit code: 0 on return,
/// the code given to [`exit`], 1 after a panic (whose message the panic
/// hook has printed on stderr, after the process header).
pub(crate) fn run_target(f: impl FnOnce()) -> i32 {
    install_panic_header();
    log::info!(target: LOGGER_NAME, "child process calling self.run()");
    IN_TARGET.with(|t| t.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_TARGET.with(|t| t.set(false));
    let code = match outcome {
        Ok(()) => 0,
        Err(payload) => match payload.downcast_ref::<ExitRequest>() {
            Some(ExitRequest(code)) => *code,
            None => 1,
        },
    };
    log::info!(target: LOGGER_NAME, "process exiting with exitcode {code}");
    code
}

/// Replaces stdin with the null device, as CPython's `_bootstrap` does in
/// every child (`util._close_stdin`): a child never competes with its
/// parent for the terminal's or a pipe's input. Left as it is if the null
/// device cannot be opened.
pub(crate) fn stdin_to_null() {
    if let Ok(null) = open_null_device() {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
}

fn open_null_device() -> rustix::io::Result<OwnedFd> {
    // A `CStr` path: no allocation, which matters in a fork child.
    rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

/// The null device, opened once per process (close-on-exec) for the stdin
/// of its fork children: a child that inherits it needs a `dup2` where an
/// `open` would look the path up, which costs a fork child more than the
/// rest of its set-up. `None` if it cannot be opened.
static NULL_DEVICE: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// [`NULL_DEVICE`], opened on first use: called by the parent before a
/// fork, for [`fork_child_stdin_to_null`] in the child.
pub(crate) fn null_device() -> Option<BorrowedFd<'static>> {
    NULL_DEVICE
        .get_or_init(|| open_null_device().ok())
        .as_ref()
        .map(AsFd::as_fd)
}

/// [`stdin_to_null`] in a fork child, from the parent's [`null_device`]
/// (inherited). It is checked to still be the null device (a program may
/// have closed fds it does not own, and the number been reused) before it
/// becomes stdin; otherwise the device is opened as usual.
pub(crate) fn fork_child_stdin_to_null(inherited: Option<BorrowedFd<'_>>) {
    match inherited {
        Some(null) if is_null_device(null) => {
            let _ = rustix::stdio::dup2_stdin(null);
        }
        _ => stdin_to_null(),
    }
}

/// Whether `fd` is the null device (Linux's character device 1:3).
fn is_null_device(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
            && (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)) == (1, 3)
    })
}

/// The per-argument-type entry: checks the type, rebuilds the target and
/// the arguments, and runs it.
pub(crate) fn trampoline<A: DeserializeOwned>(
    target: u64,
    type_name: &str,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(), String> {
    if type_name != std::any::type_name::<A>() {
        return Err(format!(
            "the parent's argument type {type_name} is not this entry's {}",
            std::any::type_name::<A>()
        ));
    }
    let f = sys::resolve_target::<A>(target);
    // Unclaimed fds (none for a well-formed message) close there.
    let args = mp_conn::Parcel::from_parts(args.to_vec(), fds)
        .decode::<A>()
        .map_err(|e| format!("could not deserialize the process arguments: {e:?}"))?;
    f(args);
    Ok(())
}

/// Finds the child's entry and target: by offset in a child of the
/// parent's own file, by name in another binary ([`crate::set_executable`]).
fn resolve_entry(data: &ChildData) -> Result<(sys::Trampoline, u64), String> {
    let same_file = match (data.exe, executable::self_id()) {
        (Some(parent), Some(me)) => parent == me,
        // Unknown (no /proc): the check value alone decides, as before.
        _ => true,
    };
    if same_file && data.check == sys::check_value() {
        return Ok((sys::resolve_trampoline(data.trampoline), data.target));
    }
    if !data.target_names.is_empty() {
        return executable::find_registered(&data.target_names, &data.type_name);
    }
    let me = std::env::current_exe().map(|p| p.display().to_string());
    Err(if same_file {
        "this child runs a different build of the program than its parent (function offsets \
         do not match); was the binary replaced while running?"
            .to_string()
    } else {
        format!(
            "this child runs {} but its parent {} sent no target names: use \
             mp_context::set_executable to start children of another binary",
            me.unwrap_or_else(|_| "another binary".into()),
            data.parent_exe
        )
    })
}

/// Sets up this process as the child described by `data` and runs it.
fn run_child(data: ChildData, fds: Vec<OwnedFd>, parent_sentinel: OwnedFd) -> i32 {
    current::INIT_CALLED.store(true, Ordering::Relaxed);
    logging::apply_child_setting(data.log_level);
    let (trampoline, target) = match resolve_entry(&data) {
        Ok(found) => found,
        Err(msg) => {
            eprintln!("mp-context: {msg}");
            return 1;
        }
    };
    current::set_current(data.info);
    *current::lock_parent() = Some(Arc::new(current::parent_from_fd(
        data.parent_name,
        data.parent_pid,
        parent_sentinel,
    )));
    force_start_method(data.start_method);
    let (type_name, args) = (data.type_name, data.args);
    run_target(move || {
        if let Err(msg) = trampoline(target, &type_name, &args, fds) {
            eprintln!("mp-context: {msg}");
            exit(1);
        }
    })
}

/// A forked child's end: join its own children, flush stdout, `_exit`
/// (never the parent's exit handlers). Stderr is unbuffered: nothing to
/// flush there.
pub(crate) fn finish_forked_child(code: i32) -> ! {
    crate::shutdown();
    let _ = std::io::stdout().flush();
    sys::exit_immediately(code)
}

fn fail(msg: std::fmt::Arguments<'_>) -> ! {
    eprintln!("mp-context: {msg}");
    std::process::exit(1)
}

/// Reads the process data, then `nfds` fds if `fds_follow`, from `fd` (a
/// socket or pipe the parent writes with `mp-conn`'s framing); gives `fd`
/// back to serve as the parent sentinel (EOF once the parent is gone).
fn read_child_data(
    fd: OwnedFd,
    fds_follow: bool,
) -> Result<(ChildData, Vec<OwnedFd>, OwnedFd), String> {
    let mut conn = mp_conn::Connection::new(fd, true, false).map_err(|e| e.to_string())?;
    let bytes = conn
        .recv_bytes_max(MAX_CHILD_DATA)
        .map_err(|e| format!("could not read its process data: {e}"))?;
    let data: ChildData = postcard::from_bytes(&bytes)
        .map_err(|e| format!("could not decode its process data: {e}"))?;
    let fds = if fds_follow && data.nfds > 0 {
        conn.recv_fds(data.nfds as usize)
            .map_err(|e| format!("could not receive the fds of its arguments: {e}"))?
    } else {
        Vec::new()
    };
    // Nothing else is sent, so nothing is read ahead and the fd comes back.
    let fd = conn.into_fd().map_err(|(_, e)| e.to_string())?;
    Ok((data, fds, fd))
}

/// The spawned child: process data and fds arrive on stdin (a unix
/// socket), which is then replaced by the null device.
fn spawn_main() -> ! {
    let stdin = rustix::stdio::stdin()
        .try_clone_to_owned()
        .unwrap_or_else(|e| fail(format_args!("dup of stdin failed: {e}")));
    let (data, fds, sentinel) =
        read_child_data(stdin, true).unwrap_or_else(|e| fail(format_args!("spawned child {e}")));
    stdin_to_null();
    let code = run_child(data, fds, sentinel);
    crate::shutdown();
    std::process::exit(code)
}

/// A child forked by the fork server: the process data arrives on the data
/// pipe, one `mp-conn` message; the argument fds came with the request.
/// (The server's "alive" pipe went to `ForkServer::global()`, which makes
/// the processes this child starts come from the same server.)
fn forkserver_child_main(child: mp_forkserver::ForkedChild) -> i32 {
    let mp_forkserver::ForkedChild { data, fds } = child;
    match read_child_data(data, false) {
        Ok((data, _, sentinel)) => {
            let code = run_child(data, fds, sentinel);
            crate::shutdown();
            code
        }
        Err(e) => {
            eprintln!("mp-context: forkserver child {e}");
            1
        }
    }
}

/// Preload data: the file the hook is in, the check value and the hook's
/// offset.
#[derive(Serialize, Deserialize)]
pub(crate) struct Preload {
    pub(crate) exe: Option<ExeId>,
    pub(crate) check: u64,
    pub(crate) hook: u64,
}

fn run_preload(bytes: &[u8]) {
    match postcard::from_bytes::<Preload>(bytes) {
        Ok(p) if p.exe == executable::self_id() && p.check == sys::check_value() => {
            let hook = sys::resolve_preload(p.hook);
            if std::panic::catch_unwind(hook).is_err() {
                eprintln!("mp-context: the forkserver preload hook panicked");
            }
        }
        Ok(_) => eprintln!(
            "mp-context: the fork server runs another binary than the program that set its \
             preload hook (set_executable); the hook is not run"
        ),
        Err(_) => eprintln!("mp-context: ignoring bad forkserver preload data"),
    }
}

/// Recognises a child of the spawn or forkserver start method (by the
/// `MP_RS_ROLE` environment variable), serves it and exits; in any other
/// process it returns at once, having recorded that it was called.
///
/// Call it at the top of `main`, before anything else (and before any
/// thread starts): the spawn and forkserver methods start this binary
/// again and rely on it so that the rest of `main` never runs in a child.
///
/// - In examples and binaries: the first line of `main`.
/// - In tests: cross-process tests go in a `harness = false` test target
///   whose own `main` calls `init()` first and then runs the tests (see
///   this crate's `tests/processes.rs`). A libtest target has no `main` of
///   ours, so only the fork method works there; spawn and forkserver
///   return [`Error::InitNotCalled`](crate::Error::InitNotCalled).
pub fn init() {
    match mp_forkserver::take_role().as_deref() {
        None => current::INIT_CALLED.store(true, Ordering::Relaxed),
        Some("spawn") => spawn_main(),
        Some("forkserver") => {
            // What every child needs, done once here rather than in each
            // forked child (whose every written page is a copy).
            install_panic_header();
            let _ = executable::self_id();
            mp_forkserver::serve(mp_forkserver::ServerHooks {
                preload: run_preload,
                child_main: forkserver_child_main,
            })
        }
        Some(other) => fail(format_args!(
            "unknown {} role {other:?}",
            mp_forkserver::ROLE_ENV
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_device_is_told_from_other_files() {
        let null = open_null_device().unwrap();
        assert!(is_null_device(null.as_fd()));
        let cached = null_device().expect("/dev/null opens");
        assert!(is_null_device(cached));
        // Another character device, and a pipe (a reused fd number).
        let zero = rustix::fs::open(
            c"/dev/zero",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        assert!(!is_null_device(zero.as_fd()));
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        assert!(!is_null_device(r.as_fd()));
    }
}
