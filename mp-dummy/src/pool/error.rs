//! The pool's error type and its states.

use std::fmt;
use std::io;
use std::sync::Arc;

/// What a [`Pool`](crate::pool::Pool) is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// Taking tasks.
    Running,
    /// [`close`](crate::pool::Pool::close) was called: the tasks already
    /// submitted run to completion, no new ones are taken.
    Closed,
    /// [`terminate`](crate::pool::Pool::terminate) was called (or the pool
    /// was dropped): queued tasks were dropped, running ones were
    /// abandoned.
    Terminated,
    /// An initializer panicked (or a worker thread could not be started):
    /// the queued tasks failed with that error and no new ones are taken.
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

/// Everything that can go wrong with a thread pool or one of its tasks.
///
/// A [`Panicked`](PoolError::Panicked) error belongs to one task (or one
/// item of a `map`): the pool goes on. CPython's exception names are given
/// in the variants' docs. `PoolError` is `Clone`, so that a failed result
/// can be asked for again and again.
#[derive(Clone)]
#[non_exhaustive]
pub enum PoolError {
    /// The task panicked (CPython re-raises the task's exception).
    Panicked {
        /// The panic's message.
        message: String,
        /// Where it panicked (`src/lib.rs:10:5`), when known.
        location: Option<String>,
    },
    /// The result did not become ready within the time given to `get` or
    /// `next_timeout` (CPython's `multiprocessing.TimeoutError`). The task
    /// goes on; ask again later.
    Timeout,
    /// `successful()` on a result that is not ready (CPython's
    /// `ValueError`).
    NotReady,
    /// The value was already handed out, by an earlier `get` or to the
    /// `on_success` callback: results need not be `Clone`, so a value is
    /// given once (CPython returns the same object again).
    ResultTaken,
    /// The pool takes no new tasks in this state (CPython's
    /// `ValueError("Pool not running")`).
    NotRunning(PoolState),
    /// The pool was terminated before the task finished: it was dropped
    /// from the queue, or it was running and its result is discarded
    /// (CPython leaves such results waiting forever).
    Terminated,
    /// A worker thread's initializer panicked, so the pool stopped instead
    /// of starting threads forever (gh-87472). Every queued and later task
    /// gets this error.
    InitializerFailed {
        /// The panic's message and location.
        message: String,
    },
    /// A worker thread could not be started. At `build`, no pool is
    /// made; for a replacement (`maxtasksperchild`), the pool stops and
    /// every queued and later task gets this error.
    ThreadStart(Arc<io::Error>),
    /// `join` on a running pool (CPython's `ValueError`): call `close` or
    /// `terminate` first.
    StillRunning,
    /// A bad argument (CPython's `ValueError`).
    InvalidArgument(&'static str),
}

impl PoolError {
    /// Whether this error belongs to one task, the pool going on (a
    /// [`Panicked`](PoolError::Panicked) task).
    pub fn is_task_error(&self) -> bool {
        matches!(self, PoolError::Panicked { .. })
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Panicked {
                message,
                location: Some(at),
            } => write!(f, "the task panicked at {at}: {message}"),
            PoolError::Panicked {
                message,
                location: None,
            } => write!(f, "the task panicked: {message}"),
            PoolError::Timeout => f.write_str("timed out waiting for the result"),
            PoolError::NotReady => f.write_str("the result is not ready"),
            PoolError::ResultTaken => f.write_str(
                "the result was already taken (by an earlier get() or the on_success \
                 callback): a thread pool hands each value out once",
            ),
            PoolError::NotRunning(state) => write!(
                f,
                "Pool not running: the thread pool is {state} and takes no new tasks"
            ),
            PoolError::Terminated => {
                f.write_str("the thread pool was terminated before the task finished")
            }
            PoolError::InitializerFailed { message } => write!(
                f,
                "a worker thread's initializer failed, so the thread pool stopped (it does \
                 not restart threads whose initializer fails): {message}"
            ),
            PoolError::ThreadStart(_) => f.write_str("could not start a pool worker thread"),
            PoolError::StillRunning => f.write_str(
                "the thread pool is still running: call close() or terminate() before join()",
            ),
            PoolError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
        }
    }
}

/// The message followed by its sources: `message: cause: cause`.
impl fmt::Debug for PoolError {
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

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::ThreadStart(e) => Some(&**e),
            _ => None,
        }
    }
}

/// The pool's result type.
pub type Result<T, E = PoolError> = std::result::Result<T, E>;
