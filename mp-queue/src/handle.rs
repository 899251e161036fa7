//! [`Core`]: one handle on a queue (what `Queue`, `JoinableQueue` and
//! `SimpleQueue` hold), how a queue is made, and how it travels (serde
//! through mp-reduction: the header's and ring's blocks, whose arena fds
//! travel beside the bytes, and both ends of the side channel).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mp_heap::{Shared, SharedBuffer};
use rustix::net::SocketType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::{Inner, Parts};
use crate::error::{QueueError, Result};
use crate::feeder;
use crate::ring::{Header, Kind, Ring};
use crate::shm::RingBytes;
use crate::side::Side;

/// The ring size of a queue made without [`QueueBuilder::ring_bytes`].
///
/// [`QueueBuilder::ring_bytes`]: crate::QueueBuilder::ring_bytes
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;
/// The smallest ring.
pub const MIN_RING_BYTES: usize = 4096;
/// The largest ring.
pub const MAX_RING_BYTES: usize = 1 << 30;
/// Items up to this many bytes (encoded) go in the ring itself, within a
/// quarter of the ring; bigger ones go through a memfd.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// `SEM_VALUE_MAX`: the `maxsize` of an unbounded queue (as CPython's).
pub const SEM_VALUE_MAX: usize = i32::MAX as usize;

/// A handle on a queue; clones share it.
pub(crate) struct Core {
    pub(crate) inner: Arc<Inner>,
}

impl Core {
    fn from_inner(inner: Inner) -> Core {
        inner.handles.fetch_add(1, Ordering::AcqRel);
        Core {
            inner: Arc::new(inner),
        }
    }

    /// A new queue of `kind`.
    pub(crate) fn new(
        kind: Kind,
        maxsize: usize,
        ring_bytes: usize,
        type_name: &'static str,
    ) -> Result<Core> {
        let maxsize = match maxsize {
            0 => SEM_VALUE_MAX,
            n if n > SEM_VALUE_MAX => {
                return Err(QueueError::InvalidArgument(
                    "maxsize is at most SEM_VALUE_MAX (2^31 - 1)",
                ));
            }
            n => n,
        };
        if !ring_bytes.is_power_of_two() || !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&ring_bytes)
        {
            return Err(QueueError::InvalidArgument(
                "ring_bytes is a power of two from 4096 to 2^30",
            ));
        }
        let inline_max = Ring::inline_max_for(ring_bytes, INLINE_LIMIT);
        let header = Shared::new(Header::new(
            kind,
            maxsize as u32,
            ring_bytes,
            inline_max as u32,
            type_hash(type_name),
        ))?;
        let bytes = RingBytes::new(SharedBuffer::new(ring_bytes)?);
        let side = Side::new()?;
        let parts = Parts {
            header,
            bytes,
            side,
        };
        Ok(Core::from_inner(Inner::new(parts, kind, type_name)))
    }

    /// Rebuilds a handle from what [`Serialize`] wrote, checking it as a
    /// peer's input.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
        kind: Kind,
        type_name: &'static str,
        expected: impl Fn() -> String,
    ) -> std::result::Result<Core, D::Error> {
        use serde::de::Error as _;
        let (header, buf, tx, rx) = <(
            Shared<Header>,
            SharedBuffer,
            mp_reduction::Fd,
            mp_reduction::Fd,
        )>::deserialize(deserializer)?;
        let wrong = |why: String| {
            D::Error::custom(QueueError::WrongQueue {
                expected: expected(),
                why,
            })
        };
        let len = buf.len();
        if !len.is_power_of_two() || !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&len) {
            return Err(wrong(
                "its ring is not a power of two between 4 KiB and 1 GiB".into(),
            ));
        }
        header
            .check(kind, len, type_hash(type_name))
            .map_err(&wrong)?;
        let (tx, rx): (OwnedFd, OwnedFd) = (tx.into(), rx.into());
        for fd in [&tx, &rx] {
            match rustix::net::sockopt::socket_type(fd) {
                Ok(SocketType::DGRAM) => {}
                _ => return Err(wrong("its side channel is not a datagram socket".into())),
            }
        }
        let parts = Parts {
            header,
            bytes: RingBytes::new(buf),
            side: Side { tx, rx },
        };
        Ok(Core::from_inner(Inner::new(parts, kind, type_name)))
    }
}

impl Clone for Core {
    fn clone(&self) -> Core {
        self.inner.handles.fetch_add(1, Ordering::AcqRel);
        Core {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            feeder::last_handle_dropped(&self.inner);
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.inner.header();
        f.debug_struct("Queue")
            .field("kind", &self.inner.kind)
            .field("maxsize", &h.maxsize())
            .field("qsize", &h.accepted())
            .field("ring_bytes", &self.inner.parts.bytes.len())
            .finish()
    }
}

/// An fd to serialize through mp-reduction's table.
struct FdRef<'a>(BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        mp_reduction::serialize_fd(self.0, serializer)
    }
}

/// Serializable only inside `mp_reduction::collect_fds` (process
/// arguments, mp-conn messages): the blocks and the side channel's fds.
impl Serialize for Core {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let parts = &self.inner.parts;
        (
            &parts.header,
            parts.bytes.buffer(),
            FdRef(parts.side.tx.as_fd()),
            FdRef(parts.side.rx.as_fd()),
        )
            .serialize(serializer)
    }
}

/// FNV-1a of the item type's name: tells a queue received as a queue of
/// another type (within one build of the program, where names agree).
fn type_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
