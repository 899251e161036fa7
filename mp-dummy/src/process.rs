//! [`DummyProcess`]: `multiprocessing.dummy.Process`, a thread with the
//! process API, and the calls about the current one
//! ([`current_process`], [`active_children`], [`freeze_support`]).

use std::{
    cell::OnceCell,
    fmt,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::{self, ThreadId},
    time::Duration,
};

use crate::error::{Error, Result};
use crate::wait::{deadline, lock, wait_while};

type Target = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct RunState {
    started: bool,
    finished: bool,
    ident: Option<ThreadId>,
}

struct Inner {
    name: Mutex<String>,
    daemon: Mutex<bool>,
    /// The record of the thread that created it: only that thread may
    /// start it (`None` for a thread's own record).
    parent: Option<DummyProcess>,
    target: Mutex<Option<Target>>,
    state: Mutex<RunState>,
    finished: Condvar,
    /// Children started from this one's thread (CPython's `_children`).
    children: Mutex<Vec<DummyProcess>>,
    /// `DummyProcess` for one made here, `Thread` for the record of a
    /// thread this crate did not start (CPython's `_MainThread`,
    /// `_DummyThread`).
    kind: &'static str,
}

/// CPython's `multiprocessing.dummy.Process`: a thread with the process
/// API. Clones are handles on the one process.
///
/// The seed's rules: [`start`](DummyProcess::start) only from the thread
/// that created it (otherwise [`Error::WrongThread`], naming both);
/// [`exitcode`](DummyProcess::exitcode) is `Some(0)` once started and
/// finished, `None` before; a target that panics ends its thread as an
/// exception ends a CPython thread: the panic is printed (by the panic
/// hook, as CPython's `threading.excepthook` prints the traceback), `join`
/// returns, and the exit code is still 0.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use mp_dummy::DummyProcess;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let p = DummyProcess::new(|(seen, n): (Arc<Mutex<Vec<u32>>>, u32)| seen.lock().unwrap().push(n), (seen.clone(), 7));
/// assert_eq!(p.exitcode(), None);
/// p.start()?;
/// p.join(None)?;
/// assert_eq!((p.exitcode(), p.is_alive()), (Some(0), false));
/// assert_eq!(*seen.lock().unwrap(), [7]);
/// # Ok::<(), mp_dummy::Error>(())
/// ```
#[derive(Clone)]
pub struct DummyProcess {
    inner: Arc<Inner>,
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// The record of the thread that runs it (a process's, once its thread
/// runs); marks it finished when the thread ends.
struct CurrentRecord(DummyProcess);

impl Drop for CurrentRecord {
    fn drop(&mut self) {
        self.0.finish();
    }
}

thread_local! {
    static CURRENT: OnceCell<CurrentRecord> = const { OnceCell::new() };
}

/// Marks a process finished when its target returns or panics.
struct FinishOnDrop(DummyProcess);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

impl DummyProcess {
    /// A process that will run `target(args)` in a new thread (any
    /// closure: nothing is serialized), named `Thread-N`, daemon if the
    /// creating one is, as in CPython.
    pub fn new<A: Send + 'static>(
        target: impl FnOnce(A) + Send + 'static,
        args: A,
    ) -> DummyProcess {
        let parent = current_process();
        let daemon = parent.daemon();
        DummyProcess::record(
            format!("Thread-{}", COUNTER.fetch_add(1, Ordering::Relaxed)),
            daemon,
            Some(parent),
            Some(Box::new(move || target(args))),
            "DummyProcess",
        )
    }

    fn record(
        name: String,
        daemon: bool,
        parent: Option<DummyProcess>,
        target: Option<Target>,
        kind: &'static str,
    ) -> DummyProcess {
        DummyProcess {
            inner: Arc::new(Inner {
                name: Mutex::new(name),
                daemon: Mutex::new(daemon),
                parent,
                target: Mutex::new(target),
                state: Mutex::new(RunState::default()),
                finished: Condvar::new(),
                children: Mutex::new(Vec::new()),
                kind,
            }),
        }
    }

    /// The same process, named `name`.
    pub fn with_name(self, name: impl Into<String>) -> DummyProcess {
        self.set_name(name);
        self
    }

    /// The same process with the daemon flag `daemon` (before `start`).
    pub fn with_daemon(self, daemon: bool) -> DummyProcess {
        *lock(&self.inner.daemon) = daemon;
        self
    }

    /// CPython's `name`.
    pub fn name(&self) -> String {
        lock(&self.inner.name).clone()
    }

    /// Sets the name.
    pub fn set_name(&self, name: impl Into<String>) {
        *lock(&self.inner.name) = name.into();
    }

    /// CPython's `daemon`. Recorded, as CPython's; a Rust program does not
    /// wait for any thread when `main` returns, daemon or not (join the
    /// ones that must finish).
    pub fn daemon(&self) -> bool {
        *lock(&self.inner.daemon)
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    ///
    /// [`Error::DaemonOfStarted`] once started.
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        if lock(&self.inner.state).started {
            return Err(Error::DaemonOfStarted { name: self.name() });
        }
        *lock(&self.inner.daemon) = daemon;
        Ok(())
    }

    /// The thread's id once it runs (CPython's `ident`).
    pub fn ident(&self) -> Option<ThreadId> {
        lock(&self.inner.state).ident
    }

    /// CPython's `start()`: runs the target in a new thread.
    ///
    /// # Errors
    ///
    /// [`Error::WrongThread`] from a thread other than the one that
    /// created it (naming both), [`Error::AlreadyStarted`] the second time,
    /// [`Error::Spawn`] when the system refuses a thread.
    pub fn start(&self) -> Result<()> {
        let current = current_process();
        let Some(parent) = &self.inner.parent else {
            // A thread's own record: it is running already.
            return Err(Error::AlreadyStarted { name: self.name() });
        };
        if !Arc::ptr_eq(&parent.inner, &current.inner) {
            return Err(Error::WrongThread {
                parent: format!("{parent:?}"),
                current: format!("{current:?}"),
            });
        }
        let Some(target) = lock(&self.inner.target).take() else {
            return Err(Error::AlreadyStarted { name: self.name() });
        };
        lock(&self.inner.state).started = true;
        let me = self.clone();
        let run = move || {
            lock(&me.inner.state).ident = Some(thread::current().id());
            let finish = FinishOnDrop(me.clone());
            CURRENT.with(|c| {
                let _ = c.set(CurrentRecord(me));
            });
            target();
            drop(finish);
        };
        let name = self.name();
        match thread::Builder::new().name(name.clone()).spawn(run) {
            Ok(_detached) => {
                let mut children = lock(&parent.inner.children);
                // Forget finished ones here too, so that a thread that
                // never asks for active_children keeps no garbage.
                children.retain(DummyProcess::is_alive);
                children.push(self.clone());
                Ok(())
            }
            Err(source) => {
                lock(&self.inner.state).started = false;
                Err(Error::Spawn { name, source })
            }
        }
    }

    fn finish(&self) {
        lock(&self.inner.state).finished = true;
        self.inner.finished.notify_all();
    }

    /// CPython's `join(timeout=None)`: waits until the thread has finished
    /// (at most `timeout`; then check [`is_alive`](DummyProcess::is_alive)).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before `start`, [`Error::JoinSelf`] from its
    /// own thread.
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let state = lock(&self.inner.state);
        if !state.started {
            return Err(Error::NotStarted { name: self.name() });
        }
        if state.ident == Some(thread::current().id()) {
            drop(state);
            return Err(Error::JoinSelf { name: self.name() });
        }
        drop(wait_while(
            &self.inner.finished,
            state,
            deadline(timeout),
            |s| !s.finished,
        ));
        Ok(())
    }

    /// CPython's `is_alive()`: started and not finished.
    pub fn is_alive(&self) -> bool {
        let state = lock(&self.inner.state);
        state.started && !state.finished
    }

    /// The seed's `exitcode`: `Some(0)` once started and finished (even
    /// after a panic, as a CPython thread's exception), otherwise `None`.
    pub fn exitcode(&self) -> Option<i32> {
        let state = lock(&self.inner.state);
        (state.started && state.finished).then_some(0)
    }
}

impl fmt::Debug for DummyProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        let status = match (state.started, state.finished) {
            (false, _) => "initial",
            (true, false) => "started",
            (true, true) => "stopped",
        };
        drop(state);
        let daemon = if self.daemon() { " daemon" } else { "" };
        write!(
            f,
            "<{}({}, {status}{daemon})>",
            self.inner.kind,
            self.name()
        )
    }
}

/// CPython's `current_process()` (for threads, `threading.current_thread()`):
/// the running [`DummyProcess`] inside one's thread, otherwise a record
/// of the calling thread (`MainThread` for `main`'s, else the thread's
/// name or `Dummy-N`), the same one each time on one thread.
pub fn current_process() -> DummyProcess {
    CURRENT.with(|c| {
        c.get_or_init(|| {
            let this = thread::current();
            let name = match this.name() {
                Some("main") => "MainThread".to_owned(),
                Some(name) => name.to_owned(),
                None => format!("Dummy-{}", COUNTER.fetch_add(1, Ordering::Relaxed)),
            };
            let record = DummyProcess::record(name, false, None, None, "Thread");
            *lock(&record.inner.state) = RunState {
                started: true,
                finished: false,
                ident: Some(this.id()),
            };
            CurrentRecord(record)
        })
        .0
        .clone()
    })
}

/// CPython's `active_children()`: the processes started from the calling
/// thread that are still running; finished ones are forgotten.
pub fn active_children() -> Vec<DummyProcess> {
    let me = current_process();
    let mut children = lock(&me.inner.children);
    children.retain(DummyProcess::is_alive);
    children.clone()
}

/// CPython's `freeze_support()`: nothing to do for threads.
pub fn freeze_support() {}
