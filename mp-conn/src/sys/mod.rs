//! The platform layer: every system call of `mp-conn` goes through here.
//!
//! Linux (and other Unixes through rustix). The functions return
//! `rustix::io::Result` so that callers can tell `EINTR` and `EAGAIN` apart
//! from real errors; the retry policy lives in the callers, which know
//! their deadlines.
//!
//! Only [`poller`] (registering a source with `polling`) and [`fork`]
//! (registering fork handlers) need `unsafe`.

pub(crate) mod fork;
pub(crate) mod poller;

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::{Errno, Result};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// The most fds Linux accepts in one `SCM_RIGHTS` message (`SCM_MAX_FD`
/// in `include/net/scm.h`).
pub(crate) const SCM_MAX_FD: usize = 253;

/// What kind of file a connection's fd is; decides which calls are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An `AF_UNIX` stream socket: `recvmsg` with a control buffer, fd passing.
    UnixSocket,
    /// Any other socket (TCP): `send`/`recv` with `MSG_NOSIGNAL`/`MSG_DONTWAIT`.
    Socket,
    /// A pipe, FIFO or anything else: `read`/`writev`.
    Other,
}

impl Kind {
    /// Classifies `fd` with one system call: `SO_DOMAIN`, which fails with
    /// `ENOTSOCK` on anything but a socket. (Every connection that a
    /// listener or a client makes goes through here; `fstat` first would
    /// cost a second call.)
    pub(crate) fn of(fd: BorrowedFd<'_>) -> Result<Kind> {
        match rustix::net::sockopt::socket_domain(fd) {
            Ok(AddressFamily::UNIX) => Ok(Kind::UnixSocket),
            Ok(_) => Ok(Kind::Socket),
            Err(Errno::NOTSOCK) => Ok(Kind::Other),
            Err(e) => Err(e),
        }
    }

    /// Whether send/recv flags apply (`MSG_DONTWAIT`, `MSG_NOSIGNAL`).
    pub(crate) fn is_socket(self) -> bool {
        !matches!(self, Kind::Other)
    }
}

/// File descriptors that arrived with the stream byte at offset `pos`.
#[derive(Debug)]
pub(crate) struct FdBatch {
    /// Stream offset (bytes read from the fd before it) of the last byte
    /// of the read that carried these fds. The kernel ends a read right
    /// after the byte that carries `SCM_RIGHTS`, so for CPython's one-byte
    /// `sendfds` messages this is that byte.
    pub(crate) pos: u64,
    /// The fds that arrived, owned (and close-on-exec).
    pub(crate) fds: Vec<OwnedFd>,
    /// Whether the kernel reported `MSG_CTRUNC` (some fds were dropped).
    pub(crate) truncated: bool,
}

/// One read: `recvmsg` on unix sockets (so `SCM_RIGHTS` fds are captured
/// into `batches`), `recv` on other sockets, `read` otherwise. `pos` is the
/// stream offset of `buf[0]`. `nonblock` adds `MSG_DONTWAIT` on sockets;
/// for pipes the caller must have set `O_NONBLOCK` itself.
pub(crate) fn read(
    fd: BorrowedFd<'_>,
    kind: Kind,
    buf: &mut [u8],
    nonblock: bool,
    pos: u64,
    batches: &mut VecDeque<FdBatch>,
) -> Result<usize> {
    match kind {
        Kind::UnixSocket => {
            let mut space =
                [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut flags = RecvFlags::CMSG_CLOEXEC;
            if nonblock {
                flags |= RecvFlags::DONTWAIT;
            }
            let mut iov = [IoSliceMut::new(buf)];
            let msg = rustix::net::recvmsg(fd, &mut iov, &mut control, flags)?;
            collect_fds(
                &mut control,
                msg.flags,
                pos + msg.bytes.max(1) as u64 - 1,
                batches,
            );
            Ok(msg.bytes)
        }
        Kind::Socket => {
            let flags = if nonblock {
                RecvFlags::DONTWAIT
            } else {
                RecvFlags::empty()
            };
            rustix::net::recv(fd, buf, flags).map(|(n, _)| n)
        }
        Kind::Other => rustix::io::read(fd, buf),
    }
}

/// Moves every fd of a `recvmsg` control buffer into an owned batch.
fn collect_fds(
    control: &mut RecvAncillaryBuffer<'_>,
    flags: ReturnFlags,
    pos: u64,
    batches: &mut VecDeque<FdBatch>,
) {
    let truncated = flags.contains(ReturnFlags::CTRUNC);
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if truncated || !fds.is_empty() {
        batches.push_back(FdBatch {
            pos,
            fds,
            truncated,
        });
    }
}

/// Messages up to this size are copied behind their header into a stack
/// buffer and written with plain `send`/`write`: cheaper in the kernel than
/// `sendmsg`/`writev`, whose iovec handling costs more than the copy.
pub(crate) const SMALL_SEND: usize = 1024;

/// One write of `header` then `payload` (`send`/`sendmsg` with
/// `MSG_NOSIGNAL` on sockets, `write`/`writev` otherwise). Returns the
/// bytes written.
pub(crate) fn write2(
    fd: BorrowedFd<'_>,
    kind: Kind,
    header: &[u8],
    payload: &[u8],
) -> Result<usize> {
    let total = header.len() + payload.len();
    if total <= SMALL_SEND + 12 && !header.is_empty() {
        let mut buf = [0u8; SMALL_SEND + 12];
        buf[..header.len()].copy_from_slice(header);
        buf[header.len()..total].copy_from_slice(payload);
        return write1(fd, kind, &buf[..total]);
    }
    if header.is_empty() {
        return write1(fd, kind, payload);
    }
    let iov = [IoSlice::new(header), IoSlice::new(payload)];
    if kind.is_socket() {
        rustix::net::sendmsg(
            fd,
            &iov,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        )
    } else {
        rustix::io::writev(fd, &iov)
    }
}

/// One write of a contiguous buffer.
fn write1(fd: BorrowedFd<'_>, kind: Kind, buf: &[u8]) -> Result<usize> {
    if kind.is_socket() {
        rustix::net::send(fd, buf, SendFlags::NOSIGNAL)
    } else {
        rustix::io::write(fd, buf)
    }
}

/// Writes all of `header` and `payload`, in one system call when the
/// kernel takes it all; loops on partial writes, retries `EINTR`, and
/// waits for writability on `EAGAIN` (a nonblocking fd).
pub(crate) fn write_all2(
    fd: BorrowedFd<'_>,
    kind: Kind,
    header: &[u8],
    payload: &[u8],
) -> std::io::Result<()> {
    let total = header.len() + payload.len();
    let mut done = 0;
    while done < total {
        let (h, p) = if done < header.len() {
            (&header[done..], payload)
        } else {
            (&[][..], &payload[done - header.len()..])
        };
        match write2(fd, kind, h, p) {
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                wait_fd(fd, PollFlags::OUT, None)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sends one byte with `fds` as `SCM_RIGHTS` in a single `sendmsg`.
pub(crate) fn send_with_fds(
    fd: BorrowedFd<'_>,
    byte: u8,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    send_some_with_fds(fd, &[byte], fds).map(drop)
}

/// One `sendmsg` of (a first part of) `data` with `fds` as `SCM_RIGHTS`,
/// retried on `EINTR` and, on a nonblocking fd, after waiting on `EAGAIN`;
/// returns how many bytes went (at least one if `data` is not empty). The
/// fds travel with those bytes.
fn send_some_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<usize> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    loop {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(std::io::Error::other("control buffer too small"));
        }
        match rustix::net::sendmsg(fd, &[IoSlice::new(data)], &mut control, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                wait_fd(fd, PollFlags::OUT, None)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `buf` on the unix socket `fd`, with `fds` as
/// `SCM_RIGHTS` on its first bytes: in batches of at most [`SCM_MAX_FD`],
/// every batch but the last with one byte of its own (the kernel ends a
/// read after the bytes that carry fds, so each batch arrives at its own
/// stream position), the last with the rest of the first write.
///
/// # Errors
///
/// `InvalidInput` if `buf` has fewer bytes than there are batches (a
/// message always has more: its 4-byte header and at least a byte per
/// fd); otherwise the OS error.
pub(crate) fn write_all_with_fds(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let batches = fds.len().div_ceil(SCM_MAX_FD);
    if buf.len() < batches {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "too few bytes to carry the fds",
        ));
    }
    let mut done = 0;
    for (i, batch) in fds.chunks(SCM_MAX_FD).enumerate() {
        let end = if i + 1 == batches {
            buf.len()
        } else {
            done + 1
        };
        done += send_some_with_fds(fd, &buf[done..end], batch)?;
    }
    write_all2(fd, Kind::UnixSocket, &[], &buf[done..])
}

/// `poll(2)` on one fd until one of `events` (or an error or hang-up) is
/// reported or `timeout` passes; `EINTR` is retried with the remaining
/// time on the monotonic clock. `None` waits forever, `Some(ZERO)` never
/// blocks.
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> std::io::Result<bool> {
    // A timeout too large to add to `now` is as good as forever.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        let left = deadline.map(timespec_until);
        match rustix::event::poll(&mut fds, left.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => {
                if fds[0].revents().contains(PollFlags::NVAL) {
                    return Err(Errno::BADF.into());
                }
                return Ok(true);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The time left until `deadline`, as a `poll` timeout (zero once it passed).
pub(crate) fn timespec_until(deadline: Instant) -> Timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    Timespec::try_from(left).unwrap_or(Timespec {
        tv_sec: i64::MAX / 2,
        tv_nsec: 0,
    })
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let new = if nonblocking {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    if new != flags {
        rustix::fs::fcntl_setfl(fd, new)?;
    }
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd`.
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> Result<bool> {
    Ok(rustix::fs::fcntl_getfl(fd)?.contains(OFlags::NONBLOCK))
}

/// A close-on-exec duplicate of `fd`.
pub(crate) fn dup(fd: impl AsFd) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}
