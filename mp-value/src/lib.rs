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
//! # The serde mapping
//!
//! [`to_value`] writes Rust types as:
//!
//! | Rust | Python |
//! |---|---|
//! | `bool` | `bool` |
//! | integers (`i8`…`u128`) | `int` |
//! | `f32`, `f64` | `float` |
//! | `char`, `&str`, `String` | `str` |
//! | `serde_bytes::Bytes`/`ByteBuf` (`serialize_bytes`) | `bytes` |
//! | `Vec<T>`, slices, `HashSet`, … (sequences) | `list` |
//! | tuples, tuple structs | `tuple` |
//! | maps | `dict` (keys must be hashable) |
//! | structs | `dict` of field name → value |
//! | `()`, unit structs, `None` | `None` |
//! | `Some(v)`, newtype structs | `v` |
//! | unit variants `E::A` | `'A'` |
//! | `E::A(v)`, `E::A(x, y)`, `E::A { f }` | `{'A': v}`, `{'A': (x, y)}`, `{'A': {'f': …}}` |
//! | [`Value`] | itself, unchanged (identity kept) |
//!
//! Structs become dicts, not objects of some class: the peer gets plain
//! data it can read without importing anything, and a struct comes back
//! from the same dict (or from a dataclass's state, see
//! [`from_value`]). Enums take serde's default
//! ("externally tagged") shape, the one serde_json gives them. A plain
//! `Vec<u8>` is a list of ints, because serde cannot tell it from any other
//! `Vec`: mark it `#[serde(with = "serde_bytes")]` for `bytes`.
//!
//! [`from_value`] reads them back, and more. Lenient:
//!
//! - a `tuple`, `list`, `set` or `frozenset` wherever a sequence or a tuple
//!   is expected (a `Vec`, a Rust tuple, a `HashSet`);
//! - an `int` (any size that fits) where an `f64`/`f32` is expected;
//! - `bytes` or `bytearray` where a `Vec<u8>` is expected (Python's bytes
//!   are a sequence of ints), and a list of ints where bytes are;
//! - a `tuple` or `list` for a struct (fields in order);
//! - an object for a struct or a map: its state, as a dataclass or a plain
//!   class instance pickles it (`__dict__`, or `(dict, slots)`), or, for a
//!   named tuple (created with arguments and no state), its arguments in
//!   order for a struct or a sequence.
//! - `builtins.list(x)`, `tuple(x)`, `set(x)` or `frozenset(x)` (an object
//!   that reduces itself to a built-in container, as a CPython manager
//!   sends a `dict_keys` view) wherever a sequence is expected.
//!
//! Strict: a `float` is not an integer, a `bool` is not an integer, a `str`
//! is not bytes (nor a sequence of chars), `None` is only `()`, `None` or
//! a missing `Option`. Enums take the shape [`to_value`]
//! gives them: `'Variant'` or `{'Variant': payload}`.
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

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
