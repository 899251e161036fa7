//! [`Error`]: what the thread-backed objects report, with the messages of
//! mp-sync and mp-queue (and CPython's) where they report the same thing.

use std::{error::Error as _, fmt, io};

/// The boxed error a [`Barrier`](crate::Barrier)'s action may return.
pub type ActionError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of a thread-backed object.
///
/// Every error is a value: a poisoned mutex (a thread panicked inside one
/// of these objects' critical sections, which none of this crate's code
/// does) is recovered from, never turned into a panic.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing to get, without blocking or before the timeout (CPython's
    /// `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// No room under `maxsize`, without blocking or before the timeout
    /// (CPython's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// The queue was shut down: puts fail at once, gets once what was left
    /// is gone (CPython 3.13's `queue.ShutDown`).
    #[error("the queue has been shut down")]
    ShutDown,
    /// `task_done()` called more times than items were put (CPython's
    /// `ValueError`).
    #[error("task_done() called too many times")]
    TaskDoneTooManyTimes,
    /// A `Lock` released while unlocked, or a `BoundedSemaphore` released
    /// above its initial value (CPython: `RuntimeError`, `ValueError`).
    #[error("semaphore or lock released too many times")]
    ReleasedTooManyTimes,
    /// An `RLock` released by a thread that does not hold it (CPython:
    /// `RuntimeError: cannot release un-acquired lock`).
    #[error("cannot release un-acquired lock: the calling thread does not hold this RLock")]
    NotOwner,
    /// `Condition::wait` by a thread that does not hold the condition's
    /// lock (CPython: `RuntimeError`).
    #[error("must acquire() condition before using wait()")]
    WaitWithoutLock,
    /// `Condition::notify` by a thread that does not hold the condition's
    /// lock (CPython: `RuntimeError`).
    #[error("cannot notify on un-acquired lock")]
    NotifyWithoutLock,
    /// A semaphore released past the largest value it can count.
    #[error("semaphore value would exceed {max}")]
    SemaphoreOverflow {
        /// The largest value.
        max: u32,
    },
    /// The barrier is broken: aborted, reset while others waited, a wait
    /// timed out, or its action failed (CPython's
    /// `threading.BrokenBarrierError`). `reset()` makes it usable again.
    #[error(
        "the barrier is broken (aborted, reset, timed out, or its action failed); reset() it to use it again"
    )]
    BrokenBarrier,
    /// The barrier's action failed (or panicked) in this thread; the
    /// barrier is broken for the others.
    #[error("the barrier's action failed, so the barrier is broken")]
    BarrierAction(#[source] ActionError),
    /// An argument out of range, named with the rule it breaks.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// `start()` called from a thread other than the one that created the
    /// process (the seed's `RuntimeError: Parent is ... but
    /// current_process is ...`).
    #[error(
        "Parent is {parent} but current_process is {current}: start() a DummyProcess from the thread that created it"
    )]
    WrongThread {
        /// The thread that created the process.
        parent: String,
        /// The thread that called `start()`.
        current: String,
    },
    /// `start()` called twice (CPython: `threads can only be started
    /// once`).
    #[error("{name} has already been started: a process can only be started once")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },
    /// `join()` before `start()` (CPython: `cannot join thread before it
    /// is started`).
    #[error("cannot join {name} before it is started")]
    NotStarted {
        /// The process's name.
        name: String,
    },
    /// `join()` from the process's own thread (CPython: `cannot join
    /// current thread`), which would wait forever.
    #[error("cannot join {name} from its own thread: it would wait for itself forever")]
    JoinSelf {
        /// The process's name.
        name: String,
    },
    /// `set_daemon` on a started process (CPython: `cannot set daemon
    /// status of active thread`).
    #[error("cannot set the daemon flag of {name}: it has been started")]
    DaemonOfStarted {
        /// The process's name.
        name: String,
    },
    /// The system refused a new thread.
    #[error("cannot start a thread for {name}")]
    Spawn {
        /// The process's name.
        name: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The other end of a connection is closed and nothing is left to
    /// receive (CPython's `EOFError`).
    #[error("the other end of the connection is closed and nothing is left to receive (EOF)")]
    Eof,
    /// A send to an end whose peer is closed (CPython's process pipes:
    /// `BrokenPipeError`).
    #[error("the other end of the connection is closed: nothing can be sent to it")]
    PeerClosed,
    /// This end of the connection was closed (CPython: `OSError: handle
    /// is closed`).
    #[error("the connection is closed")]
    Closed,
    /// A receive on the write-only end of a one-way pipe, or a send on its
    /// read-only end (`Pipe(false)`).
    #[error("this end of a one-way pipe is {0}-only")]
    WrongDirection(&'static str),
    /// The listener was closed: no more connections through it.
    #[error("the listener is closed")]
    ListenerClosed,
    /// A key not in a dict (CPython's `KeyError`).
    #[error("key not found in the dict")]
    KeyError,
    /// An index out of range, or an operation on an empty list (CPython's
    /// `IndexError`), with what was asked.
    #[error("{0}")]
    IndexError(String),
    /// A value not in a list, for `remove` or `index` (CPython's
    /// `ValueError`).
    #[error("{0} not in list")]
    NotInList(&'static str),
    /// A namespace attribute that is not set (CPython's `AttributeError`).
    #[error("'Namespace' object has no attribute '{0}'")]
    NoAttribute(String),
    /// A namespace attribute read as a type other than the one it holds.
    #[error("the namespace attribute '{name}' is not a {expected}")]
    WrongType {
        /// The attribute.
        name: String,
        /// The type asked for.
        expected: &'static str,
    },
}

/// The message, then each cause after `": "`, as
/// `main() -> Result<(), Box<dyn Error>>` prints it.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut source = self.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_message_and_its_causes() {
        assert_eq!(format!("{:?}", Error::Empty), "the queue is empty");
        let e = Error::BarrierAction("disk full".into());
        assert_eq!(
            format!("{e:?}"),
            "the barrier's action failed, so the barrier is broken: disk full"
        );
        assert_eq!(
            e.to_string(),
            "the barrier's action failed, so the barrier is broken"
        );
        let e = Error::Spawn {
            name: "Thread-3".into(),
            source: io::Error::other("no more threads"),
        };
        assert_eq!(
            format!("{e:?}"),
            "cannot start a thread for Thread-3: no more threads"
        );
    }
}
