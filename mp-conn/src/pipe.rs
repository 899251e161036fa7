//! `pipe()`: CPython's `multiprocessing.Pipe`.

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::pipe::PipeFlags;

use crate::connection::Connection;
use crate::error::Result;

/// A connected pair of connections, CPython's `Pipe(duplex)`.
///
/// With `duplex`, both ends send and receive over an `AF_UNIX` stream
/// socketpair (which can also carry fds). Without, it is an OS pipe and
/// the pair is `(reader, writer)`. Every fd is close-on-exec.
///
/// # Errors
///
/// The OS error of `socketpair(2)` or `pipe2(2)` (for example `EMFILE`).
///
/// # Examples
///
/// ```
/// let (mut reader, writer) = mp_conn::pipe(false)?;
/// writer.send(&(1u32, "two"))?;
/// let (one, two): (u32, String) = reader.recv()?;
/// assert_eq!((one, two.as_str()), (1, "two"));
/// # Ok::<(), mp_conn::Error>(())
/// ```
#[doc(alias = "Pipe")]
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((
            Connection::new(a, true, true)?,
            Connection::new(b, true, true)?,
        ))
    } else {
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        Ok((
            Connection::new(r, true, false)?,
            Connection::new(w, false, true)?,
        ))
    }
}

/// A duplex connection pair made of two OS pipes: about 1.8x the
/// round-trip rate of a socketpair on Linux; no fd passing.
///
/// Opt-in; [`pipe(true)`](pipe) stays CPython's socketpair. Each end holds
/// the read fd of one pipe and the write fd of the other (see
/// [`Connection::from_fd_pair`]): it reads, polls and waits on its read
/// fd and sends on its write fd. The framing is CPython's, so a Python
/// peer given the two fds (`Connection(r, writable=False)` and
/// `Connection(w, readable=False)`) can talk to it.
///
/// Measured in C on the development machine (Linux, 64-byte ping-pong,
/// both peers on one CPU): a stream socketpair did about 93k round
/// trips/s, two pipes 175-185k; `cargo xtask bench pipe_rtt` measures
/// ours on yours.
///
/// What does not work on such an end, with an error value:
/// [`send_fds`](Connection::send_fds), [`recv_fds`](Connection::recv_fds),
/// [`send_connection`](Connection::send_connection) (a pipe cannot carry
/// fds) and [`into_fd`](Connection::into_fd) (there are two fds). What
/// works: everything else, including [`try_clone`](Connection::try_clone)
/// (both fds duplicated), the low-latency mode, [`wait`](crate::wait),
/// [`Waiter`](crate::Waiter), and passing an end to another process, as
/// a process argument or inside a message sent over a unix socket (both
/// fds travel).
///
/// Every fd is close-on-exec.
///
/// # Errors
///
/// The OS error of `pipe2(2)` (for example `EMFILE`).
///
/// # Examples
///
/// ```
/// let (mut a, mut b) = mp_conn::pipe_pair()?;
/// a.send_bytes(b"ping")?;
/// assert_eq!(b.recv_bytes()?, b"ping");
/// b.send(&42u32)?;
/// assert_eq!(a.recv::<u32>()?, 42);
/// assert!(a.send_fds(&[]).is_err());
/// # Ok::<(), mp_conn::Error>(())
/// ```
#[doc(alias = "pipe2")]
pub fn pipe_pair() -> Result<(Connection, Connection)> {
    let (r1, w1) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let (r2, w2) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    Ok((
        Connection::from_fd_pair(r1, w2)?,
        Connection::from_fd_pair(r2, w1)?,
    ))
}
