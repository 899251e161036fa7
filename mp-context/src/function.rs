//! [`FnRef`]: a plain function `fn(A) -> R` of this executable as a value
//! that travels to a child process and is called there with serialized
//! arguments, as a pool worker calls the tasks it is sent.
//!
//! A process target is found in a spawned or forkserver child by its
//! offset from a fixed symbol of the binary (see the crate docs); an
//! [`FnRef`] carries the same kind of offsets, for any number of functions
//! of any types, checked the same way before anything is called:
//!
//! - the offset of a check symbol, equal in parent and child exactly when
//!   both run the same build of the program;
//! - the offset of the function itself;
//! - the offsets of two trampolines monomorphized for `(A, R)`: one that
//!   names `A` and `R`, compared with the names the parent sent, and one
//!   that decodes `A` with postcard, calls the function and encodes `R`.
//!
//! [`FnRef::resolve`] checks the build and the types once and gives a
//! [`ResolvedFn`], which calls the function as often as needed.

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entry::ExitRequest;
use crate::sys;

/// The call trampoline: decodes the arguments, calls the function at the
/// offset, appends the encoded result to the buffer.
type CallFn = fn(u64, &[u8], &mut Vec<u8>) -> Result<(), CallError>;

/// The type trampoline: the names of `A` and `R`.
type TypesFn = fn() -> [&'static str; 2];

/// A plain function `fn(A) -> R` of this executable, as a serde value that
/// can be sent to a child process of the same binary (spawn, forkserver or
/// fork) and called there with postcard-encoded arguments.
///
/// It holds offsets from a fixed symbol of the binary and the names of `A`
/// and `R`, never a raw pointer; [`FnRef::resolve`] checks them in the
/// receiving process before anything is called. Functions must live in the
/// executable itself, not in a dynamically loaded library.
///
/// A process that receives an `FnRef` trusts its sender as much as a child
/// trusts the parent that started it: the checks catch a different build
/// and mismatched types, not a forged value.
///
/// # Examples
///
/// ```
/// use mp_context::FnRef;
///
/// fn double(n: u64) -> u64 {
///     n * 2
/// }
///
/// // The parent: a value to send with the (postcard) arguments.
/// let wire = postcard::to_allocvec(&FnRef::new(double)).unwrap();
/// let args = postcard::to_allocvec(&21u64).unwrap();
///
/// // The child (here, the same process): check once, call many times.
/// let f: FnRef = postcard::from_bytes(&wire).unwrap();
/// assert_eq!(f.arg_type(), "u64");
/// let resolved = f.resolve()?;
/// let mut out = Vec::new();
/// resolved.call(&args, &mut out)?;
/// assert_eq!(postcard::from_bytes::<u64>(&out).unwrap(), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FnRef {
    /// [`sys::check_value`] where the reference was made.
    check: u64,
    target: u64,
    call: u64,
    types: u64,
    arg_type: Cow<'static, str>,
    result_type: Cow<'static, str>,
}

impl FnRef {
    /// A reference to `f`.
    pub fn new<A, R>(f: fn(A) -> R) -> FnRef
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        FnRef {
            check: sys::check_value(),
            target: sys::offset_of(f as usize),
            call: sys::offset_of(call::<A, R> as CallFn as usize),
            types: sys::offset_of(types::<A, R> as TypesFn as usize),
            arg_type: Cow::Borrowed(std::any::type_name::<A>()),
            result_type: Cow::Borrowed(std::any::type_name::<R>()),
        }
    }

    /// The name of the argument type `A` (`std::any::type_name`).
    pub fn arg_type(&self) -> &str {
        &self.arg_type
    }

    /// The name of the result type `R` (`std::any::type_name`).
    pub fn result_type(&self) -> &str {
        &self.result_type
    }

    /// Checks that this process runs the build that made the reference and
    /// that the function's types are the ones named, and gives a callable
    /// [`ResolvedFn`].
    ///
    /// # Errors
    ///
    /// [`FnRefError::DifferentBuild`] if the reference was made by another
    /// build of the program; [`FnRefError::TypeMismatch`] if the types do
    /// not match (nothing is called then).
    pub fn resolve(&self) -> Result<ResolvedFn, FnRefError> {
        if self.check != sys::check_value() {
            return Err(FnRefError::DifferentBuild);
        }
        // The build matched, so `types` is the offset of a `TypesFn` of
        // this binary (see `sys`'s safety contract).
        let [arg, result] = sys::resolve_fn::<TypesFn>(self.types)();
        if arg != self.arg_type || result != self.result_type {
            return Err(FnRefError::TypeMismatch {
                sent: format!("fn({}) -> {}", self.arg_type, self.result_type),
                found: format!("fn({arg}) -> {result}"),
            });
        }
        Ok(ResolvedFn {
            target: self.target,
            call: sys::resolve_fn::<CallFn>(self.call),
        })
    }
}

/// A checked [`FnRef`], ready to call.
#[derive(Clone, Copy)]
pub struct ResolvedFn {
    target: u64,
    call: CallFn,
}

impl fmt::Debug for ResolvedFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedFn")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ResolvedFn {
    /// Decodes the arguments from `args` (postcard, the whole slice), calls
    /// the function and appends the postcard encoding of its result to
    /// `out`, as a process target would be run: a panic is caught and
    /// becomes an error carrying its message.
    ///
    /// [`exit(code)`](crate::exit) inside the function, on a thread that
    /// runs a process target (a pool worker's), returns
    /// [`CallError::Exit`]: the caller decides when to end the process,
    /// with `mp_context::exit(code)`. (On other threads `exit` ends the
    /// process at once, as it always does.)
    ///
    /// # Errors
    ///
    /// [`CallError::Args`], [`CallError::Result`], [`CallError::Panicked`],
    /// [`CallError::Exit`]; `out` is unchanged after any of them.
    pub fn call(&self, args: &[u8], out: &mut Vec<u8>) -> Result<(), CallError> {
        (self.call)(self.target, args, out)
    }
}

/// Why [`FnRef::resolve`] refused a reference.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FnRefError {
    /// The reference was made by a different build of the program.
    DifferentBuild,
    /// The types named in the reference are not the function's.
    TypeMismatch {
        /// What the reference says, `fn(A) -> R`.
        sent: String,
        /// What the function at its offset is.
        found: String,
    },
}

impl fmt::Display for FnRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FnRefError::DifferentBuild => f.write_str(
                "the function reference was made by a different build of the program \
                 (function offsets do not match); was the binary replaced while running?",
            ),
            FnRefError::TypeMismatch { sent, found } => write!(
                f,
                "the function reference names {sent}, but the function there is {found}"
            ),
        }
    }
}

/// Prints the message, as `Display` does (no source to follow).
impl fmt::Debug for FnRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for FnRefError {}

/// Why [`ResolvedFn::call`] produced no result.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The arguments could not be decoded as the function's argument type.
    Args {
        /// The argument type.
        type_name: &'static str,
        /// postcard's error.
        source: postcard::Error,
    },
    /// The result could not be encoded (its `Serialize` failed).
    Result {
        /// The result type.
        type_name: &'static str,
        /// postcard's error.
        source: postcard::Error,
    },
    /// The function panicked; the panic's message (its payload, when it is
    /// a string).
    Panicked(String),
    /// The function called [`exit(code)`](crate::exit).
    Exit(i32),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Args { type_name, .. } => {
                write!(f, "could not decode the arguments as {type_name}")
            }
            CallError::Result { type_name, .. } => {
                write!(f, "could not serialize the result of type {type_name}")
            }
            CallError::Panicked(message) => write!(f, "the function panicked: {message}"),
            CallError::Exit(code) => write!(f, "the function called exit({code})"),
        }
    }
}

/// The message followed by its source, `message: cause`.
impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        if let Some(source) = std::error::Error::source(self) {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Args { source, .. } | CallError::Result { source, .. } => Some(source),
            CallError::Panicked(_) | CallError::Exit(_) => None,
        }
    }
}

/// The text of a panic payload: its message when it is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic whose payload is not a string".to_owned()
    }
}

fn types<A, R>() -> [&'static str; 2] {
    [std::any::type_name::<A>(), std::any::type_name::<R>()]
}

/// Appends to a `Vec` without taking it over, so that a failed encoding
/// can be undone (`postcard::to_extend` consumes its writer).
struct Append<'a> {
    out: &'a mut Vec<u8>,
}

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.out.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.out.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn call<A: DeserializeOwned, R: Serialize>(
    target: u64,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CallError> {
    let args = match postcard::take_from_bytes::<A>(args) {
        Ok((args, [])) => args,
        Ok(_) => {
            return Err(CallError::Args {
                type_name: std::any::type_name::<A>(),
                source: postcard::Error::DeserializeBadEncoding,
            });
        }
        Err(source) => {
            return Err(CallError::Args {
                type_name: std::any::type_name::<A>(),
                source,
            });
        }
    };
    // `FnRef::resolve` matched the build and the types of this trampoline,
    // so `target` is the offset of a `fn(A) -> R`.
    let f = sys::resolve_fn::<fn(A) -> R>(target);
    let result = crate::entry::with_panics_as_values(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(args)))
    })
    .map_err(|payload| match payload.downcast_ref::<ExitRequest>() {
        Some(ExitRequest(code)) => CallError::Exit(*code),
        None => CallError::Panicked(panic_message(&*payload)),
    })?;
    let start = out.len();
    postcard::serialize_with_flavor(&result, Append { out })
        .map_err(|source| CallError::Result {
            type_name: std::any::type_name::<R>(),
            source,
        })
        .inspect_err(|_| out.truncate(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add((a, b): (u32, u32)) -> u32 {
        a + b
    }

    fn boom(_: ()) -> u8 {
        panic!("boom {}", 7)
    }

    fn same_shape(n: u32) -> u32 {
        n
    }

    fn exits(code: i32) {
        crate::exit(code)
    }

    /// A result whose `Serialize` always fails.
    struct Unserializable;
    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("never"))
        }
    }
    fn unserializable(_: ()) -> Unserializable {
        Unserializable
    }

    #[test]
    fn round_trip_through_serde_and_call() {
        let wire = postcard::to_allocvec(&FnRef::new(add)).unwrap();
        let f: FnRef = postcard::from_bytes(&wire).unwrap();
        assert_eq!((f.arg_type(), f.result_type()), ("(u32, u32)", "u32"));
        let resolved = f.resolve().unwrap();
        let mut out = vec![9];
        resolved
            .call(&postcard::to_allocvec(&(2u32, 3u32)).unwrap(), &mut out)
            .unwrap();
        assert_eq!(out[0], 9, "appends, keeps what was there");
        assert_eq!(postcard::from_bytes::<u32>(&out[1..]).unwrap(), 5);
    }

    #[test]
    fn a_different_build_or_type_is_refused_before_any_call() {
        let mut f = FnRef::new(add);
        f.check ^= 1;
        assert_eq!(f.resolve().unwrap_err(), FnRefError::DifferentBuild);
        let mut f = FnRef::new(same_shape);
        f.arg_type = Cow::Borrowed("i32");
        let err = f.resolve().unwrap_err();
        assert!(matches!(err, FnRefError::TypeMismatch { .. }));
        assert_eq!(
            format!("{err:?}"),
            "the function reference names fn(i32) -> u32, but the function there is \
             fn(u32) -> u32"
        );
    }

    #[test]
    fn errors_leave_the_output_as_it_was() {
        let mut out = vec![1, 2];
        let resolved = FnRef::new(add).resolve().unwrap();
        let err = resolved.call(&[0xff], &mut out).unwrap_err();
        assert!(matches!(err, CallError::Args { .. }), "{err:?}");
        assert!(format!("{err:?}").starts_with("could not decode the arguments as (u32, u32): "));
        let trailing = [postcard::to_allocvec(&(1u32, 1u32)).unwrap(), vec![0]].concat();
        assert!(matches!(
            resolved.call(&trailing, &mut out),
            Err(CallError::Args { .. })
        ));
        let panicking = FnRef::new(boom).resolve().unwrap();
        let err = panicking.call(&[], &mut out).unwrap_err();
        assert_eq!(err, CallError::Panicked("boom 7".into()));
        let bad = FnRef::new(unserializable).resolve().unwrap();
        let err = bad.call(&[], &mut out).unwrap_err();
        assert!(matches!(err, CallError::Result { .. }), "{err:?}");
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn exit_inside_a_target_is_reported_not_performed() {
        let resolved = FnRef::new(exits).resolve().unwrap();
        let args = postcard::to_allocvec(&5i32).unwrap();
        let mut got = None;
        let code = crate::entry::run_target(|| {
            got = Some(resolved.call(&args, &mut Vec::new()));
        });
        assert_eq!(code, 0, "the call returned; the caller decides");
        assert_eq!(got, Some(Err(CallError::Exit(5))));
    }
}
