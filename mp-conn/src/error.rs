//! The errors of `mp-conn`, named after the exceptions CPython raises.

use std::{fmt, io};

/// Everything that can go wrong on a connection.
///
/// The variants map onto CPython's exceptions: [`Error::Eof`] is
/// `EOFError`, [`Error::BufferTooShort`] is `multiprocessing.BufferTooShort`,
/// [`Error::InvalidArgument`] is `ValueError`, [`Error::Authentication`] is
/// `multiprocessing.AuthenticationError`, and the rest are `OSError`s.
///
/// `Debug` prints the message and its causes (`message: cause: cause`),
/// which is what `main() -> Result<(), Box<dyn Error>>` shows a user;
/// match on the variants to tell the cases apart.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed its end at a message boundary (CPython's `EOFError`).
    #[error("end of file: the peer closed the connection")]
    Eof,
    /// The peer closed its end in the middle of a message.
    #[error("got end of file during message")]
    TruncatedMessage,
    /// A message longer than the receiver's limit, or a malformed length
    /// header. The connection is no longer readable afterwards (CPython's
    /// "bad message length").
    #[error("bad message length: {len} bytes, limit {max}")]
    MessageTooLong {
        /// The length the peer announced.
        len: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// A length header that no CPython peer sends: a negative length other
    /// than -1, or a long length that would have fit in the short header.
    #[error("bad message length: {0}")]
    BadLength(&'static str),
    /// The destination buffer was too small; the whole message is handed
    /// back (CPython's `BufferTooShort`, whose `args[0]` is the message).
    #[error("buffer too short for a {}-byte message", .0.len())]
    BufferTooShort(Vec<u8>),
    /// The connection was closed by this side (CPython's "handle is closed").
    #[error("handle is closed")]
    Closed,
    /// A receive on a write-only connection.
    #[error("connection is write-only")]
    NotReadable,
    /// A send on a read-only connection.
    #[error("connection is read-only")]
    NotWritable,
    /// A bad argument (CPython's `ValueError`).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// File descriptors were expected but did not arrive, arrived
    /// truncated, or did not match the count byte (CPython's
    /// `RuntimeError('Invalid data received')` and friends).
    #[error("fd transfer failed: {0}")]
    FdTransfer(&'static str),
    /// A value could not be serialized with postcard; the source says why
    /// (serde's own explanation, kept).
    #[error("could not encode a value of type {}", .0.type_name())]
    Encode(#[source] SerdeError),
    /// A message could not be deserialized with postcard; the source says
    /// why (serde's own explanation, kept).
    #[error("could not decode a message as a value of type {}", .0.type_name())]
    Decode(#[source] SerdeError),
    /// The handshake failed to authenticate.
    #[error(transparent)]
    Authentication(mp_auth::AuthenticationError),
    /// An operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An address that cannot be used: a Windows named pipe, a host that
    /// does not resolve, a unix path too long for `sun_path`, or a family
    /// that disagrees with the address (CPython's `ValueError`).
    #[error("bad address: {0}")]
    BadAddress(String),
    /// A handshake did not finish in time (CPython's `TimeoutError`).
    #[error("timed out")]
    Timeout,
    /// [`send`](crate::Connection::send) of a value that holds fds over a
    /// connection that cannot carry them: only a unix socket can (not a
    /// TCP socket, an OS pipe or a [`pipe_pair`](crate::pipe_pair) end).
    /// Nothing was sent.
    #[error(
        "cannot send a value of type {type_name}: it holds {fds} file descriptor(s), and only \
         a unix-socket connection can carry them (this one is {connection}); send it over \
         mp_conn::pipe(true) or a unix-socket Listener/client connection"
    )]
    FdsNeedUnixSocket {
        /// The value's type (`std::any::type_name`).
        type_name: &'static str,
        /// How many fds the value holds.
        fds: usize,
        /// What this connection is instead.
        connection: &'static str,
    },
    /// This copy of a shared connection cannot tell where the next message
    /// starts: read-ahead bytes that ended inside a message went to another
    /// copy (the parent of a fork, or a copy that was passed on), and the
    /// rest of that message is that copy's to read. Receives on this copy
    /// fail; sends still work.
    #[error(
        "lost track of message boundaries: this connection's read-ahead ended inside a message, \
         and another copy of the connection (across a fork, or passed to another process) \
         owns the rest of it; receive on that copy, or share the connection before reading \
         ahead (set_exact_reads(true))"
    )]
    LostBoundary,
}

impl fmt::Debug for Error {
    /// The message and its causes, `message: cause: cause`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(self, f)
    }
}

/// Writes `err`'s message, then each of its sources after `": "`.
fn write_chain(err: &dyn std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{err}")?;
    let mut source = err.source();
    while let Some(cause) = source {
        write!(f, ": {cause}")?;
        source = cause.source();
    }
    Ok(())
}

/// Why serde could not encode a value or decode a message: the value's
/// type and serde's explanation, which postcard itself drops for custom
/// errors (`serde::ser::Error::custom` becomes a bare `SerdeSerCustom`).
#[derive(Clone, PartialEq, Eq)]
pub struct SerdeError {
    type_name: &'static str,
    message: String,
    postcard: Option<postcard::Error>,
}

impl SerdeError {
    pub(crate) fn new(
        type_name: &'static str,
        message: String,
        postcard: Option<postcard::Error>,
    ) -> SerdeError {
        SerdeError {
            type_name,
            message,
            postcard,
        }
    }

    /// The type being encoded or decoded (`std::any::type_name`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// What went wrong, in serde's words (a custom message such as "fd
    /// slot 3 out of range", or postcard's description of a format error).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// postcard's error, if postcard raised one (`None` when the value's
    /// own impl failed before reaching postcard).
    pub fn postcard(&self) -> Option<&postcard::Error> {
        self.postcard.as_ref()
    }
}

impl fmt::Display for SerdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for SerdeError {
    /// As `Display`: the message (it has no source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_chain(self, f)
    }
}

impl std::error::Error for SerdeError {}

/// An operating-system error at an address or a path, such as `cannot
/// connect to /tmp/sock: No such file or directory (os error 2)`. It
/// travels inside [`Error::Io`] with the kind of the error it wraps, so that
/// code matching on `io::ErrorKind` keeps working; the OS error is its
/// `source()`.
pub(crate) struct AtPlace {
    /// What was being done: "cannot connect to", "cannot bind".
    what: &'static str,
    /// The address or path, as text.
    place: String,
    source: io::Error,
}

impl AtPlace {
    /// `err` as an [`Error::Io`] that names `address`.
    pub(crate) fn error(
        what: &'static str,
        address: &crate::Address,
        err: impl Into<io::Error>,
    ) -> Error {
        AtPlace::at(what, address.to_string(), err.into())
    }

    /// `err` as an [`Error::Io`] that names `path`.
    pub(crate) fn path(what: &'static str, path: &std::path::Path, err: io::Error) -> Error {
        AtPlace::at(what, path.display().to_string(), err)
    }

    fn at(what: &'static str, place: String, source: io::Error) -> Error {
        let kind = source.kind();
        Error::Io(io::Error::new(
            kind,
            AtPlace {
                what,
                place,
                source,
            },
        ))
    }
}

impl fmt::Display for AtPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.what, self.place)
    }
}

impl fmt::Debug for AtPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}: {}", self.source)
    }
}

impl std::error::Error for AtPlace {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The result type of `mp-conn`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rustix::io::Errno> for Error {
    fn from(errno: rustix::io::Errno) -> Error {
        Error::Io(errno.into())
    }
}

impl From<mp_auth::HandshakeError> for Error {
    fn from(err: mp_auth::HandshakeError) -> Error {
        match err {
            mp_auth::HandshakeError::Authentication(a) => Error::Authentication(a),
            mp_auth::HandshakeError::Io(e) => Error::from_io(e),
        }
    }
}

impl Error {
    /// Recovers an `Error` that went through [`From<Error> for io::Error`]
    /// (for example across [`mp_auth::MessageChannel`]), or wraps a plain
    /// `io::Error`.
    pub fn from_io(err: io::Error) -> Error {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            match err.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(inner)) => return *inner,
                Some(Err(other)) => return Error::Io(io::Error::other(other)),
                None => return unreachable_io(),
            }
        }
        Error::Io(err)
    }

    /// The `io::ErrorKind` closest to this error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Eof | Error::TruncatedMessage => io::ErrorKind::UnexpectedEof,
            Error::MessageTooLong { .. }
            | Error::BadLength(_)
            | Error::FdTransfer(_)
            | Error::Decode(_)
            | Error::LostBoundary => io::ErrorKind::InvalidData,
            Error::BufferTooShort(_) | Error::InvalidArgument(_) | Error::Encode(_) => {
                io::ErrorKind::InvalidInput
            }
            Error::Closed | Error::NotReadable | Error::NotWritable => io::ErrorKind::Unsupported,
            Error::Authentication(_) => io::ErrorKind::PermissionDenied,
            Error::Io(e) => e.kind(),
            Error::BadAddress(_) | Error::FdsNeedUnixSocket { .. } => io::ErrorKind::InvalidInput,
            Error::Timeout => io::ErrorKind::TimedOut,
        }
    }
}

/// `into_inner` returns `None` only when `get_ref` did; `from_io` checked it.
#[cold]
fn unreachable_io() -> Error {
    Error::Io(io::Error::other("io::Error lost its payload"))
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        match err {
            Error::Io(e) => e,
            other => io::Error::new(other.kind(), other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main() -> Result<(), Box<dyn Error>>` prints: the message, the
    /// address it concerns and the OS error, never a bare variant name.
    #[test]
    fn debug_names_the_address_and_the_cause() {
        let dir = std::env::temp_dir().join(format!("mp-conn-no-such-dir-{}", std::process::id()));
        let missing = crate::Address::Unix(dir.join("sock"));
        let err = crate::client(&missing, None).unwrap_err();
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with(&format!(
                "cannot connect to {}: ",
                dir.join("sock").display()
            )),
            "{shown}"
        );
        assert!(shown.contains("No such file or directory"), "{shown}");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // The same text through `Box<dyn Error>` and through `io::Error`.
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(format!("{boxed:?}"), shown);

        let listener = crate::Listener::builder()
            .family(crate::Family::Inet)
            .bind()
            .unwrap();
        let taken = listener.address().clone();
        let err = crate::Listener::bind(&taken).unwrap_err();
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with(&format!("cannot bind {taken}: ")),
            "{shown}"
        );
        assert!(shown.contains("in use"), "{shown}");
        let as_io = io::Error::from(err);
        assert_eq!(as_io.kind(), io::ErrorKind::AddrInUse);
        assert!(format!("{as_io}").contains(&taken.to_string()));

        assert_eq!(
            format!("{:?}", Error::Eof),
            "end of file: the peer closed the connection"
        );
        let shown = format!(
            "{:?}",
            Error::Decode(SerdeError::new(
                "alloc::string::String",
                "unexpected end of input".into(),
                None
            ))
        );
        assert!(shown.contains("unexpected end of input"), "{shown}");
    }

    #[test]
    fn round_trips_through_io_error() {
        let e: io::Error = Error::MessageTooLong { len: 300, max: 256 }.into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        match Error::from_io(e) {
            Error::MessageTooLong { len: 300, max: 256 } => {}
            other => panic!("unexpected {other:?}"),
        }
        let plain = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(
            matches!(Error::from_io(plain), Error::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
        );
    }

    #[test]
    fn messages_match_cpython() {
        assert_eq!(Error::Closed.to_string(), "handle is closed");
        assert_eq!(Error::NotReadable.to_string(), "connection is write-only");
        assert_eq!(Error::NotWritable.to_string(), "connection is read-only");
        assert_eq!(
            Error::TruncatedMessage.to_string(),
            "got end of file during message"
        );
        assert!(
            Error::BadLength("x")
                .to_string()
                .starts_with("bad message length")
        );
    }

    #[test]
    fn handshake_errors_convert() {
        let a = mp_auth::AuthenticationError::DigestReceivedWrong;
        assert!(matches!(
            Error::from(mp_auth::HandshakeError::Authentication(a)),
            Error::Authentication(_)
        ));
        let io_err: io::Error = Error::Eof.into();
        assert!(matches!(
            Error::from(mp_auth::HandshakeError::Io(io_err)),
            Error::Eof
        ));
    }
}
