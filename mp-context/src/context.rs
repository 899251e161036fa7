//! Contexts and start methods (`context.py`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{Error, Process, ProcessArgs, Result};

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

/// What [`get_context`] and [`set_start_method`] accept to name a start
/// method: `None` (the default context), a name (`"spawn"`, as `&str`,
/// `Option<&str>`, `String` or `&String`) or a [`StartMethod`], so that
/// `get_all_start_methods()` feeds `get_context` directly.
///
/// ```
/// # fn main() -> Result<(), mp_context::Error> {
/// use mp_context::{StartMethod, get_all_start_methods, get_context};
/// for method in get_all_start_methods() {
///     assert_eq!(get_context(method)?.start_method(), method);
/// }
/// assert_eq!(get_context("spawn")?, get_context(Some("spawn"))?);
/// assert_eq!(get_context(StartMethod::Fork)?.start_method(), StartMethod::Fork);
/// let default = get_context(None)?;
/// # let _ = default;
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not name a start method",
    label = "expected `None`, a name such as `\"spawn\"`, or a `StartMethod`",
    note = "for `Some(&string)` pass `&string` or `Some(string.as_str())`; for an `Option<String>`, `opt.as_deref()`"
)]
pub trait IntoStartMethod {
    /// The method named, or `None` for the default.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStartMethod`] for a name that is not a start method.
    fn into_start_method(self) -> Result<Option<StartMethod>>;
}

impl IntoStartMethod for StartMethod {
    fn into_start_method(self) -> Result<Option<StartMethod>> {
        Ok(Some(self))
    }
}

impl IntoStartMethod for &str {
    fn into_start_method(self) -> Result<Option<StartMethod>> {
        self.parse().map(Some)
    }
}

impl IntoStartMethod for &String {
    fn into_start_method(self) -> Result<Option<StartMethod>> {
        self.as_str().into_start_method()
    }
}

impl IntoStartMethod for String {
    fn into_start_method(self) -> Result<Option<StartMethod>> {
        self.as_str().into_start_method()
    }
}

/// The only `Option` accepted: a second one would leave a bare `None`
/// without a type.
impl IntoStartMethod for Option<&str> {
    fn into_start_method(self) -> Result<Option<StartMethod>> {
        self.map(str::parse).transpose()
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
    /// [`Process::new`], also for what `args` may hold: a file or socket
    /// travels as an `mp_reduction::Fd`).
    pub fn process<A: ProcessArgs>(&self, target: fn(A), args: A) -> Process {
        Process::new(target, args).context(*self)
    }

    /// `ctx.get_context(method)`: `None` gives this context back, a name
    /// or a [`StartMethod`] gives that method's context.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStartMethod`] for an unknown name.
    pub fn get_context(&self, method: impl IntoStartMethod) -> Result<Context> {
        Ok(method.into_start_method()?.map_or(*self, Context::new))
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
/// (its method fixed to the default if unset); a name such as `"spawn"`
/// or a [`StartMethod`] is that method's (see [`IntoStartMethod`]).
///
/// # Errors
///
/// [`Error::UnknownStartMethod`] (`ValueError`) for an unknown name.
pub fn get_context(method: impl IntoStartMethod) -> Result<Context> {
    let method = method.into_start_method()?;
    Ok(Context::new(method.unwrap_or_else(default_method)))
}

/// `multiprocessing.set_start_method(method, force)`: fixes the default
/// context's method (a name or a [`StartMethod`], see
/// [`IntoStartMethod`]), once unless `force`. `(None, true)` unsets it;
/// `(None, false)` on an unset context selects the default.
///
/// # Errors
///
/// [`Error::ContextAlreadySet`] (`RuntimeError`) if a method is already
/// fixed and `force` is false; [`Error::UnknownStartMethod`] for an
/// unknown name.
pub fn set_start_method(method: impl IntoStartMethod, force: bool) -> Result<()> {
    let mut actual = actual();
    if actual.is_some() && !force {
        return Err(Error::ContextAlreadySet);
    }
    *actual = match method.into_start_method()? {
        None if force => None,
        None => Some(DEFAULT_START_METHOD),
        Some(m) => Some(m),
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
