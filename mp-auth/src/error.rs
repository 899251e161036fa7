//! Errors of the handshake, with the reasons CPython gives.

use std::{fmt, io};

use crate::Digest;

/// The peer failed to authenticate, or we were refused; CPython's
/// `multiprocessing.AuthenticationError`. The texts are CPython's.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticationError {
    /// The peer's reply to our challenge did not match.
    #[error("digest received was wrong")]
    DigestReceivedWrong,
    /// The peer answered our reply with something other than `#WELCOME#`.
    #[error("digest sent was rejected")]
    DigestSentRejected,
    /// A message that is neither legacy-sized nor `{digest}`-prefixed with an
    /// allowed digest.
    #[error(
        "unsupported message length, missing digest prefix, or unsupported digest: {}",
        Escaped(message)
    )]
    UnsupportedDigest {
        /// The offending message (at most 256 bytes, as reads are capped).
        message: Vec<u8>,
    },
    /// A reply whose MAC has the wrong length for its digest.
    #[error("expected {digest:?} of length {expected} got {got}")]
    WrongLength {
        /// The digest the reply named (or MD5 for a legacy reply).
        digest: Digest,
        /// The length that digest produces.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A challenge with fewer than 20 bytes after `#CHALLENGE#`.
    #[error("challenge too short: {len} bytes")]
    ChallengeTooShort {
        /// The number of bytes after the token.
        len: usize,
    },
    /// Something other than a challenge arrived where one was expected.
    #[error("Protocol error, expected challenge: {}", Escaped(message))]
    Protocol {
        /// The message received instead.
        message: Vec<u8>,
    },
    /// A digest our [`Policy`](crate::Policy) refuses (MD5 under
    /// `Policy::refuse_md5`); CPython reports `response_digest='md5'
    /// unsupported` in FIPS mode.
    #[error("response_digest={:?} unsupported", digest.name())]
    DigestRefused {
        /// The refused digest.
        digest: Digest,
    },
}

/// A handshake that did not complete: either authentication failed or the
/// transport did (including end of file and over-long messages, which
/// CPython reports as `OSError`/`EOFError`).
#[derive(thiserror::Error)]
pub enum HandshakeError {
    /// Authentication failed.
    #[error(transparent)]
    Authentication(#[from] AuthenticationError),
    /// The channel failed.
    #[error("handshake I/O failed")]
    Io(#[from] io::Error),
}

impl HandshakeError {
    /// Whether this is an authentication failure (not a transport error).
    pub fn is_authentication(&self) -> bool {
        matches!(self, HandshakeError::Authentication(_))
    }
}

impl From<HandshakeError> for io::Error {
    fn from(err: HandshakeError) -> io::Error {
        match err {
            HandshakeError::Io(e) => e,
            HandshakeError::Authentication(a) => io::Error::new(io::ErrorKind::PermissionDenied, a),
        }
    }
}

/// `Debug` is the message and its causes (`message: cause: cause`), which
/// is what `main() -> Result<(), Box<dyn Error>>` shows a user.
impl fmt::Debug for AuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(self, f)
    }
}

/// `Debug` is the message and its causes (`message: cause: cause`).
impl fmt::Debug for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(self, f)
    }
}

/// Writes `err` and its `source()` chain as `message: cause: cause`.
fn write_chain(err: &dyn std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{err}")?;
    let mut source = err.source();
    while let Some(cause) = source {
        write!(f, ": {cause}")?;
        source = cause.source();
    }
    Ok(())
}

/// Formats bytes as Python's `repr` of a `bytes` object, `b'...'`.
struct Escaped<'a>(&'a [u8]);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("b'")?;
        for &b in self.0 {
            match b {
                b'\'' => f.write_str("\\'")?,
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Challenge, MessageChannel, Policy, answer_challenge, create_response};

    /// What `main() -> Result<(), Box<dyn Error>>` prints is the message
    /// with its causes, never a bare variant name.
    #[test]
    fn debug_shows_the_message_and_its_causes() {
        // A reply made with the wrong key.
        let challenge = Challenge::new(Digest::Sha256).unwrap();
        let message = crate::parse_challenge(&challenge.to_wire())
            .unwrap()
            .to_vec();
        let reply = create_response(b"wrong key", &message, Policy::CPYTHON).unwrap();
        let err = challenge
            .verify(b"right key", &reply, Policy::CPYTHON)
            .unwrap_err();
        assert_eq!(format!("{err:?}"), "digest received was wrong");

        // A peer that hangs up before sending its challenge.
        struct HungUp;
        impl MessageChannel for HungUp {
            fn send_message(&mut self, _: &[u8]) -> io::Result<()> {
                Ok(())
            }
            fn recv_message(&mut self, _: usize) -> io::Result<Vec<u8>> {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ))
            }
        }
        let err = answer_challenge(HungUp, b"key").unwrap_err();
        assert_eq!(
            format!("{err:?}"),
            "handshake I/O failed: the peer closed the connection"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(format!("{boxed:?}").starts_with("handshake I/O failed: "));
    }

    #[test]
    fn messages_match_cpython() {
        assert_eq!(
            AuthenticationError::ChallengeTooShort { len: 3 }.to_string(),
            "challenge too short: 3 bytes"
        );
        assert_eq!(
            AuthenticationError::Protocol {
                message: b"x\x00'".to_vec()
            }
            .to_string(),
            "Protocol error, expected challenge: b'x\\x00\\''"
        );
        assert_eq!(
            AuthenticationError::DigestRefused {
                digest: Digest::Md5
            }
            .to_string(),
            "response_digest=\"md5\" unsupported"
        );
    }
}
