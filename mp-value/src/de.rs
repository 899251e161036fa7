//! [`from_value`]: a [`Value`] into any `Deserialize` type, lenient where
//! Python is and strict (with serde's message) everywhere else.
//!
//! What is accepted is in the crate docs (`# The serde mapping`).

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::error::Error;
use crate::ser::{PASSTHROUGH, SLOT};
use crate::value::{Constructor, Dict, Object, Value};

/// Converts `value` into a `T` (what is accepted is in [the crate
/// docs](crate#the-serde-mapping)). `T` may borrow strings and bytes from `value`.
///
/// # Errors
///
/// [`Error::Message`] when the value does not fit `T` (serde's words:
/// "invalid type: string \"a\", expected i32"); [`Error::TooDeep`] past
/// [`MAX_SERDE_DEPTH`](crate::MAX_SERDE_DEPTH) nested containers.
///
/// # Examples
///
/// ```
/// use mp_value::{Value, from_value};
/// let v = Value::from((1, 2.5, "x"));
/// let (a, b, c): (u8, f64, String) = from_value(&v)?;
/// assert_eq!((a, b, c.as_str()), (1, 2.5, "x"));
/// // A tuple where a Vec is expected, an int where a float is.
/// let xs: Vec<f64> = from_value(&Value::from((1, 2.5)))?;
/// assert_eq!(xs, [1.0, 2.5]);
/// assert!(from_value::<u8>(&Value::from(300)).is_err());
/// # Ok::<(), mp_value::Error>(())
/// ```
pub fn from_value<'a, T: de::Deserialize<'a>>(value: &'a Value) -> Result<T, Error> {
    T::deserialize(Deser { v: value, depth: 0 })
}

#[derive(Clone, Copy)]
struct Deser<'de> {
    v: &'de Value,
    depth: usize,
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    use de::Unexpected as U;
    match v {
        Value::None => U::Option,
        Value::Bool(b) => U::Bool(*b),
        Value::Int(i) => U::Signed(*i),
        Value::Float(f) => U::Float(*f),
        Value::Str(s) => U::Str(s),
        Value::Bytes(b) => U::Bytes(b),
        Value::ByteArray(b) => U::Bytes(b),
        Value::List(_) | Value::Tuple(_) | Value::Set(_) | Value::FrozenSet(_) => U::Seq,
        Value::Dict(_) => U::Map,
        Value::BigInt(_) => U::Other("integer beyond 128 bits"),
        Value::Global(_) => U::Other("class or function reference"),
        Value::Object(_) => U::Other("object"),
    }
}

/// The items of `builtins.list(x)`, `tuple(x)`, `set(x)` or
/// `frozenset(x)` (or of the empty call): how CPython pickles a value that
/// reduces itself to a built-in container, such as the `dict_keys` view a
/// manager sends back (`multiprocessing.managers.rebuild_as_list`).
fn container_reduction(o: &Object) -> Option<Items<'_>> {
    if !o.ops().is_empty() || o.constructor() != Constructor::Reduce {
        return None;
    }
    let g = o.global()?;
    if g.module() != "builtins" || !matches!(g.name(), "list" | "tuple" | "set" | "frozenset") {
        return None;
    }
    let Value::Tuple(args) = o.args() else {
        return None;
    };
    match &args[..] {
        [] => Some(Items::Values(args.iter())),
        [Value::List(l)] => Some(Items::Values(l.iter())),
        [Value::Tuple(t)] => Some(Items::Values(t.iter())),
        [Value::Set(s) | Value::FrozenSet(s)] => Some(Items::Members(Box::new(s.iter()))),
        _ => None,
    }
}

impl<'de> Deser<'de> {
    fn child(&self, v: &'de Value) -> Result<Deser<'de>, Error> {
        if self.depth >= crate::MAX_SERDE_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(Deser {
            v,
            depth: self.depth + 1,
        })
    }

    fn invalid<T>(&self, exp: &dyn de::Expected) -> Result<T, Error> {
        Err(de::Error::invalid_type(unexpected(self.v), exp))
    }

    fn seq_items(&self) -> Option<Items<'de>> {
        Some(match self.v {
            Value::List(l) => Items::Values(l.iter()),
            Value::Tuple(t) => Items::Values(t.iter()),
            Value::Set(s) | Value::FrozenSet(s) => Items::Members(Box::new(s.iter())),
            Value::Bytes(b) => Items::Bytes(b.iter()),
            Value::ByteArray(b) => Items::Bytes(b.iter()),
            Value::Object(o) if o.ops().is_empty() && o.constructor() == Constructor::NewObj => {
                match o.args() {
                    Value::Tuple(t) => Items::Values(t.iter()),
                    _ => return None,
                }
            }
            Value::Object(o) => return container_reduction(o),
            _ => return None,
        })
    }

    fn visit_seq<V: Visitor<'de>>(&self, items: Items<'de>, visitor: V) -> Result<V::Value, Error> {
        let mut access = SeqAccess {
            items,
            outer: *self,
        };
        let out = visitor.visit_seq(&mut access)?;
        match access.items.next() {
            None => Ok(out),
            Some(_) => Err(de::Error::custom(
                "too many items for the expected sequence",
            )),
        }
    }

    /// The dict a struct or a map is read from: a dict, or an object's
    /// `__dict__`/slots state.
    fn map_entries(&self) -> Option<Entries<'de>> {
        match self.v {
            Value::Dict(d) => Some(Entries::one(d)),
            Value::Object(o) => match o.state()? {
                Value::Dict(d) => Some(Entries::one(d)),
                // (dict or None, slots dict): both, __dict__ first.
                Value::Tuple(t) if t.len() == 2 => {
                    let part = |v: &'de Value| match v {
                        Value::Dict(d) => Some(Some(d)),
                        Value::None => Some(None),
                        _ => None,
                    };
                    Some(Entries {
                        first: part(&t[0])?.map(|d| Box::new(d.iter()) as Box<_>),
                        second: part(&t[1])?.map(|d| Box::new(d.iter()) as Box<_>),
                        value: None,
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn visit_map<V: Visitor<'de>>(
        &self,
        entries: Entries<'de>,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(MapAccess {
            entries,
            outer: *self,
        })
    }
}

enum Items<'de> {
    Values(std::slice::Iter<'de, Value>),
    Members(Box<dyn Iterator<Item = &'de Value> + 'de>),
    Bytes(std::slice::Iter<'de, u8>),
}

enum Item<'de> {
    Value(&'de Value),
    Byte(u8),
}

impl<'de> Iterator for Items<'de> {
    type Item = Item<'de>;
    fn next(&mut self) -> Option<Item<'de>> {
        match self {
            Items::Values(i) => i.next().map(Item::Value),
            Items::Members(i) => i.next().map(Item::Value),
            Items::Bytes(i) => i.next().map(|b| Item::Byte(*b)),
        }
    }
}

struct SeqAccess<'de> {
    items: Items<'de>,
    outer: Deser<'de>,
}

impl<'de> de::SeqAccess<'de> for &mut SeqAccess<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            Some(Item::Value(v)) => seed.deserialize(self.outer.child(v)?).map(Some),
            Some(Item::Byte(b)) => seed.deserialize(b.into_deserializer()).map(Some),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        match &self.items {
            Items::Values(i) => Some(i.len()),
            Items::Bytes(i) => Some(i.len()),
            Items::Members(_) => None,
        }
    }
}

type Pairs<'de> = Box<dyn Iterator<Item = (&'de Value, &'de Value)> + 'de>;

struct Entries<'de> {
    first: Option<Pairs<'de>>,
    second: Option<Pairs<'de>>,
    value: Option<&'de Value>,
}

impl<'de> Entries<'de> {
    fn one(d: &'de Dict) -> Entries<'de> {
        Entries {
            first: Some(Box::new(d.iter())),
            second: None,
            value: None,
        }
    }

    fn next(&mut self) -> Option<(&'de Value, &'de Value)> {
        if let Some(first) = &mut self.first {
            if let Some(kv) = first.next() {
                return Some(kv);
            }
            self.first = None;
        }
        self.second.as_mut()?.next()
    }
}

struct MapAccess<'de> {
    entries: Entries<'de>,
    outer: Deser<'de>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.entries.value = Some(v);
                seed.deserialize(self.outer.child(k)?).map(Some)
            }
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .entries
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("map value asked before its key"))?;
        seed.deserialize(self.outer.child(v)?)
    }
}

impl<'de> de::Deserializer<'de> for Deser<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            // The narrowest visit that holds it: serde's u64 visitor takes
            // visit_u64, not visit_i128.
            Value::BigInt(b) => match (b.to_i128(), b.to_u128()) {
                (_, Some(u)) if u <= u128::from(u64::MAX) => visitor.visit_u64(u as u64),
                (Some(i), _) if i64::try_from(i).is_ok() => visitor.visit_i64(i as i64),
                (Some(i), _) => visitor.visit_i128(i),
                (_, Some(u)) => visitor.visit_u128(u),
                _ => self.invalid(&visitor),
            },
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Value::ByteArray(b) => visitor.visit_borrowed_bytes(b),
            Value::List(_) | Value::Tuple(_) | Value::Set(_) | Value::FrozenSet(_) => {
                let items = self.seq_items().expect("sequences have items");
                self.visit_seq(items, visitor)
            }
            Value::Dict(d) => self.visit_map(Entries::one(d), visitor),
            Value::Object(o) => match container_reduction(o) {
                Some(items) => self.visit_seq(items, visitor),
                None => self.invalid(&visitor),
            },
            Value::Global(_) => self.invalid(&visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Bool(b) => visitor.visit_bool(*b),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Int(i) => visitor.visit_f64(*i as f64),
            Value::BigInt(b) => match b.to_f64() {
                Some(f) => visitor.visit_f64(f),
                None => Err(de::Error::custom("int too large to convert to float")),
            },
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            Value::ByteArray(b) => visitor.visit_borrowed_bytes(b),
            Value::List(_) | Value::Tuple(_) => {
                let items = self.seq_items().expect("sequences have items");
                self.visit_seq(items, visitor)
            }
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::None => visitor.visit_none(),
            // Counted as a level: `struct N(Option<Box<N>>)` would otherwise
            // recurse on one value forever.
            _ => visitor.visit_some(self.child(self.v)?),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::None => visitor.visit_unit(),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == PASSTHROUGH {
            // `Value`'s own Deserialize takes this whole, identity kept.
            SLOT.with(|s| *s.borrow_mut() = Some(self.v.clone()));
            let out = visitor.visit_newtype_struct(self);
            SLOT.with(|s| s.borrow_mut().take());
            return out;
        }
        visitor.visit_newtype_struct(self.child(self.v)?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.seq_items() {
            Some(items) => self.visit_seq(items, visitor),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.map_entries() {
            Some(entries) => self.visit_map(entries, visitor),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if let Some(entries) = self.map_entries() {
            return self.visit_map(entries, visitor);
        }
        match self.v {
            Value::List(_) | Value::Tuple(_) | Value::Object(_) => self.deserialize_seq(visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.v {
            Value::Str(s) => visitor.visit_enum(Enum {
                variant: s,
                payload: None,
            }),
            Value::Dict(d) if d.len() == 1 => {
                let (k, payload) = d.iter().next().expect("one entry");
                match k {
                    Value::Str(s) => visitor.visit_enum(Enum {
                        variant: s,
                        payload: Some(self.child(payload)?),
                    }),
                    _ => Err(de::Error::custom(
                        "an enum variant's dict needs a str key (the variant's name)",
                    )),
                }
            }
            _ => Err(de::Error::custom(format_args!(
                "expected an enum variant: 'Name' or {{'Name': payload}}, found {}",
                self.v.type_name()
            ))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128
    }
}

struct Enum<'de> {
    variant: &'de str,
    payload: Option<Deser<'de>>,
}

impl<'de> de::EnumAccess<'de> for Enum<'de> {
    type Error = Error;
    type Variant = Variant<'de>;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Variant<'de>), Error> {
        let name: de::value::BorrowedStrDeserializer<'de, Error> =
            de::value::BorrowedStrDeserializer::new(self.variant);
        let v = seed.deserialize(name)?;
        Ok((v, Variant(self.payload)))
    }
}

struct Variant<'de>(Option<Deser<'de>>);

impl<'de> de::VariantAccess<'de> for Variant<'de> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            None => Ok(()),
            Some(d) if d.v.is_none() => Ok(()),
            Some(_) => Err(de::Error::custom("a unit variant takes no payload")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self.0 {
            Some(d) => seed.deserialize(d),
            None => Err(de::Error::custom(
                "this variant needs a payload: {'Name': payload}",
            )),
        }
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Some(d) => de::Deserializer::deserialize_tuple(d, len, visitor),
            None => Err(de::Error::custom(
                "this variant needs a tuple: {'Name': (…)}",
            )),
        }
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Some(d) => de::Deserializer::deserialize_struct(d, "", fields, visitor),
            None => Err(de::Error::custom(
                "this variant needs fields: {'Name': {…}}",
            )),
        }
    }
}
