//! The errors of mp-heap, named after the exceptions CPython raises.

use std::{fmt, io};

/// What can go wrong when allocating, freeing or rebuilding shared memory.
///
/// CPython raises `OverflowError` for absurd sizes and `ValueError` for a
/// free from the wrong process; the variants say which they stand for.
///
/// `Debug` prints the message and its causes (`message: cause: cause`),
/// which is what `main() -> Result<(), Box<dyn Error>>` shows a user;
/// match on the variants to tell the cases apart.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum HeapError {
    /// A request of `isize::MAX` bytes or more (CPython: `OverflowError`,
    /// "Size … too large").
    #[error("Size {size} too large")]
    TooLarge {
        /// The size asked for.
        size: usize,
    },
    /// A block was freed by a process other than the one that allocated it,
    /// as happens after `fork` (CPython: `ValueError`, "My pid … is not last
    /// pid …"). The block is left alone; the child never frees the parent's
    /// memory.
    #[error("My pid ({current}) is not last pid {owner}")]
    WrongProcess {
        /// The process that allocated the block.
        owner: u32,
        /// The calling process.
        current: u32,
    },
    /// `malloc` was called while this thread holds the heap's lock (inside
    /// [`Heap::with_lock_held`](crate::Heap::with_lock_held)); going on would
    /// deadlock.
    #[error("the heap lock is held by this thread, so allocating here would deadlock")]
    WouldDeadlock,
    /// An offset and length that do not lie inside the arena.
    #[error(
        "block at offset {offset} of {len} bytes does not fit in an arena of {arena_size} bytes"
    )]
    OutOfBounds {
        /// Offset of the block in the arena.
        offset: usize,
        /// Length of the block.
        len: usize,
        /// Size of the arena.
        arena_size: usize,
    },
    /// A buffer that cannot hold the typed value or array asked for (wrong
    /// length, or an offset that is not 8-byte aligned).
    #[error("a {what} needs {need} bytes at an 8-byte aligned offset, the buffer has {have}")]
    BadLayout {
        /// What was being rebuilt.
        what: &'static str,
        /// The number of bytes it needs.
        need: usize,
        /// The number of bytes the buffer has.
        have: usize,
    },
    /// Creating, sizing or mapping an arena failed.
    #[error("cannot create or map a shared-memory arena")]
    Io(#[from] io::Error),
}

impl fmt::Debug for HeapError {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main() -> Result<(), Box<dyn Error>>` prints: the message and
    /// its causes, with the path an arena file could not be made at.
    #[test]
    fn debug_shows_the_message_the_cause_and_the_path() {
        let dir = std::env::temp_dir().join(format!("mp-heap-no-such-dir-{}", std::process::id()));
        let err = HeapError::from(crate::Arena::file_backed_in(dir.clone(), 4096).unwrap_err());
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with("cannot create or map a shared-memory arena: "),
            "{shown}"
        );
        assert!(shown.contains("No such file or directory"), "{shown}");
        assert!(shown.contains(&dir.display().to_string()), "{shown}");

        let heap = crate::Heap::with_discard_threshold(0);
        let err = heap.malloc(usize::MAX).unwrap_err();
        assert_eq!(format!("{err:?}"), format!("Size {} too large", usize::MAX));
    }
}
