//! [`QueueError`]: what the queues report, named after
//! the exceptions CPython raises (`queue.Empty`, `queue.Full`,
//! `queue.ShutDown`, `ValueError`).

use std::{fmt, io};

use mp_heap::HeapError;

/// An error of a queue operation.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
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
    /// `close()` was called on this queue in this process (CPython's
    /// `ValueError: Queue ... is closed`); other processes are unaffected.
    #[error("the queue is closed in this process")]
    Closed,
    /// `task_done()` called more times than items were put (CPython's
    /// `ValueError`).
    #[error("task_done() called too many times")]
    TaskDoneTooManyTimes,
    /// `join_thread()` before `close()` (CPython asserts).
    #[error("the queue is not closed: call close() before join_thread()")]
    NotClosed,
    /// A `maxsize` or ring size out of range, named with the rule it breaks.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The item could not be encoded; the cause is serde's explanation.
    #[error("could not encode the item")]
    Encode(#[source] mp_conn::Error),
    /// An item taken from the queue could not be decoded as the queue's
    /// item type; the cause is serde's explanation. The item is gone.
    #[error("could not decode an item taken from the queue")]
    Decode(#[source] mp_conn::Error),
    /// The item holds more fds than one item can carry.
    #[error("the item holds {fds} file descriptors; a queue item carries at most {max}")]
    TooManyFds {
        /// How many the item holds.
        fds: usize,
        /// The most an item carries.
        max: usize,
    },
    /// The queue's shared memory or side channel held something no queue
    /// writes (a corrupt or hostile peer process), or an item's datagram
    /// was missing: what could not be read is dropped, and the queue goes
    /// on with the rest.
    #[error("the queue's shared state is damaged ({0}); what could not be read was dropped")]
    Corrupt(String),
    /// A queue received from another process that does not fit the type it
    /// was received as.
    #[error("the queue received cannot be used as a {expected}: {why}")]
    WrongQueue {
        /// What it was received as (`Queue<u32>`, ...).
        expected: String,
        /// What is wrong with it.
        why: String,
    },
    /// The queue's shared memory could not be allocated.
    #[error("cannot allocate the queue's shared memory")]
    Heap(#[from] HeapError),
    /// A system call failed (the side channel's socket, a memfd).
    #[error("a system call of the queue failed")]
    Io(#[from] io::Error),
}

/// The message, then each cause after `": "`, as
/// `main() -> Result<(), Box<dyn Error>>` prints it.
impl fmt::Debug for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(self, f)
    }
}

fn write_chain(e: &dyn std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt::Display::fmt(e, f)?;
    let mut source = e.source();
    while let Some(cause) = source {
        write!(f, ": {cause}")?;
        source = cause.source();
    }
    Ok(())
}

/// Results of this crate.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_the_message_and_its_causes() {
        assert_eq!(format!("{:?}", QueueError::Empty), "the queue is empty");
        let e = QueueError::Heap(HeapError::TooLarge { size: 9 });
        assert_eq!(
            format!("{e:?}"),
            "cannot allocate the queue's shared memory: Size 9 too large"
        );
        let e = QueueError::Io(io::Error::other("disk on fire"));
        assert_eq!(
            format!("{e:?}"),
            "a system call of the queue failed: disk on fire"
        );
        assert_eq!(e.to_string(), "a system call of the queue failed");
        assert_eq!(
            QueueError::TaskDoneTooManyTimes.to_string(),
            "task_done() called too many times"
        );
    }
}
