//! # mp-pickle
//!
//! A pickle reader and writer of our own, for exchanging values with
//! CPython: what `multiprocessing` puts on its connections (manager
//! requests and replies, `Connection.send` payloads), read into and written
//! from [`mp_value::Value`], or into and from your own types with serde.
//!
//! - Reading: protocols 0 to 5 (CPython 3.11–3.13 send protocol 4, 3.14+
//!   protocol 5), every opcode except persistent ids, the extension
//!   registry and out-of-band buffers (refused with a clear error;
//!   multiprocessing uses none of them). Class references and objects
//!   (`GLOBAL`/`STACK_GLOBAL` with `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`,
//!   `BUILD`, `APPENDS`/`SETITEMS` on objects) become [`Value::Global`] and
//!   [`Value::Object`]: a `multiprocessing.managers.Token`, a pickled
//!   proxy (`RebuildProxy`), an exception (`KeyError('k')`, `_queue.Empty()`)
//!   or any object of a class we do not know, kept with its class name,
//!   arguments and state, and written back unchanged, shared sub-objects
//!   still shared.
//! - Writing: protocol 4 as CPython's own pickler writes it (frames,
//!   memoization, the compact opcodes), so CPython reads it and the bytes
//!   match CPython's for the same value.
//! - Hostile input is an error value, never a panic, a stack overflow or
//!   an unbounded allocation: the reader runs the pickle machine on an
//!   explicit stack, checks every length against the bytes present before
//!   allocating, and stops at configurable [`Limits`] (input size, nesting
//!   depth, memo entries, values).
//!
//! # Examples
//!
//! A reply of a CPython manager, as captured on the wire:
//!
//! ```
//! use mp_value::Value;
//!
//! // ('#ERROR', _queue.Empty()): CPython 3.11's answer to get_nowait().
//! let wire = b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00\x8c\x06#ERROR\x94\
//!              \x8c\x06_queue\x94\x8c\x05Empty\x94\x93\x94)R\x94\x86\x94.";
//! let reply = mp_pickle::loads(wire)?;
//! assert_eq!(reply.to_string(), "('#ERROR', _queue.Empty())");
//! let items = reply.as_seq().unwrap();
//! let Value::Object(exc) = &items[1] else { unreachable!() };
//! assert!(exc.global().unwrap().is("_queue", "Empty"));
//! // Written back, byte for byte what CPython wrote.
//! assert_eq!(mp_pickle::dumps(&reply), wire);
//! # Ok::<(), mp_pickle::Error>(())
//! ```
//!
//! Plain data with serde:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Job { id: u32, name: String, weights: Vec<f64> }
//!
//! let job = Job { id: 1, name: "a".into(), weights: vec![0.5] };
//! let bytes = mp_pickle::to_vec(&job)?; // CPython: {'id': 1, 'name': 'a', 'weights': [0.5]}
//! assert_eq!(mp_pickle::from_slice::<Job>(&bytes)?, job);
//! # Ok::<(), mp_pickle::Error>(())
//! ```
//!
//! # Over a `multiprocessing.connection`
//!
//! CPython's `Connection.send(obj)` is `send_bytes(pickle.dumps(obj))`
//! (protocol 4 or 5), so a Rust peer on an `mp_conn::Connection` does
//! `mp_pickle::from_slice(&conn.recv_bytes()?)` to receive and
//! `conn.send_bytes(&mp_pickle::to_vec(&value)?)` to send. The crate's
//! README has a whole program, and `tests/it/conn.rs` runs one against a
//! real CPython `Client`.
//!
//! # As a manager's serializer
//!
//! A server keeps one [`Limits`] per connection policy and calls
//! [`loads_with`] on each request frame, [`dump_into`] with a reused buffer
//! for each reply; [`Error`] tells a bad frame (reply `#TRACEBACK` or
//! close) from a value that does not fit a typed request
//! ([`ErrorKind::Value`]).

#![forbid(unsafe_code)]

mod compat;
mod error;
mod op;
mod read;
mod write;

pub use error::{Error, ErrorKind, Limit};
pub use read::{Limits, loads_with};
pub use write::{dump_into, dumps};

use mp_value::Value;

/// Reads one pickle into a [`Value`] with the default [`Limits`].
///
/// # Errors
///
/// See [`loads_with`].
pub fn loads(data: &[u8]) -> Result<Value, Error> {
    loads_with(data, &Limits::default())
}

/// Pickles any `Serialize` value (protocol 4), mapped onto Python's types
/// as [`mp_value::to_value`] maps it (structs become dicts).
///
/// # Errors
///
/// [`ErrorKind::Value`] when the value cannot be converted (a map key
/// Python could not hash, nesting past `mp_value::MAX_SERDE_DEPTH`).
pub fn to_vec<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    Ok(dumps(&mp_value::to_value(value)?))
}

/// Reads a pickle into any `Deserialize` type, with the default
/// [`Limits`] (see [`mp_value::from_value`] for what converts).
///
/// # Errors
///
/// A read error (see [`loads_with`]), or [`ErrorKind::Value`] when the
/// value does not fit `T`.
pub fn from_slice<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, Error> {
    from_slice_with(data, &Limits::default())
}

/// [`from_slice`] within `limits`.
///
/// # Errors
///
/// As [`from_slice`].
pub fn from_slice_with<T: serde::de::DeserializeOwned>(
    data: &[u8],
    limits: &Limits,
) -> Result<T, Error> {
    let value = loads_with(data, limits)?;
    Ok(mp_value::from_value(&value)?)
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
