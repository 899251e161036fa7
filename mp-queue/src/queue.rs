//! [`Queue`], [`JoinableQueue`], [`SimpleQueue`] and [`QueueBuilder`]:
//! the typed handles (CPython's `queues.py`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use mp_heap::Deadline;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::decode_taken;
use crate::encode::Encoded;
use crate::error::{QueueError, Result};
use crate::feeder;
use crate::handle::{Core, DEFAULT_RING_BYTES};
use crate::ring::{Kind, SHUTDOWN};

/// What items of a queue must be: serde values (with fds inside through
/// mp-reduction, as a `Connection` or a `SharedBuffer` has) of a type that
/// borrows nothing.
pub trait Item: Serialize + DeserializeOwned + 'static {}
impl<T: Serialize + DeserializeOwned + 'static> Item for T {}

/// How to make a queue: its `maxsize` and the size of its ring.
///
/// ```
/// use mp_queue::{Queue, QueueBuilder};
///
/// let q: Queue<String> = QueueBuilder::new().maxsize(10).ring_bytes(1 << 20).queue()?;
/// assert_eq!(q.maxsize(), 10);
/// # Ok::<(), mp_queue::QueueError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBuilder {
    maxsize: usize,
    ring_bytes: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder::new()
    }
}

impl QueueBuilder {
    /// An unbounded queue with a ring of [`DEFAULT_RING_BYTES`].
    ///
    /// [`DEFAULT_RING_BYTES`]: crate::DEFAULT_RING_BYTES
    pub fn new() -> QueueBuilder {
        QueueBuilder {
            maxsize: 0,
            ring_bytes: DEFAULT_RING_BYTES,
        }
    }

    /// At most `maxsize` items in the queue at once (counting those still
    /// in producers' feeder threads); 0 for no bound (CPython's
    /// `maxsize <= 0`, which is `SEM_VALUE_MAX`).
    pub fn maxsize(mut self, maxsize: usize) -> QueueBuilder {
        self.maxsize = maxsize;
        self
    }

    /// The size of the shared ring that small items travel through: a
    /// power of two from 4 KiB to 1 GiB. Items up to a quarter of it (and
    /// at most [`INLINE_LIMIT`](crate::INLINE_LIMIT)) are copied into it;
    /// bigger ones, and items that hold fds, take the side channel.
    pub fn ring_bytes(mut self, ring_bytes: usize) -> QueueBuilder {
        self.ring_bytes = ring_bytes;
        self
    }

    /// A [`Queue`].
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidArgument`] for a `maxsize` above
    /// `SEM_VALUE_MAX` or a bad ring size; [`QueueError::Heap`] or
    /// [`QueueError::Io`] when the shared memory or the socketpair cannot
    /// be made.
    pub fn queue<T: Item>(&self) -> Result<Queue<T>> {
        Ok(Queue::from_core(Core::new(
            Kind::Queue,
            self.maxsize,
            self.ring_bytes,
            std::any::type_name::<T>(),
        )?))
    }

    /// A [`JoinableQueue`].
    ///
    /// # Errors
    ///
    /// As [`queue`](QueueBuilder::queue).
    pub fn joinable<T: Item>(&self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::from_core(Core::new(
                Kind::Joinable,
                self.maxsize,
                self.ring_bytes,
                std::any::type_name::<T>(),
            )?),
        })
    }

    /// A [`SimpleQueue`] (`maxsize` does not apply).
    ///
    /// # Errors
    ///
    /// As [`queue`](QueueBuilder::queue).
    pub fn simple<T: Item>(&self) -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            core: Core::new(Kind::Simple, 0, self.ring_bytes, std::any::type_name::<T>())?,
            _t: PhantomData,
        })
    }
}

/// CPython's `multiprocessing.Queue`: a FIFO of serde items between any
/// number of producer and consumer processes.
///
/// - Items go through a ring in shared memory (small ones) or a datagram
///   socketpair beside it (items that hold fds, and big ones, whose bytes
///   go in a sealed memfd), in the order each producer put them, each
///   delivered exactly once.
/// - [`put`](Queue::put) waits only for room under `maxsize`, never for
///   consumers: when the ring is full, the item goes to this process's
///   feeder thread, which commits it later (in order). A process that ends
///   flushes its feeder first, unless [`cancel_join_thread`](Queue::cancel_join_thread)
///   was called.
/// - Clones share the queue. It reaches other processes as a process
///   argument under every start method (a forked child inherits it), and
///   inside mp-conn messages over unix sockets.
/// - A process that dies inside `put` or `get` leaves the queue usable:
///   the ring's lock comes with the undo log of the operation it was in,
///   and items its feeder held stop counting toward `maxsize`.
///
/// ```
/// use std::time::Duration;
/// use mp_queue::{Queue, QueueError};
///
/// let q = Queue::new(2)?;
/// q.put(&"first".to_string(), true, None)?;
/// q.put_nowait(&"second".to_string())?;
/// assert!(q.full());
/// let late = "third".to_string();
/// assert!(matches!(q.put(&late, true, Some(Duration::from_millis(10))), Err(QueueError::Full)));
/// assert_eq!(q.get(true, None)?, "first");
/// assert_eq!(q.qsize(), 1);
/// q.shutdown(false); // CPython 3.13: puts fail, gets drain what is left
/// assert_eq!(q.get_nowait()?, "second");
/// assert!(matches!(q.get(true, None), Err(QueueError::ShutDown)));
/// # Ok::<(), QueueError>(())
/// ```
pub struct Queue<T> {
    core: Core,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<T: Item> Queue<T> {
    /// A queue of at most `maxsize` items (0: no bound), in the
    /// process-wide heap.
    ///
    /// # Errors
    ///
    /// As [`QueueBuilder::queue`].
    pub fn new(maxsize: usize) -> Result<Queue<T>> {
        QueueBuilder::new().maxsize(maxsize).queue()
    }

    fn from_core(core: Core) -> Queue<T> {
        Queue {
            core,
            _t: PhantomData,
        }
    }

    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// Another view of a queue's core, with another item type (the fuzz
    /// target's).
    pub(crate) fn from_core_for_fuzz(core: Core) -> Queue<T> {
        Queue::from_core(core)
    }

    /// CPython's `put(obj, block=True, timeout=None)`: waits (without
    /// `block`, not at all; with a timeout, at most that long) for room
    /// under `maxsize`, then hands the item to the queue; the caller keeps
    /// its item, as in CPython (and as with mp-conn's `send`).
    ///
    /// The item is encoded here (an error is the caller's, not a feeder's
    /// as in CPython); it reaches the ring now, or through this process's
    /// feeder thread when the ring is full. An item that holds fds sends
    /// duplicates of them.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`], [`QueueError::ShutDown`],
    /// [`QueueError::Closed`], [`QueueError::Encode`],
    /// [`QueueError::TooManyFds`], or the system's error; nothing was put.
    pub fn put(&self, item: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        let inner = &self.core.inner;
        let h = inner.header();
        // Cheap refusals first (the lock decides, below).
        if inner.local().is_closed() {
            return Err(QueueError::Closed);
        }
        if h.flags() & SHUTDOWN != 0 {
            return Err(QueueError::ShutDown);
        }
        if !block && h.accepted() >= h.maxsize() {
            return Err(QueueError::Full);
        }
        let enc = Encoded::new(item, inner.inline_max, Some(&inner.local().pool))?;
        inner.put(enc, Deadline::for_acquire(block, timeout))
    }

    /// CPython's `put_nowait(obj)`: `put(item, false, None)`.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put(item, false, None)
    }

    /// CPython's `get(block=True, timeout=None)`: the next item, waiting
    /// (without `block`, not at all; with a timeout, at most that long).
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`]; [`QueueError::ShutDown`] once the queue is
    /// shut down and drained; [`QueueError::Closed`];
    /// [`QueueError::Decode`] for an item that is not a `T` (it is gone);
    /// [`QueueError::Corrupt`] when a peer damaged the queue.
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        let taken = self.core.inner.get(Deadline::for_acquire(block, timeout))?;
        decode_taken(taken)
    }

    /// CPython's `get_nowait()`: `get(false, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub fn get_nowait(&self) -> Result<T> {
        self.get(false, None)
    }

    /// CPython's `qsize()`: items put and not yet got, in every process
    /// (those still in feeder threads included). A snapshot: others may
    /// change it at once.
    pub fn qsize(&self) -> usize {
        // Items that died with a producer stop counting here too.
        self.core.inner.maybe_reclaim();
        self.core.inner.header().accepted() as usize
    }

    /// CPython's `empty()`: whether a get would find nothing now.
    pub fn empty(&self) -> bool {
        self.core.inner.header().items() == 0
    }

    /// CPython's `full()`: whether a put would have to wait for room now.
    pub fn full(&self) -> bool {
        self.core.inner.maybe_reclaim();
        let h = self.core.inner.header();
        h.accepted() >= h.maxsize()
    }

    /// The bound given at creation (`SEM_VALUE_MAX` for none).
    pub fn maxsize(&self) -> usize {
        self.core.inner.header().maxsize() as usize
    }

    /// CPython's `close()`: this process puts and gets no more (both fail
    /// with [`QueueError::Closed`] here); its feeder thread finishes once
    /// it has flushed. Other processes are unaffected.
    pub fn close(&self) {
        feeder::close(&self.core.inner);
    }

    /// CPython's `join_thread()`: waits until this process's feeder thread
    /// has flushed its items and finished.
    ///
    /// # Errors
    ///
    /// [`QueueError::NotClosed`] before [`close`](Queue::close).
    pub fn join_thread(&self) -> Result<()> {
        feeder::join_thread(&self.core.inner)
    }

    /// CPython's `cancel_join_thread()`: this process will not wait for its
    /// feeder when it ends; items still buffered then are dropped (they
    /// stop counting toward `maxsize` and, for a `JoinableQueue`, as
    /// unfinished tasks).
    pub fn cancel_join_thread(&self) {
        feeder::cancel_join_thread(&self.core.inner);
    }

    /// CPython 3.13's `queue.Queue.shutdown(immediate)`, for every process:
    /// puts fail at once; gets return what is left, then fail; with
    /// `immediate`, what is left is discarded (and counted as done for
    /// [`JoinableQueue::join`]). Blocked callers, in every process, wake.
    pub fn shutdown(&self, immediate: bool) {
        self.core.inner.shutdown(immediate);
    }

    /// Whether the queue was shut down.
    pub fn is_shutdown(&self) -> bool {
        self.core.inner.header().flags() & SHUTDOWN != 0
    }
}

/// Serializable only inside `mp_reduction::collect_fds`: a process
/// argument, or an item of an mp-conn message over a unix socket.
impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

/// Deserializable only inside `mp_reduction::provide_fds`; a queue of
/// another kind or item type is refused.
impl<'de, T: Item> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let core = Core::deserialize(
            deserializer,
            Kind::Queue,
            std::any::type_name::<T>(),
            || format!("Queue<{}>", std::any::type_name::<T>()),
        )?;
        Ok(Queue::from_core(core))
    }
}

/// CPython's `multiprocessing.JoinableQueue`: a [`Queue`] (it derefs to
/// one) that counts unfinished tasks: every put adds one,
/// [`task_done`](JoinableQueue::task_done) takes one away, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// ```
/// use mp_queue::{JoinableQueue, QueueError};
///
/// let q = JoinableQueue::new(0)?;
/// q.put(&1_u8, true, None)?;
/// assert!(!q.join_timeout(std::time::Duration::from_millis(1))?);
/// let _job = q.get(true, None)?;
/// q.task_done()?;
/// q.join()?;
/// assert!(matches!(q.task_done(), Err(QueueError::TaskDoneTooManyTimes)));
/// # Ok::<(), QueueError>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.queue.core.inner.header().unfinished())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Item> JoinableQueue<T> {
    /// A joinable queue of at most `maxsize` items (0: no bound).
    ///
    /// # Errors
    ///
    /// As [`QueueBuilder::queue`].
    pub fn new(maxsize: usize) -> Result<JoinableQueue<T>> {
        QueueBuilder::new().maxsize(maxsize).joinable()
    }

    /// CPython's `task_done()`: one item taken earlier is finished.
    ///
    /// # Errors
    ///
    /// [`QueueError::TaskDoneTooManyTimes`] when every item put is done.
    pub fn task_done(&self) -> Result<()> {
        self.queue.core.inner.task_done()
    }

    /// CPython's `join()`: waits until every item put (in any process) is
    /// done. Items lost with a producer that died, or dropped after
    /// `cancel_join_thread` or an immediate shutdown, count as done.
    ///
    /// # Errors
    ///
    /// None today; a `Result` so that a future failure mode need not
    /// change the signature.
    pub fn join(&self) -> Result<()> {
        self.queue.core.inner.join_tasks(Deadline::Never);
        Ok(())
    }

    /// [`join`](JoinableQueue::join), waiting at most `timeout`: whether
    /// every item is done.
    ///
    /// # Errors
    ///
    /// As [`join`](JoinableQueue::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self
            .queue
            .core
            .inner
            .join_tasks(Deadline::after(Some(timeout))))
    }

    /// Tasks put and not yet done.
    pub fn unfinished_tasks(&self) -> usize {
        self.queue.core.inner.header().unfinished() as usize
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.core.serialize(serializer)
    }
}

impl<'de, T: Item> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let core = Core::deserialize(
            deserializer,
            Kind::Joinable,
            std::any::type_name::<T>(),
            || format!("JoinableQueue<{}>", std::any::type_name::<T>()),
        )?;
        Ok(JoinableQueue {
            queue: Queue::from_core(core),
        })
    }
}

/// CPython's `multiprocessing.SimpleQueue`: no `maxsize`, no feeder
/// thread; [`put`](SimpleQueue::put) writes under the ring's lock,
/// waiting for room as long as it takes.
///
/// ```
/// let q = mp_queue::SimpleQueue::new()?;
/// q.put(&vec![1_u8, 2, 3])?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, [1, 2, 3]);
/// # Ok::<(), mp_queue::QueueError>(())
/// ```
pub struct SimpleQueue<T> {
    core: Core,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<T: Item> SimpleQueue<T> {
    /// A new simple queue.
    ///
    /// # Errors
    ///
    /// As [`QueueBuilder::queue`].
    pub fn new() -> Result<SimpleQueue<T>> {
        QueueBuilder::new().simple()
    }

    /// CPython's `put(obj)`: writes the item, waiting for room in the ring
    /// as long as it takes (the side channel's, for items that hold fds or
    /// are big); the caller keeps its item.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`], [`QueueError::Encode`],
    /// [`QueueError::TooManyFds`], or the system's error; nothing was put.
    pub fn put(&self, item: &T) -> Result<()> {
        let inner = &self.core.inner;
        if inner.local().is_closed() {
            return Err(QueueError::Closed);
        }
        inner.put_now(Encoded::new(
            item,
            inner.inline_max,
            Some(&inner.local().pool),
        )?)
    }

    /// CPython's `get()`: the next item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`], [`QueueError::Decode`],
    /// [`QueueError::Corrupt`].
    pub fn get(&self) -> Result<T> {
        self.get_timeout(None)
    }

    /// The next item, waiting at most `timeout` (`None`: as long as it
    /// takes); beyond CPython, whose `SimpleQueue.get` has no timeout.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`] after the timeout; otherwise as
    /// [`get`](SimpleQueue::get).
    pub fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
        let taken = self.core.inner.get(Deadline::after(timeout))?;
        decode_taken(taken)
    }

    /// CPython's `empty()`.
    pub fn empty(&self) -> bool {
        self.core.inner.header().items() == 0
    }

    /// CPython's `close()`: this process puts and gets no more; idempotent.
    pub fn close(&self) {
        feeder::close(&self.core.inner);
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

impl<'de, T: Item> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let core = Core::deserialize(
            deserializer,
            Kind::Simple,
            std::any::type_name::<T>(),
            || format!("SimpleQueue<{}>", std::any::type_name::<T>()),
        )?;
        Ok(SimpleQueue {
            core,
            _t: PhantomData,
        })
    }
}
