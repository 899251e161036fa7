//! What a shared object is on the server side: the [`Shared`] trait, the
//! arguments of a call ([`Args`]), what a call returns ([`Output`]) or
//! raises ([`Raise`]), and the [`Call`] context a method can wait in.

use std::any::Any;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, MutexGuard};
use std::time::{Duration, Instant};

use mp_value::{Dict, Value};
use serde::Deserialize;

use crate::error::Exception;

/// A shared object, as the server holds it: it answers calls of its
/// methods by name. The built-in types of [`SyncManager`](crate::SyncManager)
/// implement it by hand; the [`shared`](crate::shared) attribute implements
/// it for a user's type.
///
/// Calls come from many connections at once (one server thread each), so
/// an implementation locks its own state; a method that blocks (a queue's
/// `get`, a lock's `acquire`) waits through [`Call::wait`], which gives up
/// when the caller disconnects or the server shuts down.
pub trait Shared: AsAny + Send + Sync + 'static {
    /// The Python-style type name, for messages: `"dict"`, `"queue.Queue"`,
    /// a user type's name.
    fn type_name(&self) -> &str;

    /// The methods a proxy may call when the registration does not say
    /// (CPython's `public_methods(obj)`: its callable attributes that do
    /// not start with `_`).
    fn methods(&self) -> Vec<&'static str>;

    /// Calls `method` with `args`. The server has already checked that the
    /// method is exposed.
    ///
    /// # Errors
    ///
    /// [`Raise::Exception`] for an exception of the method (`#ERROR`, the
    /// client gets it with its class), [`Raise::Traceback`] for a failure
    /// of the call machinery (`#TRACEBACK`, a `RemoteError`).
    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise>;

    /// `repr(obj)`: the server's answer to `__repr__` (and `__str__`
    /// unless [`Shared::str`] says otherwise) when they are not exposed.
    fn repr(&self) -> String {
        format!("<{} object>", self.type_name())
    }

    /// `str(obj)`.
    fn str(&self) -> String {
        self.repr()
    }

    /// A copy of the referent's value (`#GETVALUE`, the proxy's
    /// `_getvalue()`).
    ///
    /// # Errors
    ///
    /// By default the object has no value to copy (CPython fails to pickle
    /// a lock, for example).
    fn get_value(&self) -> Result<Value, Raise> {
        Err(Raise::Exception(Exception::type_error(format!(
            "cannot copy '{}' object",
            self.type_name()
        ))))
    }

    /// Calls `f` with every value the object holds, so that the server can
    /// find the proxies stored in it (nested shared objects live as long as
    /// a live object holds a proxy to them). Containers implement it; the
    /// default holds nothing.
    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        let _ = f;
    }
}

/// Upcasting to [`Any`], so that the server can find, for example, the
/// lock object behind a proxy passed to `Condition(lock)`. Implemented for
/// every `'static` type.
pub trait AsAny {
    /// `self` as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What a call returns: a value (copied to the client) or a new shared
/// object (for a method listed in `method_to_typeid`, which the client gets
/// as a proxy).
pub enum Output {
    /// A value, sent back as `#RETURN`.
    Value(Value),
    /// An object to share, sent back as `#PROXY`.
    Object(Arc<dyn Shared>),
}

impl From<Value> for Output {
    fn from(v: Value) -> Output {
        Output::Value(v)
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Value(v) => write!(f, "Value({v})"),
            Output::Object(o) => write!(f, "Object({})", o.type_name()),
        }
    }
}

/// How a call failed.
#[derive(Debug)]
pub enum Raise {
    /// The method raised an exception (`#ERROR`).
    Exception(Exception),
    /// The call could not be made (`#TRACEBACK`): the text of a traceback.
    Traceback(String),
}

impl From<Exception> for Raise {
    fn from(e: Exception) -> Raise {
        Raise::Exception(e)
    }
}

/// The arguments of a call: positional and keyword, as the client sent
/// them.
#[derive(Debug, Default)]
pub struct Args {
    pub(crate) args: Vec<Value>,
    pub(crate) kwds: Dict,
}

impl Args {
    /// Arguments from positional values and keywords.
    pub fn new(args: Vec<Value>, kwds: Dict) -> Args {
        Args { args, kwds }
    }

    /// The positional arguments.
    pub fn positional(&self) -> &[Value] {
        &self.args
    }

    /// The keyword arguments.
    pub fn keywords(&self) -> &Dict {
        &self.kwds
    }

    /// Matches the arguments to the parameter names of `function` (for
    /// messages), as Python binds a call: positional ones first, then
    /// keywords by name.
    ///
    /// # Errors
    ///
    /// `TypeError` for too many positional arguments, an unknown keyword, or
    /// a parameter given twice.
    pub fn bind(self, function: &str, names: &[&str]) -> Result<Bound, Exception> {
        if self.args.len() > names.len() {
            return Err(Exception::type_error(format!(
                "{function}() takes at most {} argument{} ({} given)",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                self.args.len()
            )));
        }
        let mut slots: Vec<Option<Value>> = self.args.into_iter().map(Some).collect();
        slots.resize(names.len(), None);
        for (k, v) in self.kwds.iter() {
            let key = k.as_str().unwrap_or_default();
            let Some(i) = names.iter().position(|n| *n == key) else {
                return Err(Exception::type_error(format!(
                    "{function}() got an unexpected keyword argument '{key}'"
                )));
            };
            if slots[i].is_some() {
                return Err(Exception::type_error(format!(
                    "{function}() got multiple values for argument '{key}'"
                )));
            }
            slots[i] = Some(v.clone());
        }
        Ok(Bound {
            function: function.to_owned(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            slots,
        })
    }
}

/// Arguments matched to parameter names ([`Args::bind`]).
#[derive(Debug)]
pub struct Bound {
    function: String,
    names: Vec<String>,
    slots: Vec<Option<Value>>,
}

impl Bound {
    /// The value given for parameter `i`, if any.
    pub fn value(&self, i: usize) -> Option<&Value> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// Takes the value given for parameter `i`.
    pub fn take(&mut self, i: usize) -> Option<Value> {
        self.slots.get_mut(i).and_then(Option::take)
    }

    /// The value for parameter `i`, which must be given.
    ///
    /// # Errors
    ///
    /// `TypeError` naming the missing argument.
    pub fn required(&mut self, i: usize) -> Result<Value, Exception> {
        self.take(i).ok_or_else(|| {
            Exception::type_error(format!(
                "{}() missing required argument: '{}'",
                self.function, self.names[i]
            ))
        })
    }

    /// Parameter `i` converted to `T` (`None` when not given).
    ///
    /// # Errors
    ///
    /// `TypeError` when the value does not fit `T`.
    pub fn get<'a, T: Deserialize<'a>>(&'a self, i: usize) -> Result<Option<T>, Exception> {
        match self.value(i) {
            None => Ok(None),
            Some(v) => mp_value::from_value(v).map(Some).map_err(|e| {
                Exception::type_error(format!(
                    "{}(): bad argument '{}': {e}",
                    self.function, self.names[i]
                ))
            }),
        }
    }

    /// Parameter `i` converted to `T`; it must be given.
    ///
    /// # Errors
    ///
    /// `TypeError` when it is missing or does not fit `T`.
    pub fn arg<'a, T: Deserialize<'a>>(&'a self, i: usize) -> Result<T, Exception> {
        match self.get(i)? {
            Some(v) => Ok(v),
            None => Err(Exception::type_error(format!(
                "{}() missing required argument: '{}'",
                self.function, self.names[i]
            ))),
        }
    }

    /// A timeout parameter: `None` (or not given) waits forever, a number
    /// of seconds otherwise.
    ///
    /// # Errors
    ///
    /// `ValueError` for a negative timeout (`"'timeout' must be a
    /// non-negative number"`, CPython's words), `TypeError` for a
    /// non-number.
    pub fn timeout(&self, i: usize) -> Result<Option<Duration>, Exception> {
        match self.value(i) {
            None | Some(Value::None) => Ok(None),
            Some(v) => {
                let secs = match v {
                    Value::Int(n) => *n as f64,
                    Value::Bool(b) => f64::from(u8::from(*b)),
                    Value::Float(f) => *f,
                    other => {
                        return Err(Exception::type_error(format!(
                            "'{}' object cannot be interpreted as a timeout",
                            other.type_name()
                        )));
                    }
                };
                if secs.is_nan() || secs < 0.0 {
                    return Err(Exception::value_error(
                        "'timeout' must be a non-negative number",
                    ));
                }
                Ok(Some(
                    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
                ))
            }
        }
    }

    /// A boolean parameter with a default (Python's truthiness of numbers
    /// and `None`).
    pub fn flag(&self, i: usize, default: bool) -> bool {
        match self.value(i) {
            None => default,
            Some(v) => truthy(v),
        }
    }
}

/// Python's `bool(v)` for the values a flag can be.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::Tuple(t) => !t.is_empty(),
        Value::Dict(d) => !d.is_empty(),
        Value::Set(s) | Value::FrozenSet(s) => !s.is_empty(),
        _ => true,
    }
}

/// How a wait through [`Call::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Woken (the condition may hold now; check it).
    Woken,
    /// The deadline passed.
    TimedOut,
    /// The caller disconnected or the server is shutting down: give up
    /// without changing anything.
    Cancelled,
}

/// How often a blocking call checks that its caller is still connected.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// The context of one call: who is calling (for objects owned by a caller,
/// such as an `RLock`), and a way to wait that notices a caller that went
/// away.
pub struct Call<'a> {
    pub(crate) owner: u64,
    pub(crate) peer: Option<BorrowedFd<'a>>,
    pub(crate) server: Option<&'a crate::server::Core>,
}

impl fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call").field("owner", &self.owner).finish()
    }
}

impl<'a> Call<'a> {
    /// A context outside any server (for tests and direct use of a shared
    /// type): owner `owner`, never cancelled.
    pub fn detached(owner: u64) -> Call<'static> {
        Call {
            owner,
            peer: None,
            server: None,
        }
    }

    /// The identity of the caller: one per client connection, that is, one
    /// per thread of a client process (what CPython's server thread is to
    /// a `threading.RLock`).
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Whether the caller has disconnected or the server is stopping.
    pub fn cancelled(&self) -> bool {
        if self.server.is_some_and(|s| s.stopping()) {
            return true;
        }
        match self.peer {
            None => false,
            Some(fd) => peer_gone(fd),
        }
    }

    /// Waits on `cv` (with `guard` held, as [`Condvar::wait`]) until woken,
    /// until `deadline`, or until the call is [cancelled](Call::cancelled),
    /// whichever comes first. Spurious wake-ups count as `Woken`: callers
    /// loop on their condition.
    pub fn wait<'g, T>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'g, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'g, T>, Wait) {
        if self.cancelled() {
            return (guard, Wait::Cancelled);
        }
        let now = Instant::now();
        let slice = match deadline {
            Some(d) if d <= now => return (guard, Wait::TimedOut),
            Some(d) => (d - now).min(LIVENESS_SLICE),
            None => LIVENESS_SLICE,
        };
        let (guard, result) = cv
            .wait_timeout(guard, slice)
            .unwrap_or_else(|e| e.into_inner());
        if !result.timed_out() {
            return (guard, Wait::Woken);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return (guard, Wait::TimedOut);
        }
        if self.cancelled() {
            return (guard, Wait::Cancelled);
        }
        // A slice ended with nothing to report: the caller re-checks its
        // condition and waits again.
        (guard, Wait::Woken)
    }

    /// The object of this server that a proxy value (a `RebuildProxy` or a
    /// token) refers to, if the call runs in a server that holds it.
    pub fn resolve(&self, value: &Value) -> Option<Arc<dyn Shared>> {
        self.server?.resolve(value)
    }
}

/// Whether the peer of a connected socket has hung up (`POLLHUP` or
/// `POLLRDHUP`), without waiting.
fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::from_borrowed_fd(
        fd,
        PollFlags::RDHUP | PollFlags::HUP,
    )];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        Err(_) => false,
    }
}

/// A deadline `timeout` from now (`None` for no timeout, or one too long
/// for an `Instant`).
pub fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_follows_python() {
        let mut kw = Dict::new();
        kw.insert("timeout", 0.5).unwrap();
        let b = Args::new(vec![Value::from(1)], kw)
            .bind("put", &["item", "block", "timeout"])
            .unwrap();
        assert_eq!(b.arg::<i64>(0).unwrap(), 1);
        assert!(b.flag(1, true));
        assert_eq!(b.timeout(2).unwrap(), Some(Duration::from_millis(500)));
        let err = Args::new(vec![Value::None; 4], Dict::new())
            .bind("put", &["item", "block", "timeout"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "TypeError: put() takes at most 3 arguments (4 given)"
        );
        let mut kw = Dict::new();
        kw.insert("nope", 1).unwrap();
        assert!(Args::new(vec![], kw).bind("f", &["a"]).is_err());
        let mut kw = Dict::new();
        kw.insert("timeout", -1).unwrap();
        let b = Args::new(vec![], kw)
            .bind("get", &["block", "timeout"])
            .unwrap();
        assert!(b.timeout(1).is_err());
    }
}
