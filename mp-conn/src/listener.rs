//! `Listener`: a listening socket (AF_UNIX path or abstract name, TCP over
//! IPv4 or IPv6) whose `accept` runs CPython's mutual handshake when it has
//! a key, several handshakes at once, so that one slow or hostile client
//! never holds up the others.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_auth::{Digest, Policy};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::address::{
    Address, Family, adopt_our_temp_dir, arbitrary_address, forget_our_temp_dir,
    remove_our_temp_dir,
};
use crate::error::AtPlace;
use crate::handshake::{Auth, Handshake, Want};
use crate::sys;
use crate::{Connection, Error, Result};

/// CPython's default backlog (`Listener(backlog=1)`).
pub const DEFAULT_BACKLOG: i32 = 1;
/// How long an accepted client has to complete the handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many handshakes may be in progress at once by default. While that
/// many are pending, `accept` stops taking new connections (they wait in
/// the kernel's backlog) until one finishes or times out, so a flood of
/// silent clients costs a bounded amount of memory and descriptors.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;

/// A socket that accepts connections (CPython's
/// `multiprocessing.connection.Listener`).
///
/// With a key ([`ListenerBuilder::authkey`]), [`Listener::accept`] runs the
/// mutual handshake in CPython's order: it challenges the client first
/// (deliver), then answers the client's challenge. Handshakes run as
/// nonblocking state machines next to the listening socket: `accept`
/// returns the first client that completes, and a client that stalls is
/// dropped when its handshake timeout passes, without delaying anyone else.
///
/// Connections that `accept` returns are blocking and have no timeouts.
///
/// # Examples
///
/// ```
/// use mp_conn::{ClientBuilder, Family, Listener};
///
/// let mut listener = Listener::builder()
///     .family(Family::Unix)
///     .authkey(b"secret key".to_vec())
///     .bind()?;
/// let address = listener.address().clone();
/// let peer = std::thread::spawn(move || -> mp_conn::Result<Vec<u8>> {
///     let mut conn = ClientBuilder::new().authkey(b"secret key".to_vec()).connect(&address)?;
///     conn.send_bytes(b"hello")?;
///     conn.recv_bytes()
/// });
/// let mut conn = listener.accept()?;
/// let hello = conn.recv_bytes()?;
/// conn.send_bytes(&hello)?;
/// assert_eq!(peer.join().unwrap()?, b"hello");
/// # Ok::<(), mp_conn::Error>(())
/// ```
pub struct Listener {
    socket: OwnedFd,
    closed: bool,
    address: Address,
    last_accepted: Option<Address>,
    /// The path to unlink on close, and the process that bound it (a
    /// forked child that drops its copy must not remove the parent's path,
    /// as CPython's `Finalize` only runs in its creator).
    unlink: Option<(PathBuf, rustix::process::Pid)>,
    auth: Option<Arc<Auth>>,
    pending: Vec<Pending>,
    max_pending: usize,
}

/// What a descriptor from [`Listener::poll_fds`] is to be polled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interest {
    /// Readable (`POLLIN`).
    Readable,
    /// Writable (`POLLOUT`).
    Writable,
}

/// A client whose handshake is in progress.
struct Pending {
    handshake: Handshake,
    peer: Option<Address>,
}

impl Listener {
    /// Binds a listener to `address` with no authentication and CPython's
    /// backlog of 1 (`Listener(address)`).
    ///
    /// # Errors
    ///
    /// As [`ListenerBuilder::bind`].
    pub fn bind(address: &Address) -> Result<Listener> {
        Listener::builder().address(address.clone()).bind()
    }

    /// A builder with CPython's defaults: a fresh AF_UNIX address, backlog
    /// 1, no key; with a key, challenges use sha256 and the handshake must
    /// finish within [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Waits for a client and returns the connection to it; with a key, only
    /// once the mutual handshake has succeeded (CPython's `accept`).
    ///
    /// A signal interrupting the wait is retried (CONN-36). This is
    /// [`Listener::accept_timeout`] without a timeout.
    ///
    /// # Errors
    ///
    /// - [`Error::Closed`] after [`Listener::close`];
    /// - for one client whose handshake failed, that client's error:
    ///   [`Error::Authentication`], [`Error::Timeout`], [`Error::Eof`],
    ///   [`Error::TruncatedMessage`], [`Error::MessageTooLong`] or
    ///   [`Error::BadLength`] (pre-authentication messages over 256 bytes
    ///   are refused unread) or [`Error::Io`];
    /// - [`Error::Io`] when the listening socket fails (for example
    ///   `EMFILE`).
    ///
    /// After any error other than [`Error::Closed`] the listener is still
    /// usable: call `accept` again to serve the next client.
    pub fn accept(&mut self) -> Result<Connection> {
        loop {
            if let Some(conn) = self.accept_timeout(None)? {
                return Ok(conn);
            }
        }
    }

    /// [`Listener::accept`] for at most `timeout`: takes new clients and
    /// advances handshakes in progress until one completes (`Ok(Some)`) or
    /// `timeout` passes (`Ok(None)`; the handshakes still in progress carry
    /// on at the next call). `None` waits as long as `accept` does;
    /// `Some(Duration::ZERO)` never blocks: it only does what the sockets
    /// allow right now.
    ///
    /// Each client's handshake stays bounded by its own deadline
    /// ([`ListenerBuilder::handshake_timeout`]) whatever `timeout` is; a
    /// handshake that fails or times out is reported as `accept` reports
    /// it, as soon as it is noticed.
    ///
    /// # Serving a listener from an event loop
    ///
    /// A loop that waits on other descriptors too (as the fork server
    /// does) must never block in `accept`: with a key, a client that
    /// connects and stays silent would hold it until its handshake times
    /// out. Instead, add [`Listener::poll_fds`] to the loop's poll set,
    /// bound the poll's timeout by [`Listener::next_handshake_deadline`],
    /// and when any of those descriptors is ready or the deadline has
    /// passed, call `accept_timeout(Some(Duration::ZERO))`. Take the
    /// descriptors afresh each time round: they change as clients come and
    /// go.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mp_conn::{ClientBuilder, Interest, Listener};
    /// use rustix::event::{PollFd, PollFlags, Timespec};
    ///
    /// let mut listener = Listener::builder().authkey(*b"key").bind()?;
    /// let address = listener.address().clone();
    /// let peer = std::thread::spawn(move || {
    ///     ClientBuilder::new().authkey(*b"key").connect(&address)?.send_bytes(b"hi")
    /// });
    /// let mut conn = loop {
    ///     // The loop's own descriptors would go into `fds` too.
    ///     let mut fds: Vec<PollFd<'_>> = listener
    ///         .poll_fds()
    ///         .into_iter()
    ///         .map(|(fd, interest)| {
    ///             let flags = match interest {
    ///                 Interest::Readable => PollFlags::IN,
    ///                 Interest::Writable => PollFlags::OUT,
    ///             };
    ///             PollFd::from_borrowed_fd(fd, flags)
    ///         })
    ///         .collect();
    ///     let deadline = listener.next_handshake_deadline();
    ///     let timeout = deadline.map(|d| {
    ///         Timespec::try_from(d.saturating_duration_since(Instant::now())).unwrap()
    ///     });
    ///     rustix::event::poll(&mut fds, timeout.as_ref())?;
    ///     let ready = fds.iter().any(|fd| !fd.revents().is_empty());
    ///     drop(fds);
    ///     if ready || deadline.is_some_and(|d| Instant::now() >= d) {
    ///         if let Some(conn) = listener.accept_timeout(Some(Duration::ZERO))? {
    ///             break conn;
    ///         }
    ///     }
    /// };
    /// assert_eq!(conn.recv_bytes()?, b"hi");
    /// peer.join().unwrap()?;
    /// # Ok::<(), mp_conn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`].
    pub fn accept_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<Connection>> {
        if self.closed {
            return Err(Error::Closed);
        }
        // A timeout too large for an `Instant` is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let fd = match self.auth.clone() {
            None => self.accept_plain(deadline)?,
            Some(auth) => self.accept_authenticated(&auth, deadline)?,
        };
        fd.map(|fd| connection_from(fd, self.address.family()))
            .transpose()
    }

    /// The descriptors an event loop should poll on this listener's behalf,
    /// each with what to wait for: the listening socket (unless
    /// [`ListenerBuilder::max_pending_handshakes`] handshakes are in
    /// progress, when `accept` takes no new clients), then the socket of
    /// every handshake in progress. When one is ready, call
    /// [`Listener::accept_timeout`] (see there for the whole loop).
    ///
    /// Once the listener is closed, this is an always-readable placeholder,
    /// so that the loop calls `accept_timeout` and learns of it.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, Interest)> {
        let mut fds = Vec::with_capacity(self.pending.len() + 1);
        if self.closed || self.pending.len() < self.max_pending {
            fds.push((self.socket.as_fd(), Interest::Readable));
        }
        for p in &self.pending {
            let interest = match p.handshake.want() {
                Want::Read => Interest::Readable,
                Want::Write => Interest::Writable,
            };
            fds.push((p.handshake.fd(), interest));
        }
        fds
    }

    /// The earliest deadline of the handshakes in progress, if any: by then
    /// an event loop should call [`Listener::accept_timeout`] even if none
    /// of [`Listener::poll_fds`] is ready, so that the late client is
    /// dropped (and reported as [`Error::Timeout`]).
    pub fn next_handshake_deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter_map(|p| p.handshake.deadline())
            .min()
    }

    /// The address the listener is bound to; for TCP with port 0, the port
    /// the kernel picked.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The address of the last client `accept` returned: the peer's address
    /// for TCP, `None` for unix sockets (whose clients are almost always
    /// unnamed; CPython reports `''` for those).
    pub fn last_accepted(&self) -> Option<&Address> {
        self.last_accepted.as_ref()
    }

    /// Whether `accept` authenticates clients.
    pub fn is_authenticated(&self) -> bool {
        self.auth.is_some()
    }

    /// How many accepted clients are still in their handshake.
    pub fn pending_handshakes(&self) -> usize {
        self.pending.len()
    }

    /// Whether [`Listener::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the listening socket, drops clients still in their handshake,
    /// and unlinks a filesystem socket path (and the private directory of an
    /// [`arbitrary_address`]). Idempotent; also runs on drop.
    ///
    /// Afterwards, `accept` fails with [`Error::Closed`] and, for
    /// [`wait`](crate::wait), the listener is always ready (so that a waiter
    /// notices and calls `accept`, which reports it).
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.pending.clear();
        // Swap the socket for an always-readable placeholder, so that
        // `wait_fd` keeps returning a valid descriptor. If even that fails,
        // shut the socket down, which stops it from taking connections.
        match rustix::event::eventfd(1, rustix::event::EventfdFlags::CLOEXEC) {
            Ok(placeholder) => drop(std::mem::replace(&mut self.socket, placeholder)),
            Err(_) => {
                let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Both);
            }
        }
        if let Some((path, owner)) = self.unlink.take()
            && rustix::process::getpid() == owner
        {
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                remove_our_temp_dir(dir);
            }
        }
    }

    /// Gives the listening socket away, for another process to listen on
    /// with [`ListenerBuilder::adopt`] (a server process that a parent
    /// bound the address for, so that clients may connect before the child
    /// runs): returns the socket and its address. This listener stops
    /// owning the path: the adopting one unlinks it (and its private
    /// `pymp-` directory) when it closes.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`Listener::close`]; [`Error::Io`] if the
    /// socket cannot be duplicated.
    pub fn into_socket(mut self) -> Result<(OwnedFd, Address)> {
        if self.closed {
            return Err(Error::Closed);
        }
        let socket = self.socket.try_clone()?;
        if let Some((path, _)) = self.unlink.take()
            && let Some(dir) = path.parent()
        {
            forget_our_temp_dir(dir);
        }
        Ok((socket, self.address.clone()))
    }

    /// Accepts one client unless `deadline` passes first.
    fn accept_plain(&mut self, deadline: Option<Instant>) -> Result<Option<OwnedFd>> {
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !sys::wait_fd(self.socket.as_fd(), PollFlags::IN, remaining)? {
                return Ok(None);
            }
            match accept_one(&self.socket, self.address.family(), SocketFlags::CLOEXEC) {
                Ok((fd, peer)) => {
                    self.last_accepted = peer;
                    return Ok(Some(fd));
                }
                // Another thread or process took it, a signal came, or the
                // client gave up while queued: wait for the next one.
                Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes new clients and advances handshakes until one completes or
    /// fails, or `deadline` passes (after at least one look at the
    /// sockets).
    fn accept_authenticated(
        &mut self,
        auth: &Arc<Auth>,
        deadline: Option<Instant>,
    ) -> Result<Option<OwnedFd>> {
        let mut looked = false;
        loop {
            let now = Instant::now();
            if let Some(i) = self.pending.iter().position(|p| p.handshake.expired(now)) {
                drop(self.pending.swap_remove(i));
                return Err(Error::Timeout);
            }
            // Every path through the loop comes back here, so a bounded
            // call ends even while clients keep the sockets busy.
            if looked && deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            looked = true;
            let listening = self.pending.len() < self.max_pending;
            let wake = self
                .pending
                .iter()
                .filter_map(|p| p.handshake.deadline())
                .chain(deadline)
                .min();
            let mut fds = Vec::with_capacity(self.pending.len() + 1);
            if listening {
                fds.push(PollFd::new(&self.socket, PollFlags::IN));
            }
            for p in &self.pending {
                fds.push(PollFd::from_borrowed_fd(
                    p.handshake.fd(),
                    p.handshake.want().poll_flags(),
                ));
            }
            let timeout = wake.map(sys::timespec_until);
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let first = usize::from(listening);
            let new_clients = listening && !fds[0].revents().is_empty();
            let ready: Vec<usize> = fds[first..]
                .iter()
                .enumerate()
                .filter(|(_, fd)| !fd.revents().is_empty())
                .map(|(i, _)| i)
                .collect();
            drop(fds);
            // Finish what is in progress before taking new clients. Indices
            // stay valid: we return as soon as one entry leaves the list.
            for i in ready {
                match self.pending[i].handshake.advance() {
                    Ok(false) => {}
                    Ok(true) => return Ok(Some(self.complete(i))),
                    Err(e) => {
                        self.pending.swap_remove(i);
                        return Err(e);
                    }
                }
            }
            if new_clients {
                // One client per wake-up: when more are queued, the
                // listening socket stays readable and the next poll says
                // so; draining the queue would cost a failed accept4 each
                // time there is just the one.
                let (fd, peer) =
                    match accept_one(&self.socket, self.address.family(), SocketFlags::CLOEXEC) {
                        Ok(accepted) => accepted,
                        Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => continue,
                        Err(e) => return Err(e.into()),
                    };
                // The socket stays in blocking mode, which the connection
                // wants; the handshake's calls say MSG_DONTWAIT.
                let mut handshake = Handshake::new(fd, auth.clone());
                // This sends the challenge; the reply takes a round trip.
                if handshake.advance()? {
                    self.last_accepted = peer;
                    return Ok(Some(handshake.into_fd()));
                }
                self.pending.push(Pending { handshake, peer });
            }
        }
    }

    fn complete(&mut self, i: usize) -> OwnedFd {
        let Pending { handshake, peer } = self.pending.swap_remove(i);
        self.last_accepted = peer;
        handshake.into_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsFd for Listener {
    /// The listening socket (a placeholder once closed).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl crate::Waitable for Listener {
    /// Ready when a client is waiting to be accepted. With a key, `accept`
    /// may still wait for that client's handshake (at most its timeout).
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("closed", &self.closed)
            .field("auth", &self.auth)
            .field("pending_handshakes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Listener`]: `Listener::builder().address(..).family(..)
/// .backlog(n).authkey(key).digest(d).policy(p).handshake_timeout(t).bind()`.
#[derive(Clone)]
pub struct ListenerBuilder {
    address: Option<Address>,
    family: Option<Family>,
    backlog: i32,
    authkey: Option<Vec<u8>>,
    digest: Digest,
    policy: Policy,
    handshake_timeout: Duration,
    max_pending: usize,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            address: None,
            family: None,
            backlog: DEFAULT_BACKLOG,
            authkey: None,
            digest: Digest::default(),
            policy: Policy::CPYTHON,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
        }
    }
}

impl ListenerBuilder {
    /// The address to bind. Without one, [`arbitrary_address`] of the
    /// family (AF_UNIX by default) is used.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The family; inferred from the address when there is one (and then
    /// they must agree).
    pub fn family(mut self, family: Family) -> Self {
        self.family = Some(family);
        self
    }

    /// The `listen(2)` backlog; CPython's default is 1. Servers that expect
    /// many clients at once want more (CPython's managers use 128).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// The key clients must prove they know; without one, `accept` does not
    /// authenticate. An empty key is a real key.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// The digest of the challenges the listener sends (default sha256). A
    /// legacy (CPython 3.11) client answers any of them with HMAC-MD5,
    /// which the default policy accepts.
    pub fn digest(mut self, digest: Digest) -> Self {
        self.digest = digest;
        self
    }

    /// What the handshake accepts; [`Policy::refuse_md5`] turns legacy
    /// clients away.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long a client has from being accepted to finishing the handshake
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How many handshakes may run at once (default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`], at least 1).
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// Creates the socket (`SO_REUSEADDR`, close-on-exec), binds and listens.
    ///
    /// # Errors
    ///
    /// - [`Error::BadAddress`]: the address and the family disagree, or a
    ///   unix path is empty, holds a NUL or does not fit in `sun_path`;
    /// - [`Error::Authentication`]: MD5 challenges under a policy that
    ///   refuses MD5;
    /// - [`Error::Io`]: the socket calls failed, for example `EADDRINUSE`
    ///   when another socket is bound to the address (CONN-14).
    pub fn bind(mut self) -> Result<Listener> {
        let family = match (&self.address, self.family) {
            (Some(address), Some(family)) if address.family() != family => {
                return Err(Error::BadAddress(format!(
                    "address {address} is not of family {family}"
                )));
            }
            (Some(address), _) => address.family(),
            (None, Some(family)) => family,
            (None, None) => Family::Unix,
        };
        self.policy
            .check(self.digest)
            .map_err(Error::Authentication)?;
        let arbitrary = self.address.is_none();
        let address = match self.address.take() {
            Some(address) => address,
            None => arbitrary_address(family)?,
        };
        let bound = bind_socket(&address, self.backlog);
        let (socket, bound_address) = match bound {
            Ok(ok) => ok,
            Err(e) => {
                if let (true, Address::Unix(path)) = (arbitrary, &address)
                    && let Some(dir) = path.parent()
                {
                    remove_our_temp_dir(dir);
                }
                return Err(e);
            }
        };
        Ok(self.finish(socket, bound_address))
    }

    /// Listens on `socket`, a socket already bound to `address` and
    /// listening (from [`Listener::into_socket`] in a parent process),
    /// with this builder's key and handshake settings (its address, family
    /// and backlog were the binder's). The new listener owns the path as
    /// if it had bound it: it unlinks it, and the private `pymp-` directory
    /// of an [`arbitrary_address`], when it closes.
    ///
    /// # Errors
    ///
    /// [`Error::BadAddress`] if `socket` is not a listening socket;
    /// [`Error::Authentication`] for MD5 challenges under a policy that
    /// refuses MD5.
    pub fn adopt(self, socket: OwnedFd, address: Address) -> Result<Listener> {
        self.policy
            .check(self.digest)
            .map_err(Error::Authentication)?;
        if !rustix::net::sockopt::socket_acceptconn(&socket).unwrap_or(false) {
            return Err(Error::BadAddress(format!(
                "the socket given for {address} is not listening"
            )));
        }
        if let Address::Unix(path) = &address
            && let Some(dir) = path.parent()
        {
            adopt_our_temp_dir(dir);
        }
        Ok(self.finish(socket, address))
    }

    /// The listener on a bound, listening `socket`.
    fn finish(self, socket: OwnedFd, address: Address) -> Listener {
        let unlink = match &address {
            Address::Unix(path) => Some((path.clone(), rustix::process::getpid())),
            _ => None,
        };
        let auth = self.authkey.map(|key| {
            Arc::new(Auth {
                key,
                digest: self.digest,
                policy: self.policy,
                timeout: self.handshake_timeout,
            })
        });
        Listener {
            socket,
            closed: false,
            address,
            last_accepted: None,
            unlink,
            auth,
            pending: Vec::new(),
            max_pending: self.max_pending,
        }
    }
}

impl std::fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("address", &self.address)
            .field("family", &self.family)
            .field("backlog", &self.backlog)
            .field(
                "authkey",
                &self
                    .authkey
                    .as_ref()
                    .map(|k| format!("<{} bytes>", k.len())),
            )
            .field("digest", &self.digest)
            .field("policy", &self.policy)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// The `socket(2)` family for an address.
pub(crate) fn address_family(address: &Address) -> AddressFamily {
    match address {
        Address::Unix(_) | Address::Abstract(_) => AddressFamily::UNIX,
        Address::Inet(std::net::SocketAddr::V4(_)) => AddressFamily::INET,
        Address::Inet(std::net::SocketAddr::V6(_)) => AddressFamily::INET6,
    }
}

/// Creates a nonblocking listening socket; returns it with the address it
/// is bound to (the kernel's port for TCP port 0).
fn bind_socket(address: &Address, backlog: i32) -> Result<(OwnedFd, Address)> {
    let sockaddr = address.to_sockaddr()?;
    let socket = rustix::net::socket_with(
        address_family(address),
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    // CPython sets SO_REUSEADDR on POSIX for every family.
    rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
    rustix::net::bind(&socket, &sockaddr).map_err(|e| AtPlace::error("cannot bind", address, e))?;
    if let Err(e) = rustix::net::listen(&socket, backlog) {
        if let Address::Unix(path) = address {
            let _ = std::fs::remove_file(path);
        }
        return Err(AtPlace::error("cannot listen on", address, e));
    }
    let bound = match address {
        // getsockname gives the path as bound; keep the caller's spelling.
        Address::Unix(_) | Address::Abstract(_) => address.clone(),
        Address::Inet(_) => rustix::net::getsockname(&socket)
            .ok()
            .and_then(|sa| Address::from_sockaddr(&sa))
            .unwrap_or_else(|| address.clone()),
    };
    Ok((socket, bound))
}

/// `accept4(2)`, with the peer's address for TCP. A unix peer's address is
/// not asked for: it is almost always unnamed, and one bound to a path that
/// fills `sun_path` would come back without its NUL terminator, which is
/// nothing a hostile client should be able to make us decode.
fn accept_one(
    socket: &OwnedFd,
    family: Family,
    flags: SocketFlags,
) -> rustix::io::Result<(OwnedFd, Option<Address>)> {
    match family {
        Family::Inet => {
            let (fd, peer) = rustix::net::acceptfrom_with(socket, flags)?;
            Ok((fd, peer.as_ref().and_then(Address::from_sockaddr)))
        }
        Family::Unix => Ok((rustix::net::accept_with(socket, flags)?, None)),
    }
}

/// Turns a connected socket (in blocking mode: sockets are never switched
/// to nonblocking, calls that must not block say `MSG_DONTWAIT`) into a
/// `Connection` with no timeouts; TCP gets `TCP_NODELAY`, as every message
/// is written whole anyway and Nagle's algorithm would only delay the
/// second of two small writes.
pub(crate) fn connection_from(fd: OwnedFd, family: Family) -> Result<Connection> {
    if family == Family::Inet {
        rustix::net::sockopt::set_tcp_nodelay(&fd, true)?;
        // The peer's last handshake message (a CPython client's
        // `#WELCOME#`) may not be acknowledged yet, and CPython writes its
        // first request right behind it: Nagle's algorithm on its side holds
        // that request until our ACK, which the kernel delays by up to 40 ms
        // (every fresh connection of a CPython manager client paid it, the
        // captures in wire_manager.txt show it). Quick-ACK mode sends a
        // pending ACK at once; it is a hint, so a failure changes nothing.
        let _ = rustix::net::sockopt::set_tcp_quickack(&fd, true);
    }
    Connection::new(fd, true, true)
}
