//! A connection that other handles may read too: what a handle owes its
//! copies (after a fork, or serialized to travel) before it reads, and the
//! serde impls that carry read-ahead bytes along with the fd.
//!
//! The rule (see [`Connection`]'s docs): bytes read ahead are never
//! delivered twice. A copy that travels takes them along, and the original
//! gives them up when the copy has arrived (its [`Handoff`] is delivered).
//! Across a fork they stay with the parent's handle, unless the handle was
//! moved into the child as a fork start method argument (the child's copy
//! of the handoff is adopted).

use std::sync::atomic::{AtomicU64, AtomicUsize};

use mp_reduction::{FdSlot, Handoff, SlotError};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

/// What the copies of one handle tell it, shared with their handoffs.
#[derive(Debug, Default)]
pub(super) struct HandoffState {
    /// Stream position up to which read-ahead bytes went with a delivered
    /// copy (0: nothing to give up).
    given_up_to: AtomicU64,
    /// The fork generation at which a fork child adopted this handle's
    /// read-ahead (0: never). Only ever set in a child's copy.
    adopted_at: AtomicU64,
    /// Handoffs neither delivered nor dropped yet (an encoded
    /// [`Parcel`](crate::Parcel) not sent yet): the read-ahead is promised
    /// to that copy, so it is neither received here nor promised again.
    outstanding: AtomicUsize,
}

impl HandoffState {
    /// Whether the read-ahead is promised to a copy that has not arrived.
    pub(super) fn promised(&self) -> bool {
        self.outstanding.load(Ordering::Relaxed) > 0
    }
}

/// Registered when a handle holding read-ahead is serialized.
struct ReadAheadHandoff {
    state: Arc<HandoffState>,
    /// The stream position just past the bytes that travelled.
    up_to: u64,
}

impl ReadAheadHandoff {
    fn new(state: Arc<HandoffState>, up_to: u64) -> ReadAheadHandoff {
        state.outstanding.fetch_add(1, Ordering::Relaxed);
        ReadAheadHandoff { state, up_to }
    }
}

impl Drop for ReadAheadHandoff {
    /// Delivered, adopted or abandoned: no longer outstanding.
    fn drop(&mut self) {
        self.state.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handoff for ReadAheadHandoff {
    fn delivered(&self) {
        self.state
            .given_up_to
            .fetch_max(self.up_to, Ordering::Relaxed);
    }

    fn adopted(&self) {
        self.state
            .adopted_at
            .store(fork::generation(), Ordering::Relaxed);
    }
}

/// What a handle must do before it reads again, worked out without
/// changing it (so that `&self` methods can see it too).
pub(super) struct Pending {
    generation: u64,
    /// A fork happened since the handle last looked.
    pub(super) forked: bool,
    /// Buffered bytes (from `start`) that are another copy's.
    pub(super) give_up: usize,
    /// Those bytes end inside a message.
    pub(super) lost_boundary: bool,
}

impl Connection {
    /// `None` (the common case: two loads) when nothing happened since the
    /// handle last read; otherwise what it owes its copies.
    pub(super) fn pending(&self) -> Option<Pending> {
        let generation = fork::generation();
        let state = self.handoff.get();
        let given_up_to = state.map_or(0, |s| s.given_up_to.load(Ordering::Relaxed));
        if generation == self.generation && given_up_to == 0 {
            return None;
        }
        let io = self.io.as_ref()?;
        let buffered = self.end - self.start;
        let consumed = io.pos - buffered as u64;
        let mut keep_from = consumed;
        let forked = generation != self.generation;
        if forked {
            let adopted_at = state.map_or(0, |s| s.adopted_at.load(Ordering::Relaxed));
            // A fork child's copy of a handle it did not adopt: what was
            // read ahead before the fork is the parent's.
            if fork::became_child_at() > self.generation.max(adopted_at) {
                keep_from = io.pos;
            }
        }
        keep_from = keep_from.max(given_up_to.min(io.pos));
        let give_up = (keep_from - consumed) as usize;
        let lost_boundary =
            give_up > 0 && !frame::whole_messages(&self.rbuf[self.start..self.start + give_up]);
        Some(Pending {
            generation,
            forked,
            give_up,
            lost_boundary,
        })
    }

    /// Settles what [`pending`](Connection::pending) found: after a fork
    /// the handle reads exactly; bytes and fds that are another copy's are
    /// dropped (the fds closed: the other copy has its own).
    pub(super) fn sync(&mut self) {
        let Some(p) = self.pending() else { return };
        if p.forked {
            *self.exact.get_mut() = true;
        }
        self.generation = p.generation;
        if let Some(state) = self.handoff.get() {
            state.given_up_to.store(0, Ordering::Relaxed);
        }
        self.consume(p.give_up);
        self.prune_batches();
        self.lost_boundary |= p.lost_boundary;
        self.note_read_ahead();
    }

    /// Keeps the [`ForkInterest`] in step with whether read-ahead bytes or
    /// fds are held.
    pub(super) fn note_read_ahead(&mut self) {
        let holds =
            self.end > self.start || self.io.as_ref().is_some_and(|io| !io.batches.is_empty());
        if holds != self.interest.is_some() {
            self.interest = holds.then(ForkInterest::new);
        }
    }
}

/// How a [`Connection`] is written inside a serde value, with the read-ahead
/// that travels with it. The fds are `mp_reduction::FdSlot`s: they travel
/// beside the bytes.
#[derive(Serialize)]
struct WireOut<'a> {
    fd: FdSlot,
    readable: bool,
    writable: bool,
    write_fd: Option<FdSlot>,
    read_ahead: Bytes<'a>,
    batches: Vec<WireBatch>,
    lost_boundary: bool,
}

/// [`WireOut`] as it is read back.
#[derive(Deserialize)]
struct WireIn {
    fd: FdSlot,
    readable: bool,
    writable: bool,
    write_fd: Option<FdSlot>,
    read_ahead: ByteBuf,
    batches: Vec<WireBatch>,
    lost_boundary: bool,
}

/// Fds that arrived with the read-ahead byte at `offset`.
#[derive(Serialize, Deserialize)]
struct WireBatch {
    offset: u64,
    fds: Vec<FdSlot>,
    truncated: bool,
}

/// Bytes written with `serialize_bytes` (one copy, not a byte at a time).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Bytes read with `deserialize_byte_buf`.
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<ByteBuf, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// Serializable only inside `mp_reduction::collect` (or `collect_fds`):
/// for example as a process argument of `mp-context`, or inside a value
/// given to [`Connection::send`]. The fds are duplicated into the table;
/// read-ahead bytes (and fds that came with them) go along, and this handle
/// gives them up once the copy is delivered. Both handles read exactly from
/// then on. A closed connection is refused with a serde error.
///
/// Inside `mp_reduction::fork_move` (the fork start method), nothing is
/// written: the handle only registers its read-ahead for the child.
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let Some(io) = self.io.as_ref() else {
            if mp_reduction::moving_into_fork() {
                return serializer.serialize_unit();
            }
            return Err(S::Error::custom("handle is closed"));
        };
        // This handle and its copy may both read the fd from now on.
        self.exact.store(true, Ordering::Relaxed);
        let pending = self.pending();
        let give_up = pending.as_ref().map_or(0, |p| p.give_up);
        let lost_boundary = self.lost_boundary || pending.as_ref().is_some_and(|p| p.lost_boundary);
        // Read-ahead already promised to a copy on its way stays promised
        // to that one.
        let promised = self.handoff.get().is_some_and(|s| s.promised());
        let read_ahead = match promised {
            false => &self.rbuf[self.start + give_up..self.end],
            true => &[],
        };
        let from = io.pos - read_ahead.len() as u64;
        let live = || {
            io.batches
                .iter()
                .filter(move |b| !promised && b.pos >= from)
        };
        if !read_ahead.is_empty() || live().next().is_some() {
            let state = Arc::clone(self.handoff.get_or_init(Arc::default));
            let handoff = ReadAheadHandoff::new(state, io.pos);
            mp_reduction::hand_off(Box::new(handoff)).map_err(S::Error::custom)?;
        }
        if mp_reduction::moving_into_fork() {
            return serializer.serialize_unit();
        }
        let collect = |fd: &OwnedFd| FdSlot::collect(fd.as_fd());
        let fd = collect(&io.fd).map_err(S::Error::custom)?;
        let write_fd = match &io.write {
            Some(w) => Some(collect(&w.fd).map_err(S::Error::custom)?),
            None => None,
        };
        let batches = live()
            .map(|b| {
                Ok(WireBatch {
                    offset: b.pos - from,
                    fds: b
                        .fds
                        .iter()
                        .map(collect)
                        .collect::<Result<_, SlotError>>()?,
                    truncated: b.truncated,
                })
            })
            .collect::<Result<Vec<_>, SlotError>>()
            .map_err(S::Error::custom)?;
        WireOut {
            fd,
            readable: self.readable,
            writable: self.writable,
            write_fd,
            read_ahead: Bytes(read_ahead),
            batches,
            lost_boundary,
        }
        .serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds` (as
/// [`Connection::recv`] and `mp-context` do). The copy receives the
/// read-ahead that came with it first, and reads exactly.
impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Connection, D::Error> {
        let wire = WireIn::deserialize(deserializer)?;
        let fd = wire.fd.take().map_err(D::Error::custom)?;
        let mut conn = match wire.write_fd {
            Some(slot) => {
                let write = slot.take().map_err(D::Error::custom)?;
                if !(wire.readable && wire.writable) {
                    return Err(D::Error::custom(
                        "a connection with a write fd must be duplex",
                    ));
                }
                Connection::from_fd_pair(fd, write).map_err(D::Error::custom)?
            }
            None => Connection::new(fd, wire.readable, wire.writable).map_err(D::Error::custom)?,
        };
        let read_ahead = wire.read_ahead.0;
        if read_ahead.len() > READ_AHEAD {
            return Err(D::Error::custom(format!(
                "a connection's read-ahead is at most {READ_AHEAD} bytes, not {}",
                read_ahead.len()
            )));
        }
        let mut batches = VecDeque::with_capacity(wire.batches.len());
        let mut next = 0;
        for batch in wire.batches {
            if batch.offset < next || batch.offset >= read_ahead.len() as u64 {
                return Err(D::Error::custom(
                    "the fds of a connection's read-ahead are out of order or out of range",
                ));
            }
            next = batch.offset + 1;
            let fds = batch
                .fds
                .into_iter()
                .map(FdSlot::take)
                .collect::<Result<Vec<_>, _>>()
                .map_err(D::Error::custom)?;
            batches.push_back(FdBatch {
                pos: batch.offset,
                fds,
                truncated: batch.truncated,
            });
        }
        *conn.exact.get_mut() = true;
        conn.lost_boundary = wire.lost_boundary;
        if !read_ahead.is_empty() {
            conn.rbuf = vec![0; READ_AHEAD];
            conn.rbuf[..read_ahead.len()].copy_from_slice(&read_ahead);
            conn.end = read_ahead.len();
        }
        if let Some(io) = conn.io.as_mut() {
            io.pos = read_ahead.len() as u64;
            io.batches = batches;
        }
        conn.note_read_ahead();
        Ok(conn)
    }
}
