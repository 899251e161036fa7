//! The error of the serde conversions.

use std::fmt;

use crate::table::Unhashable;

/// A failed [`to_value`](crate::to_value) or [`from_value`](crate::from_value)
/// (or a `Value` that failed to serialize or deserialize in another serde
/// format).
#[derive(Clone, PartialEq)]
pub enum Error {
    /// The value does not have the shape the Rust type needs (a missing
    /// field, a string where a number belongs, an integer out of range…);
    /// the message says which, in serde's words.
    Message(String),
    /// A dict key or set member Python cannot hash (a list, a dict, …).
    Unhashable(Unhashable),
    /// Nested deeper than [`MAX_SERDE_DEPTH`](crate::MAX_SERDE_DEPTH)
    /// containers: serde converts by recursion, and this bound keeps the
    /// stack from overflowing.
    TooDeep,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(m) => f.write_str(m),
            Error::Unhashable(_) => f.write_str("a dict key or set member cannot be hashed"),
            Error::TooDeep => write!(
                f,
                "value nested deeper than {} containers (mp_value::MAX_SERDE_DEPTH)",
                crate::MAX_SERDE_DEPTH
            ),
        }
    }
}

impl fmt::Debug for Error {
    /// The message and its cause, as `main` returning `Result` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        if let Some(cause) = std::error::Error::source(self) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unhashable(u) => Some(u),
            _ => None,
        }
    }
}

impl From<Unhashable> for Error {
    fn from(u: Unhashable) -> Error {
        Error::Unhashable(u)
    }
}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error::Message(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error::Message(msg.to_string())
    }
}
