//! Typed messages: postcard bytes, the fds that travel beside them, and
//! errors that keep serde's explanation.

use std::fmt;
use std::os::fd::OwnedFd;

use mp_reduction::Handoffs;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, SerdeError};
use crate::keep::{Keep, Track};

/// Bytes kept free in front of an encoded payload, so that the longest
/// header (12 bytes) fits there and header and payload go out as one
/// contiguous buffer.
pub(crate) const HEADER_ROOM: usize = 12;

/// A value encoded for a connection: its postcard bytes and the fds that
/// travel beside them (a [`Connection`](crate::Connection), a
/// `mp_heap::SharedBuffer`, an `mp_reduction::Fd`, ... inside the value).
///
/// [`Connection::send`](crate::Connection::send) is
/// `send_parcel(Parcel::encode(value)?)`; the parcel lets a caller encode
/// now and send later (a queue's feeder thread), or receive under a lock
/// and decode afterwards ([`Connection::recv_parcel`](crate::Connection::recv_parcel),
/// [`decode`](Parcel::decode)).
///
/// Encoding duplicates the value's fds (the value keeps its own). A value
/// that hands state over to its copy (a connection's read-ahead bytes)
/// gives it up when the parcel is delivered: when
/// [`send_parcel`](crate::Connection::send_parcel) succeeds, or when the
/// caller that moved [`bytes`](Parcel::bytes) and [`fds`](Parcel::fds)
/// itself calls [`delivered`](Parcel::delivered). A parcel dropped
/// undelivered leaves every value as it was.
///
/// # Examples
///
/// ```
/// use mp_conn::Parcel;
/// let (mut a, b) = mp_conn::pipe(true)?;
/// let (x, y) = mp_conn::pipe(true)?;
/// let parcel = Parcel::encode(&("an end", x))?;
/// assert_eq!(parcel.fds().len(), 1);
/// b.send_parcel(parcel)?;
/// let (text, mut x): (String, mp_conn::Connection) = a.recv_parcel()?.decode()?;
/// y.send_bytes(b"through the passed end")?;
/// assert_eq!((text.as_str(), x.recv_bytes()?), ("an end", b"through the passed end".to_vec()));
/// # Ok::<(), mp_conn::Error>(())
/// ```
pub struct Parcel {
    /// `buf[start..]` is the payload; `start` is [`HEADER_ROOM`] for an
    /// encoded parcel, 0 for a received one.
    buf: Vec<u8>,
    start: usize,
    fds: Vec<OwnedFd>,
    handoffs: Handoffs,
    /// The encoded value's type (for error messages); `None` if received.
    type_name: Option<&'static str>,
}

impl fmt::Debug for Parcel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parcel")
            .field("type_name", &self.type_name)
            .field("len", &self.bytes().len())
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl Parcel {
    /// Encodes `value` with postcard; its fds are duplicated into the
    /// parcel (through `mp_reduction::collect`).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] with serde's explanation and the type's name.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Parcel> {
        let (buf, collected) =
            mp_reduction::collect(|| postcard::to_extend(value, vec![0u8; HEADER_ROOM]));
        let buf = buf.map_err(|e| Error::Encode(encode_error(value, e)))?;
        let (fds, handoffs) = collected.into_parts();
        Ok(Parcel {
            buf,
            start: HEADER_ROOM,
            fds,
            handoffs,
            type_name: Some(std::any::type_name::<T>()),
        })
    }

    /// A parcel of bytes and fds that arrived some other way, to
    /// [`decode`](Parcel::decode) (or forward).
    pub fn from_parts(bytes: Vec<u8>, fds: Vec<OwnedFd>) -> Parcel {
        Parcel {
            buf: bytes,
            start: 0,
            fds,
            handoffs: Handoffs::default(),
            type_name: None,
        }
    }

    /// The payload: the value's postcard bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The fds that travel beside the bytes, in `mp_reduction::FdSlot`
    /// order.
    pub fn fds(&self) -> &[OwnedFd] {
        &self.fds
    }

    /// The encoded value's type name (`std::any::type_name`); `None` for a
    /// received parcel.
    pub fn type_name(&self) -> Option<&'static str> {
        self.type_name
    }

    /// Tells the encoded values that their copy arrived: call it after
    /// moving [`bytes`](Parcel::bytes) and [`fds`](Parcel::fds) to the
    /// other process yourself ([`send_parcel`](crate::Connection::send_parcel)
    /// does it for you). A connection inside the value then gives up the
    /// read-ahead bytes that travelled with its copy.
    pub fn delivered(self) {
        self.handoffs.delivered();
    }

    /// Decodes the value; fds that no part of it claims are closed.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] with serde's explanation (including trailing
    /// bytes after the value, or an fd slot that the fds do not back).
    pub fn decode<T: DeserializeOwned>(self) -> Result<T> {
        decode(&self.buf[self.start..], self.fds)
    }

    /// The parts [`Connection::send_parcel`](crate::Connection::send_parcel)
    /// needs: the buffer, where the payload starts, the fds, the handoffs
    /// and the type name.
    pub(crate) fn into_send_parts(
        self,
    ) -> (Vec<u8>, usize, Vec<OwnedFd>, Handoffs, Option<&'static str>) {
        (
            self.buf,
            self.start,
            self.fds,
            self.handoffs,
            self.type_name,
        )
    }
}

/// The [`SerdeError`] of a failed encoding of `value`. postcard reduces
/// `serde::ser::Error::custom(msg)` to `SerdeSerCustom`; walking the value
/// again (in a table of its own, so that it fails as it did, and its
/// handoffs are dropped) recovers `msg`.
fn encode_error<T: Serialize + ?Sized>(value: &T, e: postcard::Error) -> SerdeError {
    let message = match e {
        postcard::Error::SerdeSerCustom => {
            mp_reduction::collect(|| mp_reduction::explain_serialize_error(value)).0
        }
        _ => None,
    };
    let message = message.unwrap_or_else(|| e.to_string());
    SerdeError::new(std::any::type_name::<T>(), message, Some(e))
}

/// Decodes a `T` from `bytes` with `fds` as its fd table, refusing
/// trailing bytes; custom errors keep their text.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let track = Track::default();
    // Unclaimed fds (none for a well-formed message) close here.
    let (result, _unclaimed) = mp_reduction::provide_fds(fds, || {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let value = T::deserialize(Keep {
            de: &mut de,
            track: &track,
        });
        value.map(|v| (v, de.finalize()))
    });
    let fail = |message: String, e: Option<postcard::Error>| {
        Err(Error::Decode(SerdeError::new(
            std::any::type_name::<T>(),
            message,
            e,
        )))
    };
    match result {
        Ok((value, Ok([]))) => Ok(value),
        Ok((_, Ok(rest))) => fail(
            format!(
                "{} bytes follow the end of the value in the message",
                rest.len()
            ),
            Some(postcard::Error::DeserializeBadEncoding),
        ),
        Ok((_, Err(e))) => fail(e.to_string(), Some(e)),
        Err(crate::keep::Kept::Custom(message)) => fail(message, None),
        Err(crate::keep::Kept::Inner(e)) => {
            let kept = match e {
                postcard::Error::SerdeDeCustom => track.borrow_mut().take(),
                _ => None,
            };
            fail(kept.unwrap_or_else(|| e.to_string()), Some(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    enum Shape {
        Dot,
        Line(u8),
        Box { w: u8, h: u8 },
    }

    /// Refuses odd numbers, with a message of its own.
    #[derive(Debug, PartialEq)]
    struct Even(u8);
    impl<'de> Deserialize<'de> for Even {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Even, D::Error> {
            let n = u8::deserialize(d)?;
            if n % 2 == 1 {
                return Err(serde::de::Error::custom(format!("{n} is odd")));
            }
            Ok(Even(n))
        }
    }

    fn decode_err<T: DeserializeOwned + fmt::Debug>(bytes: &[u8]) -> String {
        match decode::<T>(bytes, Vec::new()) {
            Err(Error::Decode(e)) => {
                assert_eq!(e.type_name(), std::any::type_name::<T>());
                e.message().to_string()
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn decode_keeps_custom_messages_at_any_depth() {
        let bytes = postcard::to_allocvec(&(1u8, vec![Some(4u8), Some(7)])).unwrap();
        assert_eq!(decode_err::<(u8, Vec<Option<Even>>)>(&bytes), "7 is odd");
        // serde's own messages (an unknown variant index) too.
        assert!(decode_err::<Shape>(&[9]).contains("variant index"));
        // A format error keeps postcard's text.
        assert!(decode_err::<(u8, u32)>(&[1]).contains("end of buffer"));
        assert!(decode_err::<u8>(&[1, 2]).contains("1 bytes follow"));
    }

    #[test]
    fn decode_round_trips_every_shape() {
        let value = (
            Shape::Box { w: 3, h: 4 },
            vec![Shape::Dot, Shape::Line(2)],
            "text".to_string(),
            std::collections::BTreeMap::from([(1u32, -2i64)]),
            (Some(2u8), None::<u8>, b"raw".to_vec()),
        );
        let bytes = postcard::to_allocvec(&value).unwrap();
        type Back = (
            Shape,
            Vec<Shape>,
            String,
            std::collections::BTreeMap<u32, i64>,
            (Option<Even>, Option<Even>, Vec<u8>),
        );
        let back: Back = decode(&bytes, Vec::new()).unwrap();
        assert_eq!(back.0, value.0);
        assert_eq!(back.1, value.1);
        assert_eq!(back.4, (Some(Even(2)), None, b"raw".to_vec()));
    }

    #[test]
    fn encode_keeps_custom_messages() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("this value refuses"))
            }
        }
        match Parcel::encode(&(1u8, [Refuses])) {
            Err(Error::Encode(e)) => {
                assert_eq!(e.message(), "this value refuses");
                assert!(e.type_name().contains("Refuses"), "{}", e.type_name());
            }
            other => panic!("{other:?}"),
        }
    }
}
