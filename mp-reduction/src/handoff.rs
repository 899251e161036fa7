//! Handing state over to a value's copy in another process.
//!
//! Some values hold state beside their fds that only one copy may keep: a
//! connection's read-ahead bytes are data already taken from the fd, and
//! they must reach the reader exactly once. When such a value is
//! serialized, its copy carries the state along, and the original must give
//! it up, but only once the copy has really arrived: a failed send or a
//! child that could not be started must lose nothing. The value registers a
//! [`Handoff`] while it is serialized ([`hand_off`]); whoever moves the
//! bytes calls [`Handoffs::delivered`] once they have arrived, or drops the
//! [`Handoffs`] when they never will.
//!
//! A fork moves values as memory, not bytes: [`fork_move`] walks a value
//! that is about to move into a fork child, gathering its handoffs; the
//! parent calls [`Handoffs::delivered`] after the fork and the child
//! [`Handoffs::adopted_in_fork_child`].

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::{STACK, SlotError, Table, walk, with_table};

/// What a serialized value asks to be told about its copy: a value with
/// state that only one copy may keep (a connection's read-ahead bytes)
/// registers one with [`hand_off`] while it is serialized; whoever moves
/// the bytes tells it, through [`Handoffs`], once the copy has arrived.
pub trait Handoff: Send {
    /// The copy arrived (the bytes were delivered, or the value moved into
    /// a fork child): the original gives up what the copy took with it.
    fn delivered(&self);

    /// Runs in a fork child on the child's copy of the value, instead of
    /// [`delivered`](Handoff::delivered): this copy is the one that moved,
    /// and keeps its state. Default: nothing.
    fn adopted(&self) {}
}

/// Registers `handoff` with the innermost [`collect`] table or
/// [`fork_move`] walk on this thread. A [`collect_fds`](crate::collect_fds)
/// table runs it (as delivered) as soon as its closure returns.
///
/// # Errors
///
/// [`SlotError::NotCollecting`] outside such a table: the value is not
/// being moved anywhere, and the caller's serializer should fail.
pub fn hand_off(handoff: Box<dyn Handoff>) -> Result<(), SlotError> {
    STACK.with(|s| match s.borrow_mut().last_mut() {
        Some(Table::Collect { handoffs, .. } | Table::ForkWalk { handoffs, .. }) => {
            handoffs.push(handoff);
            Ok(())
        }
        _ => Err(SlotError::NotCollecting),
    })
}

/// The handoffs of one serialized value, waiting for its copy's fate.
/// Dropping them without [`delivered`](Handoffs::delivered) means the copy
/// never arrived: every original keeps its state.
#[derive(Default)]
pub struct Handoffs(Vec<Box<dyn Handoff>>);

impl Handoffs {
    /// The copy arrived: each original gives up what it handed over.
    pub fn delivered(self) {
        for handoff in &self.0 {
            handoff.delivered();
        }
    }

    /// In a fork child, on the child's copy of these handoffs (the list
    /// [`fork_move`] gathered before the fork): the child's values keep
    /// their state.
    pub fn adopted_in_fork_child(self) {
        for handoff in &self.0 {
            handoff.adopted();
        }
    }

    /// Whether no value registered a handoff.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many handoffs were registered.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Handoffs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoffs")
            .field("len", &self.0.len())
            .finish()
    }
}

/// What [`collect`] gathered: the duplicated fds, in [`FdSlot`] order, and
/// the handoffs of the values serialized.
///
/// [`FdSlot`]: crate::FdSlot
#[derive(Debug, Default)]
pub struct Collected {
    fds: Vec<OwnedFd>,
    handoffs: Handoffs,
}

impl Collected {
    /// The fds, in slot order.
    pub fn fds(&self) -> &[OwnedFd] {
        &self.fds
    }

    /// The fds and the handoffs, apart.
    pub fn into_parts(self) -> (Vec<OwnedFd>, Handoffs) {
        (self.fds, self.handoffs)
    }
}

/// Runs `f` (which serializes something) with a fresh fd table, as
/// [`collect_fds`](crate::collect_fds) does, and returns its result with
/// the fds and the handoffs gathered. Call [`Handoffs::delivered`] once the
/// bytes and fds have reached the other side; drop them if they never do.
///
/// # Examples
///
/// ```
/// use std::os::fd::OwnedFd;
/// use mp_reduction::{collect, Fd};
///
/// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
/// let value = Fd::from(OwnedFd::from(a));
/// let (bytes, collected) = collect(|| postcard::to_allocvec(&value));
/// let (fds, handoffs) = collected.into_parts();
/// assert_eq!((bytes.unwrap().len(), fds.len()), (1, 1));
/// // ... send the bytes and the fds ...
/// handoffs.delivered();
/// # std::io::Result::Ok(())
/// ```
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Collected) {
    let table = Table::Collect {
        fds: Vec::new(),
        handoffs: Vec::new(),
    };
    match with_table(table, f) {
        (result, Some(Table::Collect { fds, handoffs })) => (
            result,
            Collected {
                fds,
                handoffs: Handoffs(handoffs),
            },
        ),
        (result, _) => (result, Collected::default()),
    }
}

/// How many [`ForkInterest`]s exist in this process.
static INTERESTS: AtomicUsize = AtomicUsize::new(0);

/// Held by a value while it has state that a fork child must adopt when
/// the value moves into it (a connection holding read-ahead bytes): while
/// none exists, [`fork_move`] has nothing to find and returns at once.
#[derive(Debug)]
pub struct ForkInterest(());

impl ForkInterest {
    /// Registers one more value with state to hand over.
    #[allow(
        clippy::new_without_default,
        reason = "creating one has an effect: it is not a default value"
    )]
    pub fn new() -> ForkInterest {
        INTERESTS.fetch_add(1, Ordering::Relaxed);
        ForkInterest(())
    }

    /// Whether any value in this process holds one.
    pub fn any() -> bool {
        INTERESTS.load(Ordering::Relaxed) > 0
    }
}

impl Drop for ForkInterest {
    fn drop(&mut self) {
        INTERESTS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Walks `value`, which is about to move into a fork child as memory (the
/// fork start method's arguments), and gathers the handoffs of the values
/// inside it. Nothing is written and no fd is duplicated; a `Serialize`
/// impl can tell with [`moving_into_fork`](crate::moving_into_fork).
///
/// After the fork, the parent calls [`Handoffs::delivered`] and the child
/// [`Handoffs::adopted_in_fork_child`] on its copy; if the fork fails, drop
/// them. When no [`ForkInterest`] exists, this returns an empty list
/// without walking anything. A serialization error stops the walk; the
/// handoffs gathered until then are returned.
pub fn fork_move<T: Serialize + ?Sized>(value: &T) -> Handoffs {
    if !ForkInterest::any() {
        return Handoffs::default();
    }
    let table = Table::ForkWalk {
        slots: 0,
        handoffs: Vec::new(),
    };
    match with_table(table, || walk::walk(value)) {
        (_, Some(Table::ForkWalk { handoffs, .. })) => Handoffs(handoffs),
        _ => Handoffs::default(),
    }
}
