//! Items as bytes: postcard through mp-conn's [`Parcel`] (fds beside the
//! bytes), and a fast path for `Vec<u8>` items.
//!
//! serde gives a `Vec<u8>` no bytes form: postcard writes it element by
//! element, which runs at about 0.5 GB/s each way, a tenth of what a copy
//! does. For items of type `Vec<u8>` (found by `TypeId`) the queue writes
//! postcard's own encoding of them, a varint length and the bytes, with a
//! copy, and reads it back the same way: byte for byte what postcard
//! writes, so the two paths read each other's items. (A struct that holds
//! bytes gets the same speed from `#[serde(with = "serde_bytes")]`.)

use std::any::Any;
use std::os::fd::OwnedFd;

use mp_conn::Parcel;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::QueueError;
use crate::side;

/// The longest varint (a `u64` in 7-bit groups).
pub(crate) const VARINT_MAX: usize = 10;

/// postcard's varint of `n` (unsigned LEB128) into `out`; returns its
/// length.
pub(crate) fn encode_len(n: u64, out: &mut [u8; VARINT_MAX]) -> usize {
    let mut n = n;
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out[i] = byte;
            return i + 1;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

/// Reads a varint from the front of `bytes`: `(value, bytes used)`;
/// `None` if it is cut short, too long or does not fit a `usize`.
pub(crate) fn decode_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(VARINT_MAX) {
        let bits = u64::from(b & 0x7f);
        if i == VARINT_MAX - 1 && bits > 1 {
            return None;
        }
        n |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(n).ok()?, i + 1));
        }
    }
    None
}

/// `item` as a `Vec<u8>`, if that is its type; otherwise `item` back.
pub(crate) fn take_bytes<T: 'static>(item: T) -> Result<Vec<u8>, T> {
    let mut slot = Some(item);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
        Some(bytes) => Ok(bytes.take().unwrap_or_default()),
        None => Err(slot.take().expect("still there")),
    }
}

/// `bytes` as a `T`, if `T` is `Vec<u8>`.
pub(crate) fn give_bytes<T: 'static>(bytes: Vec<u8>) -> Option<T> {
    let mut slot: Option<T> = None;
    let as_bytes = (&mut slot as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>()?;
    *as_bytes = Some(bytes);
    slot
}

/// Whether `T` is `Vec<u8>`.
pub(crate) fn is_bytes<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<u8>>()
}

/// An item's bytes, before they go anywhere.
#[derive(Debug)]
pub(crate) enum Body {
    /// postcard bytes and the fds beside them.
    Parcel(Parcel),
    /// A `Vec<u8>` item: postcard's length prefix, then the vector itself.
    Bytes {
        prefix: [u8; VARINT_MAX],
        prefix_len: u8,
        data: Vec<u8>,
    },
}

/// Where an item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// An INLINE entry in the ring.
    Ring,
    /// A datagram with the payload inside.
    Dgram,
    /// A datagram with the payload in a memfd.
    Memfd,
}

/// An encoded item, ready to be committed (now, or later by a feeder).
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) body: Body,
    pub(crate) route: Route,
    /// The memfd holding the payload (`Route::Memfd`).
    pub(crate) memfd: Option<(OwnedFd, u64)>,
}

impl Encoded {
    /// Encodes `item` (moved in when it is a `Vec<u8>`): the item comes
    /// back beside the encoding, unless it was moved in.
    pub(crate) fn new<T: Serialize + 'static>(
        item: T,
        inline_max: usize,
    ) -> Result<(Encoded, Option<T>), (QueueError, T)> {
        let (body, kept) = match take_bytes(item) {
            Ok(data) => {
                let mut prefix = [0u8; VARINT_MAX];
                let prefix_len = encode_len(data.len() as u64, &mut prefix) as u8;
                (
                    Body::Bytes {
                        prefix,
                        prefix_len,
                        data,
                    },
                    None,
                )
            }
            Err(item) => match Parcel::encode(&item) {
                Ok(parcel) => (Body::Parcel(parcel), Some(item)),
                Err(e) => return Err((QueueError::Encode(e), item)),
            },
        };
        let fds = match &body {
            Body::Parcel(p) => p.fds().len(),
            Body::Bytes { .. } => 0,
        };
        let len = body.len();
        let route = if fds > 0 {
            if len <= side::DGRAM_INLINE_MAX {
                Route::Dgram
            } else {
                Route::Memfd
            }
        } else if len <= inline_max {
            Route::Ring
        } else {
            Route::Memfd
        };
        let mut encoded = Encoded {
            body,
            route,
            memfd: None,
        };
        if fds + usize::from(route == Route::Memfd) > side::SCM_MAX_FD {
            let e = QueueError::TooManyFds {
                fds,
                max: side::SCM_MAX_FD - 1,
            };
            return Err((e, encoded.into_item(kept)));
        }
        if route == Route::Memfd {
            match side::write_memfd(&encoded.body.parts()) {
                Ok(memfd) => encoded.memfd = Some(memfd),
                Err(e) => return Err((QueueError::Io(e), encoded.into_item(kept))),
            }
        }
        Ok((encoded, kept))
    }

    /// The item again, for a put that failed: `kept` if the encoding did
    /// not take it, else the vector it took.
    pub(crate) fn into_item<T: 'static>(self, kept: Option<T>) -> T {
        match (kept, self.body) {
            (Some(item), _) => item,
            (None, Body::Bytes { data, .. }) => give_bytes(data).expect("taken from a Vec<u8>"),
            (None, Body::Parcel(_)) => unreachable!("a parcel's item is always kept"),
        }
    }

    /// The fds that travel with the item.
    pub(crate) fn fds(&self) -> &[OwnedFd] {
        match &self.body {
            Body::Parcel(p) => p.fds(),
            Body::Bytes { .. } => &[],
        }
    }

    /// Tells the encoded values that their copy arrived (a connection
    /// inside gives up the read-ahead bytes its copy took along).
    pub(crate) fn delivered(self) {
        if let Body::Parcel(p) = self.body {
            p.delivered();
        }
    }
}

impl Body {
    /// The payload's length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Parcel(p) => p.bytes().len(),
            Body::Bytes {
                prefix_len, data, ..
            } => usize::from(*prefix_len) + data.len(),
        }
    }

    /// The payload, as the parts to write one after the other.
    pub(crate) fn parts(&self) -> [&[u8]; 2] {
        match self {
            Body::Parcel(p) => [p.bytes(), &[]],
            Body::Bytes {
                prefix,
                prefix_len,
                data,
            } => [&prefix[..usize::from(*prefix_len)], data],
        }
    }
}

/// Decodes an item from its payload and fds.
pub(crate) fn decode<T: DeserializeOwned + 'static>(
    mut payload: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> Result<T, QueueError> {
    if is_bytes::<T>() {
        let Some((n, used)) = decode_len(&payload) else {
            return Err(QueueError::Corrupt(
                "an item that is not a byte vector's encoding".into(),
            ));
        };
        if used + n != payload.len() || !fds.is_empty() {
            return Err(QueueError::Corrupt(
                "an item that is not a byte vector's encoding".into(),
            ));
        }
        payload.drain(..used);
        return Ok(give_bytes(payload).expect("T is Vec<u8>"));
    }
    Parcel::from_parts(payload, fds)
        .decode::<T>()
        .map_err(QueueError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_path_writes_what_postcard_writes() {
        for len in [0usize, 1, 127, 128, 300, 16_384, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let postcard = postcard::to_allocvec(&data).unwrap();
            let (enc, kept) = Encoded::new(data.clone(), usize::MAX).unwrap();
            assert!(kept.is_none());
            assert_eq!(enc.body.parts().concat(), postcard, "len {len}");
            // Read back by both paths.
            let back: Vec<u8> = decode(postcard.clone(), Vec::new()).unwrap();
            assert_eq!(back, data);
            let generic: Vec<u8> = postcard::from_bytes(&postcard).unwrap();
            assert_eq!(generic, data);
        }
    }

    #[test]
    fn varints_round_trip_and_refuse_garbage() {
        for n in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buf = [0u8; VARINT_MAX];
            let used = encode_len(n, &mut buf);
            if let Ok(n) = usize::try_from(n) {
                assert_eq!(decode_len(&buf[..used]), Some((n, used)));
            }
        }
        assert_eq!(decode_len(&[]), None);
        assert_eq!(decode_len(&[0x80]), None);
        assert_eq!(decode_len(&[0xff; 11]), None);
    }

    #[test]
    fn other_types_keep_the_item_and_bytes_come_back() {
        let (enc, kept) = Encoded::new(("x".to_string(), 7u32), 1024).unwrap();
        assert_eq!(enc.route, Route::Ring);
        let item: (String, u32) = enc.into_item(kept);
        assert_eq!(item.1, 7);
        let (enc, kept) = Encoded::new(vec![1u8; 2000], 1024).unwrap();
        assert_eq!(enc.route, Route::Memfd);
        let back: Vec<u8> = enc.into_item(kept);
        assert_eq!(back.len(), 2000);
    }
}
