//! The `Pool` type id (CPython's `SyncManager.register('Pool', pool.Pool,
//! PoolProxy)`): an `mp_pool::Pool` held by the manager, the
//! `AsyncResult` and `Iterator` objects its `*_async` and `imap*` calls
//! return, and the typed proxies that call them.
//!
//! A task is a plain function `fn(A) -> R` of this binary: the client
//! sends it as an [`FnRef`] with its arguments, both postcard-encoded
//! inside `bytes` values, and the manager's pool (whose workers run the
//! manager's binary) resolves and calls it; results come back as the
//! postcard bytes the worker wrote. So the manager must run the client's
//! build of the program (a manager started by this program does), and no
//! codec ever sees a task's types. Errors of the pool travel as
//! exceptions of the module `mp_pool` named after the error
//! ([`mp_pool::Error::WorkerLost`] is `mp_pool.WorkerLost(pid,
//! exitcode)`), and the proxies turn them back into [`Error::Pool`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mp_context::FnRef;
use mp_pool::PoolState;
use mp_value::{List, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Exception, Result};
use crate::proxy::ProxyType;
use crate::shared::{Args, Call, Output, Raise, Shared, deadline_after};

use super::primitives::cancelled;

/// The methods of CPython's `PoolProxy`.
pub(crate) const POOL_EXPOSED: &[&str] = &[
    "apply",
    "apply_async",
    "close",
    "imap",
    "imap_unordered",
    "join",
    "map",
    "map_async",
    "starmap",
    "starmap_async",
    "terminate",
];

/// The methods whose results are new shared objects, with their type ids
/// (CPython's `PoolProxy._method_to_typeid_`).
pub(crate) const POOL_METHOD_TO_TYPEID: &[(&str, &str)] = &[
    ("apply_async", "AsyncResult"),
    ("imap", "Iterator"),
    ("imap_unordered", "Iterator"),
    ("map_async", "AsyncResult"),
    ("starmap_async", "AsyncResult"),
];

/// The module of the exceptions that carry the pool's errors.
const POOL_MODULE: &str = "mp_pool";

/// How often a call that waits for the pool checks that its caller is
/// still connected.
const SLICE: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ----- the errors of the pool, as exceptions and back -----

/// `e` as an exception of the module `mp_pool`, named after the variant,
/// with its fields as arguments; what has no such form (errors of this
/// process's plumbing) is `mp_pool.Error(message)`.
fn pool_exception(e: &mp_pool::Error) -> Exception {
    use mp_pool::Error as E;
    let new = |name: &str, args: Vec<Value>| Exception::new(POOL_MODULE, name, args);
    let text = |s: &str| Value::from(s);
    match e {
        E::Panicked { message, location } => new(
            "Panicked",
            vec![text(message), location.as_deref().map_or(Value::None, text)],
        ),
        E::ResultNotSerializable { message } => new("ResultNotSerializable", vec![text(message)]),
        E::ArgsNotDecodable { message } => new("ArgsNotDecodable", vec![text(message)]),
        E::BadFunction { message } => new("BadFunction", vec![text(message)]),
        E::InitializerFailed { message } => new("InitializerFailed", vec![text(message)]),
        E::WorkerLost { pid, exitcode } => new(
            "WorkerLost",
            vec![
                Value::from(i64::from(*pid)),
                Value::from(i64::from(*exitcode)),
            ],
        ),
        E::TaskTimeout { pid, limit } => new(
            "TaskTimeout",
            vec![
                Value::from(i64::from(*pid)),
                Value::Float(limit.as_secs_f64()),
            ],
        ),
        E::Timeout => new("Timeout", Vec::new()),
        E::NotReady => new("NotReady", Vec::new()),
        E::NotRunning(state) => new("NotRunning", vec![text(state.name())]),
        E::Terminated => new("Terminated", Vec::new()),
        E::StillRunning => new("StillRunning", Vec::new()),
        other => new("Error", vec![Value::from(format!("{other:?}"))]),
    }
}

/// The pool error an exception of [`pool_exception`] carries, when it has
/// one.
fn pool_error_of(e: &Exception) -> Option<mp_pool::Error> {
    use mp_pool::Error as E;
    if e.module() != POOL_MODULE {
        return None;
    }
    let args = e.args();
    let text = |i: usize| args.get(i).and_then(Value::as_str).map(str::to_owned);
    let int = |i: usize| {
        args.get(i)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    };
    Some(match e.name() {
        "Panicked" => E::Panicked {
            message: text(0)?,
            location: text(1),
        },
        "ResultNotSerializable" => E::ResultNotSerializable { message: text(0)? },
        "ArgsNotDecodable" => E::ArgsNotDecodable { message: text(0)? },
        "BadFunction" => E::BadFunction { message: text(0)? },
        "InitializerFailed" => E::InitializerFailed { message: text(0)? },
        "WorkerLost" => E::WorkerLost {
            pid: int(0)?,
            exitcode: int(1)?,
        },
        "TaskTimeout" => E::TaskTimeout {
            pid: int(0)?,
            limit: match args.get(1) {
                Some(Value::Float(s)) => Duration::try_from_secs_f64(*s).ok()?,
                _ => return None,
            },
        },
        "Timeout" => E::Timeout,
        "NotReady" => E::NotReady,
        "NotRunning" => E::NotRunning(match text(0)?.as_str() {
            "running" => PoolState::Running,
            "closed" => PoolState::Closed,
            "terminated" => PoolState::Terminated,
            "broken" => PoolState::Broken,
            _ => return None,
        }),
        "Terminated" => E::Terminated,
        "StillRunning" => E::StillRunning,
        _ => return None,
    })
}

/// A pool error raised in the caller.
fn raise(e: &mp_pool::Error) -> Raise {
    Raise::Exception(pool_exception(e))
}

/// A proxy call's error, with the pool's errors as [`Error::Pool`].
fn client_error(e: Error) -> Error {
    match &e {
        Error::Raised(exc) => pool_error_of(exc).map_or(e, Error::Pool),
        _ => e,
    }
}

// ----- the objects in the manager -----

/// A task function as the client sent it: the postcard bytes of an
/// [`FnRef`].
fn fn_arg(v: Option<&Value>, method: &str) -> Result<FnRef, Raise> {
    let bytes = match v {
        Some(Value::Bytes(b)) => b,
        _ => {
            return Err(Exception::type_error(format!(
                "{method}(): the function must be the bytes of an mp_context::FnRef \
                 (a Rust client's PoolProxy sends them; a Python callable cannot run here)"
            ))
            .into());
        }
    };
    postcard::from_bytes(bytes).map_err(|e| {
        Exception::type_error(format!("{method}(): not an mp_context::FnRef: {e}")).into()
    })
}

/// One task's encoded arguments.
fn bytes_arg(v: &Value, method: &str) -> Result<Vec<u8>, Raise> {
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        other => Err(Exception::type_error(format!(
            "{method}(): the arguments must be bytes (postcard), not '{}'",
            other.type_name()
        ))
        .into()),
    }
}

/// A `map`'s items: a sequence of encoded arguments.
fn items_arg(v: Option<&Value>, method: &str) -> Result<Vec<Vec<u8>>, Raise> {
    let Some(seq) = v.and_then(Value::as_seq) else {
        return Err(
            Exception::type_error(format!("{method}(): the iterable must be a list")).into(),
        );
    };
    seq.iter().map(|item| bytes_arg(item, method)).collect()
}

/// A `chunksize` (`None` or absent: the default).
fn chunksize_arg(v: Option<&Value>, method: &str) -> Result<Option<usize>, Raise> {
    match v {
        None | Some(Value::None) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| {
                Exception::value_error(format!("{method}(): chunksize must be a positive integer"))
                    .into()
            }),
    }
}

/// Refuses what a Rust pool cannot take: keyword arguments for the task
/// and callbacks (they would run in the manager).
fn refuse_extras(args: &Args, positional: usize, method: &str) -> Result<(), Raise> {
    let extra = args.positional()[positional.min(args.positional().len())..]
        .iter()
        .chain(args.keywords().iter().map(|(_, v)| v))
        .any(|v| match v {
            Value::None => false,
            Value::Dict(d) => !d.is_empty(),
            _ => true,
        });
    if extra {
        return Err(Exception::type_error(format!(
            "{method}(): a manager's Rust pool takes no kwds, callback or error_callback"
        ))
        .into());
    }
    Ok(())
}

/// Waits in slices for `ready` (given the time it may wait) until the
/// deadline; gives up when the caller disconnects or the server stops.
/// `Ok(false)`: the deadline passed.
fn wait_ready(
    cx: &Call<'_>,
    deadline: Option<Instant>,
    mut ready: impl FnMut(Duration) -> bool,
) -> Result<bool, Raise> {
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        if ready(slice) {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        if cx.cancelled() {
            return Err(cancelled());
        }
    }
}

/// The timeout argument `i` of a call.
fn timeout_arg(args: Args, function: &str) -> Result<Option<Instant>, Raise> {
    let b = args.bind(function, &["timeout"])?;
    Ok(deadline_after(b.timeout(0)?))
}

/// A pool held by the manager (CPython's `multiprocessing.pool.Pool` in
/// the server).
pub(crate) struct SharedPool {
    pool: mp_pool::Pool,
}

impl SharedPool {
    /// `Pool(processes=None, initializer=None, initargs=(),
    /// maxtasksperchild=None)`; the pool runs under the server process's
    /// default context, as CPython's does.
    pub(crate) fn new(args: Args) -> Result<SharedPool, Raise> {
        let b = args.bind(
            "Pool",
            &["processes", "initializer", "initargs", "maxtasksperchild"],
        )?;
        let processes = b.get::<Option<u64>>(0)?.flatten();
        if !matches!(b.value(1), None | Some(Value::None)) {
            return Err(Exception::type_error(
                "Pool(): a manager's Rust pool takes no initializer (a callable cannot travel to it)",
            )
            .into());
        }
        let maxtasks = b.get::<Option<u64>>(3)?.flatten();
        let mut builder = mp_pool::Pool::builder();
        if let Some(n) = processes {
            if n == 0 {
                return Err(
                    Exception::value_error("Number of processes must be at least 1").into(),
                );
            }
            builder = builder.processes(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(n) = maxtasks {
            builder = builder.maxtasksperchild(n);
        }
        let pool = builder.build().map_err(|e| raise(&e))?;
        Ok(SharedPool { pool })
    }
}

impl Shared for SharedPool {
    fn type_name(&self) -> &str {
        "multiprocessing.pool.Pool"
    }

    fn methods(&self) -> Vec<&'static str> {
        POOL_EXPOSED.to_vec()
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        let a = args.positional();
        match method {
            "apply" | "apply_async" => {
                refuse_extras(&args, 3, method)?;
                let f = fn_arg(a.first(), method)?;
                let task = bytes_arg(a.get(1).unwrap_or(&Value::None), method)?;
                let r = self
                    .pool
                    .apply_async_raw(&f, &task)
                    .map_err(|e| raise(&e))?;
                if method == "apply" {
                    wait_ready(cx, None, |slice| r.wait(Some(slice)))?;
                    let v = r.get(Some(Duration::ZERO)).map_err(|e| raise(&e))?;
                    return Ok(Output::Value(Value::Bytes(v.into())));
                }
                Ok(Output::Object(Arc::new(PoolResult::Single(r))))
            }
            "map" | "starmap" | "map_async" | "starmap_async" => {
                refuse_extras(&args, 3, method)?;
                let f = fn_arg(a.first(), method)?;
                let items = items_arg(a.get(1), method)?;
                let chunksize = chunksize_arg(a.get(2), method)?;
                let r = self
                    .pool
                    .map_async_raw(&f, items, chunksize)
                    .map_err(|e| raise(&e))?;
                if !method.ends_with("_async") {
                    wait_ready(cx, None, |slice| r.wait(Some(slice)))?;
                    return Ok(Output::Value(PoolResult::Many(r).value()?));
                }
                Ok(Output::Object(Arc::new(PoolResult::Many(r))))
            }
            "imap" | "imap_unordered" => {
                refuse_extras(&args, 3, method)?;
                let f = fn_arg(a.first(), method)?;
                let items = items_arg(a.get(1), method)?;
                let chunksize = chunksize_arg(a.get(2), method)?.unwrap_or(1);
                let it = self
                    .pool
                    .imap_raw(&f, items, chunksize, method == "imap")
                    .map_err(|e| raise(&e))?;
                Ok(Output::Object(Arc::new(PoolIterator {
                    results: Mutex::new(Some(it)),
                })))
            }
            "close" => {
                args.bind("close", &[])?;
                self.pool.close();
                Ok(Output::Value(Value::None))
            }
            "terminate" => {
                args.bind("terminate", &[])?;
                self.pool.terminate();
                Ok(Output::Value(Value::None))
            }
            "join" => {
                args.bind("join", &[])?;
                self.pool.join().map_err(|e| raise(&e))?;
                Ok(Output::Value(Value::None))
            }
            _ => Err(crate::__private::no_such_method(self.type_name(), method)),
        }
    }

    fn repr(&self) -> String {
        format!(
            "<multiprocessing.pool.Pool state={} pool_size={}>",
            self.pool.state().name().to_uppercase(),
            self.pool.processes()
        )
    }
}

/// The result of an `apply_async` or a `map_async` in the manager
/// (CPython's `ApplyResult` and `MapResult`, type id `AsyncResult`).
enum PoolResult {
    Single(mp_pool::AsyncResult<Vec<u8>>),
    Many(mp_pool::AsyncResult<Vec<Vec<u8>>>),
}

impl PoolResult {
    fn wait(&self, timeout: Option<Duration>) -> bool {
        match self {
            PoolResult::Single(r) => r.wait(timeout),
            PoolResult::Many(r) => r.wait(timeout),
        }
    }

    fn ready(&self) -> bool {
        match self {
            PoolResult::Single(r) => r.ready(),
            PoolResult::Many(r) => r.ready(),
        }
    }

    /// The value of a ready result: `bytes`, or a list of them.
    fn value(&self) -> Result<Value, Raise> {
        let now = Some(Duration::ZERO);
        match self {
            PoolResult::Single(r) => r
                .get(now)
                .map(|v| Value::Bytes(v.into()))
                .map_err(|e| raise(&e)),
            PoolResult::Many(r) => r
                .get(now)
                .map(|items| {
                    let list: Vec<Value> =
                        items.into_iter().map(|v| Value::Bytes(v.into())).collect();
                    Value::List(List::from(list))
                })
                .map_err(|e| raise(&e)),
        }
    }
}

impl Shared for PoolResult {
    fn type_name(&self) -> &str {
        match self {
            PoolResult::Single(_) => "multiprocessing.pool.ApplyResult",
            PoolResult::Many(_) => "multiprocessing.pool.MapResult",
        }
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["get", "ready", "successful", "wait"]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            "get" => {
                let deadline = timeout_arg(args, "get")?;
                if !wait_ready(cx, deadline, |slice| self.wait(Some(slice)))? {
                    return Err(raise(&mp_pool::Error::Timeout));
                }
                Ok(Output::Value(self.value()?))
            }
            "wait" => {
                let deadline = timeout_arg(args, "wait")?;
                wait_ready(cx, deadline, |slice| self.wait(Some(slice)))?;
                Ok(Output::Value(Value::None))
            }
            "ready" => {
                args.bind("ready", &[])?;
                Ok(Output::Value(Value::Bool(self.ready())))
            }
            "successful" => {
                args.bind("successful", &[])?;
                if !self.ready() {
                    return Err(raise(&mp_pool::Error::NotReady));
                }
                Ok(Output::Value(Value::Bool(self.value().is_ok())))
            }
            _ => Err(crate::__private::no_such_method(self.type_name(), method)),
        }
    }
}

/// The results of an `imap` or `imap_unordered` in the manager (CPython's
/// `IMapIterator`, type id `Iterator`); `None` once closed.
struct PoolIterator {
    results: Mutex<Option<mp_pool::IMapRaw<std::vec::IntoIter<Vec<u8>>>>>,
}

impl Shared for PoolIterator {
    fn type_name(&self) -> &str {
        "multiprocessing.pool.IMapIterator"
    }

    fn methods(&self) -> Vec<&'static str> {
        vec!["__next__", "next"]
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        match method {
            // `IMapIterator.next(timeout=None)`, which is its `__next__`.
            "__next__" | "next" => {
                let deadline = timeout_arg(args, "next")?;
                let mut guard = lock(&self.results);
                let Some(results) = guard.as_mut() else {
                    return Err(Exception::stop_iteration().into());
                };
                let mut item = None;
                let ready = wait_ready(cx, deadline, |slice| {
                    match results.next_timeout(Some(slice)) {
                        Some(Err(mp_pool::Error::Timeout)) => false,
                        other => {
                            item = Some(other);
                            true
                        }
                    }
                })?;
                match item {
                    _ if !ready => Err(raise(&mp_pool::Error::Timeout)),
                    Some(Some(Ok(bytes))) => Ok(Output::Value(Value::Bytes(bytes.into()))),
                    Some(Some(Err(e))) => Err(raise(&e)),
                    Some(None) | None => Err(Exception::stop_iteration().into()),
                }
            }
            "close" => {
                args.bind("close", &[])?;
                lock(&self.results).take();
                Ok(Output::Value(Value::None))
            }
            _ => Err(Exception::attribute_error(format!(
                "'IMapIterator' object has no attribute '{method}'"
            ))
            .into()),
        }
    }
}

// ----- the proxies -----

/// `f` as the value a pool call (or a barrier's action) sends: the bytes
/// of its [`FnRef`].
pub(super) fn fn_value<A, R>(f: fn(A) -> R) -> Value
where
    A: DeserializeOwned,
    R: Serialize,
{
    let bytes = postcard::to_allocvec(&FnRef::new(f)).expect("an FnRef always encodes");
    Value::Bytes(bytes.into())
}

/// One task's arguments as the value a pool call sends.
fn args_value<A: Serialize>(args: &A) -> Result<Value> {
    postcard::to_allocvec(args)
        .map(|b| Value::Bytes(b.into()))
        .map_err(|e| Error::Pool(mp_pool::Error::ArgsNotSerializable(e)))
}

/// A `map`'s items as a list value.
fn items_value<A: Serialize>(items: impl IntoIterator<Item = A>) -> Result<Value> {
    let list = items
        .into_iter()
        .map(|a| args_value(&a))
        .collect::<Result<Vec<Value>>>()?;
    Ok(Value::List(List::from(list)))
}

/// A result as the manager sent it: the bytes the worker wrote.
fn decode<R: DeserializeOwned>(v: &Value) -> Result<R> {
    let Value::Bytes(b) = v else {
        return Err(Error::Protocol(format!(
            "a pool result should be bytes, not '{}'",
            v.type_name()
        )));
    };
    match postcard::take_from_bytes::<R>(b) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(Error::Pool(mp_pool::Error::ResultNotDecodable(
            postcard::Error::DeserializeBadEncoding,
        ))),
        Err(e) => Err(Error::Pool(mp_pool::Error::ResultNotDecodable(e))),
    }
}

/// A `map`'s results: a list of encoded results.
fn decode_list<R: DeserializeOwned>(v: &Value) -> Result<Vec<R>> {
    let items = v
        .as_seq()
        .ok_or_else(|| Error::Protocol(format!("a map result should be a list, not {v}")))?;
    items.iter().map(decode).collect()
}

/// A timeout as the manager reads it.
fn timeout_value(timeout: Option<Duration>) -> Value {
    timeout.map_or(Value::None, |t| Value::Float(t.as_secs_f64()))
}

crate::__proxy_type!(
    /// A proxy to a process pool held by the manager (CPython's
    /// `PoolProxy`), from [`SyncManager::pool`](crate::SyncManager::pool).
    ///
    /// Tasks are plain functions `fn(A) -> R` of this program with serde
    /// arguments and results, as in `mp_pool`; the manager's workers run
    /// them, so the manager must run this build of the program (one
    /// started by it does). Errors of the pool come back as
    /// [`Error::Pool`]: a worker killed in the middle of a task gives
    /// [`mp_pool::Error::WorkerLost`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// # mp_context::init();
    /// let manager = mp_manager::SyncManager::started(&mp_context::get_context(Some("fork"))?)?;
    /// let pool = manager.pool(Some(2))?;
    /// assert_eq!(pool.apply(square, &7)?, 49);
    /// assert_eq!(pool.map(square, [1, 2, 3], None)?, [1, 4, 9]);
    /// let r = pool.apply_async(square, &8)?;
    /// assert_eq!(r.get(None)?, 64);
    /// let firsts: Vec<u64> = pool.imap(square, 0..4, 1)?.collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 1, 4, 9]);
    /// pool.close()?;
    /// pool.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    PoolProxy,
    "PoolProxy"
);

impl PoolProxy {
    /// `pool.apply(f, (args,))`: runs `f(args)` in a worker and waits.
    ///
    /// # Errors
    ///
    /// [`Error::Pool`] with the task's error ([`mp_pool::Error::Panicked`],
    /// [`WorkerLost`](mp_pool::Error::WorkerLost), …) or the pool's
    /// ([`NotRunning`](mp_pool::Error::NotRunning) after `close`);
    /// connection errors.
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: &A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let v: Value = self
            .proxy
            .call("apply", &(fn_value(f), args_value(args)?))
            .map_err(client_error)?;
        decode(&v)
    }

    /// `pool.apply_async(f, (args,))`: a result to ask for later.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::apply`], for the submission.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: &A) -> Result<AsyncResultProxy<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.proxy
            .call_proxy("apply_async", &(fn_value(f), args_value(args)?))
            .map_err(client_error)
    }

    fn map_call<A, R>(
        &self,
        method: &str,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let v: Value = self
            .proxy
            .call(method, &(fn_value(f), items_value(items)?, chunksize))
            .map_err(client_error)?;
        decode_list(&v)
    }

    fn map_async_call<A, R, P: ProxyType>(
        &self,
        method: &str,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<P>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.proxy
            .call_proxy(method, &(fn_value(f), items_value(items)?, chunksize))
            .map_err(client_error)
    }

    /// `pool.close()`: no new tasks; the workers exit once the submitted
    /// ones are done.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn close(&self) -> Result<()> {
        self.proxy.call("close", &()).map_err(client_error)
    }

    /// `pool.terminate()`: kills the workers now; unfinished tasks fail
    /// with [`mp_pool::Error::Terminated`].
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn terminate(&self) -> Result<()> {
        self.proxy.call("terminate", &()).map_err(client_error)
    }

    /// `pool.join()`: waits for the workers to exit, after `close` or
    /// `terminate`.
    ///
    /// # Errors
    ///
    /// [`Error::Pool`] with [`mp_pool::Error::StillRunning`] on a running
    /// pool; connection errors.
    pub fn join(&self) -> Result<()> {
        self.proxy.call("join", &()).map_err(client_error)
    }
}

/// The calls of [`PoolProxy`] that take a function, items and a chunk
/// size, each sent as the method of its name.
macro_rules! map_calls {
    ($($(#[$doc:meta])* $name:ident($chunk:ty) -> $ret:ty, via $via:ident;)*) => {
        impl PoolProxy {
            $(
                $(#[$doc])*
                pub fn $name<A, R>(
                    &self,
                    f: fn(A) -> R,
                    items: impl IntoIterator<Item = A>,
                    chunksize: $chunk,
                ) -> Result<$ret>
                where
                    A: Serialize + DeserializeOwned + 'static,
                    R: Serialize + DeserializeOwned + 'static,
                {
                    self.$via(stringify!($name), f, items, chunksize.into())
                }
            )*
        }
    };
}

map_calls! {
    /// `pool.map(f, items, chunksize)`: the results in order.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::apply`]: the error of the first item that failed.
    map(Option<usize>) -> Vec<R>, via map_call;
    /// `pool.starmap(f, items, chunksize)`: `map` over tuples, which `f`
    /// destructures (`fn add((a, b): (u32, u32)) -> u32`), as in `mp_pool`.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::map`].
    starmap(Option<usize>) -> Vec<R>, via map_call;
    /// `pool.map_async(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::apply`], for the submission.
    map_async(Option<usize>) -> MapResultProxy<R>, via map_async_call;
    /// `pool.starmap_async(f, items, chunksize)`.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::apply`], for the submission.
    starmap_async(Option<usize>) -> MapResultProxy<R>, via map_async_call;
    /// `pool.imap(f, items, chunksize)`: the results in order, one
    /// `next` at a time. The items are sent to the manager whole (as
    /// CPython's proxy sends its iterable); the manager's pool feeds them
    /// to the workers lazily.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::apply`], for the submission.
    imap(usize) -> PoolIterProxy<R>, via map_async_call;
    /// `pool.imap_unordered(f, items, chunksize)`: the results in the
    /// order they finish.
    ///
    /// # Errors
    ///
    /// As [`PoolProxy::apply`], for the submission.
    imap_unordered(usize) -> PoolIterProxy<R>, via map_async_call;
}

/// `wait`, `ready` and `successful` of the result proxies.
macro_rules! result_methods {
    ($name:ident) => {
        impl<R: Serialize + DeserializeOwned> $name<R> {
            /// `r.wait(timeout)`: waits until the result is ready, at most
            /// `timeout` (`None`: as long as it takes); returns whether it
            /// is.
            ///
            /// # Errors
            ///
            /// Connection errors.
            pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
                self.proxy
                    .call::<()>("wait", &(timeout_value(timeout),))
                    .map_err(client_error)?;
                self.ready()
            }

            /// `r.ready()`.
            ///
            /// # Errors
            ///
            /// Connection errors.
            pub fn ready(&self) -> Result<bool> {
                self.proxy.call("ready", &()).map_err(client_error)
            }

            /// `r.successful()`: whether the task succeeded.
            ///
            /// # Errors
            ///
            /// [`Error::Pool`] with [`mp_pool::Error::NotReady`] before the
            /// result is ready; connection errors.
            pub fn successful(&self) -> Result<bool> {
                self.proxy.call("successful", &()).map_err(client_error)
            }
        }
    };
}

crate::__proxy_type!(
    /// A proxy to the result of [`PoolProxy::apply_async`] in the manager
    /// (CPython's `ApplyResult`, type id `AsyncResult`).
    AsyncResultProxy<R>,
    "AutoProxy"
);

result_methods!(AsyncResultProxy);

impl<R: Serialize + DeserializeOwned> AsyncResultProxy<R> {
    /// `r.get(timeout)`: the task's result, waiting at most `timeout`
    /// (`None`: as long as it takes).
    ///
    /// # Errors
    ///
    /// [`Error::Pool`] with [`mp_pool::Error::Timeout`] if it is not ready
    /// in time (ask again later), or the task's error; connection errors.
    pub fn get(&self, timeout: Option<Duration>) -> Result<R> {
        let v: Value = self
            .proxy
            .call("get", &(timeout_value(timeout),))
            .map_err(client_error)?;
        decode(&v)
    }
}

crate::__proxy_type!(
    /// A proxy to the result of [`PoolProxy::map_async`] or
    /// [`PoolProxy::starmap_async`] in the manager (CPython's `MapResult`,
    /// type id `AsyncResult`).
    MapResultProxy<R>,
    "AutoProxy"
);

result_methods!(MapResultProxy);

impl<R: Serialize + DeserializeOwned> MapResultProxy<R> {
    /// `r.get(timeout)`: every result in order, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`AsyncResultProxy::get`]: the error of the first item that
    /// failed.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<R>> {
        let v: Value = self
            .proxy
            .call("get", &(timeout_value(timeout),))
            .map_err(client_error)?;
        decode_list(&v)
    }
}

crate::__proxy_type!(
    /// A proxy to the results of [`PoolProxy::imap`] or
    /// [`PoolProxy::imap_unordered`] in the manager (CPython's
    /// `IMapIterator` behind an `IteratorProxy`). Each item is its own
    /// `Result`, as in `mp_pool`: a failed task gives an error at its
    /// place and the others go on. Also an `Iterator`.
    PoolIterProxy<R>,
    "IteratorProxy"
);

impl<R: Serialize + DeserializeOwned> PoolIterProxy<R> {
    /// The next result, waiting at most `timeout` (`None`: as long as it
    /// takes); `None` once every result has been given.
    /// `Some(Err(Error::Pool(Timeout)))` if it is not ready in time, and
    /// the next call waits for the same result again (CPython's
    /// `next(timeout)`).
    pub fn next_timeout(&self, timeout: Option<Duration>) -> Option<Result<R>> {
        match self
            .proxy
            .call::<Value>("__next__", &(timeout_value(timeout),))
        {
            Ok(v) => Some(decode(&v)),
            Err(e) if e.is("StopIteration") => None,
            Err(e) => Some(Err(client_error(e))),
        }
    }
}

impl<R: Serialize + DeserializeOwned> Iterator for PoolIterProxy<R> {
    type Item = Result<R>;
    fn next(&mut self) -> Option<Result<R>> {
        self.next_timeout(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_errors_travel_as_exceptions_and_back() {
        use mp_pool::Error as E;
        let errors = [
            E::Panicked {
                message: "boom".into(),
                location: Some("src/a.rs:1:2".into()),
            },
            E::Panicked {
                message: "boom".into(),
                location: None,
            },
            E::WorkerLost {
                pid: 42,
                exitcode: -9,
            },
            E::TaskTimeout {
                pid: 7,
                limit: Duration::from_millis(1500),
            },
            E::Timeout,
            E::NotReady,
            E::NotRunning(PoolState::Closed),
            E::Terminated,
            E::StillRunning,
            E::BadFunction {
                message: "another build".into(),
            },
        ];
        for e in errors {
            let exc = pool_exception(&e);
            assert_eq!(exc.module(), "mp_pool");
            let back = Exception::from_value(&exc.to_value()).unwrap();
            let again = pool_error_of(&back).unwrap_or_else(|| panic!("{exc}"));
            assert_eq!(format!("{again:?}"), format!("{e:?}"));
        }
        // Plumbing errors keep their message, as an exception.
        let io = E::InvalidArgument("chunksize must be at least 1");
        let exc = pool_exception(&io);
        assert_eq!(exc.name(), "Error");
        assert!(pool_error_of(&exc).is_none());
        assert!(exc.to_string().contains("chunksize"));
        // Other exceptions are not the pool's.
        assert!(pool_error_of(&Exception::key_error("k")).is_none());
        let lost = client_error(Error::Raised(pool_exception(&E::WorkerLost {
            pid: 1,
            exitcode: 3,
        })));
        assert!(matches!(
            lost,
            Error::Pool(E::WorkerLost {
                pid: 1,
                exitcode: 3
            })
        ));
    }
}
