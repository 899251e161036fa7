//! CPython's message framing, sans I/O.
//!
//! A message is a 4-byte big-endian *signed* length followed by the
//! payload. Payloads longer than `0x7fffffff` bytes use the length `-1`
//! followed by an 8-byte big-endian unsigned length (CPython's
//! `Connection._send_bytes`). Nothing here reads or writes a file
//! descriptor: [`decode_header`], [`decode_long_length`] and
//! [`encode_header`] work on byte arrays, and [`FrameDecoder`] turns any
//! sequence of byte chunks into messages.

use crate::error::{Error, Result};

/// The length of the short header: a big-endian `i32`.
pub const HEADER_LEN: usize = 4;

/// The length of the extension that follows a `-1` header: a big-endian `u64`.
pub const LONG_LEN: usize = 8;

/// The largest payload the short header can describe.
pub const MAX_SHORT: u32 = 0x7fff_ffff;

/// A decoded 4-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A payload of this many bytes (`0..=0x7fffffff`) follows.
    Short(u32),
    /// `-1`: an 8-byte big-endian length follows, then the payload.
    Long,
}

/// Decodes a 4-byte header.
///
/// # Errors
///
/// [`Error::BadLength`] for a negative length other than `-1`.
///
/// # Examples
///
/// ```
/// use mp_conn::{decode_header, Header};
/// assert_eq!(decode_header([0, 0, 1, 0]).unwrap(), Header::Short(256));
/// assert_eq!(decode_header([0xff; 4]).unwrap(), Header::Long);
/// assert!(decode_header([0xff, 0xff, 0xff, 0xfe]).is_err());
/// ```
pub fn decode_header(bytes: [u8; HEADER_LEN]) -> Result<Header> {
    match i32::from_be_bytes(bytes) {
        -1 => Ok(Header::Long),
        n if n < 0 => Err(Error::BadLength("negative message length")),
        n => Ok(Header::Short(n as u32)),
    }
}

/// Decodes the 8-byte length that follows a `-1` header.
///
/// # Errors
///
/// [`Error::BadLength`] if the length would have fit in the short header
/// (CPython never sends that, so the peer is not speaking this protocol).
pub fn decode_long_length(bytes: [u8; LONG_LEN]) -> Result<u64> {
    let len = u64::from_be_bytes(bytes);
    if len <= u64::from(MAX_SHORT) {
        return Err(Error::BadLength("long length header for a short message"));
    }
    Ok(len)
}

/// Encodes the header for a payload of `len` bytes into `out` and returns
/// the part to send: 4 bytes, or 12 for payloads over `0x7fffffff` bytes.
///
/// # Examples
///
/// ```
/// let mut out = [0; 12];
/// assert_eq!(mp_conn::encode_header(5, &mut out), &[0, 0, 0, 5]);
/// assert_eq!(mp_conn::encode_header(1 << 31, &mut out).len(), 12);
/// ```
pub fn encode_header(len: u64, out: &mut [u8; 12]) -> &[u8] {
    if len <= u64::from(MAX_SHORT) {
        out[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        &out[..HEADER_LEN]
    } else {
        out[..HEADER_LEN].copy_from_slice(&(-1i32).to_be_bytes());
        out[HEADER_LEN..].copy_from_slice(&len.to_be_bytes());
        &out[..]
    }
}

/// Whether `bytes` is a whole number of messages: it ends exactly where a
/// message ends (a malformed header is not a boundary).
pub(crate) fn whole_messages(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return false;
        };
        let (len, rest) = match decode_header(*header) {
            Ok(Header::Short(n)) => (u64::from(n), rest),
            Ok(Header::Long) => match rest.split_first_chunk::<LONG_LEN>() {
                Some((long, rest)) => match decode_long_length(*long) {
                    Ok(len) => (len, rest),
                    Err(_) => return false,
                },
                None => return false,
            },
            Err(_) => return false,
        };
        match usize::try_from(len) {
            Ok(len) if len <= rest.len() => bytes = &rest[len..],
            _ => return false,
        }
    }
    true
}

/// Where a [`FrameDecoder`] is in the stream.
#[derive(Debug)]
enum State {
    /// Collecting the 4-byte header (`have` bytes so far).
    Header { have: usize },
    /// Collecting the 8-byte long length (`have` bytes so far).
    LongLength { have: usize },
    /// Collecting `len` payload bytes.
    Payload { len: u64 },
    /// A framing error happened; the stream cannot be resynchronised.
    Failed,
}

/// A sans-IO decoder: feed it bytes in chunks of any size, get whole
/// messages out, each at most `max_len` bytes.
///
/// It never allocates more than the bytes that actually arrived (a 2 GiB
/// length header allocates nothing), and after a framing error it stays
/// failed: the message boundaries of the stream are lost.
///
/// # Examples
///
/// ```
/// let mut decoder = mp_conn::FrameDecoder::new(1024);
/// let wire = [0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0];
/// let mut input = &wire[..];
/// let mut messages = Vec::new();
/// while !input.is_empty() {
///     let (used, message) = decoder.feed(input)?;
///     input = &input[used..];
///     messages.extend(message);
/// }
/// assert_eq!(messages, [b"hi".to_vec(), Vec::new()]);
/// assert!(decoder.is_at_boundary());
/// # Ok::<(), mp_conn::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max_len: usize,
    state: State,
    header: [u8; HEADER_LEN + LONG_LEN],
    payload: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder that refuses messages longer than `max_len` bytes.
    pub fn new(max_len: usize) -> FrameDecoder {
        FrameDecoder {
            max_len,
            state: State::Header { have: 0 },
            header: [0; HEADER_LEN + LONG_LEN],
            payload: Vec::new(),
        }
    }

    /// Consumes bytes from the front of `input` until one message is
    /// complete or `input` is used up. Returns how many bytes were used and
    /// the message, if one was completed. Call again with the rest of
    /// `input` to get the next message.
    ///
    /// # Errors
    ///
    /// [`Error::BadLength`] for a header CPython never sends,
    /// [`Error::MessageTooLong`] for a message over the limit. The decoder
    /// is then failed and every later call returns an error.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>)> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Failed => {
                    return Err(Error::BadLength("the stream failed to decode earlier"));
                }
                State::Header { have } => {
                    let take = rest.len().min(HEADER_LEN - have);
                    self.header[have..have + take].copy_from_slice(&rest[..take]);
                    used += take;
                    if have + take < HEADER_LEN {
                        self.state = State::Header { have: have + take };
                        return Ok((used, None));
                    }
                    let mut h = [0; HEADER_LEN];
                    h.copy_from_slice(&self.header[..HEADER_LEN]);
                    match decode_header(h) {
                        Ok(Header::Short(len)) => self.start_payload(u64::from(len))?,
                        Ok(Header::Long) => self.state = State::LongLength { have: 0 },
                        Err(e) => return Err(self.fail(e)),
                    }
                }
                State::LongLength { have } => {
                    let take = rest.len().min(LONG_LEN - have);
                    let at = HEADER_LEN + have;
                    self.header[at..at + take].copy_from_slice(&rest[..take]);
                    used += take;
                    if have + take < LONG_LEN {
                        self.state = State::LongLength { have: have + take };
                        return Ok((used, None));
                    }
                    let mut l = [0; LONG_LEN];
                    l.copy_from_slice(&self.header[HEADER_LEN..]);
                    match decode_long_length(l) {
                        Ok(len) => self.start_payload(len)?,
                        Err(e) => return Err(self.fail(e)),
                    }
                }
                State::Payload { len } => {
                    // `len <= max_len`, so this fits in usize.
                    let missing = len as usize - self.payload.len();
                    let take = rest.len().min(missing);
                    // Grows with the bytes that arrived, never with `len`.
                    self.payload.extend_from_slice(&rest[..take]);
                    used += take;
                    if take < missing {
                        return Ok((used, None));
                    }
                    self.state = State::Header { have: 0 };
                    return Ok((used, Some(std::mem::take(&mut self.payload))));
                }
            }
        }
    }

    fn start_payload(&mut self, len: u64) -> Result<()> {
        if len > self.max_len as u64 {
            let max = self.max_len;
            return Err(self.fail(Error::MessageTooLong { len, max }));
        }
        self.state = State::Payload { len };
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = State::Failed;
        self.payload = Vec::new();
        e
    }

    /// Whether the bytes fed so far end exactly at a message boundary.
    pub fn is_at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0 })
    }

    /// The error for an end of stream now: [`Error::Eof`] at a message
    /// boundary, [`Error::TruncatedMessage`] inside a message.
    pub fn end_of_stream(&self) -> Error {
        if self.is_at_boundary() {
            Error::Eof
        } else {
            Error::TruncatedMessage
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut h = [0; 12];
        let mut v = encode_header(payload.len() as u64, &mut h).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn headers_match_cpython() {
        let mut out = [0; 12];
        assert_eq!(encode_header(0, &mut out), [0, 0, 0, 0]);
        assert_eq!(
            encode_header(0x7fff_ffff, &mut out),
            [0x7f, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            encode_header(0x8000_0000, &mut out),
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
        );
        assert_eq!(
            decode_header([0x7f, 0xff, 0xff, 0xff]).unwrap(),
            Header::Short(0x7fff_ffff)
        );
        assert!(matches!(
            decode_header([0x80, 0, 0, 0]),
            Err(Error::BadLength(_))
        ));
        assert_eq!(
            decode_long_length([0, 0, 0, 0, 0x80, 0, 0, 0]).unwrap(),
            0x8000_0000
        );
        assert!(decode_long_length([0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_long_length([0; 8]).is_err());
    }

    #[test]
    fn decodes_byte_by_byte_and_all_at_once() {
        let mut wire = frame(b"hello");
        wire.extend(frame(b""));
        wire.extend(frame(&[7; 300]));
        for chunk in [1, 2, 3, 5, 4096] {
            let mut d = FrameDecoder::new(1000);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                let mut input = piece;
                while !input.is_empty() {
                    let (used, msg) = d.feed(input).unwrap();
                    assert!(used > 0 || msg.is_some());
                    input = &input[used..];
                    got.extend(msg);
                }
            }
            assert_eq!(
                got,
                vec![b"hello".to_vec(), vec![], vec![7; 300]],
                "chunk {chunk}"
            );
            assert!(d.is_at_boundary());
            assert!(matches!(d.end_of_stream(), Error::Eof));
        }
    }

    #[test]
    fn refuses_long_messages_without_allocating() {
        let mut d = FrameDecoder::new(16);
        let err = d.feed(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap_err();
        assert!(matches!(
            err,
            Error::MessageTooLong {
                len: 0x7fff_ffff,
                max: 16
            }
        ));
        assert_eq!(d.payload.capacity(), 0);
        assert!(d.feed(&[0]).is_err(), "a failed decoder stays failed");

        // A 2 GiB long header under a generous cap: only arrived bytes are stored.
        let mut d = FrameDecoder::new(usize::MAX);
        let mut wire = vec![0xff; 4];
        wire.extend((1u64 << 31).to_be_bytes());
        wire.extend([1, 2, 3]);
        let (used, msg) = d.feed(&wire).unwrap();
        assert_eq!((used, msg), (wire.len(), None));
        assert!(d.payload.capacity() < 1024);
        assert!(matches!(d.end_of_stream(), Error::TruncatedMessage));
    }

    #[test]
    fn rejects_negative_lengths() {
        let mut d = FrameDecoder::new(100);
        assert!(matches!(
            d.feed(&(-2i32).to_be_bytes()),
            Err(Error::BadLength(_))
        ));
        let mut d = FrameDecoder::new(100);
        let mut wire = vec![0xff; 4];
        wire.extend(5u64.to_be_bytes());
        assert!(matches!(d.feed(&wire), Err(Error::BadLength(_))));
    }

    #[test]
    fn truncation_inside_a_header_is_not_eof() {
        let mut d = FrameDecoder::new(100);
        d.feed(&[0, 0]).unwrap();
        assert!(matches!(d.end_of_stream(), Error::TruncatedMessage));
    }
}
