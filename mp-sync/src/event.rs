//! [`Event`]: CPython's `multiprocessing.Event`, a flag in shared memory
//! that processes wait on, without a lock: one futex word holds the flag
//! (bit 0) and a count of `set` calls (the other bits).

use std::{
    fmt,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use mp_heap::{
    Deadline, Heap, Shared,
    futex::{self},
};

use crate::Result;

const SET: u32 = 1;

/// The shared state of an [`Event`] (8 bytes). All-zero memory is a clear
/// event.
#[repr(C)]
pub struct EventState {
    /// Bit 0: the flag. Bits 1..: bumped by every `set` of a clear flag,
    /// so that a waiter notices a `set` even if a `clear` follows at once.
    word: AtomicU32,
    /// How many waiters may be asleep: `set` skips the wake call without.
    sleepers: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<EventState>() == 8);
const _: () = assert!(std::mem::align_of::<EventState>() == 4);
const _: () = assert!(std::mem::offset_of!(EventState, word) == 0);
const _: () = assert!(std::mem::offset_of!(EventState, sleepers) == 4);

impl EventState {
    /// A clear event.
    pub const fn new() -> EventState {
        EventState {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if w & SET != 0 {
                return;
            }
            let next = (w & !SET).wrapping_add(2) | SET;
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        // A waiter announces itself (SeqCst) before its last look at the
        // word, and we changed the word (SeqCst) before this look.
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&self.word);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::SeqCst);
    }

    /// Waits until the flag is set (or was set meanwhile), at most until
    /// `deadline`; returns the flag as it is then, as CPython does (so
    /// `false` after a timeout, or after a `set` promptly undone by `clear`).
    pub fn wait(&self, deadline: Deadline) -> bool {
        let start = self.word.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while self.word.load(Ordering::SeqCst) == start {
            if !futex::wait(&self.word, start, deadline) {
                break;
            }
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.is_set()
    }
}

impl Default for EventState {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EventState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventState")
            .field("set", &self.is_set())
            .finish()
    }
}

/// CPython's `multiprocessing.Event`: a flag that processes can set, clear
/// and wait for, usable from every process holding a clone.
///
/// ```
/// use std::time::Duration;
/// use mp_sync::Event;
///
/// let event = Event::new()?;
/// assert!(!event.is_set());
/// assert!(!event.wait(Some(Duration::ZERO)));
/// event.set();
/// assert!(event.wait(None));
/// event.clear();
/// assert!(!event.wait(Some(Duration::from_millis(10))));
/// # Ok::<(), mp_sync::SyncError>(())
/// ```
#[derive(Clone)]
pub struct Event {
    state: Shared<EventState>,
}

impl Event {
    /// A clear event in the process-wide heap.
    ///
    /// # Errors
    ///
    /// [`SyncError::Heap`](crate::SyncError::Heap) when shared memory cannot
    /// be allocated.
    pub fn new() -> Result<Self> {
        Self::new_in(Heap::global())
    }

    /// A clear event in `heap`.
    ///
    /// # Errors
    ///
    /// As [`Event::new`].
    pub fn new_in(heap: &Heap) -> Result<Self> {
        Ok(Self {
            state: Shared::new_in(heap, EventState::new())?,
        })
    }

    /// CPython's `is_set()`.
    pub fn is_set(&self) -> bool {
        self.state.is_set()
    }

    /// CPython's `set()`: sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.state.set();
    }

    /// CPython's `clear()`.
    pub fn clear(&self) {
        self.state.clear();
    }

    /// CPython's `wait(timeout=None)`: waits until the flag is set; the
    /// flag as it is on return (`false` after a timeout). `None`, or a
    /// timeout too large for an `Instant`, waits as long as it takes.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.state.wait(Deadline::after(timeout))
    }

    /// As [`wait`](Self::wait), until `deadline`.
    pub fn wait_until(&self, deadline: Deadline) -> bool {
        self.state.wait(deadline)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

/// Serializable only inside `mp_reduction::collect_fds`: the event's
/// block, shared by every receiver.
impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`.
impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        Ok(Self {
            state: Shared::deserialize(deserializer)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_promptly_cleared_still_ends_the_wait() {
        let state = EventState::new();
        let t0 = std::time::Instant::now();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| state.wait(Deadline::after(Some(Duration::from_secs(60)))));
            while state.sleepers.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            state.set();
            state.clear();
            // True if it looked between the two, false after: either way
            // it returned, long before its 60 s deadline.
            waiter.join().unwrap();
        });
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the waiter missed the set"
        );
        // The generation moved on; the flag is clear.
        assert_eq!(state.word.load(Ordering::Relaxed), 2);
    }
}
