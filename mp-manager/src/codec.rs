//! Codecs: how a message (a [`Value`]) becomes the bytes of one frame and
//! back. A manager uses one codec for all its connections; CPython's
//! `serializer` argument names it.
//!
//! Every manager message is a [`Value`] tuple (requests `(id, method, args,
//! kwds)`, replies `(kind, payload)`), so a codec is nothing more than
//! `Value <-> bytes`: postcard ([`Postcard`], `Value`'s tagged serde form)
//! between Rust peers, pickle for CPython peers (added by the CPython
//! manager interop work through [`register_codec`]).

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

fn codecs() -> &'static Mutex<Vec<Arc<dyn Codec>>> {
    static CODECS: OnceLock<Mutex<Vec<Arc<dyn Codec>>>> = OnceLock::new();
    CODECS.get_or_init(|| Mutex::new(vec![Arc::new(Postcard) as Arc<dyn Codec>]))
}

/// Makes `codec` known by its name to [`codec_by_name`], so that a proxy
/// that arrives in another process naming it (its `serializer`) can talk to
/// its manager. A codec of the same name is replaced.
pub fn register_codec(codec: Arc<dyn Codec>) {
    let mut all = codecs().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|c| c.name() != codec.name());
    all.push(codec);
}

/// The codec registered as `name`; `"postcard"` is always there.
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
        assert!(codec_by_name("xmlrpclib").is_none());
    }
}
