//! Entry points for `mp-fuzz` (not part of the API).
//!
//! A queue's shared memory and side channel are peer input: any process
//! holding the queue can write anything there. The target scribbles over
//! the ring's header and bytes and sends datagrams of its own on the side
//! channel, then runs the operations a process would; none may panic,
//! wait past its timeout, or allocate beyond what the input pays for.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::handle::Core;
use crate::ring::scribble;
use crate::{Queue, QueueBuilder, QueueError};

/// How an input is read (all integers little-endian):
///
/// - byte 0: bit 0 = recover first (what taking the lock from a dead
///   owner runs), bit 1 = shut down before the last round, bits 2-3 = the
///   number of rounds of operations (1-4);
/// - bytes 1-2: how many bytes scribble over the header;
/// - those bytes, then 4096 bytes (or what is left) for the ring's area;
/// - the rest: datagrams, each `len: u8, kind: u8, bytes[len]`, sent on
///   the side channel; `kind` bit 0 attaches a memfd holding the bytes,
///   bit 1 seals it, bit 2 makes it sparse (1 MiB, nothing written).
pub fn shared_state(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((scribble_len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let scribble_len = usize::from(u16::from_le_bytes(*scribble_len)).min(rest.len());
    let (header_bytes, rest) = rest.split_at(scribble_len);
    let ring_len = rest.len().min(4096);
    let (ring_bytes, mut dgrams) = rest.split_at(ring_len);
    // The process-wide heap keeps its arenas (and their fds) for reuse:
    // make them before counting.
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| drop(QueueBuilder::new().ring_bytes(4096).queue::<u8>()));
    let fds_before = open_fds();

    let bytes_q: Queue<Vec<u8>> = match QueueBuilder::new().maxsize(8).ring_bytes(4096).queue() {
        Ok(q) => q,
        Err(_) => return,
    };
    let core = bytes_q.core().clone();
    let inner = &core.inner;
    scribble(inner.header(), header_bytes);
    inner.parts.bytes.write(0, ring_bytes);
    while let Some((&len, more)) = dgrams.split_first() {
        let Some((&kind, more)) = more.split_first() else {
            break;
        };
        let n = usize::from(len).min(more.len());
        send_raw(inner.parts.side.tx.as_fd(), &more[..n], kind);
        dgrams = &more[n..];
    }
    if flags & 1 != 0 {
        let _g = inner.lock();
        inner.ring_for_hooks().recover();
    }
    // The same queue, as seen by a process with another item type.
    let tuples: Queue<(u32, String)> = Queue::from_core_for_fuzz(Core::clone(&core));
    let short = Some(Duration::from_millis(1));
    let rounds = 1 + (flags >> 2 & 3);
    for round in 0..rounds {
        if round + 1 == rounds && flags & 2 != 0 {
            bytes_q.shutdown(round % 2 == 1);
        }
        for _ in 0..4 {
            check(bytes_q.get(true, short).map(|v| v.len()));
            check(tuples.get(false, None).map(|_| 0));
        }
        check(bytes_q.put(&vec![round; 100], false, None).map(|()| 0));
        check(bytes_q.put(&vec![round; 5000], true, short).map(|()| 0));
        let _ = (bytes_q.qsize(), bytes_q.empty(), bytes_q.full());
    }
    // Whatever happened, a repaired ring still carries an item.
    {
        let _g = inner.lock();
        inner.ring_for_hooks().repair();
    }
    check(bytes_q.put(&vec![7; 10], true, short).map(|()| 0));
    // Nothing stays behind: an immediate shutdown makes the feeder (if a
    // put started one) drop what it holds, and then it ends.
    bytes_q.shutdown(true);
    bytes_q.close();
    let _ = bytes_q.join_thread();
    drop((bytes_q, tuples, core));
    if let (Some(before), Some(after)) = (fds_before, open_fds()) {
        assert!(
            after <= before,
            "fds leaked: {before} before, {after} after"
        );
    }
}

/// How many fds this process has open (`None` without `/proc`).
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Every outcome is acceptable but a panic; items are bounded by the
/// ring and by what a memfd really holds.
fn check(result: Result<usize, QueueError>) {
    if let Ok(len) = result {
        assert!(len <= 1 << 20, "an item bigger than anything sent");
    }
}

/// One datagram of `bytes`, with a memfd when `kind` says so.
fn send_raw(tx: BorrowedFd<'_>, bytes: &[u8], kind: u8) {
    let memfd: Option<OwnedFd> = if kind & 1 != 0 {
        memfd_of(bytes, kind)
    } else {
        None
    };
    let fds: Vec<BorrowedFd<'_>> = memfd.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        let _ = control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    let _ = rustix::net::sendmsg(
        tx,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    );
}

fn memfd_of(bytes: &[u8], kind: u8) -> Option<OwnedFd> {
    let fd =
        rustix::fs::memfd_create("fuzz", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).ok()?;
    if kind & 4 != 0 {
        rustix::fs::ftruncate(&fd, 1 << 20).ok()?;
    } else {
        rustix::io::pwrite(&fd, bytes, 0).ok()?;
    }
    if kind & 2 != 0 {
        let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
        rustix::fs::fcntl_add_seals(&fd, all).ok()?;
    }
    Some(fd)
}
