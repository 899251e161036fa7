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
use crate::pool::{Lease, Pool};
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

/// `item` as a byte vector, if that is its type.
fn as_bytes<T: 'static>(item: &T) -> Option<&Vec<u8>> {
    (item as &dyn Any).downcast_ref::<Vec<u8>>()
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

/// A byte vector's bytes (after its length prefix).
#[derive(Debug)]
enum Data<'a> {
    /// The caller's vector, while the put runs.
    Borrowed(&'a [u8]),
    /// A copy, for a feeder.
    Owned(Vec<u8>),
    /// Already written to the memfd.
    InMemfd,
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

/// An encoded item, ready to be committed: borrowing the caller's bytes
/// while the put runs, or owned ([`Encoded::into_owned`]) in a feeder.
#[derive(Debug)]
pub(crate) struct Encoded<'a> {
    /// postcard bytes and the fds beside them (for items that are not
    /// byte vectors).
    parcel: Option<Parcel>,
    /// A byte vector's postcard length prefix, and its bytes.
    prefix: [u8; VARINT_MAX],
    prefix_len: u8,
    data: Data<'a>,
    pub(crate) route: Route,
    /// Where the payload went (`Route::Memfd`).
    pub(crate) big: Option<Big>,
}

/// A big payload, written: into a file of this process's pool, or a fresh
/// sealed memfd.
#[derive(Debug)]
pub(crate) enum Big {
    Pooled(Lease, u64),
    Sealed(OwnedFd, u64),
}

impl<'a> Encoded<'a> {
    /// Encodes `item`; a byte vector is borrowed, not copied. A big
    /// payload goes into a file of `pool` when one can be had.
    pub(crate) fn new<T: Serialize + 'static>(
        item: &'a T,
        inline_max: usize,
        pool: Option<&std::sync::Arc<Pool>>,
    ) -> Result<Encoded<'a>, QueueError> {
        let mut enc = match as_bytes(item) {
            Some(bytes) => {
                let mut prefix = [0u8; VARINT_MAX];
                let prefix_len = encode_len(bytes.len() as u64, &mut prefix) as u8;
                Encoded {
                    parcel: None,
                    prefix,
                    prefix_len,
                    data: Data::Borrowed(bytes),
                    route: Route::Ring,
                    big: None,
                }
            }
            None => Encoded {
                parcel: Some(Parcel::encode(item).map_err(QueueError::Encode)?),
                prefix: [0; VARINT_MAX],
                prefix_len: 0,
                data: Data::Borrowed(&[]),
                route: Route::Ring,
                big: None,
            },
        };
        let fds = enc.fds().len();
        let len = enc.len();
        enc.route = if fds > 0 {
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
        if fds + usize::from(enc.route == Route::Memfd) > side::SCM_MAX_FD {
            return Err(QueueError::TooManyFds {
                fds,
                max: side::SCM_MAX_FD - 1,
            });
        }
        if enc.route == Route::Memfd {
            // A byte vector's prefix goes before the page its bulk starts on.
            let head = u64::from(enc.prefix_len);
            let lease = match pool {
                Some(pool) => pool.write(&enc.parts(), len as u64, head)?,
                None => None,
            };
            enc.big = Some(match lease {
                Some(lease) => Big::Pooled(lease, len as u64),
                None => {
                    let (fd, len) = side::write_memfd(&enc.parts(), head)?;
                    Big::Sealed(fd, len)
                }
            });
            enc.data = Data::InMemfd;
        }
        Ok(enc)
    }

    /// The same item, owning its bytes (for a feeder's buffer).
    pub(crate) fn into_owned(self) -> Encoded<'static> {
        let data = match self.data {
            Data::Borrowed(b) => Data::Owned(b.to_vec()),
            Data::Owned(v) => Data::Owned(v),
            Data::InMemfd => Data::InMemfd,
        };
        Encoded {
            parcel: self.parcel,
            prefix: self.prefix,
            prefix_len: self.prefix_len,
            data,
            route: self.route,
            big: self.big,
        }
    }

    /// The fds that travel with the item.
    pub(crate) fn fds(&self) -> &[OwnedFd] {
        self.parcel.as_ref().map_or(&[], |p| p.fds())
    }

    /// Tells the encoded values that their copy arrived (a connection
    /// inside gives up the read-ahead bytes its copy took along).
    pub(crate) fn delivered(self) {
        if let Some(p) = self.parcel {
            p.delivered();
        }
    }

    /// The payload's length.
    fn len(&self) -> usize {
        match (&self.parcel, &self.data) {
            (Some(p), _) => p.bytes().len(),
            (None, Data::Borrowed(b)) => usize::from(self.prefix_len) + b.len(),
            (None, Data::Owned(b)) => usize::from(self.prefix_len) + b.len(),
            (None, Data::InMemfd) => 0,
        }
    }

    /// The payload (when it is not in a memfd), as the parts to write one
    /// after the other.
    pub(crate) fn parts(&self) -> [&[u8]; 2] {
        match (&self.parcel, &self.data) {
            (Some(p), _) => [p.bytes(), &[]],
            (None, Data::Borrowed(b)) => [&self.prefix[..usize::from(self.prefix_len)], b],
            (None, Data::Owned(b)) => [&self.prefix[..usize::from(self.prefix_len)], b],
            (None, Data::InMemfd) => [&[], &[]],
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
            let enc = Encoded::new(&data, usize::MAX, None).unwrap();
            assert_eq!(enc.parts().concat(), postcard, "len {len}");
            assert_eq!(enc.into_owned().parts().concat(), postcard, "len {len}");
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
    fn items_are_routed_by_size_and_fds() {
        let small = ("x".to_string(), 7u32);
        assert_eq!(Encoded::new(&small, 1024, None).unwrap().route, Route::Ring);
        let big = vec![1u8; 2000];
        let enc = Encoded::new(&big, 1024, None).unwrap();
        assert_eq!(enc.route, Route::Memfd);
        assert!(matches!(enc.big, Some(Big::Sealed(_, 2002))));
        let pool = std::sync::Arc::new(Pool::default());
        let enc = Encoded::new(&big, 1024, Some(&pool)).unwrap();
        assert!(matches!(enc.big, Some(Big::Pooled(_, 2002))));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let with_fd = mp_reduction::Fd::from(OwnedFd::from(a));
        let enc = Encoded::new(&with_fd, 1024, None).unwrap();
        assert_eq!((enc.route, enc.fds().len()), (Route::Dgram, 1));
    }
}
