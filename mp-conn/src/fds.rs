//! fd passing over unix-socket connections, compatible with CPython's
//! `multiprocessing.reduction.sendfds`/`recvfds`: one data byte,
//! `len(fds) % 256`, with the fds as `SCM_RIGHTS` ancillary data in the
//! same `sendmsg`.
//!
//! CPython 3.14 added an acknowledgement on every platform (before, only on
//! macOS): after the fds arrive, `recvfds` sends the byte `b"A"` back, and
//! `sendfds` waits for it. The `_acked` methods speak that form; the plain
//! ones speak the form of 3.13 and older on Linux (and of our own peers).
//!
//! ```text
//! sender                             receiver
//!   [len(fds) % 256] + SCM_RIGHTS  ->
//!                                  <-  b"A"        (CPython >= 3.14 only)
//! ```

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::sys;

/// The acknowledgement CPython 3.14's `recvfds` sends after fds arrive.
const FD_ACK: u8 = b'A';

impl Connection {
    /// Sends `fds` as CPython's `reduction.sendfds` does: one byte,
    /// `fds.len() % 256`, plus `SCM_RIGHTS`, in one `sendmsg`. The
    /// receiver gets duplicates; ours stay open.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if this is not a unix-socket connection
    /// (a pipe cannot carry fds) or for more than 253 fds (Linux's
    /// `SCM_MAX_FD`); [`Error::Closed`], [`Error::NotWritable`], or the OS
    /// error.
    #[doc(alias = "SCM_RIGHTS")]
    #[doc(alias = "sendfds")]
    pub fn send_fds(&self, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let fd = self.check_fd_passing_writable()?;
        if fds.len() > sys::SCM_MAX_FD {
            return Err(Error::InvalidArgument(
                "at most 253 fds fit in one SCM_RIGHTS message",
            ));
        }
        sys::send_with_fds(fd, (fds.len() % 256) as u8, fds)?;
        Ok(())
    }

    /// Receives fds sent by [`send_fds`](Connection::send_fds) or CPython's
    /// `reduction.sendfds`, at most `max` of them. They are owned and
    /// close-on-exec (`MSG_CMSG_CLOEXEC`).
    ///
    /// # Errors
    ///
    /// [`Error::FdTransfer`] if the next byte carries no fds (CPython's
    /// `RuntimeError`), the kernel truncated the control data
    /// (`MSG_CTRUNC`), the count byte does not match, or more than `max`
    /// fds arrived; every fd that did arrive is closed then.
    /// [`Error::Eof`] if the peer closed; [`Error::InvalidArgument`] on a
    /// connection that is not a unix socket.
    #[doc(alias = "recvfds")]
    pub fn recv_fds(&mut self, max: usize) -> Result<Vec<OwnedFd>> {
        self.check_fd_passing_readable()?;
        let (byte, batch) = self.take_fd_byte()?;
        let Some(batch) = batch else {
            return Err(Error::FdTransfer(
                "no file descriptors arrived with the data",
            ));
        };
        if batch.truncated {
            return Err(Error::FdTransfer(
                "control data truncated (MSG_CTRUNC): fds were lost",
            ));
        }
        if batch.fds.len() % 256 != usize::from(byte) {
            return Err(Error::FdTransfer(
                "fd count byte does not match the fds received",
            ));
        }
        if batch.fds.len() > max {
            return Err(Error::FdTransfer(
                "more file descriptors arrived than expected",
            ));
        }
        Ok(batch.fds)
    }

    /// [`send_fds`](Connection::send_fds), then waits for the receiver's
    /// acknowledgement, the byte `b"A"`: the protocol of CPython 3.14's
    /// `reduction.sendfds`, whose `recvfds` (and `recv_handle`) sends it.
    /// Use it when the receiver is CPython 3.14 or newer, which would
    /// otherwise leave the byte unread in the stream.
    ///
    /// # Errors
    ///
    /// As [`send_fds`](Connection::send_fds); [`Error::FdTransfer`] if
    /// anything else than `b"A"` comes back (CPython's `RuntimeError('did
    /// not receive acknowledgement of fd')`), [`Error::Eof`] if the peer
    /// closed instead.
    #[doc(alias = "sendfds")]
    pub fn send_fds_acked(&mut self, fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.check_fd_passing_readable()?;
        self.send_fds(fds)?;
        match self.take_fd_byte()? {
            (FD_ACK, None) => Ok(()),
            _ => Err(Error::FdTransfer("did not receive acknowledgement of fd")),
        }
    }

    /// [`recv_fds`](Connection::recv_fds), then acknowledges them with the
    /// byte `b"A"`: the protocol of CPython 3.14's `reduction.recvfds`,
    /// whose `sendfds` (and `send_handle`) waits for it. Use it when the
    /// sender is CPython 3.14 or newer.
    ///
    /// # Errors
    ///
    /// As [`recv_fds`](Connection::recv_fds) (no acknowledgement is sent
    /// then), or the write of the acknowledgement failed.
    #[doc(alias = "recvfds")]
    pub fn recv_fds_acked(&mut self, max: usize) -> Result<Vec<OwnedFd>> {
        self.check_fd_passing_writable()?;
        let fds = self.recv_fds(max)?;
        sys::send_with_fds(self.check_fd_passing_writable()?, FD_ACK, &[])?;
        Ok(fds)
    }

    /// Sends `conn` to the peer, as [`send(&conn)`](Connection::send)
    /// does: its fd (or both fds of a [`pipe_pair`](crate::pipe_pair)
    /// end) as `SCM_RIGHTS`, its directions, and any bytes it read ahead,
    /// which the copy receives first. Our copy is closed afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if this is not a unix-socket connection;
    /// otherwise as [`send`](Connection::send).
    pub fn send_connection(&self, conn: Connection) -> Result<()> {
        self.check_fd_passing_writable()?;
        self.send(&conn)
    }

    /// Receives a connection sent by
    /// [`send_connection`](Connection::send_connection) (or inside any
    /// value given to [`send`](Connection::send)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on a connection that is not a unix
    /// socket; otherwise as [`recv`](Connection::recv).
    pub fn recv_connection(&mut self) -> Result<Connection> {
        self.check_fd_passing_readable()?;
        self.recv()
    }
}
