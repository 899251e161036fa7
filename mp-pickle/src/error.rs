//! The errors of reading and converting pickles.

use std::fmt;

/// Which configurable limit a pickle went past (see [`Limits`](crate::Limits)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::max_input`](crate::Limits::max_input): bytes of pickle.
    Input,
    /// [`Limits::max_depth`](crate::Limits::max_depth): containers nested
    /// in containers.
    Depth,
    /// [`Limits::max_memo`](crate::Limits::max_memo): memo entries.
    Memo,
    /// [`Limits::max_items`](crate::Limits::max_items): values pushed.
    Items,
}

impl Limit {
    fn describe(self) -> &'static str {
        match self {
            Limit::Input => "bytes of input (Limits::max_input)",
            Limit::Depth => "levels of nesting (Limits::max_depth)",
            Limit::Memo => "memo entries (Limits::max_memo)",
            Limit::Items => "values (Limits::max_items)",
        }
    }
}

/// What went wrong (see [`Error`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended inside an opcode, a frame, or before `STOP`.
    Truncated,
    /// A byte that is no pickle opcode.
    UnknownOpcode(u8),
    /// A protocol above 5 in the `PROTO` opcode.
    UnsupportedProtocol(u8),
    /// An opcode this reader refuses: persistent ids, the extension
    /// registry, out-of-band buffers (multiprocessing uses none of them).
    Unsupported(&'static str),
    /// An opcode found the stack or its operands in a shape it cannot use
    /// (a stack underflow, a missing mark, a `BUILD` on a list, a malformed
    /// text argument, a string that is not UTF-8…).
    Invalid(String),
    /// A memo reference (`GET`) to an index never stored.
    MemoMissing(u64),
    /// The pickle changes an object after sharing it, which only a
    /// recursive structure (an object that contains itself) needs; the
    /// value model has no cycles.
    Recursive,
    /// A dict key or set member Python cannot hash.
    Unhashable(mp_value::Unhashable),
    /// A configured limit was passed: which, and its value.
    Limit(Limit, usize),
    /// The pickle was read, but its value does not fit the Rust type
    /// ([`from_slice`](crate::from_slice)), or a Rust value could not be
    /// converted ([`to_vec`](crate::to_vec)).
    Value(mp_value::Error),
}

/// A failed read (with the byte offset of the opcode that failed) or a
/// failed conversion.
#[derive(Clone, PartialEq)]
pub struct Error(Box<Inner>);

/// Boxed, so that the reader's `Result<Value, Error>`s, returned by every
/// opcode step, are a pointer wide on the error side: the success path
/// moves less.
#[derive(Clone, PartialEq)]
struct Inner {
    kind: ErrorKind,
    offset: Option<usize>,
}

impl Error {
    #[cold]
    pub(crate) fn at(kind: ErrorKind, offset: usize) -> Error {
        Error(Box::new(Inner {
            kind,
            offset: Some(offset),
        }))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The byte offset of the opcode that failed, for read errors.
    pub fn offset(&self) -> Option<usize> {
        self.0.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            ErrorKind::Truncated => f.write_str("pickle data was truncated")?,
            ErrorKind::UnknownOpcode(op) => write!(f, "invalid pickle opcode 0x{op:02x}")?,
            ErrorKind::UnsupportedProtocol(p) => {
                write!(f, "unsupported pickle protocol {p} (this reader knows 0 to 5)")?
            }
            ErrorKind::Unsupported(what) => write!(f, "unsupported in pickles read here: {what}")?,
            ErrorKind::Invalid(what) => write!(f, "invalid pickle: {what}")?,
            ErrorKind::MemoMissing(i) => write!(f, "pickle memo has no entry {i}")?,
            ErrorKind::Recursive => f.write_str(
                "pickle changes an object after sharing it (a recursive structure, which the value model cannot hold)",
            )?,
            ErrorKind::Unhashable(_) => f.write_str("pickle has a dict key or set member that cannot be hashed")?,
            ErrorKind::Limit(which, n) => {
                write!(f, "pickle goes past {n} {}: raise the limit to accept it", which.describe())?
            }
            ErrorKind::Value(_) => f.write_str("pickle value does not convert")?,
        }
        if let Some(at) = self.0.offset {
            write!(f, " (at byte {at})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    /// The message and its causes, as `main` returning `Result` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            ErrorKind::Unhashable(u) => Some(u),
            ErrorKind::Value(e) => Some(e),
            _ => None,
        }
    }
}

impl From<mp_value::Error> for Error {
    fn from(e: mp_value::Error) -> Error {
        Error(Box::new(Inner {
            kind: ErrorKind::Value(e),
            offset: None,
        }))
    }
}
