//! What a submission becomes: units of work (one task, or one chunk of a
//! `map`), the jobs that collect their outcomes, waiting for them, and
//! [`AsyncResult`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::wire;

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every update under these locks is a single step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes the threads that wait for results. One per pool: the supervisor
/// calls [`Notifier::notify`] once per batch of results it has filed, and
/// it costs nothing while nobody waits.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    lock: Mutex<()>,
    cond: Condvar,
    waiters: AtomicUsize,
}

impl Notifier {
    /// Wakes every waiter, if there is one.
    pub(crate) fn notify(&self) {
        // SeqCst pairs with the waiter's increment: either the waiter sees
        // the result it waits for, or we see the waiter.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            drop(lock(&self.lock));
            self.cond.notify_all();
        }
    }

    /// Waits until `done()` holds or `deadline` passes (`None`: no limit);
    /// returns `done()`.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        if done() {
            return true;
        }
        let mut guard = lock(&self.lock);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if done() {
                break true;
            }
            match deadline {
                None => guard = self.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break done();
                    }
                    guard = self
                        .cond
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// The deadline `timeout` from now (`None`, or too far for an `Instant`:
/// none).
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// The results of one unit, as the worker sent them: `count` items in
/// `frame[range]` (checked when the frame arrived).
#[derive(Clone)]
pub(crate) struct Items {
    pub(crate) frame: Arc<Vec<u8>>,
    pub(crate) range: Range<usize>,
    pub(crate) count: u32,
}

impl Items {
    /// Each item's `(status, bytes)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        wire::results(self.count, &self.frame[self.range.clone()])
    }
}

/// What became of one unit.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The worker answered, item by item.
    Done(Items),
    /// The unit failed as a whole: its worker died, timed out, or the pool
    /// stopped.
    Failed(Error),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(items) => write!(f, "Done({} items)", items.count),
            Outcome::Failed(e) => write!(f, "Failed({e:?})"),
        }
    }
}

/// Decodes one item's result.
pub(crate) fn decode_item<R: DeserializeOwned>(status: u8, bytes: &[u8]) -> Result<R> {
    match status {
        wire::OK => match postcard::take_from_bytes::<R>(bytes) {
            Ok((value, [])) => Ok(value),
            Ok(_) => Err(Error::ResultNotDecodable(
                postcard::Error::DeserializeBadEncoding,
            )),
            Err(e) => Err(Error::ResultNotDecodable(e)),
        },
        _ => Err(item_failure(status, bytes)),
    }
}

/// The error of an item whose status is not `OK`.
fn item_failure(status: u8, bytes: &[u8]) -> Error {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    match status {
        wire::PANICKED => {
            let text = text();
            match text.split_once('\0') {
                Some((location, message)) => Error::Panicked {
                    message: message.to_owned(),
                    location: Some(location.to_owned()),
                },
                None => Error::Panicked {
                    message: text,
                    location: None,
                },
            }
        }
        wire::RESULT_UNSERIALIZABLE => Error::ResultNotSerializable { message: text() },
        wire::ARGS_UNDECODABLE => Error::ArgsNotDecodable { message: text() },
        _ => Error::BadFunction { message: text() },
    }
}

/// How the bytes of one item's result become what the caller gets.
pub(crate) trait Decode: 'static {
    /// The value of one item.
    type Out;
    /// Decodes one item (its status and bytes, as the worker sent them).
    fn item(status: u8, bytes: &[u8]) -> Result<Self::Out>;
}

/// Items decoded as `R` (the typed calls).
pub(crate) struct Typed<R>(std::marker::PhantomData<fn() -> R>);

impl<R: DeserializeOwned + 'static> Decode for Typed<R> {
    type Out = R;
    fn item(status: u8, bytes: &[u8]) -> Result<R> {
        decode_item(status, bytes)
    }
}

/// Items kept as the postcard bytes the worker sent (the raw calls).
pub(crate) struct Raw;

impl Decode for Raw {
    type Out = Vec<u8>;
    fn item(status: u8, bytes: &[u8]) -> Result<Vec<u8>> {
        match status {
            wire::OK => Ok(bytes.to_vec()),
            _ => Err(item_failure(status, bytes)),
        }
    }
}

/// A callback run when a job completes (on the supervisor thread).
type OnDone = Box<dyn FnOnce(&Job) + Send>;

/// A submission whose units are all known up front (`apply_async`,
/// `map_async`): one outcome slot per unit.
pub(crate) struct Job {
    units: Box<[OnceLock<Outcome>]>,
    /// Items over all units (the length of a `map`'s result).
    items: usize,
    remaining: AtomicUsize,
    done: AtomicBool,
    on_done: Mutex<Option<OnDone>>,
}

impl Job {
    /// A job of `units` units holding `items` items in all; one without
    /// units is done at once.
    pub(crate) fn new(units: usize, items: usize) -> Arc<Job> {
        Arc::new(Job {
            units: (0..units).map(|_| OnceLock::new()).collect(),
            items,
            remaining: AtomicUsize::new(units),
            done: AtomicBool::new(units == 0),
            on_done: Mutex::new(None),
        })
    }

    /// Sets what runs when the job completes (before [`Job::is_done`]
    /// turns true, as CPython calls callbacks before `ready()`).
    pub(crate) fn set_on_done(&self, f: OnDone) {
        *lock(&self.on_done) = Some(f);
    }

    /// Files unit `unit`'s outcome (the first one counts). When it was the
    /// last, runs the callbacks and marks the job done.
    pub(crate) fn complete(&self, unit: usize, outcome: Outcome) {
        let Some(slot) = self.units.get(unit) else {
            return;
        };
        if slot.set(outcome).is_err() {
            return;
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Runs the callbacks (catching a panic: the thread that runs them
    /// serves the whole pool) and marks the job done.
    pub(crate) fn finish(&self) {
        let callback = lock(&self.on_done).take();
        if let Some(callback) = callback
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(self))).is_err()
        {
            // The panic hook has printed the message.
            eprintln!("mp-pool: a result callback panicked; the pool goes on");
        }
        self.done.store(true, Ordering::Release);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn outcome(&self, unit: usize) -> Option<&Outcome> {
        self.units.get(unit)?.get()
    }
}

/// The result of an `apply_async`: its only item.
pub(crate) fn decode_single<D: Decode>(job: &Job) -> Result<D::Out> {
    match job.outcome(0) {
        Some(Outcome::Done(items)) => match items.iter().next() {
            Some((status, bytes)) => D::item(status, bytes),
            None => Err(Error::ArgsNotDecodable {
                message: "the worker answered with no result".into(),
            }),
        },
        Some(Outcome::Failed(e)) => Err(e.clone()),
        None => Err(Error::NotReady),
    }
}

/// The result of a `map_async`: every item in order, or the first error
/// (by position).
pub(crate) fn decode_map<D: Decode>(job: &Job) -> Result<Vec<D::Out>> {
    let mut out = Vec::with_capacity(job.items);
    for unit in 0..job.units.len() {
        match job.outcome(unit) {
            Some(Outcome::Done(items)) => {
                for (status, bytes) in items.iter() {
                    out.push(D::item(status, bytes)?);
                }
            }
            Some(Outcome::Failed(e)) => return Err(e.clone()),
            None => return Err(Error::NotReady),
        }
    }
    Ok(out)
}

/// What to run when a result is ready: `on_success` with the value, or
/// `on_error` with the error (CPython's `callback` and `error_callback`).
///
/// Callbacks run on the pool's supervisor thread (a submission with
/// callbacks starts it), which also moves every task and result from then
/// on: keep them short, as CPython advises. A panicking
/// callback is reported on stderr and the pool goes on.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use mp_pool::{Callbacks, Pool};
///
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # fn main() -> Result<(), mp_pool::Error> {
/// mp_context::init();
/// let pool = Pool::builder().processes(1).start_method("fork").build()?;
/// let (tx, rx) = mpsc::channel();
/// let callbacks = Callbacks::new()
///     .on_success(move |n| tx.send(n).unwrap())
///     .on_error(|e| eprintln!("failed: {e}"));
/// pool.apply_async_with(square, 7, callbacks)?;
/// assert_eq!(rx.recv().unwrap(), 49);
/// # Ok(()) }
/// ```
pub struct Callbacks<T> {
    on_success: Option<Box<dyn FnOnce(T) + Send>>,
    on_error: Option<Box<dyn FnOnce(Error) + Send>>,
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_success", &self.on_success.is_some())
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            on_success: None,
            on_error: None,
        }
    }
}

impl<T: 'static> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the value when the task succeeds.
    pub fn on_success(mut self, f: impl FnOnce(T) + Send + 'static) -> Self {
        self.on_success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when the task fails.
    pub fn on_error(mut self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    fn is_empty(&self) -> bool {
        self.on_success.is_none() && self.on_error.is_none()
    }

    /// Installs the callbacks on `job`, decoding its value with `decode`.
    pub(crate) fn install(self, job: &Job, decode: fn(&Job) -> Result<T>) {
        if self.is_empty() {
            return;
        }
        job.set_on_done(Box::new(move |job| self.run(decode(job))));
    }

    /// Runs the callback that fits `result`.
    pub(crate) fn run(self, result: Result<T>) {
        match result {
            Ok(v) => {
                if let Some(f) = self.on_success {
                    f(v)
                }
            }
            Err(e) => {
                if let Some(f) = self.on_error {
                    f(e)
                }
            }
        }
    }
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) (`T` is
/// the task's result) or [`Pool::map_async`](crate::Pool::map_async) (`T`
/// is a `Vec` of them): CPython's `AsyncResult` and `MapResult`.
///
/// The value stays serialized until asked for, so [`get`](AsyncResult::get)
/// can be called again and again. A result never waits forever for a dead
/// worker or a terminated pool: those end it with an error.
pub struct AsyncResult<T> {
    job: Arc<Job>,
    notifier: Arc<Notifier>,
    decode: fn(&Job) -> Result<T>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(
        job: Arc<Job>,
        notifier: Arc<Notifier>,
        decode: fn(&Job) -> Result<T>,
    ) -> Self {
        AsyncResult {
            job,
            notifier,
            decode,
        }
    }

    /// Waits up to `timeout` (`None`: until ready) and returns the value.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the result is not ready in time (the task goes
    /// on; ask again later). Otherwise the task's error: [`Error::Panicked`],
    /// [`Error::WorkerLost`], [`Error::TaskTimeout`], [`Error::Terminated`],
    /// the (de)serialization errors, or the error that stopped the pool.
    /// For a `map`, the error of the first item (by position) that failed.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        if !self.wait(timeout) {
            return Err(Error::Timeout);
        }
        (self.decode)(&self.job)
    }

    /// Waits up to `timeout` (`None`: until ready); returns whether the
    /// result is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let job = &self.job;
        self.notifier
            .wait_until(deadline_after(timeout), || job.is_done())
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        self.job.is_done()
    }

    /// Whether the task succeeded: [`get`](AsyncResult::get) would return
    /// the value.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] before the result is ready (CPython's
    /// `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        if !self.ready() {
            return Err(Error::NotReady);
        }
        Ok((self.decode)(&self.job).is_ok())
    }
}

/// A submission read lazily from an iterator (`imap`,
/// `imap_unordered`): outcomes are kept until the consumer takes them.
#[derive(Debug)]
pub(crate) struct Stream {
    state: Mutex<StreamState>,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Outcomes by unit, for the ordered consumer.
    by_unit: HashMap<usize, Outcome>,
    /// Outcomes in arrival order, for the unordered one.
    arrived: VecDeque<(usize, Outcome)>,
}

impl Stream {
    pub(crate) fn new() -> Arc<Stream> {
        Arc::new(Stream {
            state: Mutex::new(StreamState::default()),
        })
    }

    /// Files unit `unit`'s outcome.
    pub(crate) fn complete(&self, unit: usize, ordered: bool, outcome: Outcome) {
        let mut state = lock(&self.state);
        if ordered {
            state.by_unit.insert(unit, outcome);
        } else {
            state.arrived.push_back((unit, outcome));
        }
    }

    /// Takes unit `unit`'s outcome if it has arrived.
    pub(crate) fn take(&self, unit: usize) -> Option<Outcome> {
        lock(&self.state).by_unit.remove(&unit)
    }

    /// Takes the outcome that arrived first, with its unit.
    pub(crate) fn take_any(&self) -> Option<(usize, Outcome)> {
        lock(&self.state).arrived.pop_front()
    }

    /// Whether an outcome is waiting (`unit`: that unit's).
    pub(crate) fn has(&self, unit: Option<usize>) -> bool {
        let state = lock(&self.state);
        match unit {
            Some(u) => state.by_unit.contains_key(&u),
            None => !state.arrived.is_empty(),
        }
    }
}

/// Where a unit's outcome goes.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// Slot `unit` of a job.
    Job { job: Arc<Job>, unit: usize },
    /// Unit `unit` of a stream.
    Stream {
        stream: Arc<Stream>,
        unit: usize,
        ordered: bool,
    },
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("units", &self.units.len())
            .field("done", &self.is_done())
            .finish()
    }
}

impl Sink {
    /// Delivers the outcome.
    pub(crate) fn complete(self, outcome: Outcome) {
        match self {
            Sink::Job { job, unit } => job.complete(unit, outcome),
            Sink::Stream {
                stream,
                unit,
                ordered,
            } => stream.complete(unit, ordered, outcome),
        }
    }
}

/// A unit of work as the pool queues and sends it: the encoded record
/// (kept until answered, to send again if its worker dies first) and where
/// its outcome goes.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(crate) id: u64,
    pub(crate) fn_id: u32,
    pub(crate) items: u32,
    pub(crate) record: Vec<u8>,
    pub(crate) sink: Sink,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done_items(results: &[(u8, &[u8])]) -> Outcome {
        let mut frame = Vec::new();
        wire::begin_results(&mut frame, 1, results.len() as u32);
        let start = frame.len();
        for (status, bytes) in results {
            if *status == wire::OK {
                wire::push_result(&mut frame, |out| {
                    out.extend_from_slice(bytes);
                    Ok(())
                });
            } else {
                wire::push_failure(&mut frame, *status, std::str::from_utf8(bytes).unwrap());
            }
        }
        let end = frame.len();
        Outcome::Done(Items {
            frame: Arc::new(frame),
            range: start..end,
            count: results.len() as u32,
        })
    }

    #[test]
    fn a_map_job_collects_in_order_and_reports_the_first_error() {
        let job = Job::new(2, 3);
        assert!(!job.is_done());
        job.complete(1, done_items(&[(wire::OK, &[3])]));
        assert!(matches!(
            decode_map::<Typed<u8>>(&job),
            Err(Error::NotReady)
        ));
        job.complete(0, done_items(&[(wire::OK, &[1]), (wire::OK, &[2])]));
        assert!(job.is_done());
        assert_eq!(decode_map::<Typed<u8>>(&job).unwrap(), [1, 2, 3]);

        let job = Job::new(2, 2);
        job.complete(0, done_items(&[(wire::PANICKED, b"src/a.rs:1:2\0first")]));
        job.complete(1, Outcome::Failed(Error::Terminated));
        match decode_map::<Typed<u8>>(&job) {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "first");
                assert_eq!(location.as_deref(), Some("src/a.rs:1:2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn callbacks_run_before_the_job_is_done_and_a_panic_in_one_is_contained() {
        let job = Job::new(1, 1);
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        Callbacks::new()
            .on_success(move |v: u8| *lock(&s) = Some(v))
            .install(&job, decode_single::<Typed<u8>>);
        job.complete(0, done_items(&[(wire::OK, &[9])]));
        assert_eq!(*lock(&seen), Some(9));
        assert!(job.is_done());

        let job = Job::new(1, 1);
        Callbacks::new()
            .on_error(|_| panic!("this callback panic is expected by the test"))
            .install(&job, decode_single::<Typed<u8>>);
        job.complete(0, Outcome::Failed(Error::Terminated));
        assert!(job.is_done());
    }

    #[test]
    fn waiting_times_out_and_wakes() {
        let n = Arc::new(Notifier::default());
        let flag = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        assert!(
            !n.wait_until(deadline_after(Some(Duration::from_millis(20))), || {
                flag.load(Ordering::SeqCst)
            })
        );
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let (n2, f2) = (n.clone(), flag.clone());
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f2.store(true, Ordering::SeqCst);
            n2.notify();
        });
        assert!(n.wait_until(None, || flag.load(Ordering::SeqCst)));
        setter.join().unwrap();
    }
}
