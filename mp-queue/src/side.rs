//! The side channel: items that hold fds, and items too big for the ring,
//! travel as one datagram each on a unix `SOCK_DGRAM` socketpair, with a
//! MARKER entry in the ring naming the datagram's sequence number.
//!
//! A datagram arrives whole or not at all, so a process that dies while
//! sending or receiving one cannot leave the channel in the middle of a
//! message (a byte stream could: the next reader would start inside it).
//! Datagrams are sent and received under the ring's lock: a producer takes
//! a sequence number, sends the datagram, then writes its marker; a
//! consumer that pops marker `s` takes datagram `s`, discarding older ones
//! (sent by a producer that died before writing their marker), and leaving
//! newer ones where they are.
//!
//! ```text
//! datagram: offset  size  field (little-endian)
//!           0       4     magic b"MPQD"
//!           4       4     flags: bit 0 = the payload is in a memfd,
//!                         bit 1 = a pooled one (see `pool`)
//!           8       8     seq: the marker's sequence number
//!           16      8     len: payload bytes
//!           24      4     the item's own fds (SCM_RIGHTS, first)
//!           28      4     a pooled file's generation, else 0
//!           32      len   the payload (when not in a memfd)
//! SCM_RIGHTS: the item's fds, then the memfd if bit 0 is set
//! ```
//!
//! A memfd payload is written, then sealed against growing, shrinking and
//! writing (`F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE`), before it is
//! sent; the receiver checks the seals, the size and that the pages are
//! really there (a sparse file would cost its sender nothing and the
//! receiver all of its size), then copies it out with `pread(2)`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// `b"MPQD"`.
const MAGIC: u32 = u32::from_le_bytes(*b"MPQD");
/// Bytes in front of a datagram's payload.
pub(crate) const DGRAM_HEADER: usize = 32;
/// Datagram flag: the payload is in the memfd that comes last.
const IN_MEMFD: u32 = 1;
/// Datagram flag: that memfd is a producer's pooled file.
const POOLED: u32 = 2;

/// The largest payload carried inside a datagram; bigger ones go in a
/// memfd. Datagrams count whole against the socket's send buffer (208 KiB
/// by default), so a few dozen fit at once.
pub(crate) const DGRAM_INLINE_MAX: usize = 4096;

/// The most fds one datagram carries (Linux's `SCM_MAX_FD`); an item may
/// hold one fewer when its payload needs a memfd.
pub(crate) const SCM_MAX_FD: usize = 253;

/// The send buffer asked for (the kernel caps it at `wmem_max`): room for
/// more datagrams in flight before a producer's feeder has to wait.
const SEND_BUFFER: usize = 1 << 20;

/// Both ends of the datagram socketpair: producers send on `tx`,
/// consumers receive on `rx` (every process holds both).
#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) tx: OwnedFd,
    pub(crate) rx: OwnedFd,
}

/// An item's payload, as it goes on the side channel.
#[derive(Debug)]
pub(crate) enum Payload<'a> {
    /// In the datagram, from these parts.
    Inline(&'a [&'a [u8]]),
    /// In a sealed memfd of this many bytes.
    Memfd(&'a OwnedFd, u64),
    /// In a pooled memfd: this many bytes at its payload offset, this
    /// generation.
    Pooled(&'a OwnedFd, u64, u32),
}

/// What the side channel gave for a marker.
#[derive(Debug)]
pub(crate) enum Received {
    /// The item's datagram: its fds, and its payload or the memfd holding
    /// it (read it with [`read_memfd`] outside the lock).
    Item {
        fds: Vec<OwnedFd>,
        payload: ReceivedPayload,
    },
    /// No datagram for this marker: it went with a consumer that died
    /// after taking it, or a peer wrote a marker it never sent.
    Missing,
}

/// A received item's payload.
#[derive(Debug)]
pub(crate) enum ReceivedPayload {
    Bytes(Vec<u8>),
    Memfd(OwnedFd, u64),
    Pooled(OwnedFd, u64, u32),
}

/// Why a datagram could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SideError {
    /// A datagram no queue of ours sends, or whose fds did not all arrive.
    #[error("{0}")]
    Corrupt(&'static str),
    /// The system call failed.
    #[error("the side channel's socket failed")]
    Io(#[source] io::Error),
}

impl Side {
    /// A new socketpair, close-on-exec.
    pub(crate) fn new() -> io::Result<Side> {
        let (tx, rx) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // More room is a nicety (fewer waits in feeders), not a need.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&tx, SEND_BUFFER);
        Ok(Side { tx, rx })
    }

    /// Sends item `seq`'s datagram without waiting: `Ok(false)` if the
    /// socket has no room now (the caller tries again once consumers made
    /// some).
    pub(crate) fn send(
        &self,
        seq: u64,
        payload: &Payload<'_>,
        item_fds: &[BorrowedFd<'_>],
    ) -> io::Result<bool> {
        let (flags, len, generation, parts): (u32, u64, u32, &[&[u8]]) = match payload {
            Payload::Inline(parts) => (0, parts.iter().map(|p| p.len() as u64).sum(), 0, parts),
            Payload::Memfd(_, len) => (IN_MEMFD, *len, 0, &[]),
            Payload::Pooled(_, len, generation) => (IN_MEMFD | POOLED, *len, *generation, &[]),
        };
        let mut header = [0u8; DGRAM_HEADER];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&flags.to_le_bytes());
        header[8..16].copy_from_slice(&seq.to_le_bytes());
        header[16..24].copy_from_slice(&len.to_le_bytes());
        header[24..28].copy_from_slice(&(item_fds.len() as u32).to_le_bytes());
        header[28..32].copy_from_slice(&generation.to_le_bytes());
        let mut fds: Vec<BorrowedFd<'_>> = item_fds.to_vec();
        if let Payload::Memfd(fd, _) | Payload::Pooled(fd, _, _) = payload {
            fds.push(fd.as_fd());
        }
        let mut iov = Vec::with_capacity(1 + parts.len());
        iov.push(IoSlice::new(&header));
        iov.extend(parts.iter().map(|p| IoSlice::new(p)));
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        loop {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(io::Error::other("control buffer too small"));
            }
            match rustix::net::sendmsg(
                &self.tx,
                &iov,
                &mut control,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(_) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes the datagram of marker `seq` (under the ring's lock, never
    /// waiting): older datagrams are discarded (their fds close), a newer
    /// one at the front means this marker's is gone.
    pub(crate) fn recv(&self, seq: u64) -> Result<Received, SideError> {
        loop {
            let mut peek = [0u8; DGRAM_HEADER];
            let n =
                match rustix::net::recv(&self.rx, &mut peek, RecvFlags::PEEK | RecvFlags::DONTWAIT)
                {
                    Ok((_, n)) => n,
                    Err(Errno::AGAIN) => return Ok(Received::Missing),
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(SideError::Io(e.into())),
                };
            let header = parse_header(&peek[..n.min(DGRAM_HEADER)]);
            let Some(h) = header else {
                self.discard()?;
                return Err(SideError::Corrupt(
                    "a datagram on the side channel that no queue sends",
                ));
            };
            // Sequence numbers wrap: compare by distance.
            let ahead = h.seq.wrapping_sub(seq) as i64;
            if ahead < 0 {
                self.discard()?;
                continue;
            }
            if ahead > 0 {
                return Ok(Received::Missing);
            }
            return self.take(&h);
        }
    }

    /// Consumes the datagram at the front without reading it; the kernel
    /// closes the fds it carried.
    fn discard(&self) -> Result<(), SideError> {
        let mut byte = [0u8; 1];
        match rustix::net::recv(&self.rx, &mut byte, RecvFlags::DONTWAIT) {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(SideError::Io(e.into())),
        }
    }

    /// Receives the datagram whose header was peeked.
    fn take(&self, h: &DgramHeader) -> Result<Received, SideError> {
        let inline = if h.flags & IN_MEMFD == 0 { h.len } else { 0 };
        if inline > DGRAM_INLINE_MAX as u64 || h.item_fds as usize > SCM_MAX_FD {
            self.discard()?;
            return Err(SideError::Corrupt("a side-channel datagram too long"));
        }
        let mut header = [0u8; DGRAM_HEADER];
        let mut payload = vec![0u8; inline as usize];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut header), IoSliceMut::new(&mut payload)];
        let msg = loop {
            match rustix::net::recvmsg(
                &self.rx,
                &mut iov,
                &mut control,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(msg) => break msg,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(Received::Missing),
                Err(e) => return Err(SideError::Io(e.into())),
            }
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(SideError::Corrupt(
                "an item's fds did not all arrive (control data truncated: is the process out of fds?)",
            ));
        }
        if msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes != DGRAM_HEADER + inline as usize {
            return Err(SideError::Corrupt(
                "a side-channel datagram of the wrong length",
            ));
        }
        let want = h.item_fds as usize + usize::from(h.flags & IN_MEMFD != 0);
        if fds.len() != want {
            return Err(SideError::Corrupt(
                "a side-channel datagram with the wrong number of fds",
            ));
        }
        let payload = if h.flags & IN_MEMFD != 0 {
            let memfd = fds.pop().ok_or(SideError::Corrupt("no memfd"))?;
            if h.flags & POOLED != 0 {
                ReceivedPayload::Pooled(memfd, h.len, h.generation)
            } else {
                ReceivedPayload::Memfd(memfd, h.len)
            }
        } else {
            ReceivedPayload::Bytes(payload)
        };
        Ok(Received::Item { fds, payload })
    }
}

/// A datagram's header, as sent.
struct DgramHeader {
    flags: u32,
    seq: u64,
    len: u64,
    item_fds: u32,
    generation: u32,
}

fn parse_header(bytes: &[u8]) -> Option<DgramHeader> {
    let bytes: &[u8; DGRAM_HEADER] = bytes.try_into().ok()?;
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let flags = u32_at(4);
    let pooled = flags & POOLED != 0;
    if u32_at(0) != MAGIC
        || flags & !(IN_MEMFD | POOLED) != 0
        || (pooled && flags & IN_MEMFD == 0)
        || (!pooled && u32_at(28) != 0)
    {
        return None;
    }
    Some(DgramHeader {
        flags,
        seq: u64_at(8),
        len: u64_at(16),
        item_fds: u32_at(24),
        generation: u32_at(28),
    })
}

/// A memory page: big payloads are placed so that their bulk starts on
/// one (a `pread` from a page-aligned offset runs 2-3x faster than from an
/// unaligned one, measured on 64 MiB).
pub(crate) const PAGE: u64 = 4096;

/// Writes all of `parts` at `offset` of `fd`.
pub(crate) fn pwrite_all(fd: &OwnedFd, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            match rustix::io::pwrite(fd, rest, offset) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    rest = &rest[n..];
                    offset += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Writes `parts` into a new memfd and seals it; returns it with the
/// payload's length. The payload ends the file; its first `head` bytes (a
/// byte vector's length prefix) end the first page, so that the bulk
/// starts on the second, and a receiver finds the start as the file's
/// size less the length.
pub(crate) fn write_memfd(parts: &[&[u8]], head: u64) -> io::Result<(OwnedFd, u64)> {
    let fd = rustix::fs::memfd_create(
        "mp-queue-item",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let at = if head > 0 { PAGE - head } else { 0 };
    // No ftruncate first: writes that extend the file are some 15% faster
    // than writes into a hole (measured, 64 MiB).
    pwrite_all(&fd, parts, at)?;
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok((fd, len))
}

/// What a datagram said about the memfd that came with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemfdPayload {
    pub(crate) len: u64,
    /// A fresh memfd is sealed and ends with its payload; a pooled one is
    /// neither, and says in its header where the payload starts.
    pub(crate) sealed: bool,
}

/// Checks a received memfd and finds its payload: it lies inside the file
/// and is backed by real pages (so that reading it allocates no more than
/// its sender did); a fresh one is also sealed. Returns the payload's
/// offset.
fn check_memfd(fd: &OwnedFd, p: MemfdPayload) -> Result<u64, SideError> {
    let st = rustix::fs::fstat(fd).map_err(|e| SideError::Io(e.into()))?;
    let size = st.st_size as u64;
    let at = if p.sealed {
        let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| SideError::Io(e.into()))?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE) {
            return Err(SideError::Corrupt("an item's memfd is not sealed"));
        }
        size.checked_sub(p.len).filter(|&at| at <= PAGE)
    } else {
        crate::pool::payload_at(fd)
            .filter(|at| at.checked_add(p.len).is_some_and(|end| end <= size))
    };
    let Some(at) = at else {
        return Err(SideError::Corrupt(
            "an item's memfd is not the size its datagram says",
        ));
    };
    // st_blocks counts 512-byte units of pages really allocated.
    if (st.st_blocks as u64).saturating_mul(512) < p.len {
        return Err(SideError::Corrupt("an item's memfd is sparse"));
    }
    Ok(at)
}

/// Reads a received memfd's payload, after checking it, appended to `out`.
pub(crate) fn read_memfd(
    fd: &OwnedFd,
    p: MemfdPayload,
    out: &mut Vec<u8>,
) -> Result<(), SideError> {
    let at = check_memfd(fd, p)?;
    let len =
        usize::try_from(p.len).map_err(|_| SideError::Corrupt("an item too big for memory"))?;
    read_at(fd, at, len, out)
}

/// Reads a received memfd holding a byte vector's postcard encoding (a
/// varint length, then the bytes) straight into a vector of its own: one
/// copy, whatever the size.
pub(crate) fn read_memfd_bytes(fd: &OwnedFd, p: MemfdPayload) -> Result<Vec<u8>, SideError> {
    let at = check_memfd(fd, p)?;
    let mut prefix = [0u8; crate::encode::VARINT_MAX];
    let want = (p.len as usize).min(prefix.len());
    let got = loop {
        match rustix::io::pread(fd, &mut prefix[..want], at) {
            Ok(n) => break n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(SideError::Io(e.into())),
        }
    };
    let not_bytes = SideError::Corrupt("an item's memfd does not hold a byte vector");
    let Some((n, used)) = crate::encode::decode_len(&prefix[..got]) else {
        return Err(not_bytes);
    };
    if used as u64 + n as u64 != p.len {
        return Err(not_bytes);
    }
    let mut out = Vec::new();
    read_at(fd, at + used as u64, n, &mut out)?;
    Ok(out)
}

/// Reads exactly `len` bytes at `offset` of `fd`, appended to `out`.
fn read_at(fd: &OwnedFd, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), SideError> {
    out.reserve_exact(len);
    crate::shm::advise_huge_pages(out);
    match crate::shm::pread_append(fd, offset, len, out) {
        Ok(true) => Ok(()),
        Ok(false) => Err(SideError::Corrupt("an item's memfd ended early")),
        Err(e) => Err(SideError::Io(e)),
    }
}
