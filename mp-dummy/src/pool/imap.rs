//! `imap` and `imap_unordered`: lazy iterators over results, fed from any
//! input iterator with a bound on the chunks in flight.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Shared;
use super::error::{PoolError, Result};
use super::result::{deadline_after, lock, wait_on};
use super::task::{Queued, Unit, guarded};

enum StreamUnit<A, R> {
    Queued(Vec<A>),
    /// A worker has it: its item count.
    Running(usize),
    Done(Vec<Result<R>>),
}

struct StreamState<A, R> {
    /// The chunks not yet taken by the consumer, by number. Emptied when
    /// the iterator is dropped: queued chunks are skipped then, and the
    /// results of running ones dropped.
    units: HashMap<usize, StreamUnit<A, R>>,
    /// Finished chunks in the order they finished (for the unordered
    /// consumer).
    arrived: VecDeque<usize>,
    /// The consumer sleeps on [`Stream::ready`].
    waiting: bool,
}

/// What the worker threads and the consumer of one `imap` share.
struct Stream<A, R> {
    f: Box<dyn Fn(A) -> R + Send + Sync>,
    state: Mutex<StreamState<A, R>>,
    ready: Condvar,
    ordered: bool,
}

impl<A, R> Stream<A, R> {
    fn finish(&self, index: usize, results: Result<Vec<Result<R>>, &PoolError>) {
        let mut state = lock(&self.state);
        let count = match state.units.get(&index) {
            Some(StreamUnit::Running(n)) => *n,
            Some(StreamUnit::Queued(items)) => items.len(),
            Some(StreamUnit::Done(_)) | None => return,
        };
        let results = results.unwrap_or_else(|e| (0..count).map(|_| Err(e.clone())).collect());
        let old = state.units.insert(index, StreamUnit::Done(results));
        if !self.ordered {
            state.arrived.push_back(index);
        }
        let wake = state.waiting;
        drop(state);
        drop(old);
        if wake {
            self.ready.notify_one();
        }
    }
}

impl<A: Send, R: Send> Unit for Stream<A, R> {
    fn run(&self, index: usize) {
        let items = {
            let mut state = lock(&self.state);
            match state.units.get_mut(&index) {
                Some(unit @ StreamUnit::Queued(_)) => {
                    let StreamUnit::Queued(items) = std::mem::replace(unit, StreamUnit::Running(0))
                    else {
                        unreachable!("matched as queued");
                    };
                    *unit = StreamUnit::Running(items.len());
                    items
                }
                _ => return,
            }
        };
        // Each item has its own outcome: a panic fails that item alone.
        let results = items
            .into_iter()
            .map(|item| guarded(|| (self.f)(item)))
            .collect();
        self.finish(index, Ok(results));
    }

    fn cancel(&self, index: usize, error: &PoolError) {
        self.finish(index, Err(error));
    }
}

/// What both iterators hold: the input, the chunks in flight, and the
/// results of the chunk being yielded.
struct Feeder<A, R, I> {
    pool: Arc<Shared>,
    stream: Arc<Stream<A, R>>,
    /// `None` once the input is used up (or a submission failed).
    input: Option<I>,
    chunksize: usize,
    /// Chunks made so far (the next chunk's number).
    made: usize,
    /// Chunks submitted and not yet yielded.
    in_flight: usize,
    /// The next chunk to yield, in order.
    next: usize,
    /// The error that stopped reading the input, yielded last.
    error: Option<PoolError>,
    /// A panic of the input iterator, raised again once the results of
    /// the chunks before it have been yielded (CPython's imap yields the
    /// chunks completed before a failing input, then raises).
    input_panic: Option<Box<dyn Any + Send>>,
    ready: VecDeque<Result<R>>,
}

impl<A, R, I> Feeder<A, R, I>
where
    A: Send + 'static,
    R: Send + 'static,
    I: Iterator<Item = A>,
{
    fn new(
        pool: Arc<Shared>,
        f: Box<dyn Fn(A) -> R + Send + Sync>,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        Feeder {
            pool,
            stream: Arc::new(Stream {
                f,
                state: Mutex::new(StreamState {
                    units: HashMap::new(),
                    arrived: VecDeque::new(),
                    waiting: false,
                }),
                ready: Condvar::new(),
                ordered,
            }),
            input: Some(input),
            chunksize,
            made: 0,
            in_flight: 0,
            next: 0,
            error: None,
            input_panic: None,
            ready: VecDeque::new(),
        }
    }

    /// Reads and submits input until the window is full or the input ends.
    fn fill(&mut self) {
        let window = self.pool.config.imap_window;
        while self.in_flight < window {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            let chunksize = self.chunksize;
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                input.by_ref().take(chunksize).collect::<Vec<A>>()
            }));
            let chunk = match read {
                Ok(chunk) if chunk.is_empty() => {
                    self.input = None;
                    return;
                }
                Ok(chunk) => chunk,
                Err(payload) => {
                    self.input_panic = Some(payload);
                    self.input = None;
                    return;
                }
            };
            let index = self.made;
            lock(&self.stream.state)
                .units
                .insert(index, StreamUnit::Queued(chunk));
            let queued = Queued {
                unit: self.stream.clone(),
                index,
            };
            if let Err(e) = self.pool.submit(queued) {
                let chunk = lock(&self.stream.state).units.remove(&index);
                drop(chunk);
                self.error = Some(e);
                self.input = None;
                return;
            }
            self.made += 1;
            self.in_flight += 1;
        }
    }

    fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
        let deadline = deadline_after(timeout);
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.fill();
            if self.in_flight == 0 {
                if let Some(payload) = self.input_panic.take() {
                    std::panic::resume_unwind(payload);
                }
                return self.error.take().map(Err);
            }
            let stream = &*self.stream;
            let mut state = lock(&stream.state);
            let done = loop {
                let index = if stream.ordered {
                    Some(self.next)
                        .filter(|i| matches!(state.units.get(i), Some(StreamUnit::Done(_))))
                } else {
                    state.arrived.pop_front()
                };
                if let Some(index) = index {
                    break state.units.remove(&index);
                }
                state.waiting = true;
                let (s, in_time) = wait_on(&stream.ready, state, deadline);
                state = s;
                state.waiting = false;
                if !in_time {
                    return Some(Err(PoolError::Timeout));
                }
            };
            drop(state);
            self.in_flight -= 1;
            self.next += 1;
            if let Some(StreamUnit::Done(results)) = done {
                self.ready.extend(results);
            }
        }
    }
}

impl<A, R, I> Drop for Feeder<A, R, I> {
    fn drop(&mut self) {
        // Queued chunks are skipped, running ones' results dropped.
        let units = std::mem::take(&mut lock(&self.stream.state).units);
        drop(units);
    }
}

macro_rules! result_iterator {
    ($(#[$doc:meta])* $name:ident, $ordered:expr) => {
        $(#[$doc])*
        pub struct $name<A, R, I> {
            feeder: Feeder<A, R, I>,
        }

        impl<A, R, I> fmt::Debug for $name<A, R, I> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("in_flight", &self.feeder.in_flight)
                    .field("input_done", &self.feeder.input.is_none())
                    .finish()
            }
        }

        impl<A, R, I> $name<A, R, I>
        where
            A: Send + 'static,
            R: Send + 'static,
            I: Iterator<Item = A>,
        {
            pub(crate) fn new(
                pool: Arc<Shared>,
                f: Box<dyn Fn(A) -> R + Send + Sync>,
                input: I,
                chunksize: usize,
            ) -> Self {
                $name {
                    feeder: Feeder::new(pool, f, input, chunksize, $ordered),
                }
            }

            /// The next result, waiting at most `timeout` (`None`: as long
            /// as it takes); `Some(Err(PoolError::Timeout))` if it is not
            /// ready in time, and the next call waits for the same result
            /// again (CPython's `next(timeout)`).
            pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
                self.feeder.next_timeout(timeout)
            }
        }

        impl<A, R, I> Iterator for $name<A, R, I>
        where
            A: Send + 'static,
            R: Send + 'static,
            I: Iterator<Item = A>,
        {
            type Item = Result<R>;

            fn next(&mut self) -> Option<Result<R>> {
                self.feeder.next_timeout(None)
            }
        }
    };
}

result_iterator!(
    /// The results of [`Pool::imap`](crate::pool::Pool::imap), in input
    /// order, each as soon as it and those before it are done.
    ///
    /// The input iterator is read here, on the thread that iterates, and
    /// only as far as the pool's [`imap_window`](crate::pool::PoolBuilder::imap_window)
    /// allows. Dropping the iterator stops reading; its queued chunks are
    /// skipped and the results of running ones dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), mp_dummy::pool::PoolError> {
    /// let pool = mp_dummy::pool::Pool::new(Some(2))?;
    /// // An endless input: only what is consumed (plus the window) is read.
    /// let firsts: Vec<u64> = pool
    ///     .imap(|n: u64| 2 * n, 0.., 1)?
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok(()) }
    /// ```
    IMap,
    true
);

result_iterator!(
    /// The results of [`Pool::imap_unordered`](crate::pool::Pool::imap_unordered),
    /// in the order they finish. As [`IMap`] otherwise.
    IMapUnordered,
    false
);
