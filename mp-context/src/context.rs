//! Contexts and start methods (`context.py`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{Error, Process, Result};

/// How a child process is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// `fork(2)`: the child is a copy of the parent and runs the target
    /// right away. Fast; unsafe to combine with threads (see the crate docs).
    Fork,
    /// The current executable is started again and `init()` runs the
    /// target in it. Slowest; shares nothing but the arguments.
    Spawn,
    /// A single-threaded server, started once by re-executing the binary,
    /// forks each child. The default.
    ForkServer,
}

impl StartMethod {
    /// CPython's name for the method: `"fork"`, `"spawn"`, `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<StartMethod> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            other => Err(Error::UnknownStartMethod(other.to_owned())),
        }
    }
}

/// The start method used when none was set: `forkserver`, as in CPython
/// 3.14 on POSIX, because forking a process that runs threads (as most
/// Rust programs do, test harnesses included) can leave the child waiting
/// forever on a lock held by a thread that does not exist in it.
pub const DEFAULT_START_METHOD: StartMethod = StartMethod::ForkServer;

/// The default context's chosen method (`DefaultContext._actual_context`).
static ACTUAL: Mutex<Option<StartMethod>> = Mutex::new(None);

fn actual() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    ACTUAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A concrete context: processes made through it use its start method
/// (CPython's `ForkContext`, `SpawnContext`, `ForkServerContext`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// The context of `method`.
    pub fn new(method: StartMethod) -> Context {
        Context { method }
    }

    /// This context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that runs `target(args)` under this context's method (see
    /// [`Process::new`]).
    pub fn process<A>(&self, target: fn(A), args: A) -> Process
    where
        A: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        Process::new(target, args).context(*self)
    }

    /// `ctx.get_context(method)`: `None` gives this context back, a name
    /// gives that method's context.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStartMethod`] for an unknown name.
    pub fn get_context(&self, method: Option<&str>) -> Result<Context> {
        match method {
            None => Ok(*self),
            Some(m) => Ok(Context::new(m.parse()?)),
        }
    }

    /// Sets the program that spawn and forkserver children run (see
    /// [`set_executable`](crate::set_executable), which this is for this
    /// context's method; the setting is process-wide, as CPython's).
    ///
    /// # Errors
    ///
    /// [`Error::ExecutableForFork`] for the fork context: a fork child is a
    /// copy of this process and runs no executable. [`Error::Executable`]
    /// if `path` is not an executable file.
    pub fn set_executable(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        if self.method == StartMethod::Fork {
            return Err(Error::ExecutableForFork);
        }
        crate::executable::set(path.as_ref())
    }

    /// Always [`Error::ConcreteContext`]: a concrete context cannot be
    /// re-targeted (CPython's `ValueError`).
    ///
    /// # Errors
    ///
    /// Always.
    pub fn set_start_method(&self, _method: Option<&str>, _force: bool) -> Result<()> {
        Err(Error::ConcreteContext)
    }
}

/// The default context's method, fixing it to the default if none was set.
pub(crate) fn default_method() -> StartMethod {
    *actual().get_or_insert(DEFAULT_START_METHOD)
}

/// Sets the default context's method without checks: a spawned child
/// adopts its parent's (CPython's `_force_start_method`).
pub(crate) fn force_start_method(method: StartMethod) {
    *actual() = Some(method);
}

/// `multiprocessing.get_context(method)`: `None` is the default context
/// (its method fixed to the default if unset), a name is that method's.
///
/// # Errors
///
/// [`Error::UnknownStartMethod`] (`ValueError`) for an unknown name.
pub fn get_context(method: Option<&str>) -> Result<Context> {
    match method {
        None => Ok(Context::new(default_method())),
        Some(m) => Ok(Context::new(m.parse()?)),
    }
}

/// `multiprocessing.set_start_method(method, force)`: fixes the default
/// context's method, once unless `force`. `(None, true)` unsets it;
/// `(None, false)` on an unset context selects the default.
///
/// # Errors
///
/// [`Error::ContextAlreadySet`] (`RuntimeError`) if a method is already
/// fixed and `force` is false; [`Error::UnknownStartMethod`] for an
/// unknown name.
pub fn set_start_method(method: Option<&str>, force: bool) -> Result<()> {
    let mut actual = actual();
    if actual.is_some() && !force {
        return Err(Error::ContextAlreadySet);
    }
    *actual = match method {
        None if force => None,
        None => Some(DEFAULT_START_METHOD),
        Some(m) => Some(m.parse()?),
    };
    Ok(())
}

/// `multiprocessing.get_start_method(allow_none)`: the default context's
/// method. If none is fixed yet it fixes the default and returns it, or
/// returns `None` when `allow_none` is set.
pub fn get_start_method(allow_none: bool) -> Option<StartMethod> {
    let mut actual = actual();
    if actual.is_none() && allow_none {
        return None;
    }
    Some(*actual.get_or_insert(DEFAULT_START_METHOD))
}

/// `multiprocessing.get_all_start_methods()`: the methods this platform
/// supports, the default first.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![
        StartMethod::ForkServer,
        StartMethod::Fork,
        StartMethod::Spawn,
    ]
}

/// `multiprocessing.cpu_count()`: the number of CPUs this process may use.
///
/// # Errors
///
/// [`Error::CpuCountUnknown`] (`NotImplementedError`) if it cannot be
/// determined.
pub fn cpu_count() -> Result<usize> {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .map_err(|_| Error::CpuCountUnknown)
}

/// Held across `fork` so that the child's copy of the lock is free.
pub(crate) fn lock_for_fork() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    actual()
}
