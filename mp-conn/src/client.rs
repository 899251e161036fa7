//! `client`: connects to a listener and, with a key, runs the mutual
//! handshake in CPython's client order (answer, then deliver), pipelined
//! with [`mp_auth::client_handshake`].

use std::os::fd::AsFd;
use std::time::Duration;

use mp_auth::{Digest, Policy};
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{SocketFlags, SocketType};

use crate::address::Address;
use crate::error::AtPlace;
use crate::handshake::{Auth, run_client};
use crate::listener::{DEFAULT_HANDSHAKE_TIMEOUT, address_family, connection_from};
use crate::sys;
use crate::{Connection, Error, Result};

/// Connects to a listener at `address` (CPython's
/// `multiprocessing.connection.Client(address, authkey=...)`).
///
/// With a key, the client first answers the listener's challenge, then
/// challenges it (sha256). `None` means no authentication; an empty key is
/// a real key. The family comes from the address. For more control (digest,
/// policy, timeouts) use [`ClientBuilder`].
///
/// # Errors
///
/// As [`ClientBuilder::connect`].
///
/// # Examples
///
/// ```
/// use mp_conn::{Family, Listener, client};
///
/// let mut listener = Listener::builder().family(Family::Inet).authkey(*b"key").bind()?;
/// let address = listener.address().clone();
/// let server = std::thread::spawn(move || -> mp_conn::Result<()> {
///     let mut conn = listener.accept()?;
///     let n: u32 = conn.recv()?;
///     conn.send(&(n + 1))
/// });
/// let mut conn = client(&address, Some(b"key"))?;
/// conn.send(&41u32)?;
/// assert_eq!(conn.recv::<u32>()?, 42);
/// server.join().unwrap()?;
/// # Ok::<(), mp_conn::Error>(())
/// ```
pub fn client(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
    let mut builder = ClientBuilder::new();
    builder.authkey = authkey.map(<[u8]>::to_vec);
    builder.connect(address)
}

/// Builds a client connection: `ClientBuilder::new().authkey(key)
/// .digest(d).policy(p).timeout(t).connect(&address)`.
///
/// Two timeouts bound the handshake. The listener may call `accept` long
/// after the connect (a busy server that accepts one client at a time), so
/// by default the client waits for the listener's first message as long as
/// CPython does, forever; [`ClientBuilder::accept_timeout`] bounds that
/// wait. Once the listener has started, the rest of the handshake must
/// finish within [`ClientBuilder::timeout`] (default 5 s), so a listener
/// that stalls mid-handshake cannot hang the client. Neither timeout stays
/// on the connection: it is blocking, with no timeouts, once returned.
#[derive(Clone)]
pub struct ClientBuilder {
    authkey: Option<Vec<u8>>,
    digest: Digest,
    policy: Policy,
    timeout: Duration,
    accept_timeout: Option<Duration>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            authkey: None,
            digest: Digest::default(),
            policy: Policy::CPYTHON,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            accept_timeout: None,
        }
    }
}

impl ClientBuilder {
    /// A builder with CPython's defaults: no key, sha256 challenges.
    pub fn new() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The key to prove and to check the listener against. An empty key is
    /// a real key.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// The digest of the challenge this client sends (default sha256). A
    /// legacy (CPython 3.11) listener answers it with HMAC-MD5, which the
    /// default policy accepts.
    pub fn digest(mut self, digest: Digest) -> Self {
        self.digest = digest;
        self
    }

    /// What the handshake accepts; under [`Policy::refuse_md5`] a legacy
    /// listener rejects this client, and this client rejects it.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long the handshake may take once the listener has sent its first
    /// byte (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for the listener to start the handshake, that is,
    /// to accept this client; `None` (the default) waits forever, as CPython.
    pub fn accept_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.accept_timeout = timeout;
        self
    }

    /// Connects and, with a key, authenticates (answer, then deliver; the
    /// reply and our challenge go out in one write, see
    /// [`mp_auth::client_handshake`]).
    ///
    /// # Errors
    ///
    /// - [`Error::BadAddress`]: a unix path that does not fit `sun_path`;
    /// - [`Error::Io`]: the connect failed (`ECONNREFUSED`, `ENOENT`, ...);
    /// - [`Error::Authentication`]: the listener rejected our key
    ///   (`digest sent was rejected`), its reply to our challenge was wrong
    ///   (`digest received was wrong`), or it sent a malformed challenge;
    /// - [`Error::Timeout`]: a handshake timeout passed;
    /// - [`Error::Eof`] and the framing errors when the listener hung up or
    ///   sent something that is not a handshake message.
    pub fn connect(&self, address: &Address) -> Result<Connection> {
        self.policy
            .check(self.digest)
            .map_err(Error::Authentication)?;
        let sockaddr = address.to_sockaddr()?;
        let socket = rustix::net::socket_with(
            address_family(address),
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        loop {
            match rustix::net::connect(&socket, &sockaddr) {
                Ok(()) | Err(Errno::ISCONN) => break,
                // A signal: a unix connect can simply be retried; a TCP one
                // goes on in the background (EALREADY on the retry).
                Err(Errno::INTR) => continue,
                Err(Errno::ALREADY | Errno::INPROGRESS) => {
                    sys::wait_fd(socket.as_fd(), PollFlags::OUT, None)?;
                    rustix::net::sockopt::socket_error(&socket)?
                        .map_err(|e| AtPlace::error("cannot connect to", address, e))?;
                    break;
                }
                Err(e) => return Err(AtPlace::error("cannot connect to", address, e)),
            }
        }
        if let Some(key) = &self.authkey {
            let auth = Auth {
                key: key.clone(),
                digest: self.digest,
                policy: self.policy,
                timeout: self.timeout,
            };
            run_client(socket.as_fd(), &auth, self.accept_timeout)?;
        }
        connection_from(socket, address.family())
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field(
                "authkey",
                &self
                    .authkey
                    .as_ref()
                    .map(|k| format!("<{} bytes>", k.len())),
            )
            .field("digest", &self.digest)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .field("accept_timeout", &self.accept_timeout)
            .finish()
    }
}
