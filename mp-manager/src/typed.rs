//! The glue between a user's Rust type and the server: [`SharedType`]
//! (what the [`shared`](crate::shared) attribute implements) and
//! [`Locked`], the [`Shared`] object that holds one behind a mutex.

use std::sync::Mutex;

use mp_value::Value;

use crate::shared::{Args, Call, Output, Raise, Shared};

/// A Rust type that a manager can share: its methods, dispatched by name.
///
/// Implemented by the [`shared`](crate::shared) attribute on the type's
/// `impl` block; write it by hand only for something the attribute does
/// not cover. The server holds the value in a [`Locked`], so its methods
/// run one at a time (`&mut self`); a type whose methods block while
/// others must run implements [`Shared`] directly instead.
pub trait SharedType: Send + 'static {
    /// The type's name, for messages and `repr`.
    const TYPE_NAME: &'static str;
    /// The public methods, exposed by default (CPython's
    /// `public_methods`): sorted, as Python's `dir()` sorts them.
    const METHODS: &'static [&'static str];
    /// The methods that return a new shared object, with its type id.
    const METHOD_TO_TYPEID: &'static [(&'static str, &'static str)];

    /// Creates the object from the arguments of `create`.
    ///
    /// # Errors
    ///
    /// The constructor's exception, or a `TypeError` for bad arguments.
    fn construct(args: Args, cx: &Call<'_>) -> Result<Self, Raise>
    where
        Self: Sized;

    /// Calls `method`.
    ///
    /// # Errors
    ///
    /// As [`Shared::call`].
    fn dispatch(&mut self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise>;

    /// `repr(obj)`.
    fn repr(&self) -> String {
        format!("<{} object>", Self::TYPE_NAME)
    }

    /// A copy of the value (`_getvalue()`).
    ///
    /// # Errors
    ///
    /// By default the type has no value to copy.
    fn get_value(&self) -> Result<Value, Raise> {
        Err(Raise::Exception(crate::Exception::type_error(format!(
            "cannot copy '{}' object",
            Self::TYPE_NAME
        ))))
    }
}

/// A [`SharedType`] behind a mutex: the [`Shared`] object the server holds.
#[derive(Debug)]
pub struct Locked<T>(Mutex<T>);

impl<T> Locked<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Locked<T> {
        Locked(Mutex::new(value))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: SharedType> Shared for Locked<T> {
    fn type_name(&self) -> &str {
        T::TYPE_NAME
    }

    fn methods(&self) -> Vec<&'static str> {
        T::METHODS.to_vec()
    }

    fn call(&self, method: &str, args: Args, cx: &Call<'_>) -> Result<Output, Raise> {
        self.lock().dispatch(method, args, cx)
    }

    fn repr(&self) -> String {
        self.lock().repr()
    }

    fn get_value(&self) -> Result<Value, Raise> {
        self.lock().get_value()
    }
}

/// Turns a method's result into the call's output (used by the code the
/// [`shared`](crate::shared) attribute generates).
#[doc(hidden)]
pub fn output<T: serde::Serialize>(value: &T) -> Result<Output, Raise> {
    mp_value::to_value(value)
        .map(Output::Value)
        .map_err(|e| Raise::Traceback(format!("TypeError: cannot send the result: {e}\n")))
}

/// Turns a method's result that is a new shared object into the call's
/// output (for methods listed in `method_to_typeid`).
#[doc(hidden)]
pub fn output_object<T: SharedType>(value: T) -> Result<Output, Raise> {
    Ok(Output::Object(std::sync::Arc::new(Locked::new(value))))
}

/// What the generated dispatch does with an unknown method name.
#[doc(hidden)]
pub fn no_such_method(type_name: &str, method: &str) -> Raise {
    Raise::Traceback(format!(
        "AttributeError: '{type_name}' object has no attribute '{method}'\n"
    ))
}
