//! `Process` and the three ways of starting one (`process.py`,
//! `popen_fork.py`, `popen_spawn_posix.py`, `popen_forkserver.py`).

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitOptions, pidfd_open, pidfd_send_signal,
    waitid, waitpid,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, StartMethod, default_method};
use crate::current::{self, ProcessInfo, current_process};
use crate::entry::{self, ChildData};
use crate::{Error, ProcessArgs, Result, executable, sys};

/// A target and its arguments with the type erased.
pub(crate) trait ErasedTarget: Send {
    /// Starts the target with the fork start method ([`start_fork`]).
    fn fork(self: Box<Self>, info: ProcessInfo, parent_name: String) -> Result<Popen>;
    /// The entry point and the serialized arguments, with the fds they
    /// hold (tell the parcel `delivered` once the child has them).
    fn encode(&self) -> Result<(Encoded, mp_conn::Parcel)>;
}

/// The parts of [`ChildData`] that depend on the argument type.
pub(crate) struct Encoded {
    pub(crate) trampoline: u64,
    pub(crate) target: u64,
    /// The target's address, to name it (set_executable).
    pub(crate) target_addr: usize,
    pub(crate) type_name: &'static str,
    pub(crate) args: Vec<u8>,
}

struct Typed<A> {
    f: fn(A),
    args: A,
}

impl<A: Serialize + DeserializeOwned + Send + 'static> ErasedTarget for Typed<A> {
    fn fork(self: Box<Self>, info: ProcessInfo, parent_name: String) -> Result<Popen> {
        // Out of the box and onto this stack before the fork, so that the
        // child neither writes nor frees heap memory to run the target.
        let Typed { f, args } = *self;
        // Connections in the arguments that hold read-ahead bytes: the
        // child's copies keep them, the parent's give them up (a walk only
        // when some connection in this process holds any).
        let handoffs = mp_reduction::fork_move(&args);
        let mut call = Some((f, args, handoffs));
        let popen = start_fork(
            &mut || {
                if let Some((f, args, handoffs)) = call.take() {
                    if !handoffs.is_empty() {
                        handoffs.adopted_in_fork_child();
                    }
                    f(args)
                }
            },
            info,
            parent_name,
        )?;
        if let Some((_, _, handoffs)) = call.take() {
            handoffs.delivered();
        }
        Ok(popen)
    }

    fn encode(&self) -> Result<(Encoded, mp_conn::Parcel)> {
        let parcel = mp_conn::Parcel::encode(&self.args).map_err(Error::Encode)?;
        let trampoline = entry::trampoline::<A> as sys::Trampoline;
        Ok((
            Encoded {
                trampoline: sys::offset_of(trampoline as usize),
                target: sys::offset_of(self.f as usize),
                target_addr: self.f as usize,
                type_name: std::any::type_name::<A>(),
                args: parcel.bytes().to_vec(),
            },
            parcel,
        ))
    }
}

/// How this process waits for and signals one child.
#[derive(Debug)]
enum Handle {
    /// Our own child (fork, spawn). Its sentinel, a pidfd (readable once
    /// the child has exited), is made on first use: `pidfd_open` and its
    /// `close` cost about as much as a tenth of a fork start, and most
    /// children are simply joined.
    Child { pidfd: OnceLock<OwnedFd> },
    /// A fork server's child: its exit code arrives on the status pipe.
    /// Once it has been read, the pipe is readable again only when the
    /// server closes its end, which a busy server may do a moment later;
    /// so from then on the sentinel is `ended`, an fd that is always
    /// readable (CPython's sentinel is ready after `join`).
    Status {
        status_r: OwnedFd,
        ended: OnceLock<OwnedFd>,
    },
}

/// A started child (CPython's `Popen` objects).
#[derive(Debug)]
pub(crate) struct Popen {
    pid: i32,
    method: StartMethod,
    handle: Handle,
    /// Held while the child may run: the child's "parent sentinel" sees
    /// EOF when this closes (spawn: our socket end; forkserver: the data
    /// pipe's write end).
    _keep: Option<OwnedFd>,
    /// The exit code once known. For our own children, reaping happens
    /// only with this lock held and never blocks while holding it, so
    /// under the lock `None` means the pid is still ours (running, or a
    /// zombie): a pidfd opened or a signal sent then reaches our child.
    exit: Mutex<Option<i32>>,
}

/// Waits until `fd` is readable, at most `timeout` (`None`, or a timeout
/// too long for an [`Instant`] such as `Duration::MAX`: no limit).
fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> std::io::Result<bool> {
    // `Instant + Duration` panics on overflow: no deadline instead.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            }
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `os.waitstatus_to_exitcode`.
fn exit_code(status: rustix::process::WaitStatus) -> Option<i32> {
    status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| -s))
}

impl Popen {
    fn new(pid: i32, method: StartMethod, handle: Handle, keep: Option<OwnedFd>) -> Popen {
        Popen {
            pid,
            method,
            handle,
            _keep: keep,
            exit: Mutex::new(None),
        }
    }

    fn lock_exit(&self) -> MutexGuard<'_, Option<i32>> {
        self.exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pid_t(&self) -> Pid {
        Pid::from_raw(self.pid).expect("child pids are positive")
    }

    /// Makes sure the sentinel exists (a pidfd for our own children; an fd
    /// that is always readable if the child was already reaped) and
    /// returns it.
    fn ensure_sentinel(&self) -> Result<BorrowedFd<'_>> {
        let pidfd = match &self.handle {
            Handle::Status { .. } => return Ok(self.sentinel()),
            Handle::Child { pidfd } => pidfd,
        };
        if let Some(fd) = pidfd.get() {
            return Ok(fd.as_fd());
        }
        let exit = self.lock_exit();
        if pidfd.get().is_none() {
            let fd = if exit.is_some() {
                // Reaped: the pid may belong to someone else by now.
                rustix::event::eventfd(1, rustix::event::EventfdFlags::CLOEXEC)?
            } else {
                pidfd_open(self.pid_t(), PidfdFlags::empty())?
            };
            let _ = pidfd.set(fd);
        }
        drop(exit);
        Ok(pidfd.get().expect("set above").as_fd())
    }

    /// The sentinel; [`Popen::ensure_sentinel`] must have made it.
    fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.handle {
            Handle::Child { pidfd } => pidfd
                .get()
                .expect("a Sentinel is only made after ensure_sentinel")
                .as_fd(),
            Handle::Status { status_r, ended } => ended.get().unwrap_or(status_r).as_fd(),
        }
    }

    /// The exit code if the child has ended; with `block`, waits for it.
    fn poll(&self, block: bool) -> Result<Option<i32>> {
        match &self.handle {
            Handle::Child { .. } => self.poll_child(block),
            Handle::Status { status_r, ended } => {
                let mut exit = self.lock_exit();
                if exit.is_some() {
                    return Ok(*exit);
                }
                let code = if !block && !poll_readable(status_r.as_fd(), Some(Duration::ZERO))? {
                    None
                } else {
                    match mp_forkserver::read_signed(status_r.as_fd()) {
                        Ok(code) => Some(i32::try_from(code).unwrap_or(255)),
                        // EOF: the server died before reporting (FS-02).
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Some(255),
                        Err(e) => return Err(e.into()),
                    }
                };
                if code.is_some() {
                    let fd = rustix::event::eventfd(1, rustix::event::EventfdFlags::CLOEXEC)?;
                    let _ = ended.set(fd);
                }
                *exit = code;
                Ok(code)
            }
        }
    }

    /// [`Popen::poll`] for our own child: reaps only under the exit lock
    /// and with `WNOHANG`; a blocking wait happens without the lock and
    /// without reaping (`waitid(WNOWAIT)`), so that `terminate` from
    /// another thread never waits for a `join`.
    fn poll_child(&self, block: bool) -> Result<Option<i32>> {
        // A blocking poll waits first (the child has rarely ended yet).
        let mut waited = !block;
        loop {
            {
                let mut exit = self.lock_exit();
                if exit.is_some() {
                    return Ok(*exit);
                }
                let code = if !waited { None } else { self.reap()? };
                if code.is_some() || !block {
                    *exit = code;
                    return Ok(code);
                }
            }
            match waitid(
                WaitId::Pid(self.pid_t()),
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {
                // Exited (still a zombie), interrupted, or already reaped
                // by someone else: the next round under the lock tells.
                Ok(_) | Err(rustix::io::Errno::INTR | rustix::io::Errno::CHILD) => waited = true,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `waitpid(WNOHANG)`: the exit code if the child has exited (reaping
    /// it). Call with the exit lock held.
    fn reap(&self) -> Result<Option<i32>> {
        loop {
            return match waitpid(Some(self.pid_t()), WaitOptions::NOHANG) {
                // `None` from `exit_code`: stopped or continued, not an exit.
                Ok(Some((_, status))) => Ok(exit_code(status)),
                Ok(None) => Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                // Someone else reaped it (a `waitpid(-1)` elsewhere in the
                // program): the status is lost, as CPython's 255 for a lost
                // status.
                Err(rustix::io::Errno::CHILD) => Ok(Some(255)),
                Err(e) => Err(e.into()),
            };
        }
    }

    fn send_signal(&self, sig: Signal) -> Result<()> {
        let res = match &self.handle {
            Handle::Child { pidfd } => {
                // Under the exit lock the child is not reaped yet (see
                // `exit`), so its pid cannot have been recycled.
                let exit = self.lock_exit();
                if exit.is_some() {
                    return Ok(());
                }
                match pidfd.get() {
                    Some(fd) => pidfd_send_signal(fd, sig),
                    None => rustix::process::kill_process(self.pid_t(), sig),
                }
            }
            Handle::Status { .. } => {
                // A blocking `poll` holds the lock while it reads the status
                // pipe: skip only when the exit is known for sure.
                if let Ok(exit) = self.exit.try_lock()
                    && exit.is_some()
                {
                    return Ok(());
                }
                rustix::process::kill_process(self.pid_t(), sig)
            }
        };
        match res {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A readiness handle that becomes readable when the process ends
/// (CPython's `Process.sentinel`): a pidfd for fork and spawn children
/// (made on first use; an fd that is always readable if the child had
/// already been reaped by then), the status pipe for forkserver children. Use it with `poll`, `epoll` or
/// `mp_conn::wait`; it stays valid while the value lives, even after
/// `close`.
#[derive(Debug, Clone)]
pub struct Sentinel(Arc<Popen>);

impl AsFd for Sentinel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.sentinel()
    }
}

/// `mp_conn::wait(&[&conn, &sentinel], timeout)` works as CPython's
/// `wait([conn, p.sentinel])`.
impl mp_conn::Waitable for Sentinel {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.0.sentinel()
    }
}

enum State {
    New(Box<dyn ErasedTarget>),
    Started(Arc<Popen>),
    Closed,
}

struct Inner {
    name: String,
    daemon: bool,
    context: Option<Context>,
    identity: Vec<u32>,
    state: State,
}

struct Shared {
    inner: Mutex<Inner>,
}

/// A process that runs a target function with serde arguments under one of
/// the start methods (CPython's `multiprocessing.Process`).
///
/// The target is a plain `fn(A)`: it captures nothing, so the same call
/// starts under fork (the child runs it directly), spawn and forkserver
/// (the child finds it again in the same binary and deserializes `A`).
/// Arguments may hold fds through `mp_reduction` (Connections,
/// SharedBuffers, `mp_reduction::Fd`): inherited under fork, transferred
/// for spawn and forkserver.
///
/// `Process` is a cheap handle (`Clone`); [`active_children`] returns
/// handles to the same processes.
///
/// [`active_children`]: crate::active_children
///
/// # Examples
///
/// ```
/// fn greet(name: String) {
///     println!("hello, {name}");
/// }
/// # fn main() -> Result<(), mp_context::Error> {
/// mp_context::init();
/// let ctx = mp_context::get_context(Some("fork"))?;
/// let p = ctx.process(greet, "world".to_string()).with_name("greeter");
/// p.start()?;
/// p.join(None)?;
/// assert_eq!(p.exitcode()?, Some(0));
/// p.close()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Process {
    shared: Arc<Shared>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        let state = match &inner.state {
            State::New(_) => "initial".to_string(),
            State::Started(p) => format!("started pid={}", p.pid),
            State::Closed => "closed".to_string(),
        };
        f.debug_struct("Process")
            .field("name", &inner.name)
            .field("daemon", &inner.daemon)
            .field("state", &state)
            .finish()
    }
}

static ATEXIT: Once = Once::new();

extern "C" fn atexit_hook() {
    let _ = std::panic::catch_unwind(crate::shutdown);
}

/// Makes this process run [`shutdown`](crate::shutdown) when it exits
/// normally (once per process lineage: a fork child inherits the hook).
pub(crate) fn ensure_atexit() {
    ATEXIT.call_once(|| sys::register_atexit(atexit_hook));
}

impl Process {
    /// A process that will run `target(args)`. Its name is `Process-N`
    /// (with the parent's identity before `N` in a child: `Process-1:2`),
    /// its daemon flag the current process's, its start method the default
    /// context's at the time of [`start`](Process::start).
    ///
    /// `args` is serde data ([`ProcessArgs`]): under spawn and forkserver
    /// it reaches the child as bytes. A `std::fs::File`, a socket or any
    /// other fd is not serde data; wrap it in `mp_reduction::Fd`, which
    /// travels beside the bytes (SCM_RIGHTS) and comes out in the child as
    /// an fd of its own (mp-conn's `Connection` and mp-heap's shared memory
    /// travel the same way):
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use std::os::fd::OwnedFd;
    /// use mp_reduction::Fd;
    ///
    /// fn append(fd: Fd) {
    ///     let mut file = std::fs::File::from(OwnedFd::from(fd));
    ///     file.write_all(b" and the child's").unwrap();
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// mp_context::init();
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"the parent's line")?;
    /// let fd = Fd::from(OwnedFd::from(file.try_clone()?));
    /// let p = mp_context::get_context("spawn")?.process(append, fd);
    /// p.start()?;
    /// p.join(None)?;
    /// let mut text = String::new();
    /// file.rewind()?;
    /// file.read_to_string(&mut text)?;
    /// assert_eq!(text, "the parent's line and the child's");
    /// # Ok(()) }
    /// ```
    pub fn new<A: ProcessArgs>(target: fn(A), args: A) -> Process {
        let me = current_process();
        let count = current::COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut identity = me.identity.clone();
        identity.push(count);
        let name = format!(
            "Process-{}",
            identity
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(":")
        );
        Process {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    name,
                    daemon: me.daemon,
                    context: None,
                    identity,
                    state: State::New(Box::new(Typed { f: target, args })),
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn same_as(&self, other: &Process) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Sets the name (builder style).
    pub fn with_name(self, name: impl Into<String>) -> Process {
        self.lock().name = name.into();
        self
    }

    /// Sets the daemon flag (builder style): a daemonic child is terminated,
    /// not joined, when its parent exits, and may not start children.
    pub fn with_daemon(self, daemon: bool) -> Process {
        self.lock().daemon = daemon;
        self
    }

    /// Binds the process to a context's start method (builder style).
    pub fn context(self, ctx: Context) -> Process {
        self.lock().context = Some(ctx);
        self
    }

    /// The name.
    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    /// Renames the process (names carry no meaning and may repeat).
    pub fn set_name(&self, name: impl Into<String>) {
        self.lock().name = name.into();
    }

    /// The daemon flag.
    pub fn daemon(&self) -> bool {
        self.lock().daemon
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] once the process has been started.
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        let mut inner = self.lock();
        match inner.state {
            State::New(_) => {
                inner.daemon = daemon;
                Ok(())
            }
            _ => Err(Error::AlreadyStarted),
        }
    }

    /// The identity (`[1, 2]` for `Process-1:2`).
    pub fn identity(&self) -> Vec<u32> {
        self.lock().identity.clone()
    }

    fn popen(&self, what: &'static str) -> Result<Arc<Popen>> {
        match &self.lock().state {
            State::Started(p) => Ok(Arc::clone(p)),
            State::New(_) => Err(Error::NotStarted(what)),
            State::Closed => Err(Error::Closed),
        }
    }

    /// Starts the child (at most once).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`], [`Error::Closed`],
    /// [`Error::DaemonicChildren`] from a daemonic process,
    /// [`Error::InitNotCalled`] for spawn and forkserver when `init()` was
    /// not called, [`Error::Encode`] or [`Error::TooManyFds`] for arguments
    /// that cannot travel, and I/O or fork server errors.
    pub fn start(&self) -> Result<()> {
        let mut inner = self.lock();
        let target = match std::mem::replace(&mut inner.state, State::Closed) {
            State::New(target) => target,
            other @ State::Started(_) => {
                inner.state = other;
                return Err(Error::AlreadyStarted);
            }
            State::Closed => return Err(Error::Closed),
        };
        let me = current_process();
        if me.daemon {
            inner.state = State::New(target);
            return Err(Error::DaemonicChildren);
        }
        // Reap children that have finished (CPython's `_cleanup`).
        drop(crate::active_children());
        let method = inner
            .context
            .map(|c| c.start_method())
            .unwrap_or_else(default_method);
        let info = ProcessInfo {
            name: inner.name.clone(),
            identity: inner.identity.clone(),
            authkey: me.authkey.clone(),
            daemon: inner.daemon,
        };
        let result = match method {
            StartMethod::Fork => target.fork(info, me.name.clone()),
            StartMethod::Spawn | StartMethod::ForkServer => {
                match start_exec(&*target, info, &me.name, method) {
                    Ok(popen) => Ok(popen),
                    Err(e) => {
                        inner.state = State::New(target);
                        return Err(e);
                    }
                }
            }
        };
        let popen = Arc::new(result?);
        let pid = popen.pid;
        inner.state = State::Started(popen);
        // Logged without our lock: the program's logger may call back.
        let name = log::log_enabled!(target: crate::LOGGER_NAME, log::Level::Debug)
            .then(|| inner.name.clone());
        drop(inner);
        if let Some(name) = name {
            log::debug!(
                target: crate::LOGGER_NAME,
                "started {name} (pid {pid}) with the {method} start method"
            );
        }
        current::lock_children().push(self.clone());
        ensure_atexit();
        Ok(())
    }

    /// Waits for the child to end, at most `timeout` (`None`: forever;
    /// `Duration::ZERO`: just check). Returns either way; look at
    /// [`exitcode`](Process::exitcode) to tell.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Closed`], or a failed wait.
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let popen = self.popen("join")?;
        if let Some(t) = timeout
            && !poll_readable(popen.ensure_sentinel()?, Some(t))?
        {
            return Ok(());
        }
        if popen.poll(true)?.is_some() {
            current::forget_child(self);
        }
        Ok(())
    }

    /// Whether the child has been started and has not ended (reaping it if
    /// it has).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], or a failed wait.
    pub fn is_alive(&self) -> Result<bool> {
        let popen = match self.popen("test") {
            Ok(p) => p,
            Err(Error::NotStarted(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if popen.poll(false)?.is_some() {
            current::forget_child(self);
            return Ok(false);
        }
        Ok(true)
    }

    /// The exit code: `None` before the child has ended; then 0 after a
    /// return, the code given to [`exit`](crate::exit), 1 after a panic,
    /// `-N` after signal `N`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], or a failed wait.
    pub fn exitcode(&self) -> Result<Option<i32>> {
        match self.popen("test") {
            Ok(p) => p.poll(false),
            Err(Error::NotStarted(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The child's pid, `None` before start.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    pub fn pid(&self) -> Result<Option<i32>> {
        match self.popen("test") {
            Ok(p) => Ok(Some(p.pid)),
            Err(Error::NotStarted(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The start method the child was started with, `None` before start.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    pub fn start_method(&self) -> Result<Option<StartMethod>> {
        match self.popen("test") {
            Ok(p) => Ok(Some(p.method)),
            Err(Error::NotStarted(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends SIGTERM (nothing if the child has already been reaped).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Closed`], or a failed `kill`.
    pub fn terminate(&self) -> Result<()> {
        self.popen("terminate")?.send_signal(Signal::TERM)
    }

    /// Sends SIGKILL.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Process::terminate).
    pub fn kill(&self) -> Result<()> {
        self.popen("kill")?.send_signal(Signal::KILL)
    }

    /// Sends SIGINT (CPython 3.14's `interrupt`).
    ///
    /// # Errors
    ///
    /// As [`terminate`](Process::terminate).
    pub fn interrupt(&self) -> Result<()> {
        self.popen("interrupt")?.send_signal(Signal::INT)
    }

    /// A handle that becomes readable when the child ends.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before start, [`Error::Closed`] after close.
    pub fn sentinel(&self) -> Result<Sentinel> {
        let popen = self.popen("get the sentinel of")?;
        popen.ensure_sentinel()?;
        Ok(Sentinel(popen))
    }

    /// Releases the process's resources (its pidfd or status pipe). Closing
    /// twice is fine; afterwards the other methods return
    /// [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] while the child runs (join or terminate it
    /// first).
    pub fn close(&self) -> Result<()> {
        let mut inner = self.lock();
        if let State::Started(popen) = &inner.state
            && popen.poll(false)?.is_none()
        {
            return Err(Error::StillRunning);
        }
        inner.state = State::Closed;
        drop(inner);
        current::forget_child(self);
        Ok(())
    }
}

/// The fork start method: the child calls `run` (which runs the target
/// once).
///
/// Every page the child writes is copied from the parent (and every page
/// the parent writes afterwards faults once more), so the child's side is
/// kept to a few writes: what it needs is built before the fork, nothing is
/// freed there (it ends with `_exit`), and only its own few statics change.
fn start_fork(run: &mut dyn FnMut(), info: ProcessInfo, parent_name: String) -> Result<Popen> {
    // Registered fork hooks (a copy made here, so that the child needs no
    // lock to find them), their `before` halves first.
    let hooks = crate::fork_hooks();
    for h in hooks.iter().rev() {
        (h.before)();
    }
    // Buffered output must not be written twice, by parent and child.
    let _ = std::io::stdout().flush();
    // The child inherits the hook instead of writing one (see there).
    entry::install_panic_header();
    // And the null device for its stdin.
    let null = entry::null_device();
    let parent_pid = std::process::id() as i32;
    let mut child_state = Some((
        info,
        Arc::new(current::parent_from_ppid(parent_name, parent_pid)),
    ));
    // Hold our locks across the fork: the child's copies are then
    // consistent and held by the one thread it has, which releases them.
    let mut children = current::lock_children();
    let mut current_guard = current::lock_current();
    let mut parent_guard = current::lock_parent();
    let mut context_guard = crate::context::lock_for_fork();
    let mut finalizers = crate::finalize::lock_for_fork();
    let forked = sys::fork();
    if forked.is_err() {
        // No child: the parent's halves still run.
        for h in &hooks {
            (h.after_in_parent)();
        }
    }
    match forked? {
        None => {
            // The child.
            let (info, parent) = child_state.take().expect("moved only here");
            let old_children = std::mem::take(&mut *children);
            let old_current = current_guard.replace(info);
            let old_parent = parent_guard.replace(parent);
            // The child adopts the method it was started with, as
            // CPython's `_bootstrap` does.
            *context_guard = Some(StartMethod::Fork);
            // The parent's finalizers flush the parent's threads.
            crate::finalize::clear_in_fork_child(&mut finalizers);
            drop((
                children,
                current_guard,
                parent_guard,
                context_guard,
                finalizers,
            ));
            // Sibling handles: their fds close here, nothing else happens.
            if !old_children.is_empty() {
                drop(old_children);
            } else {
                std::mem::forget(old_children);
            }
            // Plain data, left to `_exit` rather than freed (which would
            // write to the allocator's pages). A parent sentinel holds an
            // fd: that one is closed.
            std::mem::forget(old_current);
            if let Some(old) = old_parent {
                drop(old);
            }
            current::COUNTER.store(1, Ordering::Relaxed);
            mp_forkserver::ForkServer::global().after_fork_in_child();
            entry::fork_child_stdin_to_null(null);
            for h in &hooks {
                (h.after_in_child)();
            }
            let code = entry::run_target(run);
            entry::finish_forked_child(code)
        }
        Some(pid) => {
            drop((
                children,
                current_guard,
                parent_guard,
                context_guard,
                finalizers,
            ));
            drop(child_state);
            for h in &hooks {
                (h.after_in_parent)();
            }
            let pidfd = OnceLock::new();
            Ok(Popen::new(
                pid,
                StartMethod::Fork,
                Handle::Child { pidfd },
                None,
            ))
        }
    }
}

/// The spawn and forkserver start methods: both send [`ChildData`] and the
/// argument fds to a fresh process of this binary.
fn start_exec(
    target: &dyn ErasedTarget,
    info: ProcessInfo,
    parent_name: &str,
    method: StartMethod,
) -> Result<Popen> {
    if !current::init_called() {
        return Err(Error::InitNotCalled);
    }
    let (encoded, parcel) = target.encode()?;
    // A child of another binary (set_executable) finds its target by name.
    let target_names = if executable::children_run_another_binary() {
        executable::target_names(encoded.target_addr)?
    } else {
        Vec::new()
    };
    let data = ChildData {
        check: sys::check_value(),
        exe: executable::self_id(),
        parent_exe: executable::self_path().to_owned(),
        trampoline: encoded.trampoline,
        target: encoded.target,
        target_names,
        type_name: encoded.type_name.to_owned(),
        log_level: crate::logging::child_setting(),
        info,
        parent_pid: std::process::id() as i32,
        parent_name: parent_name.to_owned(),
        start_method: method,
        args: encoded.args,
        nfds: parcel.fds().len() as u32,
    };
    let payload = mp_conn::Parcel::encode(&data).map_err(Error::Encode)?;
    let borrowed: Vec<BorrowedFd<'_>> = parcel.fds().iter().map(AsFd::as_fd).collect();
    let popen = match method {
        StartMethod::Spawn => spawn(payload.bytes(), &borrowed),
        _ => forkserver(payload.bytes(), &borrowed),
    }?;
    // The child has the arguments: connections in them that held
    // read-ahead bytes (which went along) give them up.
    parcel.delivered();
    Ok(popen)
}

/// Gives back the fd of a connection we only wrote to (nothing was read
/// ahead, so this cannot fail in practice).
fn writer_fd(conn: mp_conn::Connection) -> Result<OwnedFd> {
    conn.into_fd()
        .map_err(|(_, e)| Error::Io(std::io::Error::from(e)))
}

fn spawn(payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Popen> {
    if fds.len() > mp_forkserver::SCM_MAX_FD {
        return Err(Error::TooManyFds {
            count: fds.len(),
            max: mp_forkserver::SCM_MAX_FD,
        });
    }
    let (pid, parent_sock) = mp_forkserver::start_role("spawn")?;
    let pid_t = Pid::from_raw(pid).expect("positive pid");
    let pidfd = pidfd_open(pid_t, PidfdFlags::empty())?;
    // The data, then the fds (the child knows how many from the data).
    let send = || -> mp_conn::Result<mp_conn::Connection> {
        let conn = mp_conn::Connection::new(parent_sock.into(), false, true)?;
        conn.send_bytes(payload)?;
        if !fds.is_empty() {
            conn.send_fds(fds)?;
        }
        Ok(conn)
    };
    let conn = match send() {
        Ok(conn) => conn,
        Err(e) => {
            // The child is gone or never read its data: do not leave it behind.
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            let _ = waitpid(Some(pid_t), WaitOptions::empty());
            return Err(Error::Io(e.into()));
        }
    };
    // An exec costs far more than the pidfd: made at once here.
    let handle = Handle::Child {
        pidfd: OnceLock::from(pidfd),
    };
    Ok(Popen::new(
        pid,
        StartMethod::Spawn,
        handle,
        Some(writer_fd(conn)?),
    ))
}

fn forkserver(payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Popen> {
    let (status_r, data_w) = mp_forkserver::ForkServer::global().connect_to_new_process(fds)?;
    let died = |e: std::io::Error| Error::ForkServer(mp_forkserver::Error::ServerDied(e));
    let data = mp_conn::Connection::new(data_w, false, true).map_err(|e| died(e.into()))?;
    data.send_bytes(payload).map_err(|e| died(e.into()))?;
    let pid = mp_forkserver::read_signed(status_r.as_fd()).map_err(died)?;
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| died(std::io::Error::other("bad pid")))?;
    Ok(Popen::new(
        pid,
        StartMethod::ForkServer,
        Handle::Status {
            status_r,
            ended: OnceLock::new(),
        },
        Some(writer_fd(data)?),
    ))
}
