//! A deserializer wrapper that keeps the text of custom errors.
//!
//! postcard turns every `serde::de::Error::custom(msg)` into a bare
//! `SerdeDeCustom`, dropping `msg`: "fd slot 3 out of range", "invalid
//! value: integer 7, expected variant index 0 <= i < 3" and every message of
//! a user's `Deserialize` impl would reach the user as "Serde
//! Deserialization Error". [`Keep`] wraps postcard's deserializer and every
//! visitor, seed and access object that passes through it, so that the
//! value's impls see an error type of ours whose `custom` keeps the text;
//! where an error has to cross back into postcard's type, the text is left
//! in a [`Track`] beside it (the approach of `serde_path_to_error`).

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// The text of the last custom error that had to cross into the format's
/// own error type.
pub(crate) type Track = RefCell<Option<String>>;

/// The error the value's impls see: a custom message, or the format's error.
#[derive(Debug)]
pub(crate) enum Kept<E> {
    Custom(String),
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for Kept<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kept::Custom(msg) => f.write_str(msg),
            Kept::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Kept<E> {}

impl<E: de::Error> de::Error for Kept<E> {
    fn custom<T: fmt::Display>(msg: T) -> Kept<E> {
        Kept::Custom(msg.to_string())
    }
}

impl<E: de::Error> Kept<E> {
    /// Back into the format's error type; a custom message is left in
    /// `track`.
    fn into_inner(self, track: &Track) -> E {
        match self {
            Kept::Custom(msg) => {
                let e = E::custom(&msg);
                *track.borrow_mut() = Some(msg);
                e
            }
            Kept::Inner(e) => e,
        }
    }
}

/// A deserializer whose error keeps custom messages.
pub(crate) struct Keep<'t, D> {
    pub(crate) de: D,
    pub(crate) track: &'t Track,
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            let track = self.track;
            self.de
                .$method($($arg,)* Wrap { inner: visitor, track })
                .map_err(Kept::Inner)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Keep<'_, D> {
    type Error = Kept<D::Error>;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// A visitor that hands the wrapped visitor errors of our type.
struct Wrap<'t, V> {
    inner: V,
    track: &'t Track,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method::<Kept<E>>(v).map_err(|e| e.into_inner(self.track))
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_none::<Kept<E>>()
            .map_err(|e| e.into_inner(self.track))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_unit::<Kept<E>>()
            .map_err(|e| e.into_inner(self.track))
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let track = self.track;
        self.inner
            .visit_some(Keep { de, track })
            .map_err(|e| e.into_inner(track))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let track = self.track;
        self.inner
            .visit_newtype_struct(Keep { de, track })
            .map_err(|e| e.into_inner(track))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let track = self.track;
        self.inner
            .visit_seq(Access { inner: seq, track })
            .map_err(|e| e.into_inner(track))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let track = self.track;
        self.inner
            .visit_map(Access { inner: map, track })
            .map_err(|e| e.into_inner(track))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let track = self.track;
        self.inner
            .visit_enum(Access { inner: data, track })
            .map_err(|e| e.into_inner(track))
    }
}

/// A seed whose deserializer is wrapped in [`Keep`].
struct Seed<'t, S> {
    inner: S,
    track: &'t Track,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let track = self.track;
        self.inner
            .deserialize(Keep { de, track })
            .map_err(|e| e.into_inner(track))
    }
}

/// A sequence, map, enum or variant access whose seeds and visitors are
/// wrapped.
struct Access<'t, A> {
    inner: A,
    track: &'t Track,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = Kept<A::Error>;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let track = self.track;
        self.inner
            .next_element_seed(Seed { inner: seed, track })
            .map_err(Kept::Inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = Kept<A::Error>;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let track = self.track;
        self.inner
            .next_key_seed(Seed { inner: seed, track })
            .map_err(Kept::Inner)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let track = self.track;
        self.inner
            .next_value_seed(Seed { inner: seed, track })
            .map_err(Kept::Inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 't, A: EnumAccess<'de>> EnumAccess<'de> for Access<'t, A> {
    type Error = Kept<A::Error>;
    type Variant = Access<'t, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let track = self.track;
        self.inner
            .variant_seed(Seed { inner: seed, track })
            .map(|(value, variant)| {
                (
                    value,
                    Access {
                        inner: variant,
                        track,
                    },
                )
            })
            .map_err(Kept::Inner)
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = Kept<A::Error>;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant().map_err(Kept::Inner)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let track = self.track;
        self.inner
            .newtype_variant_seed(Seed { inner: seed, track })
            .map_err(Kept::Inner)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let track = self.track;
        self.inner
            .tuple_variant(
                len,
                Wrap {
                    inner: visitor,
                    track,
                },
            )
            .map_err(Kept::Inner)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let track = self.track;
        self.inner
            .struct_variant(
                fields,
                Wrap {
                    inner: visitor,
                    track,
                },
            )
            .map_err(Kept::Inner)
    }
}
