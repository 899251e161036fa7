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
