//! `Connection`: CPython's `multiprocessing.connection.Connection` over an
//! owned socket or pipe fd.

mod share;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mp_reduction::ForkInterest;
use rustix::event::PollFlags;
use rustix::io::Errno;

use crate::codec::{self, Parcel};
use crate::error::{Error, Result};
use crate::frame::{self, HEADER_LEN, Header, LONG_LEN};
use crate::sys::{self, FdBatch, Kind, fork};
use share::HandoffState;

/// Size of the read-ahead buffer. 16 KiB holds CPython's "small" messages
/// (it writes header and payload together up to 16 KiB) in one read.
pub(crate) const READ_AHEAD: usize = 16 * 1024;

/// Payload remainders at least this long are read straight into the
/// destination instead of through the read-ahead buffer.
const DIRECT_READ: usize = READ_AHEAD / 2;

/// How much a `Vec` destination may grow before the bytes to fill it have
/// arrived: a lying length header costs at most this much memory up front.
const FIRST_CHUNK: usize = 64 * 1024;

/// Adaptive spinning state of the low-latency mode.
#[derive(Debug, Clone, Copy)]
struct Spin {
    /// The configured upper bound.
    max: Duration,
    /// The current budget: doubles (up to `max`) when spinning found data,
    /// halves (down to `max / 64`) when it did not.
    cur: Duration,
}

impl Spin {
    fn hit(&mut self) {
        self.cur = (self.cur * 2).min(self.max);
    }
    fn miss(&mut self) {
        self.cur = (self.cur / 2).max(self.max / 64);
    }
}

/// A separate fd for sending (a [`pipe_pair`](crate::pipe_pair) end).
#[derive(Debug)]
struct WriteEnd {
    fd: OwnedFd,
    kind: Kind,
}

/// The open fd(s) and everything tied to reading.
#[derive(Debug)]
struct Io {
    /// The fd read, polled and waited on; also written when `write` is
    /// `None` (every connection but a [`pipe_pair`](crate::pipe_pair) end).
    fd: OwnedFd,
    kind: Kind,
    /// The fd sends go to, when it is not `fd`.
    write: Option<WriteEnd>,
    /// Bytes read from the fd so far (stream offset of the next byte).
    pos: u64,
    /// Fds that arrived with `SCM_RIGHTS`, by stream position.
    batches: VecDeque<FdBatch>,
    spin: Option<Spin>,
    /// Whether we set `O_NONBLOCK` on a pipe for spinning (undone later).
    set_nonblocking: bool,
}

impl Io {
    /// The fd sends go to, and its kind.
    fn write_fd(&self) -> (BorrowedFd<'_>, Kind) {
        match &self.write {
            Some(w) => (w.fd.as_fd(), w.kind),
            None => (self.fd.as_fd(), self.kind),
        }
    }

    /// One read into `buf` (never empty), blocking until at least one byte
    /// or end of file: spins first in low-latency mode, retries `EINTR`,
    /// waits with `poll` on `EAGAIN`. Returns 0 at end of file.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if let Some(mut spin) = self.spin {
            let started = Instant::now();
            loop {
                match self.read_once(buf, true) {
                    Ok(n) => {
                        spin.hit();
                        self.spin = Some(spin);
                        return Ok(n);
                    }
                    Err(Errno::AGAIN) => {
                        if started.elapsed() >= spin.cur {
                            spin.miss();
                            self.spin = Some(spin);
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        loop {
            match self.read_once(buf, false) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    sys::wait_fd(self.fd.as_fd(), PollFlags::IN, None)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether fds can travel on this connection: one fd, a unix socket.
    fn passes_fds(&self) -> bool {
        self.kind == Kind::UnixSocket && self.write.is_none()
    }

    /// What this connection is, for an error that says why fds cannot
    /// travel on it.
    fn describe(&self) -> &'static str {
        match (&self.write, self.kind) {
            (Some(_), _) => "a pipe_pair end (two OS pipes)",
            (None, Kind::UnixSocket) => "a unix socket",
            (None, Kind::Socket) => "a TCP socket",
            (None, Kind::Other) => "an OS pipe",
        }
    }

    /// One [`sys::read`] at the current stream position, advancing it by
    /// what arrived; `EINTR` and `EAGAIN` are the caller's to handle.
    fn read_once(&mut self, buf: &mut [u8], nonblock: bool) -> rustix::io::Result<usize> {
        let n = sys::read(
            self.fd.as_fd(),
            self.kind,
            buf,
            nonblock,
            self.pos,
            &mut self.batches,
        )?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` if end of file came first.
    fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<bool> {
        while !buf.is_empty() {
            let n = self.read(buf)?;
            if n == 0 {
                return Ok(false);
            }
            buf = &mut buf[n..];
        }
        Ok(true)
    }
}

/// A connection to a peer speaking CPython's message framing, over an
/// owned socket or pipe fd; CPython's `multiprocessing.connection.Connection`.
///
/// An end of a [`pipe_pair`](crate::pipe_pair) (or of
/// [`Connection::from_fd_pair`]) holds two fds instead: it reads, polls and
/// waits on its read fd and sends on its write fd.
///
/// Messages are byte strings (`send_bytes`/`recv_bytes` and friends) or any
/// serde type encoded with postcard (`send`/`recv`). Each end is readable,
/// writable or both; a receive or send in the wrong direction is an error,
/// as is any use after [`close`](Connection::close).
///
/// Values that hold fds (a `Connection`, a `mp_heap::SharedBuffer` or
/// `Value`, an `mp_reduction::Fd`, or a struct holding them) travel
/// through [`send`](Connection::send)/[`recv`](Connection::recv) on a
/// unix-socket connection, their fds as `SCM_RIGHTS` beside the bytes, and
/// arrive working. A message without fds is the same bytes as ever.
///
/// # Read-ahead, and ends that several readers share
///
/// A receive may read past the end of the current message into an
/// internal 16 KiB buffer, so that a small message costs one system call
/// (CPython reads exactly: the header, then the payload).
/// [`poll`](Connection::poll) and [`wait`](crate::wait) count the buffered
/// bytes. That is only right while this handle is the fd's one reader, so a
/// handle that may share its fd with another reader reads **exactly**
/// (never a byte past its message; two system calls for a small one), by
/// default:
///
/// - after [`try_clone`](Connection::try_clone) (both handles);
/// - after it was serialized to travel (a process argument under spawn or
///   forkserver, or inside a value given to [`send`](Connection::send)):
///   the original and the copy that arrives;
/// - after a fork: every handle that existed when the process called
///   `fork(2)`, in the parent and in the child (the fork start method
///   included); fork handlers count the forks, so this costs no system
///   call per receive;
/// - after [`Waiter::add`](crate::Waiter::add).
///
/// A handle known to be the only reader (a child's end whose parent closed
/// its copy) can go back to reading ahead with
/// [`set_exact_reads(false)`](Connection::set_exact_reads), until the next
/// fork. An end that several processes will read should be made exact
/// with `set_exact_reads(true)` before its first receive, so that nothing
/// is read ahead while it is still unshared (a queue's reader, say).
///
/// Bytes already read ahead are never delivered twice, and not lost:
///
/// - A handle passed on (serialized) takes them with it: the copy receives
///   them first; the original gives them up once the copy has arrived (a
///   failed send or start leaves them where they were).
/// - A fork start method argument: the child's handle keeps them; the
///   parent's gives them up.
/// - Any other fork (a raw `fork(2)`; a connection that a fork child
///   reaches through a static): they stay with the parent's handle, and the
///   child's handle reads on from the fd. If they ended inside a message,
///   the rest of that message is the parent's to read: receives on the
///   child's handle fail with [`Error::LostBoundary`].
///
/// # Examples
///
/// ```
/// let (mut a, b) = mp_conn::pipe(true)?;
/// b.send_bytes(b"hello")?;
/// assert!(a.poll(Some(std::time::Duration::ZERO))?);
/// assert_eq!(a.recv_bytes()?, b"hello");
/// # Ok::<(), mp_conn::Error>(())
/// ```
pub struct Connection {
    io: Option<Io>,
    readable: bool,
    writable: bool,
    /// Exact reads: set when the handle may be shared (atomic so that
    /// serializing, through `&self`, can set it).
    exact: AtomicBool,
    /// The read-ahead buffer (allocated on first use); `rbuf[start..end]`
    /// holds bytes read from the fd but not consumed yet.
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// The fork generation ([`fork::generation`]) this handle last
    /// accounted for; a different one means a fork happened since.
    generation: u64,
    /// Shared with the handoffs of copies of this handle that took its
    /// read-ahead along (made on first use).
    handoff: OnceLock<Arc<HandoffState>>,
    /// Held while read-ahead bytes or fds are held, so that the fork start
    /// method knows to look for them (`mp_reduction::fork_move`).
    interest: Option<ForkInterest>,
    /// The fd is not at a message boundary, and the rest of the current
    /// message is another copy's: receives fail with
    /// [`Error::LostBoundary`].
    lost_boundary: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Connection");
        match &self.io {
            Some(io) => {
                d.field("fd", &io.fd.as_raw_fd()).field("kind", &io.kind);
                if let Some(w) = &io.write {
                    d.field("write_fd", &w.fd.as_raw_fd());
                }
            }
            None => {
                d.field("closed", &true);
            }
        }
        d.field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("exact_reads", &self.exact.load(Ordering::Relaxed))
            .field("buffered", &self.buffered_len())
            .finish()
    }
}

impl Connection {
    /// Wraps `fd`, readable and/or writable. The fd should be in blocking
    /// mode (a nonblocking fd works too, through `poll`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if neither `readable` nor `writable`
    /// (CPython's `ValueError`); [`Error::Io`] if `fd` cannot be inspected
    /// (`getsockopt(SO_DOMAIN)` fails other than with `ENOTSOCK`).
    pub fn new(fd: OwnedFd, readable: bool, writable: bool) -> Result<Connection> {
        if !readable && !writable {
            return Err(Error::InvalidArgument(
                "at least one of `readable` and `writable` must be true",
            ));
        }
        let kind = Kind::of(fd.as_fd())?;
        // Without fork handlers no fork can be seen: then every handle is
        // taken to be shared.
        let forks_counted = fork::watch();
        Ok(Connection {
            io: Some(Io {
                fd,
                kind,
                write: None,
                pos: 0,
                batches: VecDeque::new(),
                spin: None,
                set_nonblocking: false,
            }),
            readable,
            writable,
            exact: AtomicBool::new(!forks_counted),
            rbuf: Vec::new(),
            start: 0,
            end: 0,
            generation: fork::generation(),
            handoff: OnceLock::new(),
            interest: None,
            lost_boundary: false,
        })
    }

    /// Wraps two fds as one duplex connection: messages are received from
    /// `read` (which [`poll`](Connection::poll), [`wait`](crate::wait) and
    /// [`Waiter`](crate::Waiter) watch) and sent on `write`. This is what a
    /// [`pipe_pair`](crate::pipe_pair) end is; the fds should be in
    /// blocking mode.
    ///
    /// Such a connection cannot pass fds (even if both are unix sockets)
    /// and [`into_fd`](Connection::into_fd) refuses it, since there is no
    /// one fd to give back; [`try_clone`](Connection::try_clone) and
    /// process arguments (serde, through `mp_reduction`) carry both fds.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if either fd cannot be inspected with `fstat`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_conn::Connection;
    /// let (r1, w1) = rustix::pipe::pipe()?;
    /// let (r2, w2) = rustix::pipe::pipe()?;
    /// let a = Connection::from_fd_pair(r1, w2)?;
    /// let mut b = Connection::from_fd_pair(r2, w1)?;
    /// a.send_bytes(b"over two pipes")?;
    /// assert_eq!(b.recv_bytes()?, b"over two pipes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd_pair(read: OwnedFd, write: OwnedFd) -> Result<Connection> {
        let kind = Kind::of(write.as_fd())?;
        let mut conn = Connection::new(read, true, true)?;
        if let Some(io) = conn.io.as_mut() {
            io.write = Some(WriteEnd { fd: write, kind });
        }
        Ok(conn)
    }

    /// Whether this end can receive (unchanged by closing, as in CPython).
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send (unchanged by closing, as in CPython).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called (or a too-long
    /// message closed a read-only connection).
    pub fn is_closed(&self) -> bool {
        self.io.is_none()
    }

    /// Whether the fd is an `AF_UNIX` socket, which can carry fds (never
    /// true for a connection with a separate write fd).
    pub fn is_unix_socket(&self) -> bool {
        self.io.as_ref().is_some_and(Io::passes_fds)
    }

    /// Whether this connection holds a separate write fd (a
    /// [`pipe_pair`](crate::pipe_pair) end, or
    /// [`from_fd_pair`](Connection::from_fd_pair)).
    pub fn has_write_fd(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.write.is_some())
    }

    /// The number of bytes read ahead and not yet consumed (by this
    /// handle: bytes that went to another copy of it do not count).
    pub fn buffered_len(&self) -> usize {
        let given_up = self.pending().map_or(0, |p| p.give_up);
        self.end - self.start - given_up
    }

    /// Whether a receive would return at once without reading the fd: a
    /// message (or part of one) is buffered, or the handle lost track of
    /// message boundaries (the receive fails).
    pub(crate) fn ready_without_io(&self) -> bool {
        match self.pending() {
            None => self.end > self.start || self.lost_boundary,
            Some(p) => self.end - self.start > p.give_up || self.lost_boundary || p.lost_boundary,
        }
    }

    /// Closes the fd (both fds of a [`pipe_pair`](crate::pipe_pair) end).
    /// Idempotent; buffered bytes and fds that arrived but
    /// were not received are dropped (the fds closed).
    pub fn close(&mut self) {
        if let Some(io) = self.io.take() {
            restore_blocking(&io);
        }
        self.rbuf = Vec::new();
        self.start = 0;
        self.end = 0;
        self.interest = None;
    }

    fn io(&self) -> Result<&Io> {
        self.io.as_ref().ok_or(Error::Closed)
    }

    fn check_writable(&self) -> Result<&Io> {
        let io = self.io()?;
        if !self.writable {
            return Err(Error::NotWritable);
        }
        Ok(io)
    }

    fn check_readable(&self) -> Result<()> {
        self.io()?;
        if !self.readable {
            return Err(Error::NotReadable);
        }
        Ok(())
    }

    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.io()?.fd.as_fd())
    }

    // ----- sending -----

    /// Sends `buf` as one message. Header and payload go out in one
    /// `writev`/`sendmsg` (no copy of the payload); partial writes are
    /// continued and signals never interrupt the send.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::NotWritable`], or the OS error (for
    /// example `BrokenPipe` when the peer is gone).
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let io = self.check_writable()?;
        let mut header = [0; 12];
        let header = frame::encode_header(buf.len() as u64, &mut header);
        let (fd, kind) = io.write_fd();
        sys::write_all2(fd, kind, header, buf)?;
        Ok(())
    }

    /// Sends `buf[offset..offset + size]` (to the end when `size` is
    /// `None`) as one message, with CPython's checks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `offset > buf.len()` or
    /// `offset + size > buf.len()`; nothing is sent then. Otherwise as
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send_bytes_range(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        self.check_writable()?;
        if offset > buf.len() {
            return Err(Error::InvalidArgument("buffer length < offset"));
        }
        let size = size.unwrap_or(buf.len() - offset);
        match offset.checked_add(size) {
            Some(end) if end <= buf.len() => self.send_bytes(&buf[offset..end]),
            _ => Err(Error::InvalidArgument("buffer length < offset + size")),
        }
    }

    /// Sends `value` encoded with postcard, as one message.
    ///
    /// If the value holds fds (a `Connection`, a `mp_heap::SharedBuffer` or
    /// `Value`, an `mp_reduction::Fd`, anything serialized through
    /// `mp_reduction`), they travel beside the bytes as `SCM_RIGHTS`
    /// (duplicates: the value keeps its own), and [`recv`](Connection::recv)
    /// in the other process rebuilds the value around them. A connection
    /// inside the value takes its read-ahead bytes along, and gives them up
    /// here once the send succeeded. A value without fds goes out as the
    /// same bytes as ever, in one write.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if serialization fails (with serde's
    /// explanation); [`Error::FdsNeedUnixSocket`] if the value holds fds
    /// and this connection is not a unix socket; nothing is sent then.
    /// Otherwise as [`send_bytes`](Connection::send_bytes).
    pub fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.check_writable()?;
        self.send_parcel(Parcel::encode(value)?)
    }

    /// Sends an encoded value (see [`Parcel`]) as one message, its fds as
    /// `SCM_RIGHTS` with the message's first bytes (in batches of at most
    /// 253, Linux's `SCM_MAX_FD`), and tells the parcel it was delivered.
    ///
    /// # Errors
    ///
    /// [`Error::FdsNeedUnixSocket`] if the parcel holds fds and this is
    /// not a unix-socket connection (nothing is sent); otherwise as
    /// [`send_bytes`](Connection::send_bytes). A parcel that was not sent
    /// is dropped undelivered: the values it was encoded from keep their
    /// state.
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send_parcel(&self, parcel: Parcel) -> Result<()> {
        let io = self.check_writable()?;
        let (mut buf, start, fds, handoffs, type_name) = parcel.into_send_parts();
        let mut header = [0; 12];
        let header = frame::encode_header((buf.len() - start) as u64, &mut header);
        // Header and payload as one contiguous buffer: in the room left in
        // front of an encoded payload, or copied for a received one.
        let framed = if start >= header.len() {
            let at = start - header.len();
            buf[at..start].copy_from_slice(header);
            &buf[at..]
        } else {
            buf.splice(..start, header.iter().copied());
            &buf[..]
        };
        let (fd, kind) = io.write_fd();
        if fds.is_empty() {
            sys::write_all2(fd, kind, &[], framed)?;
        } else {
            if !io.passes_fds() {
                return Err(Error::FdsNeedUnixSocket {
                    type_name: type_name.unwrap_or("a received Parcel"),
                    fds: fds.len(),
                    connection: io.describe(),
                });
            }
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
            sys::write_all_with_fds(fd, framed, &borrowed)?;
        }
        handoffs.delivered();
        Ok(())
    }

    // ----- receiving: the read-ahead buffer -----

    fn is_exact(&self) -> bool {
        self.exact.load(Ordering::Relaxed)
    }

    /// Makes sure at least `need` (<= `READ_AHEAD`) bytes are buffered.
    /// Returns `Ok(false)` if end of file came first (what did arrive
    /// stays buffered). In exact mode it reads no byte beyond `need`.
    fn fill(&mut self, need: usize) -> Result<bool> {
        debug_assert!(need <= READ_AHEAD);
        if self.end - self.start >= need {
            return Ok(true);
        }
        if self.rbuf.is_empty() {
            self.rbuf = vec![0; READ_AHEAD];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if READ_AHEAD - self.start < need {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let exact = self.is_exact();
        let io = self.io.as_mut().ok_or(Error::Closed)?;
        while self.end - self.start < need {
            let limit = if exact { self.start + need } else { READ_AHEAD };
            let n = io.read(&mut self.rbuf[self.end..limit])?;
            if n == 0 {
                return Ok(false);
            }
            self.end += n;
        }
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads and decodes a message header; `max` is the receiver's limit.
    fn read_header(&mut self, max: usize) -> Result<u64> {
        self.read_header_at(max).map(|(_, len)| len)
    }

    /// Makes the handle ready to read a message: checks the direction,
    /// settles what it owes its copies ([`sync`](Connection::sync)), and
    /// refuses if it lost track of message boundaries.
    fn begin_read(&mut self) -> Result<()> {
        self.check_readable()?;
        self.sync();
        if self.lost_boundary {
            return Err(Error::LostBoundary);
        }
        if self.end > self.start && self.handoff.get().is_some_and(|s| s.promised()) {
            return Err(Error::InvalidArgument(
                "this connection's read-ahead bytes belong to a copy of it that is on its way \
                 (an encoded Parcel not sent yet): send or drop that Parcel before receiving here",
            ));
        }
        Ok(())
    }

    /// [`read_header`](Connection::read_header), also returning the
    /// stream position where the message starts (to find its fds).
    fn read_header_at(&mut self, max: usize) -> Result<(u64, u64)> {
        self.begin_read()?;
        let at = self.consumed_pos();
        if !self.fill(HEADER_LEN)? {
            return Err(if self.start == self.end {
                Error::Eof
            } else {
                Error::TruncatedMessage
            });
        }
        let mut h = [0; HEADER_LEN];
        h.copy_from_slice(&self.rbuf[self.start..self.start + HEADER_LEN]);
        self.consume(HEADER_LEN);
        let len = match frame::decode_header(h) {
            Ok(Header::Short(n)) => u64::from(n),
            Ok(Header::Long) => {
                if !self.fill(LONG_LEN)? {
                    return Err(Error::TruncatedMessage);
                }
                let mut l = [0; LONG_LEN];
                l.copy_from_slice(&self.rbuf[self.start..self.start + LONG_LEN]);
                self.consume(LONG_LEN);
                match frame::decode_long_length(l) {
                    Ok(len) => len,
                    Err(e) => return Err(self.lose_boundaries(e)),
                }
            }
            Err(e) => return Err(self.lose_boundaries(e)),
        };
        if len > max as u64 {
            return Err(self.lose_boundaries(Error::MessageTooLong { len, max }));
        }
        Ok((at, len))
    }

    /// After a refused header the message boundaries are lost: the
    /// connection is no longer readable, and is closed if it cannot write
    /// either (CPython's `recv_bytes(maxlength)`).
    fn lose_boundaries(&mut self, e: Error) -> Error {
        self.readable = false;
        if !self.writable {
            self.close();
        }
        e
    }

    /// Reads exactly `dst.len()` payload bytes: buffered ones first, then
    /// small remainders through the buffer (reading ahead), large ones
    /// straight into `dst`.
    fn read_payload(&mut self, dst: &mut [u8]) -> Result<()> {
        let have = (self.end - self.start).min(dst.len());
        dst[..have].copy_from_slice(&self.rbuf[self.start..self.start + have]);
        self.consume(have);
        let rest = &mut dst[have..];
        if rest.is_empty() {
            return Ok(());
        }
        if rest.len() < DIRECT_READ && !self.is_exact() {
            if !self.fill(rest.len())? {
                return Err(Error::TruncatedMessage);
            }
            let n = rest.len();
            rest.copy_from_slice(&self.rbuf[self.start..self.start + n]);
            self.consume(n);
            return Ok(());
        }
        let io = self.io.as_mut().ok_or(Error::Closed)?;
        if !io.read_exact(rest)? {
            return Err(Error::TruncatedMessage);
        }
        Ok(())
    }

    /// Reads a `len`-byte payload into `out`, reusing its initialized
    /// length and capacity; grows it only as fast as bytes arrive.
    fn read_payload_vec(&mut self, len: u64, out: &mut Vec<u8>) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| Error::MessageTooLong {
            len,
            max: usize::MAX,
        })?;
        let mut filled = 0;
        while filled < len {
            let target = if len <= out.len() {
                len
            } else {
                let allowed = out
                    .capacity()
                    .max(filled.saturating_mul(2))
                    .max(FIRST_CHUNK);
                len.min(allowed)
            };
            if out.len() < target {
                out.resize(target, 0);
            }
            self.read_payload(&mut out[filled..target])?;
            filled = target;
        }
        out.truncate(len);
        Ok(())
    }

    /// Takes the fds that came with the message at stream positions
    /// `start..end` (the kernel ends a read after bytes that carry fds, so
    /// they are recorded at a position inside the message); older batches
    /// are closed.
    ///
    /// # Errors
    ///
    /// [`Error::FdTransfer`] if the kernel truncated any of them
    /// (`MSG_CTRUNC`); every fd that did arrive is closed then.
    fn take_message_fds(&mut self, start: u64, end: u64) -> Result<Vec<OwnedFd>> {
        let Some(io) = self.io.as_mut() else {
            return Ok(Vec::new());
        };
        drop_batches_before(&mut io.batches, start);
        let mut fds = Vec::new();
        let mut truncated = false;
        while io.batches.front().is_some_and(|b| b.pos < end) {
            if let Some(batch) = io.batches.pop_front() {
                truncated |= batch.truncated;
                fds.extend(batch.fds);
            }
        }
        if truncated {
            return Err(Error::FdTransfer(
                "control data truncated (MSG_CTRUNC): fds of the message were lost",
            ));
        }
        Ok(fds)
    }

    /// Closes fds that arrived with bytes already consumed as message data.
    fn prune_batches(&mut self) {
        let consumed = self.consumed_pos();
        if let Some(io) = self.io.as_mut() {
            drop_batches_before(&mut io.batches, consumed);
        }
    }

    /// Stream offset of the next unconsumed byte.
    fn consumed_pos(&self) -> u64 {
        self.io
            .as_ref()
            .map_or(0, |io| io.pos - (self.end - self.start) as u64)
    }

    /// Receives one message.
    ///
    /// # Errors
    ///
    /// [`Error::Eof`] if the peer closed at a message boundary,
    /// [`Error::TruncatedMessage`] inside one, [`Error::Closed`],
    /// [`Error::NotReadable`], [`Error::BadLength`] for a header CPython
    /// never sends, or the OS error.
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_bytes_max(usize::MAX)
    }

    /// Receives one message of at most `maxlength` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLong`] for a longer message, which is neither
    /// read nor allocated; the connection is then no longer readable (and
    /// closed if it is not writable either). Otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_max(&mut self, maxlength: usize) -> Result<Vec<u8>> {
        let result = self.recv_bytes_max_inner(maxlength);
        self.note_read_ahead();
        result
    }

    fn recv_bytes_max_inner(&mut self, maxlength: usize) -> Result<Vec<u8>> {
        let len = self.read_header(maxlength)?;
        let buffered = self.end - self.start;
        if len <= buffered as u64 {
            let len = len as usize;
            let v = self.rbuf[self.start..self.start + len].to_vec();
            self.consume(len);
            self.prune_batches();
            return Ok(v);
        }
        let mut out = Vec::new();
        self.read_payload_vec(len, &mut out)?;
        self.prune_batches();
        Ok(out)
    }

    /// Receives one message into `buf` from its start; returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooShort`] holding the whole message if it does not
    /// fit (the message is consumed). Otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_bytes_into_at(buf, 0)
    }

    /// Receives one message into `buf[offset..]`; returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `offset > buf.len()` (nothing is
    /// read); otherwise as [`recv_bytes_into`](Connection::recv_bytes_into).
    pub fn recv_bytes_into_at(&mut self, buf: &mut [u8], offset: usize) -> Result<usize> {
        let result = self.recv_bytes_into_at_inner(buf, offset);
        self.note_read_ahead();
        result
    }

    fn recv_bytes_into_at_inner(&mut self, buf: &mut [u8], offset: usize) -> Result<usize> {
        self.check_readable()?;
        if offset > buf.len() {
            return Err(Error::InvalidArgument("offset too large"));
        }
        let len = self.read_header(usize::MAX)?;
        let room = buf.len() - offset;
        if len > room as u64 {
            let mut whole = Vec::new();
            self.read_payload_vec(len, &mut whole)?;
            self.prune_batches();
            return Err(Error::BufferTooShort(whole));
        }
        let len = len as usize;
        self.read_payload(&mut buf[offset..offset + len])?;
        self.prune_batches();
        Ok(len)
    }

    /// Receives one message into `buf`, replacing its contents, and
    /// returns the length (`buf.len()` afterwards). `buf`'s capacity and
    /// initialized length are reused: no reallocation when it is big
    /// enough, and no fresh pages to fault in when it is passed again.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes); `buf`'s contents are
    /// unspecified after an error.
    pub fn recv_bytes_into_vec(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_bytes_into_vec_max(buf, usize::MAX)
    }

    /// [`recv_bytes_into_vec`](Connection::recv_bytes_into_vec) of a
    /// message of at most `maxlength` bytes: a server that reads every
    /// request into one buffer, with a bound on what a peer may send.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLong`] for a longer message, as
    /// [`recv_bytes_max`](Connection::recv_bytes_max) (neither read nor
    /// allocated); otherwise as
    /// [`recv_bytes_into_vec`](Connection::recv_bytes_into_vec).
    pub fn recv_bytes_into_vec_max(
        &mut self,
        buf: &mut Vec<u8>,
        maxlength: usize,
    ) -> Result<usize> {
        let result = self
            .read_header(maxlength)
            .and_then(|len| self.read_payload_vec(len, buf));
        self.prune_batches();
        self.note_read_ahead();
        result.map(|()| buf.len())
    }

    /// Receives one message and decodes it with postcard. A message that
    /// fits in the read-ahead buffer is decoded in place, without
    /// allocating.
    ///
    /// Fds that came with the message (sent by [`send`](Connection::send)
    /// of a value that holds them) are handed to the value's fd slots
    /// (`mp_reduction::provide_fds`); any that no slot claims are closed.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the message is not a valid encoding of `T`
    /// (including trailing bytes, and fd slots that the fds that came do
    /// not back), with serde's explanation; [`Error::FdTransfer`] if the
    /// kernel truncated the message's fds. The message is consumed either
    /// way and its fds closed. Otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let result = self.recv_inner();
        self.note_read_ahead();
        result
    }

    fn recv_inner<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let (at, len) = self.read_header_at(usize::MAX)?;
        if len <= (self.end - self.start) as u64 {
            let len = len as usize;
            let end = self.consumed_pos() + len as u64;
            let value = self
                .take_message_fds(at, end)
                .and_then(|fds| codec::decode(&self.rbuf[self.start..self.start + len], fds));
            self.consume(len);
            self.prune_batches();
            return value;
        }
        let mut out = Vec::new();
        let read = self.read_payload_vec(len, &mut out);
        let fds = self.take_message_fds(at, self.consumed_pos());
        self.prune_batches();
        read?;
        codec::decode(&out, fds?)
    }

    /// Receives one message as a [`Parcel`]: its bytes and the fds that
    /// came with it, to [`decode`](Parcel::decode) later (outside a lock
    /// held while receiving, say).
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), but nothing is decoded.
    pub fn recv_parcel(&mut self) -> Result<Parcel> {
        let result = self.recv_parcel_inner();
        self.note_read_ahead();
        result
    }

    fn recv_parcel_inner(&mut self) -> Result<Parcel> {
        let (at, len) = self.read_header_at(usize::MAX)?;
        let mut out = Vec::new();
        let read = self.read_payload_vec(len, &mut out);
        let fds = self.take_message_fds(at, self.consumed_pos());
        self.prune_batches();
        read?;
        Ok(Parcel::from_parts(out, fds?))
    }

    /// Whether a message (or end of file) is ready to receive, waiting up
    /// to `timeout`: `Some(Duration::ZERO)` never blocks (CPython's
    /// `poll()` and `poll(-1)`), `None` waits forever. Never consumes
    /// anything; buffered read-ahead bytes count as ready.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::NotReadable`], or the OS error (for
    /// example `EBADF` for a bogus fd).
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.check_readable()?;
        self.sync();
        if self.end > self.start || self.lost_boundary {
            return Ok(true);
        }
        Ok(sys::wait_fd(self.fd()?, PollFlags::IN, timeout)?)
    }

    // ----- fd-level operations -----

    /// Duplicates the fd (both fds of a [`pipe_pair`](crate::pipe_pair)
    /// end; close-on-exec) into a second `Connection` with the same
    /// directions. Both switch to exact reads, since they now share one
    /// stream; bytes already read ahead stay with `self`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] or the OS error of `fcntl(F_DUPFD_CLOEXEC)`.
    pub fn try_clone(&mut self) -> Result<Connection> {
        self.sync();
        let io = self.io()?;
        let fd = sys::dup(io.fd.as_fd())?;
        let write = match &io.write {
            Some(w) => Some(WriteEnd {
                fd: sys::dup(w.fd.as_fd())?,
                kind: w.kind,
            }),
            None => None,
        };
        let mut clone = Connection::new(fd, self.readable, self.writable)?;
        if let Some(clone_io) = clone.io.as_mut() {
            clone_io.write = write;
        }
        clone.exact.store(true, Ordering::Relaxed);
        self.exact.store(true, Ordering::Relaxed);
        Ok(clone)
    }

    /// Chooses exact reads (never read past the current message; two
    /// system calls per small message, as CPython) or read-ahead.
    ///
    /// A handle reads ahead until it may be shared (see "Read-ahead, and
    /// ends that several readers share" above), then exactly.
    /// `set_exact_reads(true)` makes it exact before it is shared: do it
    /// on an end that several processes will read, before the first
    /// receive. `set_exact_reads(false)` says that this handle is the fd's
    /// only reader from now on (the other copies are closed or never
    /// receive); it holds until the next fork.
    pub fn set_exact_reads(&mut self, exact: bool) {
        self.sync();
        self.exact.store(exact, Ordering::Relaxed);
    }

    /// Whether receives read exactly (see
    /// [`set_exact_reads`](Connection::set_exact_reads)).
    pub fn exact_reads(&self) -> bool {
        self.exact.load(Ordering::Relaxed) || self.pending().is_some_and(|p| p.forked)
    }

    /// Exact reads, through a shared reference (for `Waiter::add`).
    pub(crate) fn force_exact_reads(&self) {
        self.exact.store(true, Ordering::Relaxed);
    }

    /// Opt-in low-latency mode: before blocking in a receive, spin with
    /// nonblocking reads for up to `spin` (adapting the budget to how
    /// often spinning pays off), then block. `None` turns it off. Costs
    /// CPU while waiting; meant for peers on separate CPUs.
    ///
    /// On a pipe (and on a [`pipe_pair`](crate::pipe_pair) end's read fd)
    /// this sets `O_NONBLOCK` on the fd (and clears it when the
    /// mode is turned off, or the connection is closed, sent or turned
    /// back into an fd). Errors of `fcntl` leave the mode off.
    pub fn set_low_latency(&mut self, spin: Option<Duration>) {
        let Some(io) = self.io.as_mut() else { return };
        match spin {
            Some(max) if !max.is_zero() => {
                if io.kind == Kind::Other && !io.set_nonblocking {
                    match sys::is_nonblocking(io.fd.as_fd()) {
                        Ok(true) => {}
                        Ok(false) => {
                            if sys::set_nonblocking(io.fd.as_fd(), true).is_err() {
                                return;
                            }
                            io.set_nonblocking = true;
                        }
                        Err(_) => return,
                    }
                }
                io.spin = Some(Spin { max, cur: max });
            }
            _ => {
                io.spin = None;
                restore_blocking(io);
                io.set_nonblocking = false;
            }
        }
    }

    /// Gives the fd back.
    ///
    /// # Errors
    ///
    /// Refuses (handing `self` back) if the connection is closed, holds
    /// read-ahead bytes or received fds that would be lost with it, or has
    /// a separate write fd (a [`pipe_pair`](crate::pipe_pair) end: no one
    /// fd is the connection), all with [`Error::InvalidArgument`] but the
    /// first ([`Error::Closed`]).
    #[allow(
        clippy::result_large_err,
        reason = "the contract hands the connection back by value; a cold path"
    )]
    pub fn into_fd(mut self) -> Result<OwnedFd, (Self, Error)> {
        if self.io.is_none() {
            return Err((self, Error::Closed));
        }
        self.sync();
        if self.has_write_fd() {
            return Err((
                self,
                Error::InvalidArgument(
                    "the connection has separate read and write fds (a pipe_pair end)",
                ),
            ));
        }
        if self.end > self.start || self.io.as_ref().is_some_and(|io| !io.batches.is_empty()) {
            return Err((
                self,
                Error::InvalidArgument("the connection holds read-ahead data"),
            ));
        }
        match self.io.take() {
            Some(io) => {
                restore_blocking(&io);
                Ok(io.fd)
            }
            None => Err((self, Error::Closed)),
        }
    }

    // ----- used by fds.rs -----

    /// Takes the next byte of the stream and the fds that came with it.
    /// Reads exactly one byte if nothing is buffered.
    pub(crate) fn take_fd_byte(&mut self) -> Result<(u8, Option<FdBatch>)> {
        let result = self.take_fd_byte_inner();
        self.note_read_ahead();
        result
    }

    fn take_fd_byte_inner(&mut self) -> Result<(u8, Option<FdBatch>)> {
        self.begin_read()?;
        if self.start == self.end {
            let io = self.io.as_mut().ok_or(Error::Closed)?;
            let mut byte = [0u8; 1];
            if io.read(&mut byte)? == 0 {
                return Err(Error::Eof);
            }
            let pos = io.pos - 1;
            return Ok((byte[0], take_batch(&mut io.batches, pos)));
        }
        let pos = self.consumed_pos();
        let byte = self.rbuf[self.start];
        self.consume(1);
        let io = self.io.as_mut().ok_or(Error::Closed)?;
        Ok((byte, take_batch(&mut io.batches, pos)))
    }

    pub(crate) fn check_fd_passing_writable(&self) -> Result<BorrowedFd<'_>> {
        let io = self.check_writable()?;
        if !io.passes_fds() {
            return Err(Error::InvalidArgument(
                "fd passing needs a unix-socket connection",
            ));
        }
        Ok(io.fd.as_fd())
    }

    pub(crate) fn check_fd_passing_readable(&self) -> Result<()> {
        self.check_readable()?;
        if !self.is_unix_socket() {
            return Err(Error::InvalidArgument(
                "fd passing needs a unix-socket connection",
            ));
        }
        Ok(())
    }
}

/// Closes the fds of batches that arrived before stream position `pos`.
fn drop_batches_before(batches: &mut VecDeque<FdBatch>, pos: u64) {
    while batches.front().is_some_and(|b| b.pos < pos) {
        batches.pop_front();
    }
}

/// Removes the batch at stream position `pos` (closing older ones).
fn take_batch(batches: &mut VecDeque<FdBatch>, pos: u64) -> Option<FdBatch> {
    drop_batches_before(batches, pos);
    if batches.front().is_some_and(|b| b.pos == pos) {
        return batches.pop_front();
    }
    None
}

/// Clears `O_NONBLOCK` if the low-latency mode set it on a pipe.
fn restore_blocking(io: &Io) {
    if io.set_nonblocking {
        // Best effort: the fd may be going away anyway.
        let _ = sys::set_nonblocking(io.fd.as_fd(), false);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsFd for Connection {
    /// The fd. On a closed connection this is a placeholder (standard
    /// input): use [`Connection::is_closed`] first, or the fallible
    /// [`Waitable::try_wait_fd`](crate::Waitable::try_wait_fd).
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.io {
            Some(io) => io.fd.as_fd(),
            None => rustix::stdio::stdin(),
        }
    }
}

impl mp_auth::MessageChannel for Connection {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        Ok(self.send_bytes(message)?)
    }

    fn recv_message(&mut self, max_len: usize) -> io::Result<Vec<u8>> {
        Ok(self.recv_bytes_max(max_len)?)
    }
}
