//! Entry points for the fuzz targets in `mp-fuzz`: the two handshake state
//! machines that parse bytes from a peer, reachable on a socket the caller
//! made (a `socketpair`, say) instead of through a `Listener` or `client`.
//!
//! **Not part of the API**: hidden from the docs, exempt from semver, and
//! only what the fuzz targets need. Use [`Listener`](crate::Listener) and
//! [`client`](crate::client) instead.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_auth::{Digest, Policy};

use crate::Result;
use crate::handshake::{Auth, Handshake, run_client};
use crate::sys::wait_fd;

/// The listener's side of a handshake on one connected socket, driven as a
/// `Listener` drives it: [`advance`](Self::advance) whenever
/// [`wait`](Self::wait) says the socket is ready.
#[derive(Debug)]
pub struct ListenerHandshake(Handshake);

impl ListenerHandshake {
    /// Starts the listener's handshake on the connected socket `fd`
    /// (blocking mode); it must end within `timeout` from now.
    pub fn new(
        fd: OwnedFd,
        key: &[u8],
        digest: Digest,
        policy: Policy,
        timeout: Duration,
    ) -> ListenerHandshake {
        let auth = Arc::new(Auth {
            key: key.to_vec(),
            digest,
            policy,
            timeout,
        });
        ListenerHandshake(Handshake::new(fd, auth))
    }

    /// Makes the progress the socket allows without blocking: `Ok(true)`
    /// once the handshake succeeded, `Ok(false)` to wait.
    ///
    /// # Errors
    ///
    /// The handshake failed, as `Listener::accept` reports it.
    pub fn advance(&mut self) -> Result<bool> {
        self.0.advance()
    }

    /// Waits until the socket is ready for what the handshake wants next,
    /// for at most `timeout` and never past the handshake's deadline;
    /// `Ok(false)` if that time passed first.
    ///
    /// # Errors
    ///
    /// A `poll` error.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let now = Instant::now();
        let timeout = match self.0.deadline() {
            Some(deadline) => timeout.min(deadline.saturating_duration_since(now)),
            None => timeout,
        };
        Ok(wait_fd(
            self.0.fd(),
            self.0.want().poll_flags(),
            Some(timeout),
        )?)
    }

    /// Whether the handshake's deadline has passed (a `Listener` then
    /// fails it with [`Error::Timeout`](crate::Error::Timeout)).
    pub fn expired(&self) -> bool {
        self.0.expired(Instant::now())
    }

    /// The socket, once [`advance`](Self::advance) said `true`.
    pub fn into_fd(self) -> OwnedFd {
        self.0.into_fd()
    }
}

/// Runs the client's side of the handshake on the connected socket `fd`
/// (blocking mode), exactly as [`ClientBuilder::connect`] does after
/// connecting: `timeout` from the listener's first byte, `accept_timeout`
/// until it.
///
/// # Errors
///
/// The handshake failed, as `ClientBuilder::connect` reports it.
///
/// [`ClientBuilder::connect`]: crate::ClientBuilder::connect
pub fn client_handshake(
    fd: BorrowedFd<'_>,
    key: &[u8],
    digest: Digest,
    policy: Policy,
    timeout: Duration,
    accept_timeout: Option<Duration>,
) -> Result<()> {
    let auth = Auth {
        key: key.to_vec(),
        digest,
        policy,
        timeout,
    };
    run_client(fd, &auth, accept_timeout)
}
