//! # mp-value
//!
//! A language-neutral dynamic value model after Python's built-in types,
//! for the values that cross between Rust and Python programs: what a
//! manager stores, what a pickle holds.
//!
//! - [`Value`]: `None`, `bool`, `int` of any size ([`Value::Int`] for
//!   `i64`, [`BigInt`] beyond), `float`, `str`, `bytes`, `bytearray`,
//!   `list`, `tuple`, `dict`, `set`, `frozenset`, a reference to a global
//!   ([`Global`]: a class or function by module and qualified name), and
//!   any other object ([`Object`]: the callable or class it is rebuilt
//!   with, its arguments and its state), kept unchanged.
//! - Containers are shared (`Arc`), with identity: a sub-object that
//!   appears twice in a value is one object ([`Value::is`]), and a pickle
//!   writer writes it once. They are immutable; `make_mut` changes one in
//!   place, copying it first if it is shared.
//! - Python's equality and hashing: `1 == 1.0 == True` (with equal hashes),
//!   `-0.0 == 0.0`, NaN equal to nothing, big ints equal to floats when
//!   exact, `str` never equal to `bytes`; [`Dict`] and [`Set`] keep insertion
//!   order and refuse unhashable keys ([`Unhashable`], Python's
//!   `TypeError`).
//! - serde both ways: [`to_value`] maps Rust types onto the model as a
//!   Python programmer expects (structs become dicts, see its module
//!   table), [`from_value`] converts back, lenient where Python is. `Value`
//!   itself is `Serialize`/`Deserialize` in an explicit tagged form, so it
//!   travels in postcard between Rust peers.
//! - `Display`: close to Python's `repr`.
//!
//! Nothing here recurses on the depth of a value except serde (bounded by
//! [`MAX_SERDE_DEPTH`]): dropping, comparing, hashing and printing use an
//! explicit work list, so a value nested a million deep is harmless.
//!
//! # Examples
//!
//! ```
//! use mp_value::{Dict, Value, from_value, to_value};
//!
//! // Python's keys: 1, 1.0 and True are one key.
//! let mut d = Dict::new();
//! d.insert(1, "one")?;
//! d.insert(1.0, "uno")?;
//! assert_eq!(d.len(), 1);
//! assert_eq!(Value::Dict(d.clone()).to_string(), "{1: 'uno'}");
//! assert!(d.insert(Value::from(vec![Value::Int(1)]), 0).is_err()); // unhashable list
//!
//! // serde: Rust types in, Rust types out.
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Task { id: u32, args: Vec<String> }
//! let v = to_value(&Task { id: 7, args: vec!["x".into()] })?;
//! assert_eq!(v.to_string(), "{'id': 7, 'args': ['x']}");
//! assert_eq!(from_value::<Task>(&v)?, Task { id: 7, args: vec!["x".into()] });
//!
//! // A shared sub-object stays one object.
//! let inner = Value::from(vec![Value::Int(1)]);
//! let outer = Value::from((inner.clone(), inner));
//! let items = outer.as_seq().unwrap();
//! assert!(items[0].is(&items[1]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod convert;
mod de;
mod eq;
mod error;
mod int;
mod repr;
mod ser;
mod table;
mod tagged;
mod value;

pub use de::from_value;
pub use error::Error;
pub use int::{BigInt, MAX_STR_DIGITS};
pub use repr::{bytes_repr, float_repr, str_repr};
pub use ser::{in_to_value, to_value};
pub use table::Unhashable;
pub use value::{Constructor, Dict, Global, List, Object, ObjectData, ObjectOp, Set, Tuple, Value};

/// How many containers deep serde goes ([`to_value`], [`from_value`], and
/// `Value`'s own `Serialize`/`Deserialize`) before it stops with
/// [`Error::TooDeep`]. Serde converts by recursion, several stack frames
/// per level (more again through serde's buffering of untagged enums);
/// 128 is serde_json's limit too, and stays well inside a 2 MiB thread
/// stack in debug builds. Everything else in this crate works at any depth.
pub const MAX_SERDE_DEPTH: usize = 128;
