//! # mp-auth
//!
//! The HMAC challenge/response handshake of CPython's
//! `multiprocessing.connection`, byte for byte, in both roles:
//! [`deliver_challenge`] (the verifier, which a `Listener` runs first) and
//! [`answer_challenge`] (the answerer, which a `Client` runs first).
//!
//! - Modern peers (CPython 3.12+) prefix challenges and replies with the
//!   digest name, `{sha256}` by default; md5, sha256, sha384, sha3_256 and
//!   sha3_384 are accepted.
//! - Legacy peers (CPython 3.11 and older) send a 20-byte challenge and a
//!   bare 16-byte HMAC-MD5 reply; both directions interoperate.
//! - [`Policy::refuse_md5`] refuses MD5 altogether (FIPS-style deployments).
//! - [`client_handshake`] runs the client's two steps pipelined: four
//!   one-way trips instead of six, with the same bytes.
//!
//! The core ([`Challenge`], [`parse_challenge`], [`create_response`],
//! [`verify_response`], [`parse_digest_prefix`]) does no I/O; the drivers
//! run it over anything that implements [`MessageChannel`]. Every read is
//! capped at 256 bytes, comparisons are constant-time, and the empty key is
//! a real key.
//!
//! See the README for the guarantees and the differences from CPython.
//!
//! # Examples
//!
//! Both roles over an in-memory channel:
//!
//! ```
//! use std::{io, sync::mpsc};
//! use mp_auth::{answer_challenge, deliver_challenge, Digest, MessageChannel};
//!
//! struct End(mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>);
//! impl MessageChannel for End {
//!     fn send_message(&mut self, m: &[u8]) -> io::Result<()> {
//!         self.0.send(m.to_vec()).map_err(|_| io::ErrorKind::BrokenPipe.into())
//!     }
//!     fn recv_message(&mut self, max: usize) -> io::Result<Vec<u8>> {
//!         let m = self.1.recv().map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
//!         if m.len() > max { return Err(io::ErrorKind::InvalidData.into()); }
//!         Ok(m)
//!     }
//! }
//!
//! let (a_tx, b_rx) = mpsc::channel();
//! let (b_tx, a_rx) = mpsc::channel();
//! let client = std::thread::spawn(move || answer_challenge(End(b_tx, b_rx), b"secret key"));
//! deliver_challenge(End(a_tx, a_rx), b"secret key", Digest::Sha256)?;
//! client.join().unwrap()?;
//! # Ok::<(), mp_auth::HandshakeError>(())
//! ```

#![forbid(unsafe_code)]

mod digest;
mod error;
mod handshake;

pub use digest::{Digest, LEGACY_CHALLENGE_LEN, MD5_DIGEST_LEN, parse_digest_prefix};
pub use error::{AuthenticationError, HandshakeError};
pub use handshake::{
    CHALLENGE, CHALLENGE_RANDOM_LEN, Challenge, FAILURE, MAX_HANDSHAKE_MESSAGE, MessageChannel,
    Policy, WELCOME, answer_challenge, answer_challenge_with, client_handshake, create_response,
    deliver_challenge, deliver_challenge_with, parse_challenge, verify_response,
};

/// The README's examples, compiled and run as doc tests so that it cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
