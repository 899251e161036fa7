//! `Serialize`/`Deserialize` for [`Value`] itself: an explicit tagged
//! representation, so that a value travels in formats that do not describe
//! themselves (postcard, between Rust peers) and in those that do.
//!
//! The value is a newtype struct (named `$mp_value::Value`, which
//! [`to_value`](crate::to_value)/[`from_value`](crate::from_value)
//! recognise to hand the value through whole, identity kept) around an
//! enum `Value` with these variants, in this order (postcard writes the
//! index as a varint):
//!
//! | # | variant | payload |
//! |---|---|---|
//! | 0 | `None` | — |
//! | 1 | `Bool` | `bool` |
//! | 2 | `Int` | `i64` |
//! | 3 | `BigInt` | bytes: little-endian two's complement (pickle's `LONG`) |
//! | 4 | `Float` | `f64` |
//! | 5 | `Str` | `str` |
//! | 6 | `Bytes` | bytes |
//! | 7 | `ByteArray` | bytes |
//! | 8 | `List` | seq of values |
//! | 9 | `Tuple` | seq of values |
//! | 10 | `Dict` | seq of (key, value) |
//! | 11 | `Set` | seq of values |
//! | 12 | `FrozenSet` | seq of values |
//! | 13 | `Global` | (module, name) |
//! | 14 | `Object` | (constructor 0–4, callable, args, kwargs option, seq of ops) |
//!
//! An op is an enum: 0 `Append` (seq of values), 1 `SetItems` (seq of
//! pairs), 2 `Build` (a value); constructors are numbered as
//! [`Constructor`]'s variants. Shared sub-objects are written once per use
//! (the representation is a tree). Nesting is bounded by
//! [`MAX_SERDE_DEPTH`](crate::MAX_SERDE_DEPTH) both ways, so hostile input
//! cannot overflow the stack.

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::{self, SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::int::BigInt;
use crate::ser::PASSTHROUGH;
use crate::value::{
    Constructor, Dict, Global, List, Object, ObjectData, ObjectOp, Set, Tuple, Value,
};

const VARIANTS: &[&str] = &[
    "None",
    "Bool",
    "Int",
    "BigInt",
    "Float",
    "Str",
    "Bytes",
    "ByteArray",
    "List",
    "Tuple",
    "Dict",
    "Set",
    "FrozenSet",
    "Global",
    "Object",
];

const OPS: &[&str] = &["Append", "SetItems", "Build"];

/// A bound on the up-front allocation for a claimed length.
const PREALLOC: usize = 4096;

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::ser::offer(self);
        s.serialize_newtype_struct(PASSTHROUGH, &Tagged(self, 0))
    }
}

/// A value in its tagged form, at a nesting depth.
struct Tagged<'a>(&'a Value, usize);

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct Many<'a, I>(I, usize, std::marker::PhantomData<&'a ()>);

impl<'a, I: Iterator<Item = &'a Value> + Clone + ExactSizeIterator> Serialize for Many<'a, I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0.clone() {
            seq.serialize_element(&Tagged(v, self.1))?;
        }
        seq.end()
    }
}

struct PairsOf<'a, I>(I, usize, std::marker::PhantomData<&'a ()>);

impl<'a, I: Iterator<Item = (&'a Value, &'a Value)> + Clone> Serialize for PairsOf<'a, I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.clone().count()))?;
        for (k, v) in self.0.clone() {
            seq.serialize_element(&(Tagged(k, self.1), Tagged(v, self.1)))?;
        }
        seq.end()
    }
}

fn many<'a, I>(i: I, depth: usize) -> Many<'a, I> {
    Many(i, depth, std::marker::PhantomData)
}

fn pairs<'a, I>(i: I, depth: usize) -> PairsOf<'a, I> {
    PairsOf(i, depth, std::marker::PhantomData)
}

struct Op<'a>(&'a ObjectOp, usize);

impl Serialize for Op<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.1;
        match self.0 {
            ObjectOp::Append(items) => {
                s.serialize_newtype_variant("Op", 0, OPS[0], &many(items.iter(), d))
            }
            ObjectOp::SetItems(p) => s.serialize_newtype_variant(
                "Op",
                1,
                OPS[1],
                &pairs(p.iter().map(|(k, v)| (k, v)), d),
            ),
            ObjectOp::Build(state) => {
                s.serialize_newtype_variant("Op", 2, OPS[2], &Tagged(state, d))
            }
        }
    }
}

struct ObjectParts<'a>(&'a ObjectData, usize);

impl Serialize for ObjectParts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (o, d) = (self.0, self.1);
        let mut t = s.serialize_tuple(5)?;
        t.serialize_element(&(o.constructor as u8))?;
        t.serialize_element(&Tagged(&o.callable, d))?;
        t.serialize_element(&Tagged(&o.args, d))?;
        t.serialize_element(&o.kwargs.as_ref().map(|k| Tagged(k, d)))?;
        let ops: Vec<Op<'_>> = o.ops.iter().map(|op| Op(op, d)).collect();
        t.serialize_element(&ops)?;
        t.end()
    }
}

impl Serialize for Tagged<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.1 > crate::MAX_SERDE_DEPTH {
            return Err(ser::Error::custom(crate::Error::TooDeep));
        }
        let d = self.1 + 1;
        let nv = |i: u32| ("Value", i, VARIANTS[i as usize]);
        match self.0 {
            Value::None => s.serialize_unit_variant("Value", 0, VARIANTS[0]),
            Value::Bool(b) => {
                let (n, i, v) = nv(1);
                s.serialize_newtype_variant(n, i, v, b)
            }
            Value::Int(x) => {
                let (n, i, v) = nv(2);
                s.serialize_newtype_variant(n, i, v, x)
            }
            Value::BigInt(b) => {
                let (n, i, v) = nv(3);
                s.serialize_newtype_variant(n, i, v, &Bytes(&b.to_signed_bytes_le()))
            }
            Value::Float(x) => {
                let (n, i, v) = nv(4);
                s.serialize_newtype_variant(n, i, v, x)
            }
            Value::Str(x) => {
                let (n, i, v) = nv(5);
                s.serialize_newtype_variant(n, i, v, &**x)
            }
            Value::Bytes(x) => {
                let (n, i, v) = nv(6);
                s.serialize_newtype_variant(n, i, v, &Bytes(x))
            }
            Value::ByteArray(x) => {
                let (n, i, v) = nv(7);
                s.serialize_newtype_variant(n, i, v, &Bytes(x))
            }
            Value::List(l) => {
                let (n, i, v) = nv(8);
                s.serialize_newtype_variant(n, i, v, &many(l.iter(), d))
            }
            Value::Tuple(t) => {
                let (n, i, v) = nv(9);
                s.serialize_newtype_variant(n, i, v, &many(t.iter(), d))
            }
            Value::Dict(x) => {
                let (n, i, v) = nv(10);
                s.serialize_newtype_variant(n, i, v, &pairs(x.iter(), d))
            }
            Value::Set(x) => {
                let (n, i, v) = nv(11);
                s.serialize_newtype_variant(n, i, v, &members(x, d))
            }
            Value::FrozenSet(x) => {
                let (n, i, v) = nv(12);
                s.serialize_newtype_variant(n, i, v, &members(x, d))
            }
            Value::Global(g) => {
                let (n, i, v) = nv(13);
                s.serialize_newtype_variant(n, i, v, &(g.module(), g.name()))
            }
            Value::Object(o) => {
                let (n, i, v) = nv(14);
                s.serialize_newtype_variant(n, i, v, &ObjectParts(o.data(), d))
            }
        }
    }
}

struct Members<'a>(&'a Set, usize);

fn members(s: &Set, d: usize) -> Members<'_> {
    Members(s, d)
}

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0.iter() {
            seq.serialize_element(&Tagged(v, self.1))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_newtype_struct(PASSTHROUGH, Outer)
    }
}

struct Outer;

impl<'de> Visitor<'de> for Outer {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an mp_value::Value")
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if let Some(v) = crate::ser::SLOT.with(|s| s.borrow_mut().take()) {
            return Ok(v);
        }
        Seed(0).deserialize(d)
    }
}

/// Deserializes one tagged value at a depth.
#[derive(Clone, Copy)]
struct Seed(usize);

impl Seed {
    fn nested<E: de::Error>(self) -> Result<Seed, E> {
        if self.0 >= crate::MAX_SERDE_DEPTH {
            return Err(E::custom(crate::Error::TooDeep));
        }
        Ok(Seed(self.0 + 1))
    }
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_enum("Value", VARIANTS, self)
    }
}

/// A variant name or index.
struct Tag(usize);

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tag, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Tag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variant of mp_value::Value")
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<Tag, E> {
                match usize::try_from(i) {
                    Ok(i) if i < VARIANTS.len() => Ok(Tag(i)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(i), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Tag, E> {
                VARIANTS
                    .iter()
                    .position(|v| *v == s)
                    .map(Tag)
                    .ok_or_else(|| E::unknown_variant(s, VARIANTS))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A byte string, borrowed or owned.
struct ByteVec(Vec<u8>);

impl<'de> Deserialize<'de> for ByteVec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteVec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteVec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<ByteVec, E> {
                Ok(ByteVec(b.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<ByteVec, E> {
                Ok(ByteVec(b))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<ByteVec, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(PREALLOC));
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteVec(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A seq of values at a depth.
struct ValuesSeed(Seed);

impl<'de> DeserializeSeed<'de> for ValuesSeed {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed {
    type Value = Vec<Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(PREALLOC));
        while let Some(v) = a.next_element_seed(self.0)? {
            out.push(v);
        }
        Ok(out)
    }
}

/// A seq of (key, value) pairs at a depth.
struct PairsSeed(Seed);

impl<'de> DeserializeSeed<'de> for PairsSeed {
    type Value = Vec<(Value, Value)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PairsSeed {
    type Value = Vec<(Value, Value)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of (key, value) pairs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(PREALLOC));
        while let Some(p) = a.next_element_seed(PairSeed(self.0))? {
            out.push(p);
        }
        Ok(out)
    }
}

struct PairSeed(Seed);

impl<'de> DeserializeSeed<'de> for PairSeed {
    type Value = (Value, Value);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de> Visitor<'de> for PairSeed {
    type Value = (Value, Value);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a (key, value) pair")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let k = a
            .next_element_seed(self.0)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let v = a
            .next_element_seed(self.0)?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok((k, v))
    }
}

fn set_of<E: de::Error>(items: Vec<Value>) -> Result<Set, E> {
    Set::from_values(items).map_err(E::custom)
}

impl<'de> Visitor<'de> for Seed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tagged mp_value::Value")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<Value, A::Error> {
        let (Tag(tag), v) = a.variant::<Tag>()?;
        let inner = self.nested()?;
        Ok(match tag {
            0 => {
                v.unit_variant()?;
                Value::None
            }
            1 => Value::Bool(v.newtype_variant()?),
            2 => Value::Int(v.newtype_variant()?),
            3 => Value::int(BigInt::from_signed_bytes_le(
                &v.newtype_variant::<ByteVec>()?.0,
            )),
            4 => Value::Float(v.newtype_variant()?),
            5 => Value::Str(v.newtype_variant::<String>()?.into()),
            6 => Value::Bytes(v.newtype_variant::<ByteVec>()?.0.into()),
            7 => Value::ByteArray(v.newtype_variant::<ByteVec>()?.0.into()),
            8 => Value::List(List::from(v.newtype_variant_seed(ValuesSeed(inner))?)),
            9 => Value::Tuple(Tuple::from(v.newtype_variant_seed(ValuesSeed(inner))?)),
            10 => {
                let p = v.newtype_variant_seed(PairsSeed(inner))?;
                Value::Dict(Dict::from_pairs(p).map_err(de::Error::custom)?)
            }
            11 => Value::Set(set_of(v.newtype_variant_seed(ValuesSeed(inner))?)?),
            12 => Value::FrozenSet(set_of(v.newtype_variant_seed(ValuesSeed(inner))?)?),
            13 => {
                let (m, n): (String, String) = v.newtype_variant()?;
                Value::Global(Global::new(m, n))
            }
            _ => Value::Object(v.newtype_variant_seed(ObjectSeed(inner))?),
        })
    }
}

struct ObjectSeed(Seed);

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Object;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Object, D::Error> {
        d.deserialize_tuple(5, self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = Object;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object: (constructor, callable, args, kwargs, ops)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Object, A::Error> {
        let missing = |i| de::Error::invalid_length(i, &"5 parts");
        let c: u8 = a.next_element()?.ok_or_else(|| missing(0))?;
        let constructor = match c {
            0 => Constructor::Reduce,
            1 => Constructor::NewObj,
            2 => Constructor::NewObjEx,
            3 => Constructor::Inst,
            4 => Constructor::Obj,
            _ => {
                return Err(de::Error::invalid_value(
                    de::Unexpected::Unsigned(u64::from(c)),
                    &"a constructor 0..=4",
                ));
            }
        };
        let callable = a.next_element_seed(self.0)?.ok_or_else(|| missing(1))?;
        let args = a.next_element_seed(self.0)?.ok_or_else(|| missing(2))?;
        let kwargs = a
            .next_element_seed(OptionSeed(self.0))?
            .ok_or_else(|| missing(3))?;
        let ops = a
            .next_element_seed(OpsSeed(self.0))?
            .ok_or_else(|| missing(4))?;
        Ok(Object::from(ObjectData {
            constructor,
            callable,
            args,
            kwargs,
            ops,
        }))
    }
}

struct OptionSeed(Seed);

impl<'de> DeserializeSeed<'de> for OptionSeed {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionSeed {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an optional value")
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

struct OpsSeed(Seed);

impl<'de> DeserializeSeed<'de> for OpsSeed {
    type Value = Vec<ObjectOp>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<ObjectOp>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for OpsSeed {
    type Value = Vec<ObjectOp>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of object steps")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<ObjectOp>, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(PREALLOC));
        while let Some(op) = a.next_element_seed(OpSeed(self.0))? {
            out.push(op);
        }
        Ok(out)
    }
}

struct OpSeed(Seed);

impl<'de> DeserializeSeed<'de> for OpSeed {
    type Value = ObjectOp;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ObjectOp, D::Error> {
        d.deserialize_enum("Op", OPS, self)
    }
}

struct OpTag(usize);

impl<'de> Deserialize<'de> for OpTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OpTag, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OpTag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object step")
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<OpTag, E> {
                match i {
                    0..=2 => Ok(OpTag(i as usize)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(i), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OpTag, E> {
                OPS.iter()
                    .position(|v| *v == s)
                    .map(OpTag)
                    .ok_or_else(|| E::unknown_variant(s, OPS))
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Visitor<'de> for OpSeed {
    type Value = ObjectOp;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object step")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<ObjectOp, A::Error> {
        let (OpTag(tag), v) = a.variant::<OpTag>()?;
        Ok(match tag {
            0 => ObjectOp::Append(v.newtype_variant_seed(ValuesSeed(self.0))?),
            1 => ObjectOp::SetItems(v.newtype_variant_seed(PairsSeed(self.0))?),
            _ => ObjectOp::Build(v.newtype_variant_seed(self.0)?),
        })
    }
}
