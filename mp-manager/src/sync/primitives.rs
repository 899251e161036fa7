//! The synchronization types of `SyncManager`, as the server holds them:
//! `threading`'s `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`,
//! `Condition`, `Event`, `Barrier`, and `queue.Queue`, living in the
//! manager process (as CPython's do) and waited on by server threads.
//!
//! An owner is a client connection ([`Call::owner`]): one per thread of a
//! client process, as CPython's server thread per connection. A `Lock` may
//! be released by anyone (a lock taken in one process can be released from
//! another); an `RLock` only by its owner.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use mp_value::Value;

use crate::error::Exception;
use crate::shared::{Args, Bound, Call, Output, Raise, Shared, Wait, deadline_after};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn none() -> Result<Output, Raise> {
    Ok(Output::Value(Value::None))
}

fn boolean(b: bool) -> Result<Output, Raise> {
    Ok(Output::Value(Value::Bool(b)))
}

/// The `(blocking=True, timeout=-1)` of `acquire`: `None` deadline waits
/// forever; `Some(None)` does not wait at all.
fn acquire_args(args: Args, function: &str) -> Result<(bool, Option<Instant>), Raise> {
    let b = args.bind(function, &["blocking", "timeout"])?;
    let blocking = b.flag(0, true);
    let timeout = match b.value(1) {
        None | Some(Value::None) => None,
        // threading's "timeout=-1": no timeout.
        Some(Value::Int(-1)) => None,
        Some(Value::Float(f)) if *f == -1.0 => None,
        Some(_) => b.timeout(1)?,
    };
    if !blocking && timeout.is_some() {
        return Err(
            Exception::value_error("can't specify a timeout for a non-blocking call").into(),
        );
    }
    Ok((blocking, deadline_after(timeout)))
}

#[derive(Default)]
struct LockState {
    owner: Option<u64>,
    count: usize,
}

/// `threading.Lock` and `threading.RLock`.
pub(crate) struct Lock {
    reentrant: bool,
    state: Mutex<LockState>,
    cv: Condvar,
}

impl Lock {
    pub(crate) fn new(reentrant: bool) -> Lock {
        Lock {
            reentrant,
            state: Mutex::new(LockState::default()),
            cv: Condvar::new(),
        }
    }

    /// Acquires for `owner`; `Ok(false)` on timeout or when not blocking,
    /// `Err` when the call was cancelled.
    fn acquire(
        &self,
        cx: &Call<'_>,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> Result<bool, Raise> {
        let me = cx.owner();
        let mut st = lock(&self.state);
        loop {
            if st.count == 0 {
                st.owner = Some(me);
                st.count = 1;
                return Ok(true);
            }
            if self.reentrant && st.owner == Some(me) {
                st.count += 1;
                return Ok(true);
            }
            if !blocking {
                return Ok(false);
            }
            let (g, w) = cx.wait(&self.cv, st, deadline);
            st = g;
            match w {
                Wait::Woken => {}
                Wait::TimedOut => return Ok(st.count == 0 && self.acquire_now(&mut st, me)),
                Wait::Cancelled => return Err(cancelled()),
            }
        }
    }

    fn acquire_now(&self, st: &mut LockState, me: u64) -> bool {
        st.owner = Some(me);
        st.count = 1;
        true
    }

    fn release(&self, cx: &Call<'_>) -> Result<(), Raise> {
        let mut st = lock(&self.state);
        if st.count == 0 {
            return Err(Exception::runtime_error(if self.reentrant {
                "cannot release un-acquired lock"
            } else {
                "release unlocked lock"
            })
            .into());
        }
        if self.reentrant && st.owner != Some(cx.owner()) {
            return Err(Exception::runtime_error("cannot release un-acquired lock").into());
        }
        st.count -= 1;
        if st.count == 0 {
            st.owner = None;
            drop(st);
            self.cv.notify_one();
        }
        Ok(())
    }

    fn locked(&self) -> bool {
        lock(&self.state).count > 0
    }

    /// Whether `owner` holds it (a plain lock: whether it is held at all,
    /// as `threading.Condition._is_owned` can only tell for a `Lock`).
    fn is_owned(&self, owner: u64) -> bool {
        let st = lock(&self.state);
        if self.reentrant {
            st.count > 0 && st.owner == Some(owner)
        } else {
            st.count > 0
        }
    }

    /// Releases completely for a condition wait; returns the recursion
    /// count to restore.
    fn release_save(&self) -> usize {
        let mut st = lock(&self.state);
        let count = st.count;
        st.count = 0;
        st.owner = None;
        drop(st);
        self.cv.notify_one();
        count
    }

    /// Re-acquires after a condition wait, whatever the cancellation: the
    /// waiter must own the lock again when `wait` returns.
    fn acquire_restore(&self, cx: &Call<'_>, count: usize) -> bool {
        let me = cx.owner();
        let mut st = lock(&self.state);
        loop {
            if st.count == 0 {
                st.owner = Some(me);
                st.count = count;
                return true;
            }
            let (g, w) = cx.wait(&self.cv, st, None);
            st = g;
            if w == Wait::Cancelled {
                return false;
            }
        }
    }
}

pub(super) fn cancelled() -> Raise {
    Raise::Traceback(
        "the call was cancelled: the client disconnected or the server is stopping\n".into(),
    )
}

impl Shared for Lock {
    fn type_name(&self) -> &str {
        if self.reentrant {
            "_thread.RLock"
        } else {
            "_thread.lock"
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["acquire", "locked", "release"]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "acquire" | "__enter__" => {
                let (blocking, deadline) = acquire_args(args, "acquire")?;
                boolean(self.acquire(cx, blocking, deadline)?)
            }
            "release" | "__exit__" => {
                self.release(cx)?;
                none()
            }
            "locked" => boolean(self.locked()),
            other => Err(crate::typed::no_such_method(self.type_name(), other)),
        }
    }

    fn repr(&self) -> String {
        let st = lock(&self.state);
        let state = if st.count > 0 { "locked" } else { "unlocked" };
        if self.reentrant {
            format!(
                "<{state} _thread.RLock object owner={} count={}>",
                st.owner.unwrap_or(0),
                st.count
            )
        } else {
            format!("<{state} _thread.lock object>")
        }
    }
}

/// `threading.Semaphore` and `threading.BoundedSemaphore`.
pub(crate) struct Semaphore {
    bound: Option<usize>,
    value: Mutex<usize>,
    cv: Condvar,
}

impl Semaphore {
    pub(crate) fn new(args: Args, bounded: bool) -> Result<Semaphore, Raise> {
        let b = args.bind("Semaphore", &["value"])?;
        let value = b.get::<i64>(0)?.unwrap_or(1);
        let value = usize::try_from(value)
            .map_err(|_| Exception::value_error("semaphore initial value must be >= 0"))?;
        Ok(Semaphore {
            bound: bounded.then_some(value),
            value: Mutex::new(value),
            cv: Condvar::new(),
        })
    }
}

impl Shared for Semaphore {
    fn type_name(&self) -> &str {
        if self.bound.is_some() {
            "threading.BoundedSemaphore"
        } else {
            "threading.Semaphore"
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["acquire", "release"]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "acquire" | "__enter__" => {
                let (blocking, deadline) = acquire_args(args, "acquire")?;
                let mut v = lock(&self.value);
                loop {
                    if *v > 0 {
                        *v -= 1;
                        return boolean(true);
                    }
                    if !blocking {
                        return boolean(false);
                    }
                    let (g, w) = cx.wait(&self.cv, v, deadline);
                    v = g;
                    match w {
                        Wait::Woken => {}
                        Wait::TimedOut => {
                            if *v > 0 {
                                *v -= 1;
                                return boolean(true);
                            }
                            return boolean(false);
                        }
                        Wait::Cancelled => return Err(cancelled()),
                    }
                }
            }
            "release" | "__exit__" => {
                let n = if method == "release" {
                    let b = args.bind("release", &["n"])?;
                    b.get::<i64>(0)?.unwrap_or(1)
                } else {
                    1
                };
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Exception::value_error("n must be one or more"))?;
                let mut v = lock(&self.value);
                // A peer's `n` can be any size: checked, so that a huge one
                // is an error instead of a wrapped count.
                let Some(after) = v.checked_add(n) else {
                    return Err(
                        Exception::value_error("n is too large for the semaphore's value").into(),
                    );
                };
                if self.bound.is_some_and(|bound| after > bound) {
                    return Err(Exception::value_error("Semaphore released too many times").into());
                }
                *v = after;
                drop(v);
                // Waking every waiter for a larger `n` (each takes its
                // share under the lock, the rest wait again) rather than
                // notifying `n` times: a peer's `n` must not cost a loop
                // of that length.
                if n == 1 {
                    self.cv.notify_one();
                } else {
                    self.cv.notify_all();
                }
                none()
            }
            other => Err(crate::typed::no_such_method(self.type_name(), other)),
        }
    }

    fn repr(&self) -> String {
        let v = *lock(&self.value);
        match self.bound {
            Some(b) => format!("<threading.BoundedSemaphore at value={v}/{b}>"),
            None => format!("<threading.Semaphore at value={v}>"),
        }
    }
}

/// A condition waiter: woken by setting its flag.
type Waiter = Arc<(Mutex<bool>, Condvar)>;

/// `threading.Condition(lock)`.
pub(crate) struct Condition {
    lock: Arc<dyn Shared>,
    /// FIFO of waiters.
    waiters: Mutex<VecDeque<Waiter>>,
}

impl Condition {
    pub(crate) fn new(args: Args, cx: &Call<'_>) -> Result<Condition, Raise> {
        let b = args.bind("Condition", &["lock"])?;
        let lock: Arc<dyn Shared> = match b.value(0) {
            None | Some(Value::None) => Arc::new(Lock::new(true)),
            Some(v) => {
                let obj = cx.resolve(v).ok_or_else(|| {
                    Exception::type_error(
                        "Condition(lock): the lock must be a Lock or RLock proxy of this manager",
                    )
                })?;
                if obj.as_any().downcast_ref::<Lock>().is_none() {
                    return Err(Exception::type_error(
                        "Condition(lock): the lock must be a Lock or RLock proxy of this manager",
                    )
                    .into());
                }
                obj
            }
        };
        Ok(Condition {
            lock,
            waiters: Mutex::new(VecDeque::new()),
        })
    }

    fn the_lock(&self) -> &Lock {
        self.lock
            .as_any()
            .downcast_ref::<Lock>()
            .expect("checked at construction")
    }

    fn wait(&self, b: &Bound, cx: &Call<'_>) -> Result<bool, Raise> {
        let lk = self.the_lock();
        if !lk.is_owned(cx.owner()) {
            return Err(Exception::runtime_error("cannot wait on un-acquired lock").into());
        }
        let deadline = deadline_after(b.timeout(0)?);
        let waiter = Arc::new((Mutex::new(false), Condvar::new()));
        lock(&self.waiters).push_back(Arc::clone(&waiter));
        let saved = lk.release_save();
        let mut woken = lock(&waiter.0);
        let mut cancelled_wait = false;
        while !*woken {
            let (g, w) = cx.wait(&waiter.1, woken, deadline);
            woken = g;
            match w {
                Wait::Woken => {}
                Wait::TimedOut => break,
                Wait::Cancelled => {
                    cancelled_wait = true;
                    break;
                }
            }
        }
        let notified = *woken;
        drop(woken);
        if !notified {
            lock(&self.waiters).retain(|w| !Arc::ptr_eq(w, &waiter));
        }
        if !lk.acquire_restore(cx, saved) || cancelled_wait {
            return Err(cancelled());
        }
        Ok(notified)
    }

    fn notify(&self, n: usize, cx: &Call<'_>) -> Result<(), Raise> {
        if !self.the_lock().is_owned(cx.owner()) {
            return Err(Exception::runtime_error("cannot notify on un-acquired lock").into());
        }
        let mut waiters = lock(&self.waiters);
        for _ in 0..n {
            let Some(w) = waiters.pop_front() else { break };
            *lock(&w.0) = true;
            w.1.notify_one();
        }
        Ok(())
    }
}

impl Shared for Condition {
    fn type_name(&self) -> &str {
        "threading.Condition"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec![
            "acquire",
            "notify",
            "notify_all",
            "release",
            "wait",
            "wait_for",
        ]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "acquire" | "__enter__" | "release" | "__exit__" => self.lock.call(method, args, cx),
            "wait" => {
                let b = args.bind("wait", &["timeout"])?;
                boolean(self.wait(&b, cx)?)
            }
            "notify" => {
                let b = args.bind("notify", &["n"])?;
                let n = b.get::<i64>(0)?.unwrap_or(1).max(0) as usize;
                self.notify(n, cx)?;
                none()
            }
            "notify_all" => {
                args.bind("notify_all", &[])?;
                self.notify(usize::MAX, cx)?;
                none()
            }
            other => Err(crate::typed::no_such_method(self.type_name(), other)),
        }
    }

    fn repr(&self) -> String {
        format!(
            "<Condition({}, {})>",
            self.lock.repr(),
            lock(&self.waiters).len()
        )
    }
}

/// `threading.Event`.
pub(crate) struct Event {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    pub(crate) fn new() -> Event {
        Event {
            flag: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
}

impl Shared for Event {
    fn type_name(&self) -> &str {
        "threading.Event"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["clear", "is_set", "isSet", "set", "wait"]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "is_set" | "isSet" => boolean(*lock(&self.flag)),
            "set" => {
                *lock(&self.flag) = true;
                self.cv.notify_all();
                none()
            }
            "clear" => {
                *lock(&self.flag) = false;
                none()
            }
            "wait" => {
                let b = args.bind("wait", &["timeout"])?;
                let deadline = deadline_after(b.timeout(0)?);
                let mut f = lock(&self.flag);
                while !*f {
                    let (g, w) = cx.wait(&self.cv, f, deadline);
                    f = g;
                    match w {
                        Wait::Woken => {}
                        Wait::TimedOut => break,
                        Wait::Cancelled => return Err(cancelled()),
                    }
                }
                boolean(*f)
            }
            other => Err(crate::typed::no_such_method(self.type_name(), other)),
        }
    }

    fn repr(&self) -> String {
        let state = if *lock(&self.flag) { "set" } else { "unset" };
        format!("<threading.Event: {state}>")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BarrierPhase {
    Filling,
    Draining,
    Resetting,
    Broken,
}

struct BarrierState {
    phase: BarrierPhase,
    count: usize,
}

/// `threading.Barrier(parties, action=None, timeout=None)`; the action is
/// a plain function of the program (`fn(())`, as the bytes of an
/// [`mp_context::FnRef`]), run in the manager by the waiter that trips
/// the barrier.
pub(crate) struct Barrier {
    parties: usize,
    action: Option<mp_context::ResolvedFn>,
    timeout: Option<std::time::Duration>,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

impl Barrier {
    pub(crate) fn new(args: Args) -> Result<Barrier, Raise> {
        let b = args.bind("Barrier", &["parties", "action", "timeout"])?;
        let parties: i64 = b.arg(0)?;
        let parties = usize::try_from(parties)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| Exception::value_error("parties must be >= 1"))?;
        let action = match b.value(1) {
            None | Some(Value::None) => None,
            Some(Value::Bytes(bytes)) => Some(barrier_action(bytes)?),
            Some(_) => {
                return Err(Exception::type_error(
                    "Barrier(action=...): the action must be the bytes of an mp_context::FnRef \
                     of a fn(()) (a Python callable cannot run here)",
                )
                .into());
            }
        };
        Ok(Barrier {
            parties,
            action,
            timeout: b.timeout(2)?,
            state: Mutex::new(BarrierState {
                phase: BarrierPhase::Filling,
                count: 0,
            }),
            cv: Condvar::new(),
        })
    }

    fn wait(&self, b: &Bound, cx: &Call<'_>) -> Result<usize, Raise> {
        let timeout = match b.value(0) {
            None | Some(Value::None) => self.timeout,
            Some(_) => b.timeout(0)?,
        };
        let deadline = deadline_after(timeout);
        let mut st = lock(&self.state);
        // Wait for a reset or a drain to finish (threading's `_enter`).
        while matches!(st.phase, BarrierPhase::Draining | BarrierPhase::Resetting) {
            let (g, w) = cx.wait(&self.cv, st, deadline);
            st = g;
            if w == Wait::Cancelled {
                return Err(cancelled());
            }
        }
        if st.phase == BarrierPhase::Broken {
            return Err(Exception::broken_barrier().into());
        }
        let index = st.count;
        st.count += 1;
        if st.count == self.parties {
            // The last one runs the action, then releases everybody
            // (threading's `_release`); a failed action breaks the barrier.
            if let Some(action) = &self.action {
                let mut out = Vec::new();
                if let Err(e) = action.call(&[], &mut out) {
                    st.phase = BarrierPhase::Broken;
                    self.cv.notify_all();
                    self.exit(&mut st);
                    return Err(Exception::runtime_error(format!(
                        "the barrier's action failed: {e}"
                    ))
                    .into());
                }
            }
            st.phase = BarrierPhase::Draining;
            self.cv.notify_all();
        } else {
            // threading's `_wait`.
            loop {
                if st.phase != BarrierPhase::Filling {
                    break;
                }
                let (g, w) = cx.wait(&self.cv, st, deadline);
                st = g;
                match w {
                    Wait::Woken => {}
                    Wait::TimedOut | Wait::Cancelled => {
                        if st.phase == BarrierPhase::Filling {
                            st.phase = BarrierPhase::Broken;
                            self.cv.notify_all();
                        }
                        break;
                    }
                }
            }
            if st.phase == BarrierPhase::Broken || st.phase == BarrierPhase::Resetting {
                self.exit(&mut st);
                return Err(Exception::broken_barrier().into());
            }
        }
        self.exit(&mut st);
        Ok(index)
    }

    /// threading's `_exit`: the last one out ends a drain or a reset.
    fn exit(&self, st: &mut BarrierState) {
        st.count -= 1;
        if st.count == 0 && matches!(st.phase, BarrierPhase::Draining | BarrierPhase::Resetting) {
            st.phase = BarrierPhase::Filling;
            self.cv.notify_all();
        }
    }
}

/// A barrier's action, from the bytes of an `FnRef` of a `fn(())`.
fn barrier_action(bytes: &[u8]) -> Result<mp_context::ResolvedFn, Raise> {
    let bad =
        |why: String| Raise::from(Exception::type_error(format!("Barrier(action=...): {why}")));
    let f: mp_context::FnRef =
        postcard::from_bytes(bytes).map_err(|e| bad(format!("not an mp_context::FnRef: {e}")))?;
    if f.arg_type() != "()" {
        return Err(bad(format!(
            "the action takes no arguments (a fn(())), not {}",
            f.arg_type()
        )));
    }
    f.resolve().map_err(|e| bad(e.to_string()))
}

impl Shared for Barrier {
    fn type_name(&self) -> &str {
        "threading.Barrier"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["abort", "reset", "wait"]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "wait" => {
                let b = args.bind("wait", &["timeout"])?;
                Ok(Output::Value(Value::from(self.wait(&b, cx)?)))
            }
            "abort" => {
                lock(&self.state).phase = BarrierPhase::Broken;
                self.cv.notify_all();
                none()
            }
            "reset" => {
                let mut st = lock(&self.state);
                if st.count > 0 {
                    if matches!(st.phase, BarrierPhase::Filling | BarrierPhase::Broken) {
                        st.phase = BarrierPhase::Resetting;
                    }
                } else {
                    st.phase = BarrierPhase::Filling;
                }
                self.cv.notify_all();
                none()
            }
            "__getattribute__" => {
                let b = args.bind("__getattribute__", &["name"])?;
                let name: String = b.arg(0)?;
                let st = lock(&self.state);
                let v = match name.as_str() {
                    "parties" => Value::from(self.parties),
                    "n_waiting" => Value::from(if st.phase == BarrierPhase::Filling {
                        st.count
                    } else {
                        0
                    }),
                    "broken" => Value::Bool(st.phase == BarrierPhase::Broken),
                    other => {
                        return Err(Exception::attribute_error(format!(
                            "'Barrier' object has no attribute '{other}'"
                        ))
                        .into());
                    }
                };
                Ok(Output::Value(v))
            }
            other => Err(crate::typed::no_such_method(self.type_name(), other)),
        }
    }

    fn repr(&self) -> String {
        let st = lock(&self.state);
        if st.phase == BarrierPhase::Broken {
            "<threading.Barrier: broken>".into()
        } else {
            format!("<threading.Barrier: waiters={}/{}>", st.count, self.parties)
        }
    }
}

struct QueueState {
    items: VecDeque<Value>,
    maxsize: usize,
    unfinished: usize,
    is_shutdown: bool,
}

/// `queue.Queue(maxsize=0)` (also `JoinableQueue`, as in CPython).
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

impl Queue {
    pub(crate) fn new(args: Args) -> Result<Queue, Raise> {
        let b = args.bind("Queue", &["maxsize"])?;
        let maxsize = b.get::<i64>(0)?.unwrap_or(0);
        Ok(Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                // maxsize <= 0: unbounded, as in Python.
                maxsize: usize::try_from(maxsize).unwrap_or(0),
                unfinished: 0,
                is_shutdown: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        })
    }

    fn put(
        &self,
        item: Value,
        block: bool,
        deadline: Option<Instant>,
        cx: &Call<'_>,
    ) -> Result<(), Raise> {
        let mut st = lock(&self.state);
        loop {
            if st.is_shutdown {
                return Err(Exception::queue_shutdown().into());
            }
            if st.maxsize == 0 || st.items.len() < st.maxsize {
                break;
            }
            if !block {
                return Err(Exception::queue_full().into());
            }
            let (g, w) = cx.wait(&self.not_full, st, deadline);
            st = g;
            match w {
                Wait::Woken => {}
                Wait::TimedOut => {
                    if st.maxsize == 0 || st.items.len() < st.maxsize {
                        break;
                    }
                    return Err(Exception::queue_full().into());
                }
                Wait::Cancelled => return Err(cancelled()),
            }
        }
        st.items.push_back(item);
        st.unfinished += 1;
        drop(st);
        self.not_empty.notify_one();
        Ok(())
    }

    fn get(&self, block: bool, deadline: Option<Instant>, cx: &Call<'_>) -> Result<Value, Raise> {
        let mut st = lock(&self.state);
        loop {
            if let Some(item) = st.items.pop_front() {
                drop(st);
                self.not_full.notify_one();
                return Ok(item);
            }
            if st.is_shutdown {
                return Err(Exception::queue_shutdown().into());
            }
            if !block {
                return Err(Exception::queue_empty().into());
            }
            let (g, w) = cx.wait(&self.not_empty, st, deadline);
            st = g;
            match w {
                Wait::Woken => {}
                Wait::TimedOut => {
                    if let Some(item) = st.items.pop_front() {
                        drop(st);
                        self.not_full.notify_one();
                        return Ok(item);
                    }
                    return Err(Exception::queue_empty().into());
                }
                // Nothing was taken: the item stays for another consumer.
                Wait::Cancelled => return Err(cancelled()),
            }
        }
    }
}

/// `(block, timeout)` as `queue.Queue` reads them: a negative timeout is a
/// `ValueError`, a timeout without blocking is ignored.
fn block_timeout(b: &Bound, at: usize) -> Result<(bool, Option<Instant>), Raise> {
    let block = b.flag(at, true);
    let timeout = b.timeout(at + 1)?;
    Ok((block, if block { deadline_after(timeout) } else { None }))
}

impl Shared for Queue {
    fn type_name(&self) -> &str {
        "queue.Queue"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec![
            "empty",
            "full",
            "get",
            "get_nowait",
            "join",
            "put",
            "put_nowait",
            "qsize",
            "shutdown",
            "task_done",
        ]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "put" => {
                let mut b = args.bind("put", &["item", "block", "timeout"])?;
                let (block, deadline) = block_timeout(&b, 1)?;
                let item = b.required(0)?;
                self.put(item, block, deadline, cx)?;
                none()
            }
            "put_nowait" => {
                let mut b = args.bind("put_nowait", &["item"])?;
                let item = b.required(0)?;
                self.put(item, false, None, cx)?;
                none()
            }
            "get" => {
                let b = args.bind("get", &["block", "timeout"])?;
                let (block, deadline) = block_timeout(&b, 0)?;
                Ok(Output::Value(self.get(block, deadline, cx)?))
            }
            "get_nowait" => {
                args.bind("get_nowait", &[])?;
                Ok(Output::Value(self.get(false, None, cx)?))
            }
            "qsize" => Ok(Output::Value(Value::from(lock(&self.state).items.len()))),
            "empty" => boolean(lock(&self.state).items.is_empty()),
            "full" => {
                let st = lock(&self.state);
                boolean(st.maxsize > 0 && st.items.len() >= st.maxsize)
            }
            "task_done" => {
                let mut st = lock(&self.state);
                if st.unfinished == 0 {
                    return Err(Exception::value_error("task_done() called too many times").into());
                }
                st.unfinished -= 1;
                if st.unfinished == 0 {
                    self.all_done.notify_all();
                }
                none()
            }
            "join" => {
                let mut st = lock(&self.state);
                while st.unfinished > 0 {
                    let (g, w) = cx.wait(&self.all_done, st, None);
                    st = g;
                    if w == Wait::Cancelled {
                        return Err(cancelled());
                    }
                }
                none()
            }
            "shutdown" => {
                let b = args.bind("shutdown", &["immediate"])?;
                let immediate = b.flag(0, false);
                let mut st = lock(&self.state);
                st.is_shutdown = true;
                if immediate {
                    let n = st.items.len();
                    st.items.clear();
                    st.unfinished = st.unfinished.saturating_sub(n);
                    if st.unfinished == 0 {
                        self.all_done.notify_all();
                    }
                }
                drop(st);
                self.not_empty.notify_all();
                self.not_full.notify_all();
                none()
            }
            other => Err(crate::typed::no_such_method(self.type_name(), other)),
        }
    }

    fn repr(&self) -> String {
        let st = lock(&self.state);
        format!(
            "<queue.Queue maxsize={} qsize={}>",
            st.maxsize,
            st.items.len()
        )
    }

    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        for v in &lock(&self.state).items {
            f(v);
        }
    }
}
