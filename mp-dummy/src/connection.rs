//! `multiprocessing.dummy.connection`: [`pipe`], [`Listener`] and
//! [`client`] over in-process queues. Values move from one end to the
//! other, unencoded; a [`Connection<T>`] carries values of one type.
//!
//! Beyond the seed, whose connections ignore `close` and `duplex`: a
//! closed end fails its own calls with [`Error::Closed`]; the peer of a
//! closed (or dropped) end receives what was already sent, then
//! [`Error::Eof`], and its sends fail with [`Error::PeerClosed`], as
//! with the process pipes; `pipe(false)` gives a receive-only and a
//! send-only end, as mp-conn's.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::wait::{deadline, lock, wait_while};

/// One direction of a connection.
struct Channel<T> {
    state: Mutex<ChannelState<T>>,
    ready: Condvar,
}

struct ChannelState<T> {
    items: VecDeque<T>,
    /// Whether the sending end is still open.
    sender: bool,
    /// Whether the receiving end is still open.
    receiver: bool,
}

impl<T> Channel<T> {
    fn new() -> Arc<Channel<T>> {
        Arc::new(Channel {
            state: Mutex::new(ChannelState {
                items: VecDeque::new(),
                sender: true,
                receiver: true,
            }),
            ready: Condvar::new(),
        })
    }
}

/// One end of a [`pipe`] or of a [`Listener`]/[`client`] connection,
/// carrying values of type `T`.
///
/// Dropping an end closes it (CPython's `with conn:`).
pub struct Connection<T> {
    /// What this end receives from; `None` for a send-only end.
    incoming: Option<Arc<Channel<T>>>,
    /// What this end sends to; `None` for a receive-only end.
    outgoing: Option<Arc<Channel<T>>>,
    closed: bool,
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("closed", &self.closed)
            .finish()
    }
}

/// CPython's `Pipe(duplex=True)`: two connected ends. With `duplex` both
/// send and receive; without, the first only receives and the second only
/// sends (as mp-conn's `pipe`; the seed ignores `duplex`).
///
/// ```
/// use std::time::Duration;
/// let (a, b) = mp_dummy::pipe::<String>(true);
/// assert!(!b.poll(Some(Duration::ZERO))?);
/// a.send("hello".into())?;
/// assert!(b.poll(Some(Duration::ZERO))?);
/// assert_eq!(b.recv()?, "hello");
/// drop(a);
/// assert!(matches!(b.recv(), Err(mp_dummy::Error::Eof)));
/// # Ok::<(), mp_dummy::Error>(())
/// ```
pub fn pipe<T>(duplex: bool) -> (Connection<T>, Connection<T>) {
    let a_to_b = Channel::new();
    if duplex {
        let b_to_a = Channel::new();
        (
            Connection::new(Some(b_to_a.clone()), Some(a_to_b.clone())),
            Connection::new(Some(a_to_b), Some(b_to_a)),
        )
    } else {
        (
            Connection::new(Some(a_to_b.clone()), None),
            Connection::new(None, Some(a_to_b)),
        )
    }
}

impl<T> Connection<T> {
    fn new(incoming: Option<Arc<Channel<T>>>, outgoing: Option<Arc<Channel<T>>>) -> Self {
        Connection {
            incoming,
            outgoing,
            closed: false,
        }
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.incoming.is_some()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.outgoing.is_some()
    }

    /// Whether [`close`](Connection::close) was called.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn incoming(&self) -> Result<&Channel<T>> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.incoming
            .as_deref()
            .ok_or(Error::WrongDirection("send"))
    }

    /// CPython's `send(obj)`: hands `value` to the other end; never waits.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::WrongDirection`] on a receive-only end,
    /// [`Error::PeerClosed`] when the other end is closed.
    pub fn send(&self, value: T) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        let out = self
            .outgoing
            .as_deref()
            .ok_or(Error::WrongDirection("receive"))?;
        let mut state = lock(&out.state);
        if !state.receiver {
            return Err(Error::PeerClosed);
        }
        state.items.push_back(value);
        drop(state);
        out.ready.notify_one();
        Ok(())
    }

    /// CPython's `recv()`: the next value, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Eof`] once the other end is closed and every value it sent
    /// has been received; [`Error::Closed`], [`Error::WrongDirection`].
    pub fn recv(&self) -> Result<T> {
        self.recv_timeout(None)?.ok_or(Error::Eof)
    }

    /// The next value, waiting at most `timeout` (`None`: as long as it
    /// takes): `None` when the timeout passed first.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Option<T>> {
        let incoming = self.incoming()?;
        let (mut state, _) = wait_while(
            &incoming.ready,
            lock(&incoming.state),
            deadline(timeout),
            |s| s.items.is_empty() && s.sender,
        );
        match state.items.pop_front() {
            Some(v) => Ok(Some(v)),
            None if !state.sender => Err(Error::Eof),
            None => Ok(None),
        }
    }

    /// CPython's `poll(timeout)`: whether [`recv`](Connection::recv) would
    /// answer at once (a value is queued, or the other end is closed),
    /// waiting up to `timeout`. `Some(Duration::ZERO)` answers at once
    /// (CPython's `poll()` and negative timeouts); `None` waits as long as
    /// it takes (CPython's `poll(None)`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::WrongDirection`].
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let incoming = self.incoming()?;
        let (state, ready) = wait_while(
            &incoming.ready,
            lock(&incoming.state),
            deadline(timeout),
            |s| s.items.is_empty() && s.sender,
        );
        drop(state);
        Ok(ready)
    }

    /// CPython's `send_bytes(buf)`: the same as [`send`](Connection::send)
    /// here, as in the seed.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub fn send_bytes(&self, value: T) -> Result<()> {
        self.send(value)
    }

    /// CPython's `recv_bytes()`: the same as [`recv`](Connection::recv)
    /// here, as in the seed.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub fn recv_bytes(&self) -> Result<T> {
        self.recv()
    }

    /// CPython's `close()`: this end sends and receives no more; the other
    /// end receives what was sent, then [`Error::Eof`]. Values sent to this
    /// end and not received are dropped. Idempotent; dropping does it.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Some(incoming) = &self.incoming {
            let mut state = lock(&incoming.state);
            state.receiver = false;
            state.items.clear();
        }
        if let Some(out) = &self.outgoing {
            lock(&out.state).sender = false;
            out.ready.notify_all();
        }
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a [`client`] connects to: a [`Listener`]'s backlog (the seed's
/// `Listener.address` is its backlog queue). Clones name the same
/// listener.
pub struct Address<T> {
    backlog: Queue<Connection<T>>,
}

impl<T> Clone for Address<T> {
    fn clone(&self) -> Self {
        Address {
            backlog: self.backlog.clone(),
        }
    }
}

impl<T> fmt::Debug for Address<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Address(pending={})>", self.backlog.qsize())
    }
}

/// CPython's `multiprocessing.dummy.connection.Listener(backlog=1)`: a
/// queue of at most `backlog` connections waiting to be accepted.
///
/// ```
/// use mp_dummy::{Listener, client};
/// let listener = Listener::<u32>::new(1)?;
/// let address = listener.address();
/// let t = std::thread::spawn(move || -> Result<u32, mp_dummy::Error> {
///     let conn = client(&address)?;
///     conn.send(41)?;
///     conn.recv()
/// });
/// let conn = listener.accept()?;
/// conn.send(conn.recv()? + 1)?;
/// assert_eq!(t.join().unwrap()?, 42);
/// # Ok::<(), mp_dummy::Error>(())
/// ```
pub struct Listener<T> {
    address: Address<T>,
}

impl<T> fmt::Debug for Listener<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Listener({:?})>", self.address)
    }
}

impl<T> Listener<T> {
    /// A listener whose backlog holds at most `backlog` pending clients
    /// ([`client`] waits for room beyond that).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a zero backlog (which the seed's
    /// `Queue(0)` would make unbounded).
    pub fn new(backlog: usize) -> Result<Listener<T>> {
        if backlog == 0 {
            return Err(Error::InvalidArgument(
                "a listener's backlog must be at least 1",
            ));
        }
        Ok(Listener {
            address: Address {
                backlog: Queue::new(backlog),
            },
        })
    }

    /// CPython's `address`: what [`client`] connects to.
    pub fn address(&self) -> Address<T> {
        self.address.clone()
    }

    /// CPython's `accept()`: the next client's connection, waiting as long
    /// as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::ListenerClosed`] after [`close`](Listener::close).
    pub fn accept(&self) -> Result<Connection<T>> {
        self.accept_timeout(None)?.ok_or(Error::ListenerClosed)
    }

    /// [`accept`](Listener::accept), waiting at most `timeout`: `None` when
    /// no client came.
    ///
    /// # Errors
    ///
    /// As [`accept`](Listener::accept).
    pub fn accept_timeout(&self, timeout: Option<Duration>) -> Result<Option<Connection<T>>> {
        match self.address.backlog.get(true, timeout) {
            Ok(conn) => Ok(Some(conn)),
            Err(Error::Empty) => Ok(None),
            Err(_) => Err(Error::ListenerClosed),
        }
    }

    /// CPython's `close()`: no more clients; those not yet accepted see
    /// their connection closed ([`Error::Eof`]). Dropping does it.
    pub fn close(&self) {
        self.address.backlog.shutdown(true);
    }
}

impl<T> Drop for Listener<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// CPython's `multiprocessing.dummy.connection.Client(address)`: a
/// connection to the listener at `address`, waiting for room in its
/// backlog.
///
/// # Errors
///
/// [`Error::ListenerClosed`] when the listener is closed.
pub fn client<T>(address: &Address<T>) -> Result<Connection<T>> {
    let (mine, theirs) = pipe(true);
    address
        .backlog
        .put(theirs, true, None)
        .map_err(|_| Error::ListenerClosed)?;
    Ok(mine)
}
