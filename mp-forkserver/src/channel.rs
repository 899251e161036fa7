//! Bytes and fds over a unix stream socket, as the fork server protocol and
//! `mp-context`'s spawn need them.
//!
//! - [`send_fds`]/[`recv_fds`]: CPython's `reduction.sendfds`/`recvfds`:
//!   one byte (the count modulo 256) carrying the fds as `SCM_RIGHTS`.
//! - [`send_message`]/[`recv_message`]: a frame as `mp-conn` writes it (a
//!   4-byte big-endian length, then the payload) with fds attached to its
//!   first byte.
//! - [`Framed`]: the same framing as an [`mp_auth::MessageChannel`], for the
//!   handshake on the control socket; it reads exactly one frame at a time,
//!   so a following `recv_fds` finds its byte and fds untouched.
//!
//! These are small on purpose; `mp_conn::Connection::send_fds` speaks the
//! same `sendfds` format.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// The most fds one `SCM_RIGHTS` message may carry on Linux
/// (`SCM_MAX_FD` in the kernel's `include/net/scm.h`).
pub const SCM_MAX_FD: usize = 253;

fn cmsg_buffer(count: usize) -> Vec<MaybeUninit<u8>> {
    vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(count.max(1)))]
}

/// Sends `bytes` (at least one) with `fds` attached as `SCM_RIGHTS`,
/// then the rest of `bytes` if the first `sendmsg` was short.
fn sendmsg_all(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = cmsg_buffer(fds.len());
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many fds for one message",
        ));
    }
    let sent = loop {
        match sendmsg(
            sock,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut rest = &bytes[sent..];
    while !rest.is_empty() {
        match rustix::net::send(sock, rest, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One `recvmsg` into `buf` that keeps every fd that arrives (as `OwnedFd`,
/// close-on-exec) and refuses truncated control data.
fn recvmsg_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = cmsg_buffer(max_fds);
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    // The control buffer is rounded up for alignment, so more than
    // `max_fds` may fit in it: the limit is checked here as well.
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        // The fds that did fit were taken above and close when `fds` drops.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {max_fds} fds arrived; the extra ones were discarded"),
        ));
    }
    Ok(msg.bytes)
}

/// Sends `fds` as CPython's `reduction.sendfds` does: one byte, the count
/// modulo 256, carrying the fds.
///
/// # Errors
///
/// Any `sendmsg(2)` error, or more than [`SCM_MAX_FD`] fds.
#[doc(alias = "SCM_RIGHTS")]
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > SCM_MAX_FD {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
    }
    sendmsg_all(sock, &[(fds.len() % 256) as u8], fds)
}

/// Receives at most `max` fds sent by [`send_fds`] (CPython's
/// `reduction.recvfds`).
///
/// # Errors
///
/// `UnexpectedEof` if the peer closed without sending; `InvalidData` if
/// more than `max` fds arrived or the count byte does not match.
#[doc(alias = "SCM_RIGHTS")]
pub fn recv_fds(sock: BorrowedFd<'_>, max: usize) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    let mut byte = [0u8; 1];
    let n = recvmsg_fds(sock, &mut byte, max, &mut fds)?;
    if n == 0 && fds.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if n != 1 || fds.len() % 256 != byte[0] as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "received {} fds, expected {} (modulo 256)",
                fds.len(),
                byte[0]
            ),
        ));
    }
    Ok(fds)
}

/// Sends one frame (4-byte big-endian length, then `payload`) with `fds`
/// attached to its first byte.
///
/// # Errors
///
/// Any send error; a payload over `i32::MAX` bytes is refused.
pub fn send_message(
    sock: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let len = i32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
    // One buffer, one syscall for the common small message.
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    sendmsg_all(sock, &frame, fds)
}

/// Receives one frame sent by [`send_message`]: its payload (at most
/// `max_len` bytes, refused before allocating otherwise) and up to
/// `max_fds` fds.
///
/// # Errors
///
/// `UnexpectedEof` at end of file (also in the middle of a frame),
/// `InvalidData` for a negative or too long length or too many fds.
pub fn recv_message(
    sock: BorrowedFd<'_>,
    max_len: usize,
    max_fds: usize,
) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut fds = Vec::new();
    let mut header = [0u8; 4];
    let mut got = 0;
    // The fds ride on the first byte; read the header with recvmsg until
    // it is complete so that none are dropped.
    while got < 4 {
        let n = recvmsg_fds(sock, &mut header[got..], max_fds, &mut fds)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let len = i32::from_be_bytes(header);
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max_len)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad message length {len}"),
            )
        })?;
    let mut payload = vec![0u8; len];
    read_exact_fd(sock, &mut payload)?;
    Ok((payload, fds))
}

/// Reads exactly `buf.len()` bytes from `fd`, retrying on `EINTR`.
///
/// # Errors
///
/// `UnexpectedEof` if the peer closes first; any read error.
pub fn read_exact_fd(fd: BorrowedFd<'_>, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `buf` to `fd`, retrying on `EINTR`.
///
/// # Errors
///
/// Any write error (`BrokenPipe` if the reader is gone).
pub fn write_all_fd(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `mp-conn`'s framing over a borrowed stream, as an
/// [`mp_auth::MessageChannel`]: exact reads, one frame per call.
#[derive(Debug)]
pub struct Framed<S>(pub S);

impl<S: Read + Write> mp_auth::MessageChannel for Framed<S> {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        let len = i32::try_from(message.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
        let mut frame = Vec::with_capacity(4 + message.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(message);
        self.0.write_all(&frame)
    }

    fn recv_message(&mut self, max_len: usize) -> io::Result<Vec<u8>> {
        let mut header = [0u8; 4];
        self.0.read_exact(&mut header)?;
        let len = i32::from_be_bytes(header);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max_len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad message length {len}"),
                )
            })?;
        let mut message = vec![0u8; len];
        self.0.read_exact(&mut message)?;
        Ok(message)
    }
}

/// Borrows `fd` for the duration of a call: a convenience for slices of
/// fds of different owners.
pub fn borrow_all<F: AsFd>(fds: &[F]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn message_with_fds_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        let big = vec![7u8; 300_000];
        let writer = std::thread::spawn(move || {
            send_message(a.as_fd(), &big, &[x.as_fd(), x.as_fd()]).unwrap();
        });
        let (payload, fds) = recv_message(b.as_fd(), 1 << 20, 4).unwrap();
        writer.join().unwrap();
        assert_eq!(payload.len(), 300_000);
        assert_eq!(fds.len(), 2);
    }

    #[test]
    fn too_many_fds_and_bad_lengths_are_errors() {
        let (a, b) = UnixStream::pair().unwrap();
        let fds: Vec<_> = (0..5).map(|_| UnixStream::pair().unwrap().0).collect();
        send_fds(a.as_fd(), &borrow_all(&fds)).unwrap();
        assert!(recv_fds(b.as_fd(), 3).is_err());
        (&a).write_all(&(-5i32).to_be_bytes()).unwrap();
        assert!(recv_message(b.as_fd(), 100, 0).is_err());
        drop(a);
        assert_eq!(
            recv_fds(b.as_fd(), 3).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
