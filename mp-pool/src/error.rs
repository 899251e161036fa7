//! The crate's error type and the pool's states.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// What a pool is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// Taking tasks.
    Running,
    /// [`close`](crate::Pool::close) was called: the tasks already
    /// submitted run to completion, no new ones are taken.
    Closed,
    /// [`terminate`](crate::Pool::terminate) was called (or the pool was
    /// dropped): the workers were killed.
    Terminated,
    /// A worker's initializer failed, or a worker could not be started:
    /// the workers were stopped and every task fails with that error.
    Broken,
}

impl PoolState {
    /// The state as a word: `running`, `closed`, `terminated`, `broken`.
    pub fn name(self) -> &'static str {
        match self {
            PoolState::Running => "running",
            PoolState::Closed => "closed",
            PoolState::Terminated => "terminated",
            PoolState::Broken => "broken",
        }
    }
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong with a pool or one of its tasks.
///
/// Task errors belong to one task (or one item of a `map`): the pool goes
/// on. CPython's exception names are given in the variants' docs. `Error`
/// is `Clone`, so that a result can be asked for again and again.
#[derive(Clone)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked (CPython re-raises the task's exception).
    Panicked {
        /// The panic's message.
        message: String,
        /// Where it panicked (`src/lib.rs:10:5`), when known.
        location: Option<String>,
    },
    /// The worker could not serialize the task's result (CPython's
    /// `MaybeEncodingError`).
    ResultNotSerializable {
        /// The serializer's message.
        message: String,
    },
    /// The worker could not decode the task's arguments (a `Serialize` and
    /// `Deserialize` that do not agree).
    ArgsNotDecodable {
        /// The decoder's message.
        message: String,
    },
    /// The worker refused the task's function: it runs another build of
    /// the program, or the function's types did not match.
    BadFunction {
        /// Why.
        message: String,
    },
    /// The task's arguments could not be serialized in this process, so
    /// the task was not submitted.
    ArgsNotSerializable(postcard::Error),
    /// The task's result could not be decoded in this process.
    ResultNotDecodable(postcard::Error),
    /// The worker process running the task died before it sent the
    /// task's result: killed by a signal, aborted, or `exit` inside the
    /// task (CPython hangs here, gh-66587). A replacement was started.
    WorkerLost {
        /// The worker's pid.
        pid: i32,
        /// Its exit code, as [`mp_context::Process::exitcode`]: the code
        /// passed to `exit`, or `-N` for signal `N`.
        exitcode: i32,
    },
    /// The task ran past the pool's task timeout; its worker was killed
    /// and replaced (billiard's `TimeLimitExceeded`).
    TaskTimeout {
        /// The worker's pid.
        pid: i32,
        /// The limit.
        limit: Duration,
    },
    /// The result did not become ready within the time given to `get` or
    /// `next_timeout` (CPython's `multiprocessing.TimeoutError`). The task
    /// goes on; ask again later.
    Timeout,
    /// `successful()` on a result that is not ready (CPython's
    /// `ValueError`).
    NotReady,
    /// The pool takes no new tasks in this state (CPython's
    /// `ValueError("Pool not running")`).
    NotRunning(PoolState),
    /// The pool was terminated before the task finished (CPython leaves
    /// such results waiting forever).
    Terminated,
    /// A worker's initializer failed (panicked, called `exit`, or the
    /// worker died before it finished), so the pool stopped instead of
    /// restarting workers forever (gh-87472). Every pending and later task
    /// gets this error.
    InitializerFailed {
        /// The panic's message, or how the worker ended.
        message: String,
    },
    /// A worker process could not be started; when a replacement fails,
    /// the pool stops and every pending and later task gets this error.
    WorkerStart(Arc<mp_context::Error>),
    /// `join` on a running pool (CPython's `ValueError`): call `close` or
    /// `terminate` first.
    StillRunning,
    /// A bad argument (CPython's `ValueError`).
    InvalidArgument(&'static str),
    /// The pool's own plumbing (pipes, epoll, a thread) failed.
    Io(Arc<io::Error>),
}

impl Error {
    /// Whether this error belongs to one task, the pool going on
    /// ([`Panicked`](Error::Panicked), [`WorkerLost`](Error::WorkerLost),
    /// [`TaskTimeout`](Error::TaskTimeout), the (de)serialization errors).
    pub fn is_task_error(&self) -> bool {
        matches!(
            self,
            Error::Panicked { .. }
                | Error::ResultNotSerializable { .. }
                | Error::ArgsNotDecodable { .. }
                | Error::BadFunction { .. }
                | Error::ArgsNotSerializable(_)
                | Error::ResultNotDecodable(_)
                | Error::WorkerLost { .. }
                | Error::TaskTimeout { .. }
        )
    }
}

/// How a process ended, in words: `exit code 3`, `killed by signal 9
/// (SIGKILL)`.
pub(crate) fn describe_exit(exitcode: i32) -> String {
    if exitcode >= 0 {
        return format!("exit code {exitcode}");
    }
    let sig = -exitcode;
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("killed by signal {sig}"),
    };
    format!("killed by signal {sig} ({name})")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked {
                message,
                location: Some(at),
            } => write!(f, "the task panicked at {at}: {message}"),
            Error::Panicked {
                message,
                location: None,
            } => write!(f, "the task panicked: {message}"),
            Error::ResultNotSerializable { message } => write!(
                f,
                "the worker could not serialize the task's result: {message}"
            ),
            Error::ArgsNotDecodable { message } => {
                write!(
                    f,
                    "the worker could not decode the task's arguments: {message}"
                )
            }
            Error::BadFunction { message } => {
                write!(f, "the worker refused the task's function: {message}")
            }
            Error::ArgsNotSerializable(_) => {
                f.write_str("the task's arguments could not be serialized")
            }
            Error::ResultNotDecodable(_) => f.write_str("the task's result could not be decoded"),
            Error::WorkerLost { pid, exitcode } => write!(
                f,
                "worker process {pid} died before sending the task's result ({}); \
                 a replacement was started",
                describe_exit(*exitcode)
            ),
            Error::TaskTimeout { pid, limit } => write!(
                f,
                "the task ran longer than the pool's task timeout of {limit:?}; \
                 worker process {pid} was killed and replaced"
            ),
            Error::Timeout => f.write_str("timed out waiting for the result"),
            Error::NotReady => f.write_str("the result is not ready"),
            Error::NotRunning(state) => {
                write!(
                    f,
                    "Pool not running: the pool is {state} and takes no new tasks"
                )
            }
            Error::Terminated => f.write_str("the pool was terminated before the task finished"),
            Error::InitializerFailed { message } => write!(
                f,
                "a worker's initializer failed, so the pool stopped (it does not restart \
                 workers whose initializer fails): {message}"
            ),
            Error::WorkerStart(_) => f.write_str("could not start a pool worker process"),
            Error::StillRunning => {
                f.write_str("the pool is still running: call close() or terminate() before join()")
            }
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Io(_) => f.write_str("the pool's plumbing failed"),
        }
    }
}

/// The message followed by its sources: `message: cause: cause`.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ArgsNotSerializable(e) | Error::ResultNotDecodable(e) => Some(e),
            Error::WorkerStart(e) => Some(&**e),
            Error::Io(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        Error::Io(Arc::new(e.into()))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_message_and_its_sources() {
        let e = Error::WorkerStart(Arc::new(mp_context::Error::Io(io::Error::other(
            "no more processes",
        ))));
        assert_eq!(
            format!("{e:?}"),
            "could not start a pool worker process: no more processes"
        );
        let e = Error::WorkerLost {
            pid: 12,
            exitcode: -9,
        };
        assert_eq!(
            format!("{e:?}"),
            "worker process 12 died before sending the task's result (killed by signal 9 \
             (SIGKILL)); a replacement was started"
        );
        assert_eq!(
            format!("{:?}", Error::NotRunning(PoolState::Closed)),
            "Pool not running: the pool is closed and takes no new tasks"
        );
        assert_eq!(describe_exit(3), "exit code 3");
        assert_eq!(describe_exit(-64), "killed by signal 64");
    }
}
