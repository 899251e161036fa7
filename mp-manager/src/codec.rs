//! Codecs: how a message (a [`Value`]) becomes the bytes of one frame and
//! back. A manager uses one codec for all its connections; CPython's
//! `serializer` argument names it.
//!
//! Every manager message is a [`Value`] tuple (requests `(id, method, args,
//! kwds)`, replies `(kind, payload)`), so a codec is nothing more than
//! `Value <-> bytes`: postcard ([`Postcard`], `Value`'s tagged serde form)
//! between Rust peers, pickle ([`Pickle`], through `mp-pickle`) for CPython
//! peers. Both are known by name from the start ([`codec_by_name`]); a
//! codec of your own joins them with [`register_codec`].

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use mp_value::Value;

use crate::error::CodecError;

/// Turns manager messages into frame payloads and back.
///
/// Decoding reads bytes from an authenticated but possibly buggy or hostile
/// peer: it must return an error, never panic, for any input, and must
/// bound what it allocates by the input's size.
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// The name a manager is configured with and that travels in a proxy's
    /// pickled form (CPython's `serializer`: `"pickle"`, `"xmlrpclib"`;
    /// ours: `"postcard"`).
    fn name(&self) -> &'static str;

    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// A value the codec cannot represent (the reply then becomes
    /// `#UNSERIALIZABLE`, as in CPython).
    fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one message.
    ///
    /// # Errors
    ///
    /// Bytes that are not one valid message.
    fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError>;
}

/// The postcard codec: a [`Value`] in its tagged serde form
/// (`mp_value`'s `Serialize`), for Rust peers. Nesting is bounded by
/// [`mp_value::MAX_SERDE_DEPTH`] both ways and claimed lengths never
/// allocate ahead of the bytes that back them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl Codec for Postcard {
    fn name(&self) -> &'static str {
        "postcard"
    }

    fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let buf = std::mem::take(out);
        *out = postcard::to_extend(value, buf).map_err(|e| CodecError::new("postcard", e))?;
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        let (value, rest) = postcard::take_from_bytes::<Value>(bytes)
            .map_err(|e| CodecError::new("postcard", e))?;
        if !rest.is_empty() {
            return Err(CodecError::new(
                "postcard",
                format_args!("{} bytes after the message", rest.len()),
            ));
        }
        Ok(value)
    }
}

/// The pickle codec: CPython's `serializer='pickle'`, so that CPython
/// clients and servers (3.11 to 3.15) are peers. Requests are read with
/// [`mp_pickle::loads_with`] within its [`Limits`](mp_pickle::Limits)
/// (hostile pickles are errors, never a panic, a deep recursion or an
/// allocation beyond what the bytes justify), replies written with
/// [`mp_pickle::dump_into`] as protocol 4, byte for byte what CPython's
/// own pickler writes for the same message.
///
/// Objects of classes the server does not know (a client's dataclass, an
/// exception) stay opaque [`Value::Object`]s and are written back
/// unchanged; `Token`s, pickled proxies (`RebuildProxy`) and exceptions
/// keep CPython's shapes (see the `wire` module).
///
/// # Examples
///
/// ```
/// use mp_manager::{Codec, Pickle};
/// use mp_value::Value;
///
/// // CPython 3.11's `dummy` request, as captured on the wire.
/// let wire = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00(N\x8c\x05dummy\x94)}\x94t\x94.";
/// let request = Pickle::default().decode(wire)?;
/// assert_eq!(request.to_string(), "(None, 'dummy', (), {})");
/// let mut out = Vec::new();
/// Pickle::default().encode(&request, &mut out)?;
/// assert_eq!(out, wire);
/// # Ok::<(), mp_manager::CodecError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pickle {
    limits: mp_pickle::Limits,
}

impl Pickle {
    /// The pickle codec with the default limits: mp-pickle's, with the
    /// input bounded by the server's largest message
    /// ([`DEFAULT_MAX_MESSAGE`](crate::server::DEFAULT_MAX_MESSAGE)).
    pub fn new() -> Pickle {
        Pickle {
            limits: mp_pickle::Limits::default().max_input(crate::server::DEFAULT_MAX_MESSAGE),
        }
    }

    /// The pickle codec reading within `limits`.
    pub fn with_limits(limits: mp_pickle::Limits) -> Pickle {
        Pickle { limits }
    }

    /// The limits it reads within.
    pub fn limits(&self) -> &mp_pickle::Limits {
        &self.limits
    }
}

impl Default for Pickle {
    fn default() -> Pickle {
        Pickle::new()
    }
}

impl Codec for Pickle {
    fn name(&self) -> &'static str {
        "pickle"
    }

    fn encode(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        mp_pickle::dump_into(value, out);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        mp_pickle::loads_with(bytes, &self.limits).map_err(|e| CodecError::new("pickle", e))
    }
}

fn codecs() -> &'static Mutex<Vec<Arc<dyn Codec>>> {
    static CODECS: OnceLock<Mutex<Vec<Arc<dyn Codec>>>> = OnceLock::new();
    CODECS.get_or_init(|| {
        Mutex::new(vec![
            Arc::new(Postcard) as Arc<dyn Codec>,
            Arc::new(Pickle::new()),
        ])
    })
}

/// Makes `codec` known by its name to [`codec_by_name`], so that a proxy
/// that arrives in another process naming it (its `serializer`) can talk to
/// its manager. A codec of the same name is replaced.
pub fn register_codec(codec: Arc<dyn Codec>) {
    let mut all = codecs().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|c| c.name() != codec.name());
    all.push(codec);
}

/// The codec registered as `name`; `"postcard"` and `"pickle"` are always
/// there.
pub fn codec_by_name(name: &str) -> Option<Arc<dyn Codec>> {
    codecs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|c| c.name() == name)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_round_trips_and_refuses_garbage() {
        let v = Value::from((Value::None, "create", (1, "x"), mp_value::Dict::new()));
        let mut bytes = Vec::new();
        Postcard.encode(&v, &mut bytes).unwrap();
        assert_eq!(Postcard.decode(&bytes).unwrap(), v);
        bytes.push(0);
        assert!(Postcard.decode(&bytes).is_err());
        assert!(Postcard.decode(&[0xff; 9]).is_err());
        assert!(Postcard.decode(&[]).is_err());
        assert_eq!(codec_by_name("postcard").unwrap().name(), "postcard");
        assert_eq!(codec_by_name("pickle").unwrap().name(), "pickle");
        assert!(codec_by_name("xmlrpclib").is_none());
    }

    #[test]
    fn pickle_round_trips_and_refuses_garbage_within_its_limits() {
        let v = Value::from((Value::None, "create", ("dict",), mp_value::Dict::new()));
        let mut bytes = Vec::new();
        Pickle::new().encode(&v, &mut bytes).unwrap();
        assert_eq!(Pickle::new().decode(&bytes).unwrap(), v);
        // Appends, as the trait says.
        let mut two = b"x".to_vec();
        Pickle::new().encode(&v, &mut two).unwrap();
        assert_eq!(&two[1..], &bytes[..]);
        assert!(Pickle::new().decode(&[]).is_err());
        assert!(Pickle::new().decode(&bytes[..bytes.len() - 1]).is_err());
        let e = Pickle::new().decode(&[0xff]).unwrap_err();
        assert_eq!(e.codec(), "pickle");
        // Deep nesting past the limit is an error, not a stack overflow.
        let deep: Vec<u8> = [&[0x80, 4][..], &[b']'; 100][..], &[b'a'; 99][..], b"."].concat();
        assert!(Pickle::new().decode(&deep).is_ok());
        let tight = Pickle::with_limits(mp_pickle::Limits::default().max_depth(10));
        assert!(tight.decode(&deep).is_err());
        assert_eq!(tight.limits().max_depth, 10);
    }
}
