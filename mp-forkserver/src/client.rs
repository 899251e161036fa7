//! The client side: `ForkServer` of `forkserver.py`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mp_conn::{Address, ClientBuilder, Connection, Family};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

use crate::server::{CLIENT_TIMEOUT, Config};
use crate::{AUTHKEY_LEN, Error, LOG_TARGET, MAXFDS_TO_SEND, ROLE_ENV, Result, SCM_MAX_FD};

/// How long a new server may take to start and bind its socket before it
/// is given up on (killed). Generous: it covers an `exec` of a large
/// binary on a loaded machine.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server, as this process knows it.
#[derive(Debug)]
struct Running {
    pid: i32,
    /// Whether the server is this process's child (false after a fork, and
    /// in a child the server forked: then `waitpid` cannot tell whether it
    /// lives, and its socket is not ours to remove).
    is_child: bool,
    address: PathBuf,
    alive_w: OwnedFd,
    authkey: [u8; AUTHKEY_LEN],
}

#[derive(Debug)]
struct Inner {
    running: Option<Running>,
    preload: Vec<u8>,
}

/// The fork server as seen from a client process: started on first use,
/// restarted when it has died, stopped with [`ForkServer::stop`] or when
/// this process (and every child holding the "alive" pipe) exits.
#[derive(Debug)]
pub struct ForkServer {
    inner: Mutex<Inner>,
    /// Whether a server was ever started (here or in an ancestor we were
    /// forked from).
    started: AtomicBool,
}

static GLOBAL: ForkServer = ForkServer {
    inner: Mutex::new(Inner {
        running: None,
        preload: Vec::new(),
    }),
    started: AtomicBool::new(false),
};

impl ForkServer {
    /// The process-wide fork server (CPython's module-level `_forkserver`).
    pub fn global() -> &'static ForkServer {
        &GLOBAL
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves `Inner` consistent (every
        // update is a single assignment), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the data handed to the preload hook ([`crate::ServerHooks`]) of
    /// the next server started (CPython's `set_forkserver_preload`, which
    /// has no effect on a server already running either).
    pub fn set_preload(&self, data: Vec<u8>) {
        self.lock().preload = data;
    }

    /// The server's pid, if one was started (it may have died since).
    pub fn pid(&self) -> Option<i32> {
        self.lock().running.as_ref().map(|r| r.pid)
    }

    /// The server's socket path, if one was started.
    pub fn address(&self) -> Option<PathBuf> {
        self.lock().running.as_ref().map(|r| r.address.clone())
    }

    /// The server's key, if one was started: what a client answers the
    /// server's challenge with.
    pub fn authkey(&self) -> Option<[u8; AUTHKEY_LEN]> {
        self.lock().running.as_ref().map(|r| r.authkey)
    }

    /// Makes sure a server is running: starts one if none was, or if the
    /// last one has exited (CPython's `ensure_running`).
    ///
    /// # Errors
    ///
    /// [`Error::Launch`] if the socket, the pipe or the process cannot be
    /// created.
    pub fn ensure_running(&self) -> Result<()> {
        let mut inner = self.lock();
        self.started.store(true, Ordering::Relaxed);
        ensure_running_locked(&mut inner)
    }

    /// Asks the server for a child that receives `fds` (CPython's
    /// `connect_to_new_process`). Returns `(status_r, data_w)`: the child's
    /// pid and later its exit code arrive on `status_r` ([`crate::read_signed`]);
    /// the process data goes to `data_w`.
    ///
    /// A server found dead (or refusing connections) is started again and
    /// the request retried once.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyFds`] if `fds.len() + 4 >= MAXFDS_TO_SEND`, or if
    /// the request would not fit in one `SCM_RIGHTS` message
    /// (`fds.len() + 3 > SCM_MAX_FD`, Linux's 253);
    /// [`Error::Authentication`] if the server refuses our key;
    /// [`Error::ServerDied`] or [`Error::Io`] if the request fails.
    pub fn connect_to_new_process(&self, fds: &[BorrowedFd<'_>]) -> Result<(OwnedFd, OwnedFd)> {
        // CPython's check, and the kernel's limit on one message (which
        // CPython leaves to `sendmsg` to report).
        let max = (MAXFDS_TO_SEND - 5).min(SCM_MAX_FD - 3);
        if fds.len() > max {
            return Err(Error::TooManyFds {
                count: fds.len(),
                max,
            });
        }
        let mut inner = self.lock();
        self.started.store(true, Ordering::Relaxed);
        ensure_running_locked(&mut inner)?;
        match request(inner.running.as_ref().expect("ensured"), fds) {
            Err(Error::ServerDied(_)) => {
                // The server died after the check above (or is not our
                // child and cannot be checked): start a new one, once.
                forget_server(&mut inner);
                ensure_running_locked(&mut inner)?;
                request(inner.running.as_ref().expect("ensured"), fds)
            }
            other => other,
        }
    }

    /// Stops the server this process started: closes the "alive" pipe's
    /// write end (the server exits once no child holds it either), waits
    /// for it, and removes its socket (CPython's `_stop`). A server this
    /// process inherited (as a fork or forkserver child) is only let go of:
    /// it goes on serving the processes that started it.
    pub fn stop(&self) {
        let mut inner = self.lock();
        if let Some(running) = inner.running.take() {
            let Running {
                pid,
                is_child,
                address,
                alive_w,
                ..
            } = running;
            drop(alive_w);
            if is_child {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = waitpid(Some(pid), WaitOptions::empty());
                }
                remove_socket(&address);
            }
        }
    }

    /// In a child the server has just forked: the server that forked it
    /// becomes this process's server (CPython's inherited
    /// `_forkserver_alive_fd`, address and key), so that the processes the
    /// child starts come from the same server instead of a new one.
    /// Holding `alive_w` keeps that server up while this child lives.
    pub(crate) fn adopt(
        &self,
        pid: i32,
        address: PathBuf,
        authkey: [u8; AUTHKEY_LEN],
        alive_w: OwnedFd,
    ) {
        // The server's own copy of this state is empty (it never starts a
        // server), so nothing is dropped here but a fresh `None`.
        let mut inner = self.lock();
        inner.running = Some(Running {
            pid,
            is_child: false,
            address,
            alive_w,
            authkey,
        });
        self.started.store(true, Ordering::Relaxed);
    }

    /// To be called in a child created by `fork` (not by this server): the
    /// inherited server is not this process's child, so its liveness can
    /// only be learnt by connecting. The child keeps using it (it holds a
    /// copy of the "alive" pipe, so the server stays up for it).
    ///
    /// Uses `try_lock`: if another thread of the parent held the lock at
    /// the time of the fork, the child leaves the state alone rather than
    /// wait forever.
    pub fn after_fork_in_child(&self) {
        // Reading first: a fork child that never saw a server writes
        // nothing here (every page it writes is copied from its parent).
        if !self.started.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = match self.inner.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if let Some(running) = inner.running.as_mut() {
            running.is_child = false;
        }
    }
}

fn remove_socket(address: &Path) {
    let _ = std::fs::remove_file(address);
    if let Some(dir) = address.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Drops what we know about a server that has died (or seems to), reaping
/// it if it is our child and has exited.
fn forget_server(inner: &mut Inner) {
    if let Some(running) = inner.running.take()
        && running.is_child
    {
        if let Some(pid) = Pid::from_raw(running.pid) {
            let _ = waitpid(Some(pid), WaitOptions::NOHANG);
        }
        remove_socket(&running.address);
    }
}

fn ensure_running_locked(inner: &mut Inner) -> Result<()> {
    if let Some(running) = &inner.running {
        if !running.is_child {
            return Ok(());
        }
        let pid = Pid::from_raw(running.pid).expect("server pids are positive");
        match waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(None) => return Ok(()),
            // Exited (now reaped), or not waitable: start a new one.
            Ok(Some(_)) | Err(_) => {
                let running = inner.running.take().expect("checked");
                remove_socket(&running.address);
            }
        }
    }
    let running = launch(&inner.preload).map_err(Error::Launch)?;
    log::info!(
        target: LOG_TARGET,
        "fork server started (pid {}, {}) at {}",
        running.pid,
        executable().display(),
        running.address.display()
    );
    inner.running = Some(running);
    Ok(())
}

/// The executable [`start_role`] runs, if set ([`set_executable`]).
static EXECUTABLE: Mutex<Option<PathBuf>> = Mutex::new(None);

fn lock_executable() -> MutexGuard<'static, Option<PathBuf>> {
    EXECUTABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the executable that [`start_role`] (the spawn start method and the
/// fork server) runs, instead of this process's own ([`self_exe`]); `None`
/// goes back to it (CPython's `set_executable`). The binary must be built
/// from the same code and call `mp_context::init()` (see mp-context's
/// `set_executable`).
///
/// Like CPython's, it affects a fork server started afterwards; a server
/// already running keeps its binary until [`ForkServer::stop`].
pub fn set_executable(path: Option<PathBuf>) {
    *lock_executable() = path;
}

/// The executable [`start_role`] runs: the one given to
/// [`set_executable`], or [`self_exe`].
pub fn executable() -> PathBuf {
    lock_executable().clone().unwrap_or_else(self_exe)
}

/// The executable to start again: `/proc/self/exe` names exactly the file
/// this process runs, even if the path has been replaced since (a rebuild),
/// which the spawn start method's function offsets rely on.
pub fn self_exe() -> PathBuf {
    let proc = PathBuf::from("/proc/self/exe");
    if proc.exists() {
        proc
    } else {
        std::env::current_exe().unwrap_or(proc)
    }
}

/// Starts this executable again ([`self_exe`], or the one given to
/// [`set_executable`]) in `role` ([`ROLE_ENV`]: `forkserver` or `spawn`),
/// with one end of a fresh unix socket pair as its stdin, over which it
/// receives what it needs. Returns the child's pid and the other end of
/// the pair; the caller reaps the child.
///
/// `argv[0]` is this process's own path (or the executable's, when one was
/// set), so the child looks like the program it is in `ps`.
///
/// # Errors
///
/// Creating the socket pair or starting the process failed.
pub fn start_role(role: &str) -> io::Result<(i32, UnixStream)> {
    let (parent, child) = UnixStream::pair()?;
    let custom = lock_executable().clone();
    let mut cmd = match custom {
        Some(exe) => Command::new(exe),
        None => {
            let mut cmd = Command::new(self_exe());
            if let Ok(exe) = std::env::current_exe() {
                cmd.arg0(exe);
            }
            cmd
        }
    };
    cmd.env(ROLE_ENV, role)
        .stdin(Stdio::from(OwnedFd::from(child)));
    // `cmd` (holding the child's end) is dropped on return: only the child
    // keeps it, so the parent sees EOF once the child is gone.
    let child = cmd.spawn()?;
    Ok((child.id() as i32, parent))
}

/// Starts a server: it receives its [`Config`] and the "alive" pipe's read
/// end over its stdin, binds its listener, and answers with an empty
/// message once it accepts connections (or with the reason it cannot).
fn launch(preload: &[u8]) -> io::Result<Running> {
    let Address::Unix(address) = mp_conn::arbitrary_address(Family::Unix)? else {
        unreachable!("a unix address was asked for");
    };
    let mut authkey = [0u8; AUTHKEY_LEN];
    getrandom::fill(&mut authkey).map_err(io::Error::other)?;
    let result = start_server(&address, &authkey, preload);
    if result.is_err() {
        remove_socket(&address);
    }
    let (pid, alive_w) = result?;
    Ok(Running {
        pid,
        is_child: true,
        address,
        alive_w,
        authkey,
    })
}

/// The process part of [`launch`]: the server's pid and the "alive" pipe's
/// write end.
fn start_server(
    address: &Path,
    authkey: &[u8; AUTHKEY_LEN],
    preload: &[u8],
) -> io::Result<(i32, OwnedFd)> {
    let (alive_r, alive_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    let (pid, config_parent) = start_role("forkserver")?;

    let configure = || -> mp_conn::Result<()> {
        let mut conn = Connection::new(config_parent.into(), true, true)?;
        conn.send(&Config {
            authkey: authkey.to_vec(),
            address: address.as_os_str().as_bytes().to_vec(),
            preload: preload.to_vec(),
        })?;
        conn.send_fds(&[alive_r.as_fd()])?;
        if !conn.poll(Some(LAUNCH_TIMEOUT))? {
            return Err(mp_conn::Error::Timeout);
        }
        let reply = conn.recv_bytes_max(4096)?;
        if reply.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other(String::from_utf8_lossy(&reply).into_owned()).into())
        }
    };
    if let Err(e) = configure() {
        // The new process could not take its configuration or failed to
        // bind: make sure it is gone, and reap it so no zombie is left.
        let pid_t = Pid::from_raw(pid).expect("spawned pids are positive");
        let _ = kill_process(pid_t, Signal::KILL);
        let _ = waitpid(Some(pid_t), WaitOptions::empty());
        return Err(e.into());
    }
    Ok((pid, alive_w))
}

/// One request to a running server.
fn request(running: &Running, fds: &[BorrowedFd<'_>]) -> Result<(OwnedFd, OwnedFd)> {
    let died = |e: mp_conn::Error| match e {
        mp_conn::Error::Authentication(a) => Error::Authentication(a),
        other => Error::ServerDied(other.into()),
    };
    let conn = ClientBuilder::new()
        .authkey(running.authkey.to_vec())
        .timeout(CLIENT_TIMEOUT)
        .connect(&Address::Unix(running.address.clone()))
        .map_err(died)?;
    let (parent_r, child_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    let (child_r, parent_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    let mut all = Vec::with_capacity(fds.len() + 3);
    all.extend([child_r.as_fd(), child_w.as_fd(), running.alive_w.as_fd()]);
    all.extend_from_slice(fds);
    conn.send_fds(&all).map_err(died)?;
    Ok((parent_r, parent_w))
}
