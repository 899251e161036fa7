//! `imap` and `imap_unordered`: lazy iterators over results, fed from any
//! input iterator with a bound on the units in flight.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mp_context::FnRef;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::job::{Decode, Outcome, Raw, Sink, Stream, Typed, deadline_after};
use crate::pool::Shared;
use crate::wire::{ArgError, UnitRecord};

/// The function an iterator's units call: how its items are encoded,
/// submitted and decoded.
pub(crate) trait Task {
    /// One input item.
    type Arg;
    /// How its result is decoded.
    type Out: Decode;
    /// Appends one item to a unit.
    fn push(record: &mut UnitRecord, item: &Self::Arg) -> Result<(), ArgError>;
    /// Queues one unit.
    fn submit(&self, shared: &Shared, unit: (UnitRecord, Sink)) -> Result<()>;
}

/// A typed function, `fn(A) -> R`.
pub(crate) struct TypedTask<A, R>(fn(A) -> R);

impl<A, R> Task for TypedTask<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    type Arg = A;
    type Out = Typed<R>;
    fn push(record: &mut UnitRecord, item: &A) -> Result<(), ArgError> {
        record.push(item)
    }
    fn submit(&self, shared: &Shared, unit: (UnitRecord, Sink)) -> Result<()> {
        shared.submit(self.0, [unit])
    }
}

/// A function given as an [`FnRef`], with encoded arguments and results.
pub(crate) struct RawTask(pub(crate) FnRef);

impl Task for RawTask {
    type Arg = Vec<u8>;
    type Out = Raw;
    fn push(record: &mut UnitRecord, item: &Vec<u8>) -> Result<(), ArgError> {
        record.push_encoded(item)
    }
    fn submit(&self, shared: &Shared, unit: (UnitRecord, Sink)) -> Result<()> {
        shared.submit_to(|fns| fns.intern_raw(&self.0), [unit])
    }
}

/// What both iterators share: the input, the units in flight, and the
/// decoded results of the unit being yielded (`O`, what `T`'s items
/// decode to).
struct Feeder<T, O, I> {
    shared: Arc<Shared>,
    task: T,
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
    ready: VecDeque<Result<O>>,
}

impl<T, O, I> Feeder<T, O, I>
where
    T: Task,
    T::Out: Decode<Out = O>,
    I: Iterator<Item = T::Arg>,
{
    fn new(shared: Arc<Shared>, task: T, input: I, chunksize: usize, ordered: bool) -> Self {
        Feeder {
            shared,
            task,
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
                input.by_ref().take(chunksize).collect::<Vec<T::Arg>>()
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
            let encoded = chunk.iter().try_for_each(|item| T::push(&mut record, item));
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
                    if let Err(e) = self.task.submit(&self.shared, (record, sink)) {
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

    fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<O>> {
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
                        .map(|(status, bytes)| T::Out::item(status, bytes)),
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
            feeder: Feeder<TypedTask<A, R>, R, I>,
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
                    feeder: Feeder::new(shared, TypedTask(f), input, chunksize, $ordered),
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

/// The results of [`Pool::imap_raw`](crate::Pool::imap_raw): each item's
/// result as the postcard bytes the worker sent, in input order (`ordered`)
/// or in the order they finish. As [`IMap`] otherwise.
pub struct IMapRaw<I> {
    feeder: Feeder<RawTask, Vec<u8>, I>,
}

impl<I> fmt::Debug for IMapRaw<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapRaw")
            .field("ordered", &self.feeder.ordered)
            .field("in_flight", &self.feeder.counts.len())
            .field("input_done", &self.feeder.input.is_none())
            .finish()
    }
}

impl<I: Iterator<Item = Vec<u8>>> IMapRaw<I> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        f: FnRef,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        IMapRaw {
            feeder: Feeder::new(shared, RawTask(f), input, chunksize, ordered),
        }
    }

    /// The next result, waiting at most `timeout`, as
    /// [`IMap::next_timeout`].
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<Vec<u8>>> {
        self.feeder.next_timeout(timeout)
    }
}

impl<I: Iterator<Item = Vec<u8>>> Iterator for IMapRaw<I> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        self.feeder.next_timeout(None)
    }
}
