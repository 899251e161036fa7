//! The client side: `ForkServer` of `forkserver.py`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, WaitOptions, waitpid};

use crate::channel::{Framed, send_fds, send_message};
use crate::{AUTHKEY_LEN, Error, MAXFDS_TO_SEND, ROLE_ENV, Result};

/// A running server, as this process knows it.
#[derive(Debug)]
struct Running {
    pid: i32,
    /// Whether the server is this process's child (false after a fork:
    /// then `waitpid` cannot tell whether it lives).
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
}

static GLOBAL: ForkServer = ForkServer {
    inner: Mutex::new(Inner {
        running: None,
        preload: Vec::new(),
    }),
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
    /// [`Error::TooManyFds`] if `fds.len() + 4 >= MAXFDS_TO_SEND`;
    /// [`Error::Authentication`] if the server refuses our key;
    /// [`Error::ServerDied`] or [`Error::Io`] if the request fails.
    pub fn connect_to_new_process(&self, fds: &[BorrowedFd<'_>]) -> Result<(OwnedFd, OwnedFd)> {
        if fds.len() + 4 >= MAXFDS_TO_SEND {
            return Err(Error::TooManyFds {
                count: fds.len(),
                max: MAXFDS_TO_SEND - 5,
            });
        }
        let mut inner = self.lock();
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
    /// for it, and removes its socket (CPython's `_stop`).
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
            }
            remove_socket(&address);
        }
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
    if let Some(running) = inner.running.take() {
        if running.is_child {
            if let Some(pid) = Pid::from_raw(running.pid) {
                let _ = waitpid(Some(pid), WaitOptions::NOHANG);
            }
            remove_socket(&running.address);
        }
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
    inner.running = Some(launch(&inner.preload).map_err(Error::Launch)?);
    Ok(())
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

fn launch(preload: &[u8]) -> io::Result<Running> {
    let dir = tempfile::Builder::new().prefix("pymp-").tempdir()?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(io::Error::other)?;
    let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let address = dir.path().join(format!("sock-{name}"));
    let listener = UnixListener::bind(&address)?;
    std::fs::set_permissions(&address, std::fs::Permissions::from_mode(0o600))?;
    let (alive_r, alive_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    let (config_parent, config_child) = UnixStream::pair()?;
    let mut authkey = [0u8; AUTHKEY_LEN];
    getrandom::fill(&mut authkey).map_err(io::Error::other)?;

    let mut cmd = Command::new(self_exe());
    if let Ok(exe) = std::env::current_exe() {
        cmd.arg0(exe);
    }
    cmd.env(ROLE_ENV, "forkserver")
        .stdin(Stdio::from(OwnedFd::from(config_child)));
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    drop(cmd);

    let mut config = Vec::with_capacity(AUTHKEY_LEN + preload.len());
    config.extend_from_slice(&authkey);
    config.extend_from_slice(preload);
    if let Err(e) = send_message(
        config_parent.as_fd(),
        &config,
        &[listener.as_fd(), alive_r.as_fd()],
    ) {
        // The new process could not take its configuration: it exits on
        // EOF; reap it so no zombie is left.
        drop(config_parent);
        let _ = waitpid(Pid::from_raw(pid), WaitOptions::empty());
        return Err(e);
    }
    // The temp dir is removed by `stop` (or left to the system's cleaner
    // if this process is killed), not when this guard drops.
    let _ = dir.keep();
    Ok(Running {
        pid,
        is_child: true,
        address,
        alive_w,
        authkey,
    })
}

/// One request to a running server.
fn request(running: &Running, fds: &[BorrowedFd<'_>]) -> Result<(OwnedFd, OwnedFd)> {
    let client = UnixStream::connect(&running.address).map_err(Error::ServerDied)?;
    mp_auth::answer_challenge(Framed(&client), &running.authkey)?;
    mp_auth::deliver_challenge(Framed(&client), &running.authkey, mp_auth::Digest::Sha256)?;
    let (parent_r, child_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    let (child_r, parent_w) = pipe_with(PipeFlags::CLOEXEC).map_err(io::Error::from)?;
    let mut all = Vec::with_capacity(fds.len() + 3);
    all.extend([child_r.as_fd(), child_w.as_fd(), running.alive_w.as_fd()]);
    all.extend_from_slice(fds);
    send_fds(client.as_fd(), &all).map_err(Error::ServerDied)?;
    Ok((parent_r, parent_w))
}
