//! # mp-reduction
//!
//! File descriptors inside serde values, for any serde format.
//!
//! An fd cannot be written as bytes: it has to travel beside them, as
//! `SCM_RIGHTS` ancillary data over a unix socket, or by inheritance across
//! `fork`. This crate keeps a thread-local table for that:
//!
//! - inside [`collect_fds`], serializing an [`Fd`] (or anything that uses
//!   [`serialize_fd`]) duplicates the fd into the table and writes only its
//!   index, an [`FdSlot`];
//! - inside [`provide_fds`], deserializing takes the fd at that index back
//!   out, as an [`OwnedFd`], exactly once.
//!
//! The caller moves the collected fds to the other process however it likes.
//! `mp-conn` and `mp-heap` build on it to make `Connection` and
//! `SharedBuffer` serde types, and `mp-context` to pass them as process
//! arguments; this crate depends on neither of them.
//!
//! Some values hold state that exactly one copy may keep (a connection's
//! read-ahead bytes). They register a [`Handoff`] while serialized;
//! [`collect`] returns the fds with those [`Handoffs`], which the caller
//! tells [`delivered`](Handoffs::delivered) once the copy has arrived, and
//! [`fork_move`] gathers them for a value that moves into a fork child.
//!
//! Tables nest (an inner `collect_fds` gets its own table), and a table is
//! removed even if the closure panics. Serializing an fd outside
//! `collect_fds`, or deserializing one outside `provide_fds`, is an error of
//! the serde format (`S::Error::custom`), never a panic.
//!
//! # Examples
//!
//! ```
//! use std::os::fd::OwnedFd;
//! use mp_reduction::{collect_fds, provide_fds, Fd};
//!
//! let (a, _b) = std::os::unix::net::UnixStream::pair()?;
//! let value: (String, Fd) = ("hello".into(), Fd::from(OwnedFd::from(a)));
//! let (bytes, fds) = collect_fds(|| postcard::to_allocvec(&value));
//! let bytes = bytes.unwrap();
//! assert_eq!(fds.len(), 1);
//! // ... send `bytes` and `fds` to another process ...
//! let (back, unclaimed) = provide_fds(fds, || postcard::from_bytes::<(String, Fd)>(&bytes));
//! let (text, _fd) = back.unwrap();
//! assert_eq!(text, "hello");
//! assert!(unclaimed.is_empty());
//! # std::io::Result::Ok(())
//! ```

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod handoff;
mod walk;

pub use handoff::{Collected, ForkInterest, Handoff, Handoffs, collect, fork_move, hand_off};
pub use walk::explain_serialize_error;

/// One table on the thread-local stack.
enum Table {
    /// Serializing for bytes that travel: fds duplicated so far, in slot
    /// order, and what to tell the values once the bytes are delivered.
    Collect {
        fds: Vec<OwnedFd>,
        handoffs: Vec<Box<dyn Handoff>>,
    },
    /// Deserializing: fds not yet claimed (`None` once taken).
    Provide(Vec<Option<OwnedFd>>),
    /// Walking a value that moves into a fork child ([`fork_move`]): the
    /// child inherits every fd, so none is duplicated (slots are numbered
    /// but back nothing); only handoffs are gathered.
    ForkWalk {
        slots: u32,
        handoffs: Vec<Box<dyn Handoff>>,
    },
}

thread_local! {
    static STACK: RefCell<Vec<Table>> = const { RefCell::new(Vec::new()) };
}

/// Pops the table pushed by [`with_table`], even when the closure unwinds.
struct PopGuard;

impl Drop for PopGuard {
    fn drop(&mut self) {
        STACK.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// Runs `f` with `table` on top of this thread's stack and returns its
/// result and the table as `f` left it (the table is popped, and dropped,
/// even if `f` unwinds).
fn with_table<R>(table: Table, f: impl FnOnce() -> R) -> (R, Option<Table>) {
    STACK.with(|s| s.borrow_mut().push(table));
    let guard = PopGuard;
    let result = f();
    std::mem::forget(guard);
    // The stack is only changed by balanced push/pop pairs on this thread,
    // so the top is the table pushed above.
    (result, STACK.with(|s| s.borrow_mut().pop()))
}

/// Runs `f` (which serializes something) with a fresh fd table and returns
/// its result together with the fds collected, in [`FdSlot`] order.
///
/// Every fd serialized inside `f` is duplicated (`F_DUPFD_CLOEXEC`), so the
/// value being serialized keeps its own fds. If `f` fails, the collected
/// fds are still returned (and close when dropped).
///
/// The bytes count as delivered as soon as `f` returns: a value that hands
/// state over to its serialized copy ([`hand_off`]; a connection's
/// read-ahead bytes) gives it up at once, even if `f` failed. [`collect`]
/// tells such values only once the bytes have really arrived.
pub fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let (result, collected) = collect(f);
    let (fds, handoffs) = collected.into_parts();
    handoffs.delivered();
    (result, fds)
}

/// Runs `f` (which deserializes something) with `fds` as the table that
/// [`FdSlot`] indices refer to. Returns `f`'s result and the fds that no
/// slot claimed, so that the caller can decide whether leftovers are an
/// error (they close when dropped).
pub fn provide_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let table = Table::Provide(fds.into_iter().map(Some).collect());
    match with_table(table, f) {
        (result, Some(Table::Provide(left))) => (result, left.into_iter().flatten().collect()),
        (result, _) => (result, Vec::new()),
    }
}

/// Whether serializing an fd right now would succeed: the innermost table
/// on this thread is a [`collect_fds`]/[`collect`] table or a
/// [`fork_move`] walk.
pub fn collecting() -> bool {
    STACK.with(|s| {
        matches!(
            s.borrow().last(),
            Some(Table::Collect { .. } | Table::ForkWalk { .. })
        )
    })
}

/// Whether the innermost table on this thread is a [`fork_move`] walk: the
/// value being serialized moves into a fork child as memory, and its bytes
/// go nowhere. A `Serialize` impl with state to hand over registers a
/// [`Handoff`] and need not write anything else.
pub fn moving_into_fork() -> bool {
    STACK.with(|s| matches!(s.borrow().last(), Some(Table::ForkWalk { .. })))
}

/// The index of an fd in the current table: what the serialized bytes hold
/// in place of the fd.
///
/// Serializes as a `u32`. Use it to write `Serialize`/`Deserialize` by hand
/// for a type that holds an fd among other fields; [`Fd`] and [`owned_fd`]
/// cover the common cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FdSlot(pub u32);

/// Why an fd could not be put into, or taken out of, the table.
///
/// `Debug` prints the message and its cause (`message: cause`), which is
/// what `main() -> Result<(), Box<dyn Error>>` shows a user.
#[non_exhaustive]
pub enum SlotError {
    /// No [`collect_fds`] table is active on this thread.
    NotCollecting,
    /// No [`provide_fds`] table is active on this thread.
    NotProviding,
    /// The slot index is past the end of the table.
    OutOfRange {
        /// The index asked for.
        slot: u32,
        /// How many fds the table holds.
        len: usize,
    },
    /// The slot was already taken by an earlier value.
    AlreadyTaken(u32),
    /// Duplicating the fd failed.
    Dup(std::io::Error),
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::NotCollecting => f.write_str(
                "an fd can only be serialized inside mp_reduction::collect_fds \
                 (pass it as a process argument or send it with its fds)",
            ),
            SlotError::NotProviding => {
                f.write_str("an fd can only be deserialized inside mp_reduction::provide_fds")
            }
            SlotError::OutOfRange { slot, len } => {
                write!(f, "fd slot {slot} out of range: {len} fds were received")
            }
            SlotError::AlreadyTaken(slot) => write!(f, "fd slot {slot} was already taken"),
            SlotError::Dup(_) => f.write_str("could not duplicate the fd"),
        }
    }
}

impl fmt::Debug for SlotError {
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

impl std::error::Error for SlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SlotError::Dup(e) => Some(e),
            _ => None,
        }
    }
}

impl FdSlot {
    /// Duplicates `fd` into the current [`collect_fds`] table and returns its
    /// slot.
    ///
    /// # Errors
    ///
    /// [`SlotError::NotCollecting`] outside `collect_fds`;
    /// [`SlotError::Dup`] if `fcntl(F_DUPFD_CLOEXEC)` fails.
    pub fn collect(fd: BorrowedFd<'_>) -> Result<FdSlot, SlotError> {
        STACK.with(|s| {
            let mut stack = s.borrow_mut();
            let too_many =
                || SlotError::Dup(std::io::Error::other("more than u32::MAX fds in one value"));
            match stack.last_mut() {
                Some(Table::Collect { fds, .. }) => {
                    let dup = fd.try_clone_to_owned().map_err(SlotError::Dup)?;
                    let slot = u32::try_from(fds.len()).map_err(|_| too_many())?;
                    fds.push(dup);
                    Ok(FdSlot(slot))
                }
                Some(Table::ForkWalk { slots, .. }) => {
                    let slot = *slots;
                    *slots = slots.checked_add(1).ok_or_else(too_many)?;
                    Ok(FdSlot(slot))
                }
                _ => Err(SlotError::NotCollecting),
            }
        })
    }

    /// Takes the fd at this slot out of the current [`provide_fds`] table.
    ///
    /// # Errors
    ///
    /// [`SlotError::NotProviding`] outside `provide_fds`;
    /// [`SlotError::OutOfRange`] or [`SlotError::AlreadyTaken`] for a slot
    /// that the received fds do not back (bad peer input).
    pub fn take(self) -> Result<OwnedFd, SlotError> {
        STACK.with(|s| {
            let mut stack = s.borrow_mut();
            let Some(Table::Provide(fds)) = stack.last_mut() else {
                return Err(SlotError::NotProviding);
            };
            let len = fds.len();
            let entry = fds
                .get_mut(self.0 as usize)
                .ok_or(SlotError::OutOfRange { slot: self.0, len })?;
            entry.take().ok_or(SlotError::AlreadyTaken(self.0))
        })
    }
}

/// Serializes `fd` as an [`FdSlot`] in the current [`collect_fds`] table.
///
/// # Errors
///
/// `S::Error::custom` with the [`SlotError`] text when no table is active
/// or the fd cannot be duplicated.
pub fn serialize_fd<S: Serializer>(fd: BorrowedFd<'_>, serializer: S) -> Result<S::Ok, S::Error> {
    let slot = FdSlot::collect(fd).map_err(S::Error::custom)?;
    slot.serialize(serializer)
}

/// Deserializes an [`FdSlot`] and takes its fd from the current
/// [`provide_fds`] table.
///
/// # Errors
///
/// `D::Error::custom` with the [`SlotError`] text for a missing table or a
/// slot that the received fds do not back.
pub fn deserialize_fd<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
    let slot = FdSlot::deserialize(deserializer)?;
    slot.take().map_err(D::Error::custom)
}

/// For `#[serde(with = "mp_reduction::owned_fd")]` on an [`OwnedFd`] field.
pub mod owned_fd {
    use super::*;

    /// See [`serialize_fd`].
    ///
    /// # Errors
    ///
    /// As [`serialize_fd`].
    pub fn serialize<S: Serializer>(fd: &OwnedFd, serializer: S) -> Result<S::Ok, S::Error> {
        super::serialize_fd(fd.as_fd(), serializer)
    }

    /// See [`deserialize_fd`].
    ///
    /// # Errors
    ///
    /// As [`deserialize_fd`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
        super::deserialize_fd(deserializer)
    }
}

/// An owned fd that is a serde type: serialized through the thread-local
/// table (see the crate docs), never as its number.
pub struct Fd(OwnedFd);

impl Fd {
    /// Wraps an owned fd.
    pub fn new(fd: OwnedFd) -> Fd {
        Fd(fd)
    }

    /// Unwraps the owned fd.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(fd)
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0.as_fd(), serializer)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fd, D::Error> {
        deserialize_fd(deserializer).map(Fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// What `main() -> Result<(), Box<dyn Error>>` prints is the message,
    /// never a bare variant name.
    #[test]
    fn debug_shows_the_message() {
        let (a, _b) = UnixStream::pair().unwrap();
        let err = FdSlot::collect(a.as_fd()).unwrap_err();
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with("an fd can only be serialized inside mp_reduction::collect_fds"),
            "{shown}"
        );
        let (taken, _) = provide_fds(Vec::new(), || FdSlot(3).take());
        let shown = format!("{:?}", taken.unwrap_err());
        assert_eq!(shown, "fd slot 3 out of range: 0 fds were received");
    }

    #[derive(Serialize, Deserialize)]
    struct Two {
        name: String,
        #[serde(with = "owned_fd")]
        first: OwnedFd,
        second: Fd,
    }

    #[test]
    fn round_trip_keeps_order_and_identity() {
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        let value = Two {
            name: "x".into(),
            first: a.into(),
            second: Fd::from(OwnedFd::from(b)),
        };
        let (bytes, fds) = collect_fds(|| postcard::to_allocvec(&value));
        let bytes = bytes.unwrap();
        assert_eq!(fds.len(), 2);
        drop(value);
        let (back, left) = provide_fds(fds, || postcard::from_bytes::<Two>(&bytes));
        let back = back.unwrap();
        assert!(left.is_empty());
        assert_eq!(back.name, "x");
        let mut first = UnixStream::from(back.first);
        let mut second = UnixStream::from(back.second.into_inner());
        first.write_all(b"1").unwrap();
        second.write_all(b"2").unwrap();
        let mut buf = [0u8; 1];
        a_peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"1");
        b_peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"2");
    }

    #[test]
    fn serializing_outside_a_table_is_an_error() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = Fd::from(OwnedFd::from(a));
        let err = postcard::to_allocvec(&fd).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeSerCustom), "{err:?}");
        assert!(!collecting());
    }

    #[test]
    fn bad_slots_are_errors_not_panics() {
        // Slot 5 with one fd received.
        let bytes = postcard::to_allocvec(&FdSlot(5)).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let (res, left) = provide_fds(vec![a.into()], || postcard::from_bytes::<Fd>(&bytes));
        assert!(res.is_err());
        assert_eq!(left.len(), 1);
        // The same slot twice.
        let bytes = postcard::to_allocvec(&(FdSlot(0), FdSlot(0))).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let (res, _) = provide_fds(vec![a.into()], || postcard::from_bytes::<(Fd, Fd)>(&bytes));
        assert!(res.is_err());
        // No table at all.
        assert!(matches!(FdSlot(0).take(), Err(SlotError::NotProviding)));
    }

    /// Counts what a value is told about its copy.
    #[derive(Default)]
    struct Told {
        delivered: std::sync::atomic::AtomicUsize,
        adopted: std::sync::atomic::AtomicUsize,
    }

    struct Tell(std::sync::Arc<Told>);

    impl Handoff for Tell {
        fn delivered(&self) {
            self.0
                .delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn adopted(&self) {
            self.0
                .adopted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A value with state to hand over: registers a [`Tell`] whenever it
    /// is serialized inside a table, and holds a [`ForkInterest`].
    struct Stateful(std::sync::Arc<Told>, #[allow(dead_code)] ForkInterest);

    impl Serialize for Stateful {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            hand_off(Box::new(Tell(self.0.clone()))).map_err(S::Error::custom)?;
            if moving_into_fork() {
                return serializer.serialize_unit();
            }
            7u8.serialize(serializer)
        }
    }

    fn counts(told: &Told) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (told.delivered.load(Relaxed), told.adopted.load(Relaxed))
    }

    #[test]
    fn handoffs_are_told_only_what_happened() {
        let told = std::sync::Arc::new(Told::default());
        let value = (Stateful(told.clone(), ForkInterest::new()), 1u8);
        // Outside a table: an error, and nobody is told anything.
        assert!(postcard::to_allocvec(&value).is_err());
        // collect: told once delivered, not before; dropped: never.
        let (bytes, collected) = collect(|| postcard::to_allocvec(&value));
        assert_eq!(bytes.unwrap(), [7, 1]);
        let (fds, handoffs) = collected.into_parts();
        assert!(fds.is_empty());
        assert_eq!((handoffs.len(), counts(&told)), (1, (0, 0)));
        handoffs.delivered();
        assert_eq!(counts(&told), (1, 0));
        let (_, collected) = collect(|| postcard::to_allocvec(&value));
        drop(collected);
        assert_eq!(counts(&told), (1, 0));
        // collect_fds: delivered as soon as the closure returns.
        let _ = collect_fds(|| postcard::to_allocvec(&value));
        assert_eq!(counts(&told), (2, 0));
        // fork_move: a walk that writes nothing; the child adopts.
        let handoffs = fork_move(&value);
        assert_eq!(handoffs.len(), 1);
        handoffs.adopted_in_fork_child();
        assert_eq!(counts(&told), (2, 1));
        assert!(!collecting() && !moving_into_fork());
    }

    #[test]
    fn fork_move_walks_only_while_some_value_has_state() {
        // (Other tests may hold a ForkInterest at the same time, so only
        // the "some value has state" half is certain here.)
        let told = std::sync::Arc::new(Told::default());
        let value = Stateful(told.clone(), ForkInterest::new());
        assert!(ForkInterest::any());
        // Fds are not duplicated in a walk: the slots back nothing.
        let (a, _b) = UnixStream::pair().unwrap();
        let with_fd = (&value, Fd::from(OwnedFd::from(a)));
        assert_eq!(fork_move(&with_fd).len(), 1);
    }

    #[test]
    fn tables_nest_and_unwind() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = Fd::from(OwnedFd::from(a));
        let ((inner, outer_bytes), outer) = collect_fds(|| {
            let inner = collect_fds(|| postcard::to_allocvec(&fd).unwrap()).1.len();
            (inner, postcard::to_allocvec(&(&fd, &fd)).unwrap())
        });
        assert_eq!(inner, 1);
        assert_eq!(outer.len(), 2);
        assert_eq!(outer_bytes, vec![0, 1]);
        let caught = std::panic::catch_unwind(|| collect_fds(|| panic!("boom")));
        assert!(caught.is_err());
        assert!(
            !collecting(),
            "a panicking closure must not leave its table behind"
        );
    }
}

/// The README's examples, run as doc tests so the README cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
