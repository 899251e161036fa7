//! The crate's error type.

use std::{fmt, io};

/// Errors of processes and contexts. CPython's exception is named in each
/// variant's documentation.
///
/// `Debug` prints the message and its causes (`message: cause: cause`),
/// which is what `main() -> Result<(), Box<dyn Error>>` shows a user;
/// match on the variants to tell the cases apart.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `ValueError("process object is closed")`: the process was closed.
    #[error("process object is closed")]
    Closed,
    /// `AssertionError`: join, sentinel or is_alive before `start`.
    #[error("can only {0} a started process")]
    NotStarted(&'static str),
    /// `AssertionError("cannot start a process twice")`.
    #[error("cannot start a process twice")]
    AlreadyStarted,
    /// `ValueError`: `close` while the process still runs.
    #[error(
        "Cannot close a process while it is still running. You should first call join() or terminate()."
    )]
    StillRunning,
    /// `AssertionError`: a daemonic process may not start children.
    #[error("daemonic processes are not allowed to have children")]
    DaemonicChildren,
    /// `ValueError("cannot find context for ...")`.
    #[error("cannot find context for {0:?}")]
    UnknownStartMethod(String),
    /// `RuntimeError('context has already been set')`.
    #[error("context has already been set")]
    ContextAlreadySet,
    /// `ValueError('cannot set start method of concrete context')`.
    #[error("cannot set start method of concrete context")]
    ConcreteContext,
    /// `NotImplementedError('cannot determine number of cpus')`.
    #[error("cannot determine number of cpus")]
    CpuCountUnknown,
    /// The spawn and forkserver start methods re-execute this binary, whose
    /// `main` must call `mp_context::init()` first.
    #[error(
        "mp_context::init() was not called in this process: spawn and forkserver re-execute \
         this binary, so call mp_context::init() at the top of main (in tests: a \
         `harness = false` test target whose main calls it first), or use the fork start method"
    )]
    InitNotCalled,
    /// `set_executable` for the fork start method, whose children are
    /// copies of this process and run no executable.
    #[error(
        "the fork start method runs no executable (a fork child is a copy of this process): \
         set_executable applies to spawn and forkserver"
    )]
    ExecutableForFork,
    /// The path given to `set_executable` is not an executable file.
    #[error("cannot run {path} as the executable of child processes: {reason}")]
    Executable {
        /// The path given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A child of another binary (`set_executable`) finds its target by
    /// name, and this program's target has none it can send.
    #[error("cannot name the target function in {exe} for a child of another binary: {reason}")]
    TargetNames {
        /// This program's executable.
        exe: std::path::PathBuf,
        /// Why (no symbol table, or no symbol for the target).
        reason: String,
    },
    /// `log_to_stderr` found another logger installed; multiprocessing's
    /// messages go to it.
    #[error(
        "another logger is installed already: multiprocessing's messages go to it, under the \
         log target \"multiprocessing\""
    )]
    LoggerInstalled,
    /// Too many fds in the arguments for one transfer.
    #[error("too many fds: the arguments hold {count}, at most {max} can be passed")]
    TooManyFds {
        /// How many fds the arguments hold.
        count: usize,
        /// The most that can be passed.
        max: usize,
    },
    /// The arguments could not be serialized; the source says why (the
    /// type and serde's explanation).
    #[error("could not serialize the process arguments")]
    Encode(#[source] mp_conn::Error),
    /// The fork server failed (includes `AuthenticationError`).
    #[error(transparent)]
    ForkServer(#[from] mp_forkserver::Error),
    /// A syscall failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        Error::Io(e.into())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use crate::{Process, StartMethod, get_context};

    fn nothing(_: ()) {}

    /// What `main() -> Result<(), Box<dyn Error>>` prints: the message that
    /// says what to do, never a bare variant name.
    #[test]
    fn debug_shows_the_message() {
        // This test binary never called init(): spawn says what to do.
        let p = Process::new(nothing, ()).context(crate::Context::new(StartMethod::Spawn));
        let err = p.start().unwrap_err();
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with("mp_context::init() was not called in this process: "),
            "{shown}"
        );
        assert!(
            shown.contains("call mp_context::init() at the top of main"),
            "{shown}"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(format!("{boxed:?}"), shown);

        let err = get_context(Some("nope")).unwrap_err();
        assert_eq!(format!("{err:?}"), "cannot find context for \"nope\"");
    }
}
