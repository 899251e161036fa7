//! A serializer that writes nothing: it walks a value (for
//! [`fork_move`](crate::fork_move)) and keeps the text of the first error
//! raised inside it, which binary formats such as postcard drop
//! (`serde::ser::Error::custom` becomes a bare `SerdeSerCustom` there).

use std::fmt;

use serde::Serialize;
use serde::ser;

/// The error of a walk: the text given to `serde::ser::Error::custom`.
#[derive(Debug)]
pub(crate) struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> WalkError {
        WalkError(msg.to_string())
    }
}

/// Serializes `value` into nothing.
pub(crate) fn walk<T: Serialize + ?Sized>(value: &T) -> Result<(), WalkError> {
    value.serialize(Walk)
}

/// Serializes `value` into nothing and returns the text of the error its
/// `Serialize` impl raised, if it raised one: what to tell a user when a
/// format reports only that "a custom error" happened.
///
/// Run it where the failed serialization ran (inside the same
/// [`collect`](crate::collect) or [`collect_fds`](crate::collect_fds)
/// table, if any), so that the value fails the same way. `None` if the
/// walk succeeds: the format itself refused the value.
///
/// # Examples
///
/// ```
/// use std::os::fd::OwnedFd;
/// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
/// let fd = mp_reduction::Fd::from(OwnedFd::from(a));
/// // Outside `collect_fds`, an fd cannot be serialized; postcard says only
/// // `SerdeSerCustom`, the walk says why.
/// assert!(postcard::to_allocvec(&fd).is_err());
/// let why = mp_reduction::explain_serialize_error(&fd).unwrap();
/// assert!(why.contains("collect_fds"), "{why}");
/// # std::io::Result::Ok(())
/// ```
pub fn explain_serialize_error<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    walk(value).err().map(|e| e.0)
}

/// The serializer of [`walk`].
struct Walk;

impl ser::Serializer for Walk {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Walk;
    type SerializeTuple = Walk;
    type SerializeTupleStruct = Walk;
    type SerializeTupleVariant = Walk;
    type SerializeMap = Walk;
    type SerializeStruct = Walk;
    type SerializeStructVariant = Walk;

    fn serialize_bool(self, _: bool) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WalkError> {
        value.serialize(Walk)
    }
    fn serialize_unit(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(Walk)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(Walk)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn serialize_tuple(self, _: usize) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Walk, WalkError> {
        Ok(Walk)
    }
    fn is_human_readable(&self) -> bool {
        // As postcard: the values walked are the ones postcard encodes.
        false
    }
}

/// Every compound of [`Walk`]: each element is walked in turn.
macro_rules! walk_compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl ser::$trait for Walk {
            type Ok = ();
            type Error = WalkError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
                value.serialize(Walk)
            }
            fn end(self) -> Result<(), WalkError> {
                Ok(())
            }
        }
    )*};
}

walk_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Walk {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WalkError> {
        key.serialize(Walk)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(Walk)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

/// The named-field compounds of [`Walk`]: each field is walked in turn.
macro_rules! walk_fields {
    ($($trait:ident),* $(,)?) => {$(
        impl ser::$trait for Walk {
            type Ok = ();
            type Error = WalkError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), WalkError> {
                value.serialize(Walk)
            }
            fn end(self) -> Result<(), WalkError> {
                Ok(())
            }
        }
    )*};
}

walk_fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("refused on purpose"))
        }
    }

    #[test]
    fn keeps_the_text_of_a_nested_error() {
        let value = (1u8, vec![Some("a"), None], [(2u16, Refuses)]);
        assert_eq!(
            explain_serialize_error(&value).as_deref(),
            Some("refused on purpose")
        );
        assert_eq!(explain_serialize_error(&(1u8, "fine")), None);
    }
}
