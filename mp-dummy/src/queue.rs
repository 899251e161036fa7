//! The thread queues (CPython's `queue.Queue`, which
//! `multiprocessing.dummy` uses for `Queue` and `JoinableQueue`):
//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`], with mp-queue's
//! method names, arguments and errors. Items move; nothing is encoded.

use std::{
    collections::VecDeque,
    fmt,
    ops::Deref,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use crate::error::{Error, Result};
use crate::wait::{acquire_deadline, deadline, lock, wait_while};

struct State<T> {
    items: VecDeque<T>,
    /// Items put and not yet marked done (`task_done`).
    unfinished: usize,
    shutdown: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
    /// 0: no bound.
    maxsize: usize,
}

/// CPython's `queue.Queue` (`multiprocessing.dummy.Queue`): a FIFO of at
/// most `maxsize` items (0: no bound) between threads.
///
/// Clones share the queue. Beyond mp-queue's `put(&item, ..)`, `put`
/// takes the item by value: it moves to the consumer, unencoded.
///
/// ```
/// use std::time::Duration;
/// use mp_dummy::{Error, Queue};
///
/// let q = Queue::new(1);
/// q.put(String::from("one"), true, None)?;
/// assert!(matches!(q.put("two".into(), true, Some(Duration::from_millis(1))), Err(Error::Full)));
/// assert_eq!(q.get(true, None)?, "one");
/// assert!(matches!(q.get_nowait(), Err(Error::Empty)));
/// # Ok::<(), Error>(())
/// ```
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Queue(qsize={}, maxsize={})>",
            self.qsize(),
            self.inner.maxsize
        )
    }
}

impl<T> Queue<T> {
    /// A queue of at most `maxsize` items (0: no bound).
    pub fn new(maxsize: usize) -> Queue<T> {
        Queue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    items: VecDeque::new(),
                    unfinished: 0,
                    shutdown: false,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                all_done: Condvar::new(),
                maxsize,
            }),
        }
    }

    fn is_full(&self, state: &State<T>) -> bool {
        self.inner.maxsize > 0 && state.items.len() >= self.inner.maxsize
    }

    /// CPython's `put(item, block=True, timeout=None)`: waits (without
    /// `block`, not at all; with a timeout, at most that long) for room
    /// under `maxsize`, then appends the item.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] and [`Error::ShutDown`]; the item is dropped then
    /// (use [`put_or_return`](Queue::put_or_return) to get it back).
    pub fn put(&self, item: T, block: bool, timeout: Option<Duration>) -> Result<()> {
        self.put_or_return(item, block, timeout).map_err(|(e, _)| e)
    }

    /// [`put`](Queue::put), handing the item back with the error.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub fn put_or_return(
        &self,
        item: T,
        block: bool,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), (Error, T)> {
        let (mut state, room) = wait_while(
            &self.inner.not_full,
            lock(&self.inner.state),
            acquire_deadline(block, timeout),
            |s| !s.shutdown && self.is_full(s),
        );
        if state.shutdown {
            return Err((Error::ShutDown, item));
        }
        if !room {
            return Err((Error::Full, item));
        }
        state.items.push_back(item);
        state.unfinished += 1;
        drop(state);
        self.inner.not_empty.notify_one();
        Ok(())
    }

    /// CPython's `put_nowait(item)`: `put(item, false, None)`.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub fn put_nowait(&self, item: T) -> Result<()> {
        self.put(item, false, None)
    }

    /// CPython's `get(block=True, timeout=None)`: the next item, waiting
    /// (without `block`, not at all; with a timeout, at most that long).
    ///
    /// # Errors
    ///
    /// [`Error::Empty`]; [`Error::ShutDown`] once the queue is shut down
    /// and drained.
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        self.get_until(acquire_deadline(block, timeout))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T> {
        let (mut state, _) = wait_while(
            &self.inner.not_empty,
            lock(&self.inner.state),
            deadline,
            |s| s.items.is_empty() && !s.shutdown,
        );
        match state.items.pop_front() {
            Some(item) => {
                drop(state);
                self.inner.not_full.notify_one();
                Ok(item)
            }
            None if state.shutdown => Err(Error::ShutDown),
            None => Err(Error::Empty),
        }
    }

    /// CPython's `get_nowait()`: `get(false, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get).
    pub fn get_nowait(&self) -> Result<T> {
        self.get(false, None)
    }

    /// CPython's `qsize()`: items in the queue now.
    pub fn qsize(&self) -> usize {
        lock(&self.inner.state).items.len()
    }

    /// CPython's `empty()`.
    pub fn empty(&self) -> bool {
        lock(&self.inner.state).items.is_empty()
    }

    /// CPython's `full()`: whether a put would have to wait for room now.
    pub fn full(&self) -> bool {
        self.is_full(&lock(&self.inner.state))
    }

    /// The bound given at creation (0: none).
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// CPython 3.13's `shutdown(immediate=False)`: puts fail at once; gets
    /// return what is left, then fail; with `immediate`, what is left is
    /// discarded (and counted as done for [`JoinableQueue::join`]).
    /// Blocked callers wake.
    pub fn shutdown(&self, immediate: bool) {
        let mut state = lock(&self.inner.state);
        state.shutdown = true;
        if immediate {
            let dropped = state.items.len();
            state.items.clear();
            state.unfinished = state.unfinished.saturating_sub(dropped);
        }
        drop(state);
        self.inner.not_empty.notify_all();
        self.inner.not_full.notify_all();
        self.inner.all_done.notify_all();
    }

    /// Whether the queue was shut down.
    pub fn is_shutdown(&self) -> bool {
        lock(&self.inner.state).shutdown
    }
}

/// CPython's `JoinableQueue` (for threads, `queue.Queue` itself): a
/// [`Queue`] (it derefs to one) whose consumers mark each item done.
///
/// ```
/// let jobs = mp_dummy::JoinableQueue::new(0);
/// jobs.put("job", true, None)?;
/// let _job = jobs.get(true, None)?;
/// assert_eq!(jobs.unfinished_tasks(), 1);
/// jobs.task_done()?;
/// jobs.join()?;
/// assert!(jobs.task_done().is_err());
/// # Ok::<(), mp_dummy::Error>(())
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
        write!(
            f,
            "<JoinableQueue(qsize={}, unfinished={})>",
            self.queue.qsize(),
            self.unfinished_tasks()
        )
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue of at most `maxsize` items (0: no bound).
    pub fn new(maxsize: usize) -> JoinableQueue<T> {
        JoinableQueue {
            queue: Queue::new(maxsize),
        }
    }

    /// CPython's `task_done()`: one item taken earlier is finished.
    ///
    /// # Errors
    ///
    /// [`Error::TaskDoneTooManyTimes`] when every item put is done.
    pub fn task_done(&self) -> Result<()> {
        let inner = &self.queue.inner;
        let mut state = lock(&inner.state);
        if state.unfinished == 0 {
            return Err(Error::TaskDoneTooManyTimes);
        }
        state.unfinished -= 1;
        if state.unfinished == 0 {
            inner.all_done.notify_all();
        }
        Ok(())
    }

    /// CPython's `join()`: waits until every item put is done.
    ///
    /// # Errors
    ///
    /// None today; a `Result` as mp-queue's.
    pub fn join(&self) -> Result<()> {
        self.join_until(None);
        Ok(())
    }

    /// [`join`](JoinableQueue::join), waiting at most `timeout`: whether
    /// every item is done.
    ///
    /// # Errors
    ///
    /// As [`join`](JoinableQueue::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.join_until(deadline(Some(timeout))))
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let inner = &self.queue.inner;
        wait_while(&inner.all_done, lock(&inner.state), deadline, |s| {
            s.unfinished > 0
        })
        .1
    }

    /// Tasks put and not yet done.
    pub fn unfinished_tasks(&self) -> usize {
        lock(&self.queue.inner.state).unfinished
    }
}

/// CPython's `SimpleQueue`: an unbounded FIFO without `task_done`.
///
/// ```
/// let q = mp_dummy::SimpleQueue::new();
/// q.put(vec![7_u8; 1 << 20])?;
/// assert_eq!(q.get()?.len(), 1 << 20);
/// assert!(q.empty());
/// # Ok::<(), mp_dummy::Error>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<SimpleQueue(qsize={})>", self.queue.qsize())
    }
}

impl<T> Default for SimpleQueue<T> {
    fn default() -> Self {
        SimpleQueue::new()
    }
}

impl<T> SimpleQueue<T> {
    /// A new, empty simple queue.
    pub fn new() -> SimpleQueue<T> {
        SimpleQueue {
            queue: Queue::new(0),
        }
    }

    /// CPython's `put(item)`: never waits (no bound).
    ///
    /// # Errors
    ///
    /// None today; a `Result` as mp-queue's.
    pub fn put(&self, item: T) -> Result<()> {
        self.queue.put(item, true, None)
    }

    /// CPython's `get()`: the next item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// None today; a `Result` as mp-queue's.
    pub fn get(&self) -> Result<T> {
        self.queue.get(true, None)
    }

    /// The next item, waiting at most `timeout` (`None`: as long as it
    /// takes), as mp-queue's.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`] after the timeout.
    pub fn get_timeout(&self, timeout: Option<Duration>) -> Result<T> {
        self.queue.get_until(deadline(timeout))
    }

    /// CPython's `empty()`.
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }
}
