//! # mp-forkserver
//!
//! The fork server of CPython's `multiprocessing.forkserver`: a process
//! started once, by re-executing the current binary, that stays
//! single-threaded and forks a child for every request. Forking from it is
//! safe even when the requesting program runs many threads, and cheap,
//! since the server is small and has done its initialisation already.
//!
//! The protocol follows `forkserver.py` (CPython 3.14, with the
//! authenticated control socket), over `mp-conn`:
//!
//! 1. [`ForkServer::ensure_running`] picks a socket path in a private
//!    `pymp-*` temp dir ([`mp_conn::arbitrary_address`]), makes the "alive"
//!    pipe, and starts the current executable with
//!    `MP_RS_ROLE=forkserver`. A fresh 32-byte key, the path, the preload
//!    data and the pipe's read end travel to the server over its stdin, a
//!    one-shot socket wrapped in an [`mp_conn::Connection`]: never argv or
//!    the environment. The server binds an authenticating
//!    [`mp_conn::Listener`] there (mode 0600) and says it is ready.
//! 2. [`ForkServer::connect_to_new_process`] connects with
//!    [`mp_conn::ClientBuilder`], which runs the `mp-auth` handshake (the
//!    client answers first, then challenges the server), and sends
//!    `[child_r, child_w, alive_w, *fds]` with
//!    [`Connection::send_fds`](mp_conn::Connection::send_fds) (CPython's
//!    `reduction.sendfds` format). The server forks; the child reads the
//!    process data from `child_r`.
//! 3. The server writes the child's pid, and later its exit code (negative
//!    for a signal), to the status pipe as signed 64-bit native-endian
//!    integers ([`read_signed`]). EOF there means the server died.
//! 4. The server learns of exits through SIGCHLD and a self-pipe, ignores
//!    SIGINT, and exits when every holder of the "alive" pipe's write end
//!    is gone. A dead server is noticed (`waitpid(WNOHANG)`, or a refused
//!    connection) and started again on the next request.
//!
//! The server side is entered through [`serve`], which `mp_context::init`
//! calls when [`take_role`] says so; `mp-context` builds its `forkserver`
//! start method on this crate. Most programs use it through `mp-context`.
//!
//! # Safety of forked children
//!
//! The server never starts a thread, so its children may use locks, the
//! allocator and stdio freely. A preload hook must not leave threads
//! running in the server: a child forked while another thread holds a lock
//! would wait on it forever.
//!
//! # Examples
//!
//! The limits a request is checked against, before any process starts:
//!
//! ```
//! use mp_forkserver::{ForkServer, Error, MAXFDS_TO_SEND};
//! let (a, _b) = std::os::unix::net::UnixStream::pair()?;
//! let fds = vec![std::os::fd::AsFd::as_fd(&a); MAXFDS_TO_SEND];
//! let err = ForkServer::global().connect_to_new_process(&fds).unwrap_err();
//! assert!(matches!(err, Error::TooManyFds { .. }));
//! # std::io::Result::Ok(())
//! ```

#![deny(unsafe_code)]

mod client;
mod error;
mod server;
mod sys;

use std::io;
use std::os::fd::BorrowedFd;

pub use client::{ForkServer, executable, self_exe, set_executable, start_role};
pub use error::{Error, Result};
pub use server::{ForkedChild, ServerHooks, serve};

/// The most fds one request may carry, the 3 the protocol uses included
/// (CPython's `MAXFDS_TO_SEND`). A client refuses to send
/// `fds.len() + 4 >= MAXFDS_TO_SEND` user fds, as CPython does.
pub const MAXFDS_TO_SEND: usize = 256;

/// The most fds one `SCM_RIGHTS` message may carry on Linux (`SCM_MAX_FD`
/// in the kernel's `include/net/scm.h`); [`mp_conn::Connection::send_fds`]
/// refuses more. With the 3 fds of the protocol, a fork server request
/// carries at most `SCM_MAX_FD - 3` user fds.
pub const SCM_MAX_FD: usize = 253;

/// The length of the control socket's key (`os.urandom(32)` in CPython).
pub const AUTHKEY_LEN: usize = 32;

/// The `log` target of every message of this crate and of `mp-context`:
/// `multiprocessing`, the name of CPython's logger
/// (`multiprocessing.util.LOGGER_NAME`).
pub const LOG_TARGET: &str = "multiprocessing";

/// The environment variable that tells a re-executed binary which role it
/// plays: `forkserver` (see [`serve`]) or `spawn` (an `mp-context` child).
pub const ROLE_ENV: &str = "MP_RS_ROLE";

/// Reads [`ROLE_ENV`] and removes it from the environment, so that
/// programs this process starts do not inherit it. `None` for an ordinary
/// start. For a re-executed child it also closes every inherited fd above
/// 2 (CPython's `close_fds=True`): the child keeps stdio and what it is
/// sent, never fds its parent leaked.
///
/// Call it first thing in `main`, before any thread starts (removing an
/// environment variable is not thread-safe); `mp_context::init` does.
pub fn take_role() -> Option<String> {
    let role = std::env::var(ROLE_ENV).ok()?;
    sys::remove_env(ROLE_ENV);
    sys::close_inherited_fds();
    Some(role)
}

// The status pipe is not an `mp_conn::Connection`: CPython's forkserver
// writes bare 8-byte native-endian integers there (`write_signed`), with no
// length prefix, and mp-conn frames every message it sends. These two
// functions are the whole of that format.

/// Reads one signed 64-bit native-endian integer from a status pipe
/// (CPython's `forkserver.read_signed`).
///
/// # Errors
///
/// `UnexpectedEof` if the writer closed first (the server died); any read
/// error.
pub fn read_signed(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(i64::from_ne_bytes(buf))
}

/// Writes one signed 64-bit native-endian integer (CPython's
/// `forkserver.write_signed`).
///
/// # Errors
///
/// Any write error (`BrokenPipe` once the reader is gone).
pub fn write_signed(fd: BorrowedFd<'_>, n: i64) -> io::Result<()> {
    let buf = n.to_ne_bytes();
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::write(fd, &buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
