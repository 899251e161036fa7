//! The bytes between a pool and its workers, without I/O.
//!
//! Each message is one frame in CPython's framing (`mp-conn`: a 4-byte
//! big-endian length, or `-1` and an 8-byte length) whose payload is a
//! batch of records, so that many tasks or results cost one system call.
//! Integers in records are little-endian; `len` fields count the bytes
//! that follow them.
//!
//! Pool to worker:
//!
//! ```text
//! b'F' fn:u32 len:u32 FnRef(postcard)     defines function `fn` for later units
//! b'T' id:u64 fn:u32 count:u32            a unit: call `fn` on each of `count` items
//!      { len:u32 args(postcard) } * count
//! b'Q'                                    finish everything before this, then exit
//! ```
//!
//! Worker to pool:
//!
//! ```text
//! b'Y'                                    the initializer has run: units start now
//! b'R' id:u64 count:u32                   the results of unit `id`, in item order
//!      { status:u8 len:u32 bytes } * count
//! b'I' len:u32 message(UTF-8)             the initializer failed; the worker exits
//! ```
//!
//! A result's `status` is [`OK`] (the bytes are the postcard encoding of
//! the result) or one of the failure codes, whose bytes are a UTF-8
//! message. A worker runs the units it is sent in order and answers them
//! in the same order, so the pool always knows which units a worker holds.

use std::fmt;

/// Tag of a function definition.
pub(crate) const DEFINE: u8 = b'F';
/// Tag of a unit of work.
pub(crate) const UNIT: u8 = b'T';
/// Tag of the request to exit.
pub(crate) const QUIT: u8 = b'Q';
/// Tag of the "initializer done" record.
pub(crate) const READY: u8 = b'Y';
/// Tag of a unit's results.
pub(crate) const RESULTS: u8 = b'R';
/// Tag of an initializer failure.
pub(crate) const INIT_FAILED: u8 = b'I';

/// The item succeeded; the bytes are the result.
pub(crate) const OK: u8 = 0;
/// The task panicked; the bytes are the message.
pub(crate) const PANICKED: u8 = 1;
/// The result could not be serialized in the worker.
pub(crate) const RESULT_UNSERIALIZABLE: u8 = 2;
/// The arguments could not be decoded in the worker.
pub(crate) const ARGS_UNDECODABLE: u8 = 3;
/// The worker refused the function (another build, other types).
pub(crate) const BAD_FUNCTION: u8 = 4;

/// The length of a unit record's header: tag, id, fn, count.
pub(crate) const UNIT_HEADER: usize = 1 + 8 + 4 + 4;
/// Where the id sits in a unit record.
const UNIT_ID_AT: usize = 1;
/// Where the function number sits in a unit record.
const UNIT_FN_AT: usize = 9;
/// Where the item count sits in a unit record.
const UNIT_COUNT_AT: usize = 13;

/// A record that breaks the format: the peer is not a pool worker of this
/// build, or its stream was cut.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pool message: {}", self.0)
    }
}

impl fmt::Debug for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Reads the fields of records from a payload, front to back.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError("a record is cut short"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// Takes a list of `count` length-prefixed entries (each after a
    /// status byte if `status`), checking that it is whole; returns it.
    fn list(&mut self, count: u32, status: bool) -> Result<&'a [u8], WireError> {
        let start = self.buf;
        for _ in 0..count {
            if status {
                self.u8()?;
            }
            self.bytes()?;
        }
        Ok(&start[..start.len() - self.buf.len()])
    }
}

/// A record sent to a worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// Function `fn_id` is this (postcard) `FnRef`.
    Define { fn_id: u32, fn_ref: &'a [u8] },
    /// Unit `id`: call function `fn_id` on each item of `args`.
    Unit { id: u64, fn_id: u32, args: Args<'a> },
    /// Exit once everything before has been answered.
    Quit,
}

/// The arguments of a unit's items (checked whole when parsed).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Args<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> Args<'a> {
    /// How many items.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Each item's argument bytes.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut reader = Reader { buf: self.bytes };
        (0..self.count).map_while(move |_| reader.bytes().ok())
    }
}

/// A record from a worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromWorker<'a> {
    /// The initializer has run.
    Ready,
    /// The results of unit `id`.
    Results { id: u64, results: Results<'a> },
    /// The initializer failed, with this message.
    InitFailed(&'a [u8]),
}

/// A unit's results (checked whole when parsed): where they sit in the
/// payload and how many there are.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Results<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> Results<'a> {
    /// How many items.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The byte range of the results within `payload`, which they were
    /// parsed from.
    pub(crate) fn range_in(&self, payload: &[u8]) -> std::ops::Range<usize> {
        let start = self.bytes.as_ptr() as usize - payload.as_ptr() as usize;
        start..start + self.bytes.len()
    }
}

/// Each item's `(status, bytes)` in a results list of `count` items that
/// [`parse_from_worker`] checked.
pub(crate) fn results(count: u32, bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut reader = Reader { buf: bytes };
    (0..count).map_while(move |_| Some((reader.u8().ok()?, reader.bytes().ok()?)))
}

/// Parses a batch sent to a worker, calling `each` on every record in
/// order; stops at the first malformed one.
pub(crate) fn parse_to_worker<'a>(
    payload: &'a [u8],
    mut each: impl FnMut(ToWorker<'a>) -> bool,
) -> Result<(), WireError> {
    let mut r = Reader { buf: payload };
    while !r.buf.is_empty() {
        let record = match r.u8()? {
            DEFINE => ToWorker::Define {
                fn_id: r.u32()?,
                fn_ref: r.bytes()?,
            },
            UNIT => {
                let id = r.u64()?;
                let fn_id = r.u32()?;
                let count = r.u32()?;
                let bytes = r.list(count, false)?;
                ToWorker::Unit {
                    id,
                    fn_id,
                    args: Args { count, bytes },
                }
            }
            QUIT => ToWorker::Quit,
            _ => return Err(WireError("unknown record tag")),
        };
        if !each(record) {
            break;
        }
    }
    Ok(())
}

/// Parses a batch from a worker, calling `each` on every record in order;
/// stops at the first malformed one.
pub(crate) fn parse_from_worker<'a>(
    payload: &'a [u8],
    mut each: impl FnMut(FromWorker<'a>),
) -> Result<(), WireError> {
    let mut r = Reader { buf: payload };
    while !r.buf.is_empty() {
        let record = match r.u8()? {
            READY => FromWorker::Ready,
            RESULTS => {
                let id = r.u64()?;
                let count = r.u32()?;
                let bytes = r.list(count, true)?;
                FromWorker::Results {
                    id,
                    results: Results { count, bytes },
                }
            }
            INIT_FAILED => FromWorker::InitFailed(r.bytes()?),
            _ => return Err(WireError("unknown record tag")),
        };
        each(record);
    }
    Ok(())
}

// ----- building records -----

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Appends a length field for what follows; returns where it is, for
/// [`close_len`].
fn open_len(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Fills in the length field opened at `at` (the position after it), or
/// gives the length back if it does not fit in 32 bits.
fn close_len(out: &mut [u8], at: usize) -> Result<(), usize> {
    let len = out.len() - at;
    let len32 = u32::try_from(len).map_err(|_| len)?;
    put_u32(out, at - 4, len32);
    Ok(())
}

/// postcard's output straight onto the end of a `Vec`
/// (`postcard::to_extend` goes through `Extend` a byte at a time, which
/// costs a map of a million small items a fifth of its time).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A unit record under construction: its header, then one
/// length-prefixed argument per item.
#[derive(Debug)]
pub(crate) struct UnitRecord {
    buf: Vec<u8>,
    count: u32,
}

/// Why an argument could not be added to a unit.
#[derive(Debug)]
pub(crate) enum ArgError {
    /// Its `Serialize` failed.
    Encode(postcard::Error),
    /// It is longer than a record can say (4 GiB).
    TooLong,
}

impl UnitRecord {
    /// An empty unit (id and function filled in at submission).
    pub(crate) fn new() -> UnitRecord {
        Self::with_capacity(1)
    }

    /// An empty unit with room for `items` small items (a `map` chunk is
    /// sized once, not grown by doubling).
    pub(crate) fn with_capacity(items: usize) -> UnitRecord {
        let mut buf = Vec::with_capacity(UNIT_HEADER + items.saturating_mul(16).min(64 << 20));
        buf.push(UNIT);
        buf.resize(UNIT_HEADER, 0);
        UnitRecord { buf, count: 0 }
    }

    /// Appends one item's arguments, postcard-encoded.
    ///
    /// # Errors
    ///
    /// [`ArgError`]; the record is then unusable (the call that builds it
    /// fails as a whole): a failed encoding may have left bytes behind.
    pub(crate) fn push<A: serde::Serialize>(&mut self, args: &A) -> Result<(), ArgError> {
        let at = open_len(&mut self.buf);
        postcard::serialize_with_flavor(args, Append(&mut self.buf)).map_err(ArgError::Encode)?;
        close_len(&mut self.buf, at).map_err(|_| ArgError::TooLong)?;
        self.count += 1;
        Ok(())
    }

    /// Appends one item's arguments, already postcard-encoded (the raw
    /// calls).
    ///
    /// # Errors
    ///
    /// [`ArgError::TooLong`] past 4 GiB.
    pub(crate) fn push_encoded(&mut self, args: &[u8]) -> Result<(), ArgError> {
        let at = open_len(&mut self.buf);
        self.buf.extend_from_slice(args);
        close_len(&mut self.buf, at).map_err(|_| ArgError::TooLong)?;
        self.count += 1;
        Ok(())
    }

    /// How many items.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The finished record, with its id and function number.
    pub(crate) fn finish(mut self, id: u64, fn_id: u32) -> Vec<u8> {
        set_unit_ids(&mut self.buf, id, fn_id);
        put_u32(&mut self.buf, UNIT_COUNT_AT, self.count);
        self.buf
    }
}

/// Writes the id and the function number into a finished unit record.
pub(crate) fn set_unit_ids(record: &mut [u8], id: u64, fn_id: u32) {
    record[UNIT_ID_AT..UNIT_ID_AT + 8].copy_from_slice(&id.to_le_bytes());
    put_u32(record, UNIT_FN_AT, fn_id);
}

/// Appends a function definition.
pub(crate) fn define(out: &mut Vec<u8>, fn_id: u32, fn_ref: &[u8]) {
    out.push(DEFINE);
    out.extend_from_slice(&fn_id.to_le_bytes());
    out.extend_from_slice(&(fn_ref.len() as u32).to_le_bytes());
    out.extend_from_slice(fn_ref);
}

/// Appends the request to exit.
pub(crate) fn quit(out: &mut Vec<u8>) {
    out.push(QUIT);
}

/// Appends "initializer done".
pub(crate) fn ready(out: &mut Vec<u8>) {
    out.push(READY);
}

/// Appends an initializer failure with `message`.
pub(crate) fn init_failed(out: &mut Vec<u8>, message: &str) {
    out.push(INIT_FAILED);
    let message = truncate_utf8(message, MAX_MESSAGE);
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
}

/// The longest message a worker sends for a failure: enough for any panic
/// message and its location; a longer one is cut (at a character).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends the header of unit `id`'s results; the items follow with
/// [`push_result`] or [`push_failure`], then [`finish_results`].
pub(crate) fn begin_results(out: &mut Vec<u8>, id: u64, count: u32) {
    out.push(RESULTS);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
}

/// Appends one item's result, written by `write` (which appends the
/// postcard bytes to the buffer it is given, or fails leaving it as it
/// was); a failure becomes an item with `status` and the message `write`
/// returns.
pub(crate) fn push_result(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), (u8, String)>,
) {
    out.push(OK);
    let status_at = out.len() - 1;
    let at = open_len(out);
    match write(out) {
        Ok(()) => match close_len(out, at) {
            Ok(()) => {}
            Err(len) => {
                out.truncate(status_at);
                let message =
                    format!("the serialized result is {len} bytes, more than a record holds");
                push_failure(out, RESULT_UNSERIALIZABLE, &message);
            }
        },
        Err((status, message)) => {
            out.truncate(status_at);
            push_failure(out, status, &message);
        }
    }
}

/// Appends one failed item: `status` and its message.
pub(crate) fn push_failure(out: &mut Vec<u8>, status: u8, message: &str) {
    let message = truncate_utf8(message, MAX_MESSAGE);
    out.push(status);
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_trip() {
        let mut unit = UnitRecord::new();
        unit.push(&7u64).unwrap();
        unit.push(&"two".to_string()).unwrap();
        let mut batch = Vec::new();
        define(&mut batch, 3, b"fnref");
        batch.extend(unit.finish(42, 3));
        quit(&mut batch);
        let mut seen = Vec::new();
        parse_to_worker(&batch, |r| {
            seen.push(match r {
                ToWorker::Define { fn_id, fn_ref } => format!("F{fn_id}{fn_ref:?}"),
                ToWorker::Unit { id, fn_id, args } => {
                    let items: Vec<_> = args.iter().map(<[u8]>::to_vec).collect();
                    format!("T{id}/{fn_id}/{}:{items:?}", args.count())
                }
                ToWorker::Quit => "Q".into(),
            });
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                format!("F3{:?}", b"fnref"),
                "T42/3/2:[[7], [3, 116, 119, 111]]".into(),
                "Q".into()
            ]
        );
    }

    #[test]
    fn results_round_trip_and_failures_replace_partial_output() {
        let mut batch = Vec::new();
        ready(&mut batch);
        begin_results(&mut batch, 9, 3);
        push_result(&mut batch, |out| {
            out.extend_from_slice(&[1, 2]);
            Ok(())
        });
        push_result(&mut batch, |out| {
            out.push(0xee); // a partial write the failure must undo
            Err((PANICKED, "boom".into()))
        });
        push_failure(&mut batch, ARGS_UNDECODABLE, "bad");
        init_failed(&mut batch, "init");
        let mut records = Vec::new();
        parse_from_worker(&batch, |r| records.push(format!("{r:?}"))).unwrap();
        assert_eq!(records.len(), 3);
        let mut items = Vec::new();
        parse_from_worker(&batch, |r| {
            if let FromWorker::Results { id, results: res } = r {
                assert_eq!(id, 9);
                let range = res.range_in(&batch);
                items = results(res.count(), &batch[range])
                    .map(|(s, b)| (s, b.to_vec()))
                    .collect();
            }
        })
        .unwrap();
        assert_eq!(
            items,
            [
                (OK, vec![1, 2]),
                (PANICKED, b"boom".to_vec()),
                (ARGS_UNDECODABLE, b"bad".to_vec())
            ]
        );
    }

    #[test]
    fn malformed_batches_are_errors() {
        assert!(parse_from_worker(b"Z", |_| {}).is_err());
        // A results record that claims more items than it holds.
        let mut batch = Vec::new();
        begin_results(&mut batch, 1, 2);
        push_failure(&mut batch, PANICKED, "x");
        assert!(parse_from_worker(&batch, |_| {}).is_err());
        // A length that runs past the end.
        let mut batch = vec![INIT_FAILED];
        batch.extend(100u32.to_le_bytes());
        assert!(parse_from_worker(&batch, |_| {}).is_err());
        assert!(parse_to_worker(&[UNIT, 1, 2], |_| true).is_err());
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let long = "é".repeat(MAX_MESSAGE);
        let mut out = Vec::new();
        push_failure(&mut out, PANICKED, &long);
        let got = results(1, &out).next().unwrap().1;
        assert!(got.len() <= MAX_MESSAGE);
        assert!(std::str::from_utf8(got).is_ok());
    }
}
