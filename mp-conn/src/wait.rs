//! `wait()`: readiness of many connections, sockets and raw fds at once
//! (CPython's `multiprocessing.connection.wait`), and [`Waiter`], which
//! registers objects once and then waits many times.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::sys;

/// Something [`wait`] and [`Waiter`] can watch: an fd that becomes
/// readable, plus, for objects that buffer input, a way to say "ready"
/// without any I/O.
pub trait Waitable {
    /// The fd to poll for readability. A closed [`Connection`] returns a
    /// placeholder here; [`try_wait_fd`](Waitable::try_wait_fd) reports it.
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Whether the object is ready to read without any I/O (a connection
    /// with buffered read-ahead bytes). Default: never.
    fn ready_without_io(&self) -> bool {
        false
    }

    /// The fd to poll, or why the object cannot be waited on (a closed
    /// connection). [`wait`] and [`Waiter`] call this one.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] for a closed connection.
    fn try_wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.wait_fd())
    }

    /// Called by [`Waiter::add`]. A [`Waiter`] sees only the fd, so a
    /// [`Connection`] switches to exact reads here: otherwise a message
    /// already read ahead into its buffer would never wake the waiter.
    fn prepare_for_waiter(&self) {}
}

impl Waitable for Connection {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn ready_without_io(&self) -> bool {
        Connection::ready_without_io(self)
    }
    fn try_wait_fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd()
    }
    fn prepare_for_waiter(&self) {
        self.force_exact_reads();
    }
}

macro_rules! waitable_by_as_fd {
    ($($t:ty),* $(,)?) => {$(
        impl Waitable for $t {
            fn wait_fd(&self) -> BorrowedFd<'_> {
                self.as_fd()
            }
        }
    )*};
}

waitable_by_as_fd!(
    BorrowedFd<'_>,
    OwnedFd,
    UnixStream,
    UnixListener,
    TcpStream,
    TcpListener
);

impl<T: Waitable + ?Sized> Waitable for &T {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        (**self).wait_fd()
    }
    fn ready_without_io(&self) -> bool {
        (**self).ready_without_io()
    }
    fn try_wait_fd(&self) -> Result<BorrowedFd<'_>> {
        (**self).try_wait_fd()
    }
    fn prepare_for_waiter(&self) {
        (**self).prepare_for_waiter()
    }
}

/// Which of `objects` are ready to read (data, end of file, a hang-up or
/// an error), waiting up to `timeout` for at least one: `None` waits
/// forever, `Some(Duration::ZERO)` never blocks (CPython's negative
/// timeout). Returns the indices of the ready objects, in order; empty on
/// timeout. Uses `poll(2)`; signals are retried with the time left on the
/// monotonic clock.
///
/// # Errors
///
/// [`Error::Closed`] if an object is a closed connection; the OS error
/// (`EBADF` for an fd that is not open).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let (mut a, b) = mp_conn::pipe(true)?;
/// let (c, _d) = mp_conn::pipe(true)?;
/// b.send_bytes(b"x")?;
/// assert_eq!(mp_conn::wait(&[&a, &c], Some(Duration::from_secs(5)))?, [0]);
/// a.recv_bytes()?;
/// assert!(mp_conn::wait(&[&a, &c], Some(Duration::ZERO))?.is_empty());
/// # Ok::<(), mp_conn::Error>(())
/// ```
#[doc(alias = "poll")]
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let mut fds = Vec::with_capacity(objects.len());
    let mut buffered = false;
    for object in objects {
        fds.push(PollFd::from_borrowed_fd(
            object.try_wait_fd()?,
            PollFlags::IN,
        ));
        buffered |= object.ready_without_io();
    }
    // Something is ready already: only look at the others, without blocking.
    let timeout = if buffered {
        Some(Duration::ZERO)
    } else {
        timeout
    };
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(sys::timespec_until);
        match rustix::event::poll(&mut fds, left.as_ref()) {
            Ok(0) if !buffered && deadline.is_none_or(|d| Instant::now() < d) => continue,
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut ready = Vec::new();
    for (i, (fd, object)) in fds.iter().zip(objects).enumerate() {
        let revents = fd.revents();
        if revents.contains(PollFlags::NVAL) {
            return Err(Errno::BADF.into());
        }
        if !revents.is_empty() || object.ready_without_io() {
            ready.push(i);
        }
    }
    Ok(ready)
}

/// A reusable waiter: register objects once (epoll through the `polling`
/// crate, level-triggered), then wait many times. Waiting costs nothing
/// per registered idle object, unlike [`wait`].
///
/// Registered [`Connection`]s switch to exact reads (see
/// [`Waitable::prepare_for_waiter`]). [`remove`](Waiter::remove) objects
/// before closing them: the kernel forgets a closed fd on its own, but a
/// duplicate of it would keep reporting under the old key.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let (a, b) = mp_conn::pipe(true)?;
/// let mut waiter = mp_conn::Waiter::new()?;
/// waiter.add(&a, 7)?;
/// let mut ready = Vec::new();
/// b.send_bytes(b"ping")?;
/// waiter.wait(Some(Duration::from_secs(5)), &mut ready)?;
/// assert_eq!(ready, [7]);
/// # Ok::<(), mp_conn::Error>(())
/// ```
#[derive(Debug)]
pub struct Waiter {
    poller: polling::Poller,
    events: polling::Events,
    /// Key of each registered fd.
    keys: HashMap<RawFd, usize>,
    /// Keys that were ready without I/O when added; reported by the next wait.
    pending: Vec<usize>,
}

impl Waiter {
    /// An empty waiter.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_create1`.
    pub fn new() -> Result<Waiter> {
        Ok(Waiter {
            poller: polling::Poller::new()?,
            events: polling::Events::with_capacity(
                NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
            ),
            keys: HashMap::new(),
            pending: Vec::new(),
        })
    }

    /// Registers `obj` for readability under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `key == usize::MAX` (reserved by
    /// `polling`); [`Error::Closed`] for a closed connection; the OS error
    /// (`EEXIST` if the fd is registered already).
    pub fn add(&mut self, obj: &dyn Waitable, key: usize) -> Result<()> {
        if key == usize::MAX {
            return Err(Error::InvalidArgument(
                "usize::MAX is reserved as a Waiter key",
            ));
        }
        let fd = obj.try_wait_fd()?;
        obj.prepare_for_waiter();
        sys::poller::add_level_readable(&self.poller, fd, key)?;
        self.keys.insert(fd.as_raw_fd(), key);
        if obj.ready_without_io() {
            self.pending.push(key);
        }
        Ok(())
    }

    /// Unregisters `obj`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] for a closed connection; the OS error (`ENOENT`
    /// if it was not registered).
    pub fn remove(&mut self, obj: &dyn Waitable) -> Result<()> {
        let fd = obj.try_wait_fd()?;
        self.poller.delete(fd)?;
        if let Some(key) = self.keys.remove(&fd.as_raw_fd()) {
            self.pending.retain(|&k| k != key);
        }
        Ok(())
    }

    /// The number of registered objects.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no object is registered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Waits up to `timeout` (as in [`wait`]) and fills `ready` (cleared
    /// first) with the keys of the ready objects; empty on timeout.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_wait`.
    pub fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<usize>) -> Result<()> {
        ready.clear();
        ready.append(&mut self.pending);
        let timeout = if ready.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            self.events.clear();
            match deadline {
                Some(d) => self.poller.wait_deadline(&mut self.events, d)?,
                None => self.poller.wait(&mut self.events, None)?,
            };
            let had_pending = !ready.is_empty();
            for event in self.events.iter() {
                if !had_pending || !ready.contains(&event.key) {
                    ready.push(event.key);
                }
            }
            if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    }
}
