//! The errors of `mp-manager`: [`Exception`] (an exception a shared object
//! raised, kept as its Python class and arguments) and [`Error`] (everything
//! a manager or a proxy call can fail with).

use std::fmt;
use std::sync::Arc;

use mp_value::{Global, Object, Tuple, Value};

/// An exception raised by a shared object, as CPython's `#ERROR` reply
/// carries it: the class (module and name, `builtins.KeyError`,
/// `_queue.Empty`, `threading.BrokenBarrierError`, a user's own class) and
/// its arguments.
///
/// The server raises these (a method of a [`Shared`](crate::Shared) type
/// returns one), the client gets them back with the kind intact, and the
/// pickle codec writes them as the real Python exception, so a CPython
/// client catches `queue.Empty` or `KeyError` as it would locally.
///
/// # Examples
///
/// ```
/// use mp_manager::Exception;
///
/// let e = Exception::key_error("missing");
/// assert!(e.is("KeyError"));
/// assert_eq!(e.to_string(), "KeyError: 'missing'");
/// assert!(Exception::queue_empty().is("queue.Empty"));
/// ```
#[derive(Clone, PartialEq)]
pub struct Exception {
    module: Arc<str>,
    name: Arc<str>,
    args: Vec<Value>,
}

impl Exception {
    /// The exception `module.name(*args)`.
    pub fn new(module: &str, name: &str, args: Vec<Value>) -> Exception {
        Exception {
            module: module.into(),
            name: name.into(),
            args,
        }
    }

    /// A built-in exception (`builtins.name`) with one message argument.
    pub fn builtin(name: &str, message: impl Into<String>) -> Exception {
        Exception::new("builtins", name, vec![Value::from(message.into())])
    }

    /// `KeyError(key)`.
    pub fn key_error(key: impl Into<Value>) -> Exception {
        Exception::new("builtins", "KeyError", vec![key.into()])
    }

    /// `ValueError(message)`.
    pub fn value_error(message: impl Into<String>) -> Exception {
        Exception::builtin("ValueError", message)
    }

    /// `TypeError(message)`.
    pub fn type_error(message: impl Into<String>) -> Exception {
        Exception::builtin("TypeError", message)
    }

    /// `IndexError(message)`.
    pub fn index_error(message: impl Into<String>) -> Exception {
        Exception::builtin("IndexError", message)
    }

    /// `RuntimeError(message)`.
    pub fn runtime_error(message: impl Into<String>) -> Exception {
        Exception::builtin("RuntimeError", message)
    }

    /// `AttributeError(message)`.
    pub fn attribute_error(message: impl Into<String>) -> Exception {
        Exception::builtin("AttributeError", message)
    }

    /// `StopIteration()`: an iterator is exhausted.
    pub fn stop_iteration() -> Exception {
        Exception::new("builtins", "StopIteration", Vec::new())
    }

    /// `queue.Empty()`, as CPython pickles it (`_queue.Empty`, the C
    /// module's class that `queue.Empty` names).
    pub fn queue_empty() -> Exception {
        Exception::new("_queue", "Empty", Vec::new())
    }

    /// `queue.Full()`.
    pub fn queue_full() -> Exception {
        Exception::new("queue", "Full", Vec::new())
    }

    /// `queue.ShutDown()` (Python 3.13's `Queue.shutdown`).
    pub fn queue_shutdown() -> Exception {
        Exception::new("queue", "ShutDown", Vec::new())
    }

    /// `threading.BrokenBarrierError()`.
    pub fn broken_barrier() -> Exception {
        Exception::new("threading", "BrokenBarrierError", Vec::new())
    }

    /// The module of the class (`"builtins"`, `"_queue"`, …).
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The class name (`"KeyError"`, `"Empty"`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments (`e.args`).
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// Whether this is the exception `class`: a bare name for a built-in
    /// (`"KeyError"`), else `"module.Name"` (`"queue.Empty"` also matches
    /// `_queue.Empty`, the class CPython actually pickles).
    pub fn is(&self, class: &str) -> bool {
        match class.rsplit_once('.') {
            None => self.module.as_ref() == "builtins" && self.name.as_ref() == class,
            Some((module, name)) => {
                self.name.as_ref() == name
                    && (self.module.as_ref() == module
                        || (module == "queue" && self.module.as_ref() == "_queue"))
            }
        }
    }

    /// What Python's `str(e)` prints: the one argument (a `KeyError`'s in
    /// its repr, as Python does), or the tuple of arguments.
    pub fn message(&self) -> String {
        match self.args.as_slice() {
            [] => String::new(),
            [Value::Str(s)] if !self.is("KeyError") => s.to_string(),
            [one] => one.to_string(),
            many => Value::Tuple(Tuple::from(many.to_vec())).to_string(),
        }
    }

    /// The exception as a value: `REDUCE(module.name, args)`, the shape
    /// pickle gives an exception.
    pub fn to_value(&self) -> Value {
        Value::Object(Object::reduce(
            Global::new(self.module.clone(), self.name.clone()),
            Value::Tuple(Tuple::from(self.args.clone())),
        ))
    }

    /// Reads an exception back from [`Exception::to_value`]'s shape (or any
    /// object created from a class with a tuple of arguments).
    pub fn from_value(value: &Value) -> Option<Exception> {
        let Value::Object(o) = value else { return None };
        let g = o.global()?;
        let args = match o.args() {
            Value::Tuple(t) => t.to_vec(),
            Value::None => Vec::new(),
            _ => return None,
        };
        Some(Exception {
            module: g.module_arc().clone(),
            name: g.name_arc().clone(),
            args,
        })
    }
}

impl fmt::Display for Exception {
    /// `Name: message`, or the bare name when there is no message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let qualified = if self.module.as_ref() == "builtins" {
            self.name.to_string()
        } else {
            format!("{}.{}", self.module.trim_start_matches('_'), self.name)
        };
        let message = self.message();
        if message.is_empty() {
            f.write_str(&qualified)
        } else {
            write!(f, "{qualified}: {message}")
        }
    }
}

impl fmt::Debug for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Exception {}

/// Everything a manager or a proxy call can fail with. CPython's exception
/// is named in each variant's documentation.
#[non_exhaustive]
pub enum Error {
    /// The shared object raised an exception (CPython re-raises the object
    /// from the `#ERROR` reply): `KeyError`, `queue.Empty`, `ValueError`, …
    /// with its class and arguments.
    Raised(Exception),
    /// The server failed to carry out a request (CPython's `RemoteError`,
    /// from a `#TRACEBACK` or `#UNSERIALIZABLE` reply): an unexposed
    /// method, an unknown object id, a request it could not decode. The
    /// text is the server's traceback.
    Remote(String),
    /// Connecting to, or talking with, the manager at `address` failed.
    Connection {
        /// The manager's address.
        address: String,
        /// What went wrong.
        source: mp_conn::Error,
    },
    /// A message could not be encoded or decoded by the manager's codec.
    Codec(CodecError),
    /// A value did not fit the Rust type it was read into (or a Rust value
    /// could not be turned into a value).
    Convert(mp_value::Error),
    /// The server answered with a message of an unexpected shape.
    Protocol(String),
    /// CPython's `ProcessError` for a manager in the wrong state:
    /// "Already started server", "Manager has shut down", "Manager is not
    /// started".
    State(&'static str),
    /// Starting the manager's process failed.
    Process(mp_context::Error),
    /// The manager process did not report its address (it failed to bind,
    /// or died during start-up); the text says what it reported.
    Start(String),
    /// A call of a manager's pool ([`PoolProxy`](crate::PoolProxy))
    /// failed: the task's error ([`mp_pool::Error::WorkerLost`],
    /// [`Panicked`](mp_pool::Error::Panicked), …) or the pool's.
    Pool(mp_pool::Error),
}

impl Error {
    /// The exception the shared object raised, if that is what happened.
    pub fn exception(&self) -> Option<&Exception> {
        match self {
            Error::Raised(e) => Some(e),
            _ => None,
        }
    }

    /// The error of a manager's pool, if that is what happened.
    pub fn pool_error(&self) -> Option<&mp_pool::Error> {
        match self {
            Error::Pool(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the shared object raised `class` (see [`Exception::is`]).
    pub fn is(&self, class: &str) -> bool {
        self.exception().is_some_and(|e| e.is(class))
    }

    pub(crate) fn connection(address: &mp_conn::Address, source: mp_conn::Error) -> Error {
        Error::Connection {
            address: address.to_string(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Raised(e) => write!(f, "the shared object raised {e}"),
            Error::Remote(text) => {
                let line = "-".repeat(75);
                write!(f, "RemoteError: the manager failed:\n{line}\n{text}{line}")
            }
            Error::Connection { address, .. } => {
                write!(f, "could not talk to the manager at {address}")
            }
            Error::Codec(_) => f.write_str("the manager's codec failed"),
            Error::Convert(_) => f.write_str("a value did not fit its Rust type"),
            Error::Protocol(what) => write!(f, "unexpected reply from the manager: {what}"),
            Error::State(what) => f.write_str(what),
            Error::Process(_) => f.write_str("could not start the manager process"),
            Error::Start(what) => write!(f, "the manager process failed to start: {what}"),
            Error::Pool(_) => f.write_str("the manager's pool failed"),
        }
    }
}

impl fmt::Debug for Error {
    /// The message and its causes, as `main` returning `Result` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connection { source, .. } => Some(source),
            Error::Codec(e) => Some(e),
            Error::Convert(e) => Some(e),
            Error::Process(e) => Some(e),
            Error::Pool(e) => Some(e),
            Error::Raised(_)
            | Error::Remote(_)
            | Error::Protocol(_)
            | Error::State(_)
            | Error::Start(_) => None,
        }
    }
}

impl From<mp_value::Error> for Error {
    fn from(e: mp_value::Error) -> Error {
        Error::Convert(e)
    }
}

impl From<mp_value::Unhashable> for Error {
    fn from(e: mp_value::Unhashable) -> Error {
        Error::Convert(mp_value::Error::Unhashable(e))
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Error {
        Error::Codec(e)
    }
}

impl From<mp_context::Error> for Error {
    fn from(e: mp_context::Error) -> Error {
        Error::Process(e)
    }
}

/// A message that a [`Codec`](crate::Codec) could not encode or decode.
#[derive(Clone, PartialEq, Eq)]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// An error of the codec named `codec` (`"postcard"`, `"pickle"`).
    pub fn new(codec: &'static str, message: impl fmt::Display) -> CodecError {
        CodecError {
            codec,
            message: message.to_string(),
        }
    }

    /// The codec's name.
    pub fn codec(&self) -> &str {
        self.codec
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} codec: {}", self.codec, self.message)
    }
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for CodecError {}

/// The result type of `mp-manager`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_round_trip_through_values() {
        let e = Exception::key_error(3);
        let back = Exception::from_value(&e.to_value()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_string(), "KeyError: 3");
        assert_eq!(Exception::queue_empty().to_string(), "queue.Empty");
        assert_eq!(Exception::value_error("bad").to_string(), "ValueError: bad");
        assert!(!Exception::queue_full().is("queue.Empty"));
        assert!(Exception::queue_full().is("queue.Full"));
    }

    #[test]
    fn debug_prints_the_message_and_its_cause() {
        let e = Error::Connection {
            address: "/tmp/x".into(),
            source: mp_conn::Error::Eof,
        };
        assert_eq!(
            format!("{e:?}"),
            "could not talk to the manager at /tmp/x: end of file: the peer closed the connection"
        );
        assert_eq!(
            format!("{:?}", Error::State("Manager has shut down")),
            "Manager has shut down"
        );
    }
}
