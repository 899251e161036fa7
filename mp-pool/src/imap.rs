//! `imap` and `imap_unordered`: lazy iterators over results, fed from any
//! input iterator with a bound on the units in flight.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::job::{Outcome, Sink, Stream, deadline_after, decode_item};
use crate::pool::Shared;
use crate::wire::UnitRecord;

/// What both iterators share: the input, the units in flight, and the
/// decoded results of the unit being yielded.
struct Feeder<A, R, I> {
    shared: Arc<Shared>,
    f: fn(A) -> R,
    /// `None` once the input is used up (or a submission failed).
    input: Option<I>,
    chunksize: usize,
    stream: Arc<Stream>,
    ordered: bool,
    /// Units made so far (the next unit's number).
    made: usize,
    /// Item counts of the units not yet yielded.
    counts: HashMap<usize, u32>,
    /// The next unit to yield, in order.
    next: usize,
    /// The error that stopped reading the input, yielded last.
    error: Option<Error>,
    /// A panic of the input iterator, raised again once the results of
    /// the units before it have been yielded (CPython's imap yields the
    /// chunks completed before a failing input, then raises).
    input_panic: Option<Box<dyn std::any::Any + Send>>,
    ready: VecDeque<Result<R>>,
}

impl<A, R, I> Feeder<A, R, I>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
    I: Iterator<Item = A>,
{
    fn new(shared: Arc<Shared>, f: fn(A) -> R, input: I, chunksize: usize, ordered: bool) -> Self {
        Feeder {
            shared,
            f,
            input: Some(input),
            chunksize,
            stream: Stream::new(),
            ordered,
            made: 0,
            counts: HashMap::new(),
            next: 0,
            error: None,
            input_panic: None,
            ready: VecDeque::new(),
        }
    }

    /// Reads and submits input until the window is full or the input ends.
    fn fill(&mut self) {
        let window = self.shared.config.imap_window;
        while self.counts.len() < window {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            let chunksize = self.chunksize;
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                input.by_ref().take(chunksize).collect::<Vec<A>>()
            }));
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(payload) => {
                    self.input_panic = Some(payload);
                    self.input = None;
                    return;
                }
            };
            if chunk.is_empty() {
                self.input = None;
                return;
            }
            let unit = self.made;
            let mut record = UnitRecord::with_capacity(chunk.len());
            let encoded = chunk.iter().try_for_each(|item| record.push(item));
            let count = chunk.len() as u32;
            match encoded {
                Err(e) => {
                    // This chunk fails alone, at its place in the results.
                    let e = crate::pool::arg_error(e);
                    self.stream.complete(unit, self.ordered, Outcome::Failed(e));
                }
                Ok(()) => {
                    let sink = Sink::Stream {
                        stream: self.stream.clone(),
                        unit,
                        ordered: self.ordered,
                    };
                    if let Err(e) = self.shared.submit(self.f, [(record, sink)]) {
                        self.error = Some(e);
                        self.input = None;
                        return;
                    }
                }
            }
            self.counts.insert(unit, count);
            self.made += 1;
        }
    }

    fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
        let deadline = deadline_after(timeout);
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.fill();
            if self.counts.is_empty() {
                if let Some(payload) = self.input_panic.take() {
                    std::panic::resume_unwind(payload);
                }
                return self.error.take().map(Err);
            }
            let stream = &self.stream;
            let want = self.ordered.then_some(self.next);
            if !self
                .shared
                .notifier
                .wait_until(deadline, || stream.has(want))
            {
                return Some(Err(Error::Timeout));
            }
            let taken = match want {
                Some(unit) => stream.take(unit).map(|o| (unit, o)),
                None => stream.take_any(),
            };
            let Some((unit, outcome)) = taken else {
                continue;
            };
            if self.ordered {
                self.next += 1;
            }
            let count = self.counts.remove(&unit).unwrap_or(0);
            match outcome {
                Outcome::Done(items) => self.ready.extend(
                    items
                        .iter()
                        .map(|(status, bytes)| decode_item(status, bytes)),
                ),
                Outcome::Failed(e) => self.ready.extend((0..count).map(|_| Err(e.clone()))),
            }
        }
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
                    .field("in_flight", &self.feeder.counts.len())
                    .field("input_done", &self.feeder.input.is_none())
                    .finish()
            }
        }

        impl<A, R, I> $name<A, R, I>
        where
            A: Serialize + DeserializeOwned + 'static,
            R: Serialize + DeserializeOwned + 'static,
            I: Iterator<Item = A>,
        {
            pub(crate) fn new(shared: Arc<Shared>, f: fn(A) -> R, input: I, chunksize: usize) -> Self {
                $name {
                    feeder: Feeder::new(shared, f, input, chunksize, $ordered),
                }
            }

            /// The next result, waiting at most `timeout` (`None`: as long
            /// as it takes); `Some(Err(Error::Timeout))` if it is not ready
            /// in time, and the next call waits for the same result again
            /// (CPython's `next(timeout)`).
            pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<R>> {
                self.feeder.next_timeout(timeout)
            }
        }

        impl<A, R, I> Iterator for $name<A, R, I>
        where
            A: Serialize + DeserializeOwned + 'static,
            R: Serialize + DeserializeOwned + 'static,
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
    /// The results of [`Pool::imap`](crate::Pool::imap), in input order,
    /// each as soon as it and those before it are done.
    ///
    /// The input iterator is read here, on the thread that iterates, and
    /// only as far as the pool's `imap_window` allows. Dropping the
    /// iterator stops reading; units already sent still run.
    ///
    /// # Examples
    ///
    /// ```
    /// fn double(n: u64) -> u64 {
    ///     2 * n
    /// }
    ///
    /// # fn main() -> Result<(), mp_pool::Error> {
    /// mp_context::init();
    /// let pool = mp_pool::Pool::builder().processes(2).start_method("fork").build()?;
    /// // An endless input: only what is consumed (plus the window) is read.
    /// let firsts: Vec<u64> = pool
    ///     .imap(double, 0.., 1)?
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok(()) }
    /// ```
    IMap,
    true
);

result_iterator!(
    /// The results of [`Pool::imap_unordered`](crate::Pool::imap_unordered),
    /// in the order they finish. As [`IMap`] otherwise.
    IMapUnordered,
    false
);
