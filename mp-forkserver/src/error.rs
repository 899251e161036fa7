//! The crate's error type.

use std::io;

/// What can go wrong asking the fork server for a child.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// More fds than one request may carry (CPython's `ValueError('too many
    /// fds')`): `count` user fds plus the 4 the protocol reserves must stay
    /// below [`MAXFDS_TO_SEND`](crate::MAXFDS_TO_SEND).
    #[error("too many fds: {count} given, at most {max} can be passed to a forkserver child")]
    TooManyFds {
        /// How many fds the caller asked to pass.
        count: usize,
        /// The most that fit.
        max: usize,
    },
    /// The control socket's handshake was refused (CPython's
    /// `AuthenticationError`): the server and the client hold different keys.
    #[error("fork server authentication failed")]
    Authentication(#[source] mp_auth::AuthenticationError),
    /// The server went away in the middle of a request, or never reported
    /// the child's pid ("Forkserver process may have crashed").
    #[error("fork server process may have crashed")]
    ServerDied(#[source] io::Error),
    /// Starting the server process failed.
    #[error("could not start the fork server")]
    Launch(#[source] io::Error),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<mp_auth::HandshakeError> for Error {
    fn from(e: mp_auth::HandshakeError) -> Error {
        match e {
            mp_auth::HandshakeError::Authentication(a) => Error::Authentication(a),
            mp_auth::HandshakeError::Io(io) => Error::ServerDied(io),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
