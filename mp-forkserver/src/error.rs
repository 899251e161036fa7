//! The crate's error type.

use std::{fmt, io};

/// What can go wrong asking the fork server for a child.
///
/// `Debug` prints the message and its causes (`message: cause: cause`),
/// which is what `main() -> Result<(), Box<dyn Error>>` shows a user;
/// match on the variants to tell the cases apart.
#[derive(thiserror::Error)]
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
    /// the child's pid ("Forkserver process may have crashed"). The source
    /// is what failed: the connect, the handshake, or the request.
    #[error("fork server process may have crashed")]
    ServerDied(#[source] io::Error),
    /// Starting the server process failed.
    #[error("could not start the fork server")]
    Launch(#[source] io::Error),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main() -> Result<(), Box<dyn Error>>` prints: the message and
    /// its causes down to the OS error, with the server's address.
    #[test]
    fn debug_shows_the_message_the_cause_and_the_address() {
        // A request to a server whose socket is gone fails the way
        // `request` reports it: the server died, because the connect failed.
        let dir = std::env::temp_dir().join(format!("mp-forkserver-gone-{}", std::process::id()));
        let address = mp_conn::Address::Unix(dir.join("sock"));
        let connect = mp_conn::ClientBuilder::new()
            .authkey(b"key".to_vec())
            .connect(&address)
            .unwrap_err();
        let err = Error::ServerDied(connect.into());
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with(&format!(
                "fork server process may have crashed: cannot connect to {address}: "
            )),
            "{shown}"
        );
        assert!(shown.contains("No such file or directory"), "{shown}");

        let err = Error::TooManyFds {
            count: 300,
            max: 251,
        };
        assert_eq!(
            format!("{err:?}"),
            "too many fds: 300 given, at most 251 can be passed to a forkserver child"
        );
    }
}
