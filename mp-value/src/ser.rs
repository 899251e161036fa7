//! [`to_value`]: any `Serialize` type into a [`Value`], the way a Python
//! programmer would write it down.
//!
//! The mapping is in the crate docs (`# The serde mapping`).

use std::cell::{Cell, RefCell};

use serde::ser::{self, Serialize};

use crate::error::Error;
use crate::value::{Dict, List, Tuple, Value};

/// The newtype-struct name through which a [`Value`] inside a serialized
/// type reaches [`to_value`] (and [`from_value`](crate::from_value)) whole:
/// other formats see an ordinary newtype around the tagged form.
pub(crate) const PASSTHROUGH: &str = "$mp_value::Value";

thread_local! {
    /// Set while `to_value` runs on this thread.
    static IN_TO_VALUE: Cell<bool> = const { Cell::new(false) };
    /// The value being handed through `PASSTHROUGH`.
    pub(crate) static SLOT: RefCell<Option<Value>> = const { RefCell::new(None) };
}

/// Hands `value` to [`to_value`] whole, if it is running; returns whether
/// it is (else the caller serializes the tagged form).
pub(crate) fn offer(value: &Value) -> bool {
    if IN_TO_VALUE.get() {
        SLOT.with(|s| *s.borrow_mut() = Some(value.clone()));
        true
    } else {
        false
    }
}

/// Whether [`to_value`] is running on this thread: a `Serialize` impl can
/// tell that it is being turned into a [`Value`] (which stays in this
/// process) rather than into bytes (which may travel to another).
///
/// # Examples
///
/// ```
/// struct Probe;
/// impl serde::Serialize for Probe {
///     fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
///         s.serialize_bool(mp_value::in_to_value())
///     }
/// }
/// assert_eq!(mp_value::to_value(&Probe)?, mp_value::Value::Bool(true));
/// assert_eq!(postcard::to_allocvec(&Probe).unwrap(), [0]);
/// # Ok::<(), mp_value::Error>(())
/// ```
pub fn in_to_value() -> bool {
    IN_TO_VALUE.get()
}

struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        IN_TO_VALUE.set(self.0);
    }
}

/// Converts `value` into a [`Value`] (the mapping is in the table of
/// [the crate docs](crate#the-serde-mapping)).
///
/// # Errors
///
/// [`Error::Unhashable`] for a map key Python could not hash (a list, a
/// dict); [`Error::TooDeep`] past [`MAX_SERDE_DEPTH`](crate::MAX_SERDE_DEPTH)
/// nested containers; [`Error::Message`] for an error of the type's own
/// `Serialize`.
///
/// # Examples
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Point { x: i32, y: f64 }
/// let v = mp_value::to_value(&(Point { x: 1, y: 2.5 }, Some("a"), None::<u8>))?;
/// assert_eq!(v.to_string(), "({'x': 1, 'y': 2.5}, 'a', None)");
/// # Ok::<(), mp_value::Error>(())
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    let _restore = Restore(IN_TO_VALUE.replace(true));
    value.serialize(ValueSerializer { depth: 0 })
}

#[derive(Clone, Copy)]
struct ValueSerializer {
    depth: usize,
}

impl ValueSerializer {
    fn nested(self) -> Result<ValueSerializer, Error> {
        if self.depth >= crate::MAX_SERDE_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(ValueSerializer {
            depth: self.depth + 1,
        })
    }
}

fn variant_dict(variant: &'static str, payload: Value) -> Result<Value, Error> {
    Ok(Value::Dict(Dict::from_pairs([(variant, payload)])?))
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Seq;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Map;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_i128(self, v: i128) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_u128(self, v: u128) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::Str(v.to_string().into()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        Ok(v.into())
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::None)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, Error> {
        Ok(Value::None)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(variant.into())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        if name == PASSTHROUGH
            && let Some(v) = SLOT.with(|s| s.borrow_mut().take())
        {
            return Ok(v);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        variant_dict(variant, value.serialize(self.nested()?)?)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Seq::new(self, len, SeqKind::List)
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
        Seq::new(self, Some(len), SeqKind::Tuple)
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, Error> {
        Seq::new(self, Some(len), SeqKind::Tuple)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq, Error> {
        Seq::new(self, Some(len), SeqKind::Variant(variant))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map, Error> {
        Map::new(self, len, None)
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Map, Error> {
        Map::new(self, Some(len), None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Map, Error> {
        Map::new(self, Some(len), Some(variant))
    }
}

enum SeqKind {
    List,
    Tuple,
    Variant(&'static str),
}

/// A list, tuple or tuple variant being built.
pub(crate) struct Seq {
    inner: ValueSerializer,
    items: Vec<Value>,
    kind: SeqKind,
}

impl Seq {
    fn new(outer: ValueSerializer, len: Option<usize>, kind: SeqKind) -> Result<Seq, Error> {
        Ok(Seq {
            inner: outer.nested()?,
            // A hint, bounded: a Serialize impl may claim any length.
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            kind,
        })
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.items.push(value.serialize(self.inner)?);
        Ok(())
    }

    fn finish(self) -> Result<Value, Error> {
        match self.kind {
            SeqKind::List => Ok(Value::List(List::from(self.items))),
            SeqKind::Tuple => Ok(Value::Tuple(Tuple::from(self.items))),
            SeqKind::Variant(v) => variant_dict(v, Value::Tuple(Tuple::from(self.items))),
        }
    }
}

macro_rules! seq_impls {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq {
            type Ok = Value;
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.push(value)
            }
            fn end(self) -> Result<Value, Error> {
                self.finish()
            }
        }
    )*};
}

seq_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A dict, struct or struct variant being built.
pub(crate) struct Map {
    inner: ValueSerializer,
    dict: Dict,
    key: Option<Value>,
    variant: Option<&'static str>,
}

impl Map {
    fn new(
        outer: ValueSerializer,
        len: Option<usize>,
        variant: Option<&'static str>,
    ) -> Result<Map, Error> {
        Ok(Map {
            inner: outer.nested()?,
            dict: Dict::with_capacity(len.unwrap_or(0).min(4096)),
            key: None,
            variant,
        })
    }

    fn finish(self) -> Result<Value, Error> {
        match self.variant {
            None => Ok(Value::Dict(self.dict)),
            Some(v) => variant_dict(v, Value::Dict(self.dict)),
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        let v = value.serialize(self.inner)?;
        self.dict.insert(key, v)?;
        Ok(())
    }
}

impl ser::SerializeMap for Map {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(self.inner)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("map value without a key"))?;
        let v = value.serialize(self.inner)?;
        self.dict.insert(key, v)?;
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        self.finish()
    }
}

macro_rules! struct_impls {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Map {
            type Ok = Value;
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(key, value)
            }
            fn end(self) -> Result<Value, Error> {
                self.finish()
            }
        }
    )*};
}

struct_impls!(SerializeStruct, SerializeStructVariant);
