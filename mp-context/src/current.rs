//! What a process knows about itself, its parent and its children
//! (`process.py`'s `_current_process`, `_parent_process`, `_children`).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use serde::{Deserialize, Serialize};

use crate::Process;

/// A snapshot of the current process's attributes
/// ([`current_process`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) authkey: Vec<u8>,
    pub(crate) daemon: bool,
}

impl ProcessInfo {
    /// The name: `MainProcess`, or `Process-1:2`-style unless one was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The identity: empty in the main process, the parent's identity plus
    /// this child's number otherwise (`[1, 2]` for `Process-1:2`).
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }

    /// The authentication key: 32 random bytes in the main process,
    /// inherited by every child. The default key for listeners and
    /// managers.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// Whether this process is daemonic (then it may not start children).
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// This process's pid.
    pub fn pid(&self) -> i32 {
        std::process::id() as i32
    }
}

static CURRENT: Mutex<Option<ProcessInfo>> = Mutex::new(None);

pub(crate) fn lock_current() -> MutexGuard<'static, Option<ProcessInfo>> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

fn main_process() -> ProcessInfo {
    let mut authkey = vec![0u8; 32];
    // getrandom only fails without any entropy source; a zero key is then
    // still a key, but say so.
    if getrandom::fill(&mut authkey).is_err() {
        eprintln!("mp-context: no randomness available for the authkey");
    }
    ProcessInfo {
        name: "MainProcess".into(),
        identity: Vec::new(),
        authkey,
        daemon: false,
    }
}

/// `multiprocessing.current_process()`: this process's name, identity,
/// authkey and daemon flag.
pub fn current_process() -> ProcessInfo {
    lock_current().get_or_insert_with(main_process).clone()
}

pub(crate) fn set_current(info: ProcessInfo) {
    *lock_current() = Some(info);
}

/// How a child tells whether its parent still runs.
#[derive(Debug)]
enum ParentSentinel {
    /// A pipe or socket end whose peer the parent holds: readable (EOF)
    /// once the parent has gone.
    Fd(OwnedFd),
    /// A forked child: the parent is our `getppid()` as long as it lives.
    Ppid(i32),
}

/// The parent of this process ([`parent_process`]).
#[derive(Debug)]
pub struct ParentProcess {
    name: String,
    pid: i32,
    sentinel: ParentSentinel,
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the parent is still running.
    pub fn is_alive(&self) -> bool {
        match &self.sentinel {
            ParentSentinel::Ppid(pid) => {
                rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) == Some(*pid)
            }
            ParentSentinel::Fd(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let zero = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0))
            }
        }
    }

    /// Waits until the parent has gone, or `timeout` has passed; returns
    /// whether it has gone.
    pub fn join(&self, timeout: Option<Duration>) -> bool {
        // A timeout no `Instant` can hold (`Duration::MAX`) waits without
        // limit, rather than panicking on the overflow.
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            if !self.is_alive() {
                return true;
            }
            match &self.sentinel {
                ParentSentinel::Fd(fd) => {
                    let left =
                        deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
                    let ts = left.map(|l| rustix::time::Timespec {
                        tv_sec: l.as_secs() as i64,
                        tv_nsec: l.subsec_nanos() as i64,
                    });
                    let mut fds = [PollFd::new(fd, PollFlags::IN)];
                    let _ = rustix::event::poll(&mut fds, ts.as_ref());
                }
                ParentSentinel::Ppid(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return !self.is_alive();
            }
        }
    }
}

static PARENT: Mutex<Option<std::sync::Arc<ParentProcess>>> = Mutex::new(None);

pub(crate) fn lock_parent() -> MutexGuard<'static, Option<std::sync::Arc<ParentProcess>>> {
    PARENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `multiprocessing.parent_process()`: `None` in the main process.
pub fn parent_process() -> Option<std::sync::Arc<ParentProcess>> {
    lock_parent().clone()
}

pub(crate) fn parent_from_fd(name: String, pid: i32, fd: OwnedFd) -> ParentProcess {
    ParentProcess {
        name,
        pid,
        sentinel: ParentSentinel::Fd(fd),
    }
}

pub(crate) fn parent_from_ppid(name: String, pid: i32) -> ParentProcess {
    ParentProcess {
        name,
        pid,
        sentinel: ParentSentinel::Ppid(pid),
    }
}

/// The children this process started and has not yet seen exit.
static CHILDREN: Mutex<Vec<Process>> = Mutex::new(Vec::new());

pub(crate) fn lock_children() -> MutexGuard<'static, Vec<Process>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The next child number (`_process_counter`, from 1 in every process).
pub(crate) static COUNTER: AtomicU32 = AtomicU32::new(1);

/// Set by `init()` (in the main process) and in every child: the spawn and
/// forkserver methods need the binary's `main` to call `init()`.
pub(crate) static INIT_CALLED: AtomicBool = AtomicBool::new(false);

pub(crate) fn init_called() -> bool {
    INIT_CALLED.load(Ordering::Relaxed)
}

/// `multiprocessing.active_children()`: the children started by this
/// process that are still running. Finished ones are reaped (and dropped
/// from the list) as a side effect.
pub fn active_children() -> Vec<Process> {
    let snapshot: Vec<Process> = lock_children().clone();
    let mut alive = Vec::new();
    for p in snapshot {
        if p.is_alive().unwrap_or(false) {
            alive.push(p);
        }
    }
    alive
}

pub(crate) fn forget_child(p: &Process) {
    lock_children().retain(|c| !c.same_as(p));
}
