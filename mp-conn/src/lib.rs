//! # mp-conn
//!
//! Connections, pipes, listeners, `wait()` and fd passing of CPython's
//! `multiprocessing.connection`, wire-compatible with CPython: a Rust
//! process and a CPython process can exchange messages, authenticate each
//! other and pass fds.
//!
//! - [`Connection`]: messages over an owned socket or pipe fd, framed as
//!   CPython frames them (a 4-byte big-endian signed length, or `-1` and
//!   an 8-byte length above `0x7fffffff`). Byte messages
//!   ([`send_bytes`](Connection::send_bytes),
//!   [`recv_bytes`](Connection::recv_bytes), ...) and typed ones
//!   ([`send`](Connection::send)/[`recv`](Connection::recv), postcard).
//! - [`pipe`]: CPython's `Pipe(duplex)`; [`pipe_pair`]: an opt-in duplex
//!   pair made of two OS pipes (faster round trips, no fd passing).
//! - [`Listener`] and [`client`]: AF_UNIX paths, Linux abstract names and
//!   TCP, with the HMAC handshake of [`mp_auth`] when given a key.
//! - [`wait`] and [`Waiter`]: readiness of many objects at once.
//! - fd passing ([`Connection::send_fds`], [`Connection::recv_fds`]),
//!   compatible with CPython's `reduction.sendfds`/`recvfds`; and values
//!   that hold fds (a [`Connection`], `mp_heap::SharedBuffer`,
//!   `mp_reduction::Fd`, ...) through typed `send`/`recv` on unix sockets,
//!   or encoded now and sent later as a [`Parcel`].
//! - Ends that several processes read in turn: a handle that may share its
//!   fd reads exactly, and bytes it read ahead travel with it (see
//!   [`Connection`], "Read-ahead, and ends that several readers share").
//! - [`frame`]: the framing without I/O, including a [`FrameDecoder`].
//!
//! Linux first, other Unixes through rustix; no Windows.
//!
//! # Examples
//!
//! A round trip over a duplex pipe, in bytes and typed:
//!
//! ```
//! let (mut parent, mut child) = mp_conn::pipe(true)?;
//! let worker = std::thread::spawn(move || -> mp_conn::Result<()> {
//!     let request = child.recv_bytes()?;
//!     child.send_bytes(&request.to_ascii_uppercase())?;
//!     let numbers: Vec<i64> = child.recv()?;
//!     child.send(&numbers.iter().sum::<i64>())
//! });
//! parent.send_bytes(b"hello")?;
//! assert_eq!(parent.recv_bytes()?, b"HELLO");
//! parent.send(&vec![1i64, 2, 3])?;
//! assert_eq!(parent.recv::<i64>()?, 6);
//! worker.join().unwrap()?;
//! assert!(matches!(parent.recv_bytes(), Err(mp_conn::Error::Eof)));
//! # Ok::<(), mp_conn::Error>(())
//! ```

#![deny(unsafe_code)]

#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
mod address;
mod client;
mod codec;
mod connection;
mod error;
mod fds;
pub mod frame;
mod handshake;
mod keep;
mod listener;
mod pipe;
mod sys;
mod wait;

pub use address::{Address, Family, arbitrary_address};
pub use client::{ClientBuilder, client};
pub use codec::Parcel;
pub use connection::Connection;
pub use error::{Error, Result, SerdeError};
pub use frame::{
    FrameDecoder, HEADER_LEN, Header, decode_header, decode_long_length, encode_header,
};
pub use listener::{
    DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING_HANDSHAKES, Interest, Listener,
    ListenerBuilder,
};
pub use mp_auth::{Digest, Policy};
pub use pipe::{pipe, pipe_pair};
pub use wait::{Waitable, Waiter, wait};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
