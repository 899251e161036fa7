//! The reader: every opcode of protocols 0 to 5 but persistent ids, the
//! extension registry and out-of-band buffers, into a [`Value`].
//!
//! It runs the pickle machine with an explicit stack and never recurses,
//! so nesting costs heap, not stack, and is bounded by
//! [`Limits::max_depth`]. Every length is checked against the bytes that
//! are actually there before anything is allocated for it.
//!
//! Containers are built in place while they are only on the stack (an
//! "open" list takes its `APPENDS` without a copy) and become shared when
//! something else refers to them: a memo `GET`, a `DUP`, or their parent.
//! A memo entry of an open container records its stack position instead of
//! a clone, so that memoizing does not share it. Changing a container that
//! is already shared is what only recursive structures need (a list that
//! contains itself); the value model has no cycles, so that is an error
//! ([`ErrorKind::Recursive`]), never a silent copy.
//!
//! Before the machine runs, one pass over the opcodes finds which memo
//! entries a `GET` reads back (`scan_gets`); `MEMOIZE` keeps only those,
//! since CPython memoizes every string and container and a manager
//! message reads none of them back.

use std::cell::Cell;
use std::collections::BTreeMap;

use mp_value::{
    BigInt, Constructor, Dict, Global, List, Object, ObjectData, ObjectOp, Set, Tuple, Value,
};

use crate::error::{Error, ErrorKind, Limit};
use crate::op::*;

/// Bounds on what a pickle may make the reader allocate or build.
///
/// The defaults accept anything CPython's multiprocessing sends in
/// practice (CPython 3.13 itself cannot pickle nesting deeper than about
/// 5,000 levels) while keeping a hostile pickle from exhausting memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest pickle, in bytes (default 1 GiB).
    pub max_input: usize,
    /// The deepest nesting of containers in containers (default 10,000).
    pub max_depth: usize,
    /// The most memo entries (default 2^24).
    pub max_memo: usize,
    /// The most values pushed on the stack, counting each memo `GET`, `DUP`
    /// and `MARK` (default 2^24: each costs about 24 bytes where it is
    /// stored, so a pickle of repeated references cannot blow up).
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_input: 1 << 30,
            max_depth: 10_000,
            max_memo: 1 << 24,
            max_items: 1 << 24,
        }
    }
}

impl Limits {
    /// The default limits.
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Sets [`Limits::max_input`].
    pub fn max_input(mut self, bytes: usize) -> Limits {
        self.max_input = bytes;
        self
    }

    /// Sets [`Limits::max_depth`].
    pub fn max_depth(mut self, levels: usize) -> Limits {
        self.max_depth = levels;
        self
    }

    /// Sets [`Limits::max_memo`].
    pub fn max_memo(mut self, entries: usize) -> Limits {
        self.max_memo = entries;
        self
    }

    /// Sets [`Limits::max_items`].
    pub fn max_items(mut self, items: usize) -> Limits {
        self.max_items = items;
        self
    }
}

/// Reads one pickle (protocols 0 to 5) into a [`Value`], within `limits`.
/// Bytes after the `STOP` opcode are ignored, as CPython ignores them.
///
/// # Errors
///
/// See [`ErrorKind`]: truncated input, unknown opcodes, refused opcodes,
/// malformed operands or stack shapes, missing memo entries, recursive
/// structures, unhashable keys, and limits passed. Never a panic.
pub fn loads_with(data: &[u8], limits: &Limits) -> Result<Value, Error> {
    if data.len() > limits.max_input {
        return Err(Error::at(
            ErrorKind::Limit(Limit::Input, limits.max_input),
            0,
        ));
    }
    let mut spare = SPARE.with(Cell::take).unwrap_or_else(|| Buffers {
        stack: Vec::with_capacity(16),
        marks: Vec::with_capacity(4),
        dense: Vec::with_capacity(16),
        wanted: Vec::new(),
    });
    let skip = scan_gets(data, &mut spare.wanted);
    let mut reader = Reader::new(data, limits, spare, skip);
    let mut result = reader.run();
    if reader.rescan {
        // A memo entry the scan said no GET reads was read: the scan and
        // the machine disagree about an operand, so the pickle is read
        // again keeping every entry (slower, never wrong).
        let spare = reader.take_buffers();
        reader = Reader::new(data, limits, spare, false);
        result = reader.run();
    }
    reader.keep_buffers();
    result
}

/// Finds which memo entries the pickle reads back, in one pass over its
/// opcodes before the machine runs: most pickles memoize every string and
/// container (CPython's pickler does) and read none of them back, and each
/// entry kept is a reference count taken and dropped, which is most of
/// what a `MEMOIZE` costs.
///
/// Returns whether `wanted` is exact: then the pickle memoizes only with
/// `MEMOIZE` (so entry `i` is the `i`th `MEMOIZE`, whatever is skipped) and
/// bit `i` of `wanted` is set for each `BINGET`/`LONG_BINGET` of `i`.
/// `false` (keep every entry) for an explicit `PUT`, any text operand
/// (protocols 0 and 1), an opcode the machine refuses, or bytes that end
/// early: those pickles are rare, and the machine reports their errors.
fn scan_gets(data: &[u8], wanted: &mut Vec<u64>) -> bool {
    wanted.clear();
    let mut pos = 0usize;
    // An operand length that cannot fit is the machine's error to report.
    let len_at = |pos: usize, n: usize| -> Option<u64> {
        let b = data.get(pos..pos.checked_add(n)?)?;
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(le))
    };
    loop {
        let Some(&op) = data.get(pos) else {
            return false;
        };
        pos += 1;
        let skip: u64 = match op {
            STOP => return true,
            MARK | POP | POP_MARK | DUP | NONE | NEWTRUE | NEWFALSE | EMPTY_TUPLE | TUPLE1
            | TUPLE2 | TUPLE3 | TUPLE | EMPTY_LIST | LIST | EMPTY_DICT | DICT | EMPTY_SET
            | FROZENSET | APPEND | APPENDS | SETITEM | SETITEMS | ADDITEMS | BUILD
            | STACK_GLOBAL | REDUCE | NEWOBJ | NEWOBJ_EX | OBJ | MEMOIZE => 0,
            PROTO | BININT1 => 1,
            BININT2 => 2,
            BININT => 4,
            BINFLOAT | FRAME => 8,
            SHORT_BINUNICODE | SHORT_BINBYTES | SHORT_BINSTRING | LONG1 => {
                let Some(n) = len_at(pos, 1) else {
                    return false;
                };
                1 + n
            }
            BINUNICODE | BINBYTES => {
                let Some(n) = len_at(pos, 4) else {
                    return false;
                };
                4 + n
            }
            BINSTRING | LONG4 => {
                // Signed: a negative length is the machine's error.
                let Some(n) = len_at(pos, 4) else {
                    return false;
                };
                if n > i32::MAX as u64 {
                    return false;
                }
                4 + n
            }
            BINUNICODE8 | BINBYTES8 | BYTEARRAY8 => {
                let Some(n) = len_at(pos, 8) else {
                    return false;
                };
                let Some(n) = n.checked_add(8) else {
                    return false;
                };
                n
            }
            BINGET | LONG_BINGET => {
                let width = if op == BINGET { 1 } else { 4 };
                let Some(i) = len_at(pos, width) else {
                    return false;
                };
                // Each entry is one MEMOIZE byte, so an index past the
                // input's length is never set: no bit needed (the machine
                // finds it missing), and `wanted` stays within
                // `data.len() / 64` words.
                if i < data.len() as u64 {
                    let (word, bit) = ((i / 64) as usize, i % 64);
                    if wanted.len() <= word {
                        wanted.resize(word + 1, 0);
                    }
                    wanted[word] |= 1 << bit;
                }
                width as u64
            }
            _ => return false,
        };
        match usize::try_from(skip).ok().and_then(|n| pos.checked_add(n)) {
            Some(next) if next <= data.len() => pos = next,
            _ => return false,
        }
    }
}

/// The machine's buffers, kept between the pickles one thread reads: a
/// server reads a request per call, and these would otherwise be three
/// allocations each time.
#[derive(Default)]
struct Buffers {
    stack: Vec<Item>,
    marks: Vec<usize>,
    dense: Vec<Option<Entry>>,
    /// The bit set of [`scan_gets`].
    wanted: Vec<u64>,
}

/// Buffers bigger than this many entries are freed rather than kept (one
/// huge pickle must not pin its memory for the thread's life).
const KEEP_BUFFERS: usize = 1024;

thread_local! {
    static SPARE: Cell<Option<Buffers>> = const { Cell::new(None) };
}

/// A value on the machine's stack, with its nesting depth and the memo
/// entries that point at it while it is open (see the module docs).
struct Item {
    value: Value,
    depth: usize,
    /// The first such memo index (the only one, nearly always: CPython
    /// memoizes each object once); any others are in `Reader::more_memo`,
    /// so that an item, moved on every push and pop, stays small.
    memo: Option<u64>,
}

enum Entry {
    Value(Value, usize),
    /// An open container, at this stack position.
    Open(usize),
}

#[derive(Default)]
struct Memo {
    /// Indices 0..len, the common case (`MEMOIZE` counts up from 0).
    dense: Vec<Option<Entry>>,
    /// Any index far beyond the dense part (a hostile `PUT 4000000000`
    /// must not allocate four billion slots). A `BTreeMap`, like
    /// `Reader::more_memo`: making one costs nothing (a `HashMap` seeds its
    /// hasher from a thread-local on every read), and it needs no hasher
    /// that chosen indices could collide.
    sparse: BTreeMap<u64, Entry>,
    /// Entries set, which is also the index `MEMOIZE` uses (as in CPython).
    count: usize,
}

impl Memo {
    fn get(&self, i: u64) -> Option<&Entry> {
        match usize::try_from(i).ok().and_then(|i| self.dense.get(i)) {
            Some(e) => e.as_ref(),
            None => self.sparse.get(&i),
        }
    }

    fn slot(&mut self, i: u64) -> Option<&mut Option<Entry>> {
        usize::try_from(i).ok().and_then(|i| self.dense.get_mut(i))
    }

    /// Stores `e` at `i`; returns whether the index is new.
    fn put(&mut self, i: u64, e: Entry) -> bool {
        let dense_len = self.dense.len() as u64;
        if i < dense_len {
            let slot = &mut self.dense[i as usize];
            let new = slot.is_none();
            *slot = Some(e);
            new
        } else if i <= self.count as u64 * 2 + 64 && !self.sparse.contains_key(&i) {
            // Growth bounded by the entries set (each paid for by an
            // opcode), not by the index asked for: PUTs of doubling
            // indices must not double the allocation each time.
            self.dense.resize_with(i as usize, || None);
            self.dense.push(Some(e));
            true
        } else {
            self.sparse.insert(i, e).is_none()
        }
    }
}

struct Reader<'a, 'l> {
    data: &'a [u8],
    pos: usize,
    /// Where the current opcode starts (for error messages).
    at: usize,
    limits: &'l Limits,
    stack: Vec<Item>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: Memo,
    proto: u8,
    pushed: usize,
    /// The memo entries a GET reads (see [`scan_gets`]), if known: then
    /// `MEMOIZE` keeps only those.
    wanted: Vec<u64>,
    skip: bool,
    /// Set when a GET reads an entry that was skipped (see `loads_with`).
    rescan: bool,
    /// The memo indices of an open item past its first (`Item::memo`),
    /// by stack position: only explicit `PUT`s make them.
    more_memo: BTreeMap<usize, Vec<u64>>,
}

fn invalid(what: impl Into<String>) -> ErrorKind {
    ErrorKind::Invalid(what.into())
}

/// Whether a value is a container the machine may still change.
fn changeable(v: &Value) -> bool {
    match v {
        Value::List(l) => !l.is_shared(),
        Value::Dict(d) => !d.is_shared(),
        Value::Set(s) => !s.is_shared(),
        Value::Object(o) => !o.is_shared(),
        _ => false,
    }
}

fn container_depth(children: impl IntoIterator<Item = usize>) -> usize {
    children.into_iter().max().map_or(1, |d| d + 1)
}

impl<'a, 'l> Reader<'a, 'l> {
    fn new(data: &'a [u8], limits: &'l Limits, spare: Buffers, skip: bool) -> Reader<'a, 'l> {
        Reader {
            data,
            pos: 0,
            at: 0,
            limits,
            stack: spare.stack,
            marks: spare.marks,
            memo: Memo {
                dense: spare.dense,
                ..Memo::default()
            },
            proto: 0,
            pushed: 0,
            wanted: spare.wanted,
            skip,
            rescan: false,
            more_memo: BTreeMap::new(),
        }
    }

    /// Whether a GET reads memo entry `i` (always, unless the scan knows).
    fn wanted(&self, i: u64) -> bool {
        !self.skip
            || usize::try_from(i / 64)
                .ok()
                .and_then(|w| self.wanted.get(w))
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::at(kind, self.at)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], Error> {
        let rest = self.data.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= rest => {
                let out = &self.data[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(self.err(ErrorKind::Truncated)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let b = self.take(N as u64)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Text up to (not including) the next `\n`.
    fn line(&mut self) -> Result<&[u8], Error> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(self.err(ErrorKind::Truncated)),
        }
    }

    fn line_str(&mut self) -> Result<&str, Error> {
        let at = self.at;
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| Error::at(invalid("a text operand is not UTF-8"), at))
    }

    fn decimal_line(&mut self) -> Result<u64, Error> {
        let at = self.at;
        let text = self.line_str()?.trim_end();
        text.parse().map_err(|_| {
            Error::at(
                invalid(format!("expected a decimal memo index, found {text:?}")),
                at,
            )
        })
    }

    /// The memo index operand of a `PUT` or `GET` opcode: decimal text,
    /// a u8 (`BIN…`) or a u32 (`LONG_BIN…`).
    fn memo_index(&mut self, op: u8) -> Result<u64, Error> {
        match op {
            BINPUT | BINGET => self.u8().map(u64::from),
            LONG_BINPUT | LONG_BINGET => self.u32().map(u64::from),
            _ => self.decimal_line(),
        }
    }

    // Inlined so that each opcode builds its value in the stack's slot:
    // out of line, the value went through two stack temporaries whose
    // reloads stalled on store forwarding (a quarter of `loads` in perf).
    #[inline(always)]
    fn push(&mut self, value: Value, depth: usize) -> Result<(), Error> {
        self.pushed += 1;
        if self.pushed > self.limits.max_items {
            return Err(self.err(ErrorKind::Limit(Limit::Items, self.limits.max_items)));
        }
        if depth > self.limits.max_depth {
            return Err(self.err(ErrorKind::Limit(Limit::Depth, self.limits.max_depth)));
        }
        self.stack.push(Item {
            value,
            depth,
            memo: None,
        });
        Ok(())
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn underflow(&self) -> Error {
        self.err(invalid("stack underflow"))
    }

    /// Makes the item at `pos` shareable: memo entries that point at it
    /// get a clone.
    #[inline(always)]
    fn freeze(&mut self, pos: usize) {
        // Nearly every item has no memo entry while open: that test is
        // inlined where items leave the stack, the rest is not.
        if self.stack[pos].memo.is_some() {
            self.freeze_open(pos);
        }
    }

    #[inline(never)]
    fn freeze_open(&mut self, pos: usize) {
        let item = &mut self.stack[pos];
        let Some(first) = item.memo.take() else {
            return;
        };
        let (value, depth) = (item.value.clone(), item.depth);
        // Every item leaves the stack through here (`pop`, `pop_mark`), so
        // no other item at `pos` inherits these.
        let more = if self.more_memo.is_empty() {
            Vec::new()
        } else {
            self.more_memo.remove(&pos).unwrap_or_default()
        };
        for i in std::iter::once(first).chain(more) {
            let here = |e: &Entry| matches!(e, Entry::Open(p) if *p == pos);
            match self.memo.slot(i) {
                Some(slot) if slot.as_ref().is_some_and(here) => {
                    *slot = Some(Entry::Value(value.clone(), depth));
                }
                Some(_) => {}
                None => {
                    if self.memo.sparse.get(&i).is_some_and(here) {
                        self.memo
                            .sparse
                            .insert(i, Entry::Value(value.clone(), depth));
                    }
                }
            }
        }
    }

    fn pop(&mut self) -> Result<(Value, usize), Error> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        let top = self.stack.len() - 1;
        self.freeze(top);
        let item = self.stack.pop().expect("checked above");
        Ok((item.value, item.depth))
    }

    /// Pops everything above the last mark, and the mark: the values, and
    /// the depth of a container holding them.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, usize), Error> {
        let (mark, depth) = self.take_mark()?;
        Ok((self.stack.drain(mark..).map(|i| i.value).collect(), depth))
    }

    /// Pops the last mark and readies the items above it to leave the
    /// stack: where they start, and the depth of a container holding them.
    fn take_mark(&mut self) -> Result<(usize, usize), Error> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err(invalid("no MARK on the stack")))?;
        let mut depth = 1;
        for pos in mark..self.stack.len() {
            self.freeze(pos);
            depth = depth.max(self.stack[pos].depth + 1);
        }
        self.check_depth(depth)?;
        Ok((mark, depth))
    }

    /// The item under the operands just popped: the one an `APPEND`,
    /// `SETITEM` or `BUILD` changes.
    fn target(&mut self) -> Result<&mut Item, Error> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        let at = self.at;
        let item = self.stack.last_mut().expect("checked above");
        if !changeable(&item.value) && is_container(&item.value) {
            return Err(Error::at(ErrorKind::Recursive, at));
        }
        Ok(item)
    }

    fn deeper(&self, item_depth: usize, child: usize) -> Result<usize, Error> {
        let d = item_depth.max(child + 1);
        if d > self.limits.max_depth {
            return Err(self.err(ErrorKind::Limit(Limit::Depth, self.limits.max_depth)));
        }
        Ok(d)
    }

    /// Inlined for the common case, an entry no GET reads: a count.
    #[inline(always)]
    fn memo_put(&mut self, i: u64) -> Result<(), Error> {
        if self.stack.len() > self.fence()
            && !self.wanted(i)
            && self.memo.count < self.limits.max_memo
        {
            // Only `MEMOIZE` memoizes here (see `scan_gets`), so `i` is
            // `count`, a new index: counted as if kept.
            self.memo.count += 1;
            return Ok(());
        }
        self.memo_put_slow(i)
    }

    #[inline(never)]
    fn memo_put_slow(&mut self, i: u64) -> Result<(), Error> {
        if self.stack.len() <= self.fence() {
            return Err(self.err(invalid("memoize with an empty stack")));
        }
        if !self.wanted(i) {
            self.memo.count += 1;
            if self.memo.count > self.limits.max_memo {
                return Err(self.err(ErrorKind::Limit(Limit::Memo, self.limits.max_memo)));
            }
            return Ok(());
        }
        let pos = self.stack.len() - 1;
        let entry = if changeable(&self.stack[pos].value) {
            let item = &mut self.stack[pos];
            match item.memo {
                None => item.memo = Some(i),
                Some(_) => self.more_memo.entry(pos).or_default().push(i),
            }
            Entry::Open(pos)
        } else {
            let item = &self.stack[pos];
            Entry::Value(item.value.clone(), item.depth)
        };
        if self.memo.put(i, entry) {
            self.memo.count += 1;
            if self.memo.count > self.limits.max_memo {
                return Err(self.err(ErrorKind::Limit(Limit::Memo, self.limits.max_memo)));
            }
        }
        Ok(())
    }

    fn memo_get(&mut self, i: u64) -> Result<(), Error> {
        let (value, depth) = match self.memo.get(i) {
            None => {
                // Skipped although a GET reads it: the scan was wrong.
                self.rescan = self.skip && i < self.memo.count as u64;
                return Err(self.err(ErrorKind::MemoMissing(i)));
            }
            Some(Entry::Value(v, d)) => (v.clone(), *d),
            Some(Entry::Open(pos)) => {
                let pos = *pos;
                self.freeze(pos);
                (self.stack[pos].value.clone(), self.stack[pos].depth)
            }
        };
        self.push(value, depth)
    }

    fn str_value(&self, bytes: &[u8]) -> Result<Value, Error> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(s.into())),
            Err(_) => Err(self.err(invalid(
                "a str is not valid UTF-8 (a lone surrogate, which Rust strings cannot hold?)",
            ))),
        }
    }

    /// A Python 2 `str`, decoded as CPython's default `encoding="ASCII"`.
    fn py2_str(&self, bytes: &[u8]) -> Result<Value, Error> {
        if !bytes.is_ascii() {
            return Err(self.err(invalid(
                "a Python 2 str that is not ASCII (CPython's default encoding='ASCII' refuses it too)",
            )));
        }
        self.str_value(bytes)
    }

    fn global(&self, module: &str, name: &str) -> Global {
        if self.proto < 3 {
            let (m, n) = crate::compat::python3_name(module, name);
            Global::new(m, n)
        } else {
            Global::new(module, name)
        }
    }

    /// Empties the buffers (dropping what a failed or finished read left
    /// in them) and keeps them for the thread's next read, if small.
    fn keep_buffers(&mut self) {
        let spare = self.take_buffers();
        if spare.stack.capacity() > KEEP_BUFFERS
            || spare.dense.capacity() > KEEP_BUFFERS
            || spare.marks.capacity() > KEEP_BUFFERS
            || spare.wanted.capacity() > KEEP_BUFFERS
        {
            return;
        }
        // `try_with`: during thread exit the slot may be gone already.
        let _ = SPARE.try_with(|s| s.set(Some(spare)));
    }

    /// The buffers, emptied.
    fn take_buffers(&mut self) -> Buffers {
        let mut spare = Buffers {
            stack: std::mem::take(&mut self.stack),
            marks: std::mem::take(&mut self.marks),
            dense: std::mem::take(&mut self.memo.dense),
            wanted: std::mem::take(&mut self.wanted),
        };
        spare.stack.clear();
        spare.marks.clear();
        spare.dense.clear();
        spare
    }

    fn run(&mut self) -> Result<Value, Error> {
        loop {
            self.at = self.pos;
            let op = match self.data.get(self.pos) {
                Some(op) => *op,
                None => return Err(self.err(ErrorKind::Truncated)),
            };
            self.pos += 1;
            match op {
                STOP => return self.pop().map(|(v, _)| v),
                PROTO => {
                    let p = self.u8()?;
                    if p > HIGHEST_PROTOCOL {
                        return Err(self.err(ErrorKind::UnsupportedProtocol(p)));
                    }
                    self.proto = p;
                }
                FRAME => {
                    // Frames only group opcodes for buffered readers; the
                    // whole pickle is in memory, so check the length only.
                    let n = self.u64()?;
                    if n > (self.data.len() - self.pos) as u64 {
                        return Err(self.err(ErrorKind::Truncated));
                    }
                }
                MARK => {
                    // Counted as a value: a pickle of nothing but marks
                    // must not grow the mark stack without bound.
                    self.pushed += 1;
                    if self.pushed > self.limits.max_items {
                        return Err(self.err(ErrorKind::Limit(Limit::Items, self.limits.max_items)));
                    }
                    self.marks.push(self.stack.len());
                }
                POP => {
                    // As CPython: a mark right at the top goes first.
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                POP_MARK => {
                    self.pop_mark()?;
                }
                DUP => {
                    if self.stack.len() <= self.fence() {
                        return Err(self.underflow());
                    }
                    let top = self.stack.len() - 1;
                    self.freeze(top);
                    let (v, d) = (self.stack[top].value.clone(), self.stack[top].depth);
                    self.push(v, d)?;
                }
                NONE => self.push(Value::None, 0)?,
                NEWTRUE => self.push(Value::Bool(true), 0)?,
                NEWFALSE => self.push(Value::Bool(false), 0)?,
                BININT => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)), 0)?;
                }
                BININT1 => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)), 0)?;
                }
                BININT2 => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)), 0)?;
                }
                LONG1 => {
                    let n = self.u8()?;
                    let b = self.take(u64::from(n))?;
                    let v = Value::int(BigInt::from_signed_bytes_le(b));
                    self.push(v, 0)?;
                }
                LONG4 => {
                    let n = i32::from_le_bytes(self.array()?);
                    if n < 0 {
                        return Err(self.err(invalid("LONG4 with a negative byte count")));
                    }
                    let b = self.take(n as u64)?;
                    let v = Value::int(BigInt::from_signed_bytes_le(b));
                    self.push(v, 0)?;
                }
                INT => {
                    let text = self.line_str()?.trim_end().to_string();
                    let v = match text.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => self.parse_int(t)?,
                    };
                    self.push(v, 0)?;
                }
                LONG => {
                    let text = self.line_str()?.trim_end().to_string();
                    let digits = text.strip_suffix('L').unwrap_or(&text);
                    let v = self.parse_int(digits)?;
                    self.push(v, 0)?;
                }
                FLOAT => {
                    let text = self.line_str()?.trim().to_string();
                    let v: f64 = text
                        .parse()
                        .map_err(|_| self.err(invalid(format!("FLOAT operand {text:?}"))))?;
                    self.push(Value::Float(v), 0)?;
                }
                BINFLOAT => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v), 0)?;
                }
                SHORT_BINUNICODE => {
                    let n = self.u8()?;
                    let v = Value::Str(self.str_at(u64::from(n))?);
                    self.push(v, 0)?;
                }
                BINUNICODE => {
                    let n = self.u32()?;
                    let v = Value::Str(self.str_at(u64::from(n))?);
                    self.push(v, 0)?;
                }
                BINUNICODE8 => {
                    let n = self.u64()?;
                    let v = Value::Str(self.str_at(n)?);
                    self.push(v, 0)?;
                }
                UNICODE => {
                    let line = self.line()?.to_vec();
                    let v = Value::Str(
                        raw_unicode_escape(&line)
                            .map_err(|e| self.err(invalid(e)))?
                            .into(),
                    );
                    self.push(v, 0)?;
                }
                SHORT_BINBYTES => {
                    let n = self.u8()?;
                    let v = Value::Bytes(self.take(u64::from(n))?.into());
                    self.push(v, 0)?;
                }
                BINBYTES => {
                    let n = self.u32()?;
                    let v = Value::Bytes(self.take(u64::from(n))?.into());
                    self.push(v, 0)?;
                }
                BINBYTES8 => {
                    let n = self.u64()?;
                    let v = Value::Bytes(self.take(n)?.into());
                    self.push(v, 0)?;
                }
                BYTEARRAY8 => {
                    let n = self.u64()?;
                    let v = Value::ByteArray(self.take(n)?.to_vec().into());
                    self.push(v, 0)?;
                }
                SHORT_BINSTRING => {
                    let n = self.u8()?;
                    let b = self.take(u64::from(n))?.to_vec();
                    let v = self.py2_str(&b)?;
                    self.push(v, 0)?;
                }
                BINSTRING => {
                    let n = i32::from_le_bytes(self.array()?);
                    if n < 0 {
                        return Err(self.err(invalid("BINSTRING with a negative length")));
                    }
                    let b = self.take(n as u64)?.to_vec();
                    let v = self.py2_str(&b)?;
                    self.push(v, 0)?;
                }
                STRING => {
                    let line = self.line()?.to_vec();
                    let b = unquote_py2(&line).map_err(|e| self.err(invalid(e)))?;
                    let v = self.py2_str(&b)?;
                    self.push(v, 0)?;
                }
                EMPTY_TUPLE => self.push(Value::Tuple(Tuple::empty()), 1)?,
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1 + 1);
                    if self.stack.len() < self.fence() + n {
                        return Err(self.underflow());
                    }
                    // As a mark below the last n items.
                    self.marks.push(self.stack.len() - n);
                    let (items, depth) = self.pop_mark()?;
                    self.push(Value::Tuple(items.into()), depth)?;
                }
                TUPLE => {
                    let (items, depth) = self.pop_mark()?;
                    self.push(Value::Tuple(items.into()), depth)?;
                }
                EMPTY_LIST => self.push(Value::List(List::new()), 1)?,
                LIST => {
                    let (items, depth) = self.pop_mark()?;
                    self.push(Value::List(List::from(items)), depth)?;
                }
                EMPTY_DICT => self.push(Value::Dict(Dict::new()), 1)?,
                DICT => {
                    let (items, depth) = self.pop_mark()?;
                    let mut dict = Dict::with_capacity(items.len() / 2);
                    self.set_items(&mut dict, items)?;
                    self.push(Value::Dict(dict), depth)?;
                }
                EMPTY_SET => self.push(Value::Set(Set::new()), 1)?,
                FROZENSET => {
                    let (items, depth) = self.pop_mark()?;
                    let set = self.set_of(items.into_iter())?;
                    self.push(Value::FrozenSet(set), depth)?;
                }
                APPEND => {
                    let (item, d) = self.pop()?;
                    self.append(vec![item], d + 1)?;
                }
                APPENDS => {
                    let (items, depth) = self.pop_mark()?;
                    self.append(items, depth)?;
                }
                SETITEM => {
                    let (v, dv) = self.pop()?;
                    let (k, dk) = self.pop()?;
                    self.setitems(vec![k, v], dv.max(dk) + 1)?;
                }
                SETITEMS => self.setitems_marked()?,
                ADDITEMS => {
                    let (items, depth) = self.pop_mark()?;
                    let at = self.at;
                    let target = self.target()?;
                    let Value::Set(set) = &mut target.value else {
                        return Err(Error::at(
                            invalid("ADDITEMS on something that is not a set"),
                            at,
                        ));
                    };
                    for v in items {
                        set.insert(v)
                            .map_err(|u| Error::at(ErrorKind::Unhashable(u), at))?;
                    }
                    target.depth = target.depth.max(depth);
                }
                BUILD => {
                    let (state, d) = self.pop()?;
                    let at = self.at;
                    let target = self.target()?;
                    let Value::Object(obj) = &mut target.value else {
                        return Err(Error::at(
                            invalid(format!("BUILD on a {}", target.value.type_name())),
                            at,
                        ));
                    };
                    obj.make_mut().ops.push(ObjectOp::Build(state));
                    let depth = target.depth;
                    let new = self.deeper(depth, d)?;
                    self.stack.last_mut().expect("target exists").depth = new;
                }
                GLOBAL => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    let g = self.global(&module, &name);
                    self.push(Value::Global(g), 0)?;
                }
                STACK_GLOBAL => {
                    let (name, _) = self.pop()?;
                    let (module, _) = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err(invalid("STACK_GLOBAL needs two str")));
                    };
                    self.push(Value::Global(Global::new(module, name)), 0)?;
                }
                REDUCE => {
                    let (args, da) = self.pop()?;
                    let (callable, dc) = self.pop()?;
                    if !matches!(args, Value::Tuple(_)) {
                        return Err(self.err(invalid("REDUCE arguments are not a tuple")));
                    }
                    self.callable(&callable, "REDUCE")?;
                    let depth = container_depth([da, dc]);
                    let v = match builtin_reduction(&callable, &args) {
                        Some(v) => v.map_err(|e| self.err(e))?,
                        None => Value::Object(Object::reduce(callable, args)),
                    };
                    self.push(v, depth)?;
                }
                NEWOBJ => {
                    let (args, da) = self.pop()?;
                    let (cls, dc) = self.pop()?;
                    if !matches!(args, Value::Tuple(_)) {
                        return Err(self.err(invalid("NEWOBJ arguments are not a tuple")));
                    }
                    self.callable(&cls, "NEWOBJ")?;
                    let obj = Object::new(Constructor::NewObj, cls, args);
                    self.push(Value::Object(obj), container_depth([da, dc]))?;
                }
                NEWOBJ_EX => {
                    let (kwargs, dk) = self.pop()?;
                    let (args, da) = self.pop()?;
                    let (cls, dc) = self.pop()?;
                    if !matches!(args, Value::Tuple(_)) || !matches!(kwargs, Value::Dict(_)) {
                        return Err(
                            self.err(invalid("NEWOBJ_EX needs an args tuple and a kwargs dict"))
                        );
                    }
                    let obj = Object::from(ObjectData {
                        constructor: Constructor::NewObjEx,
                        callable: cls,
                        args,
                        kwargs: Some(kwargs),
                        ops: Vec::new(),
                    });
                    self.push(Value::Object(obj), container_depth([da, dc, dk]))?;
                }
                INST => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    let (items, depth) = self.pop_mark()?;
                    let args = Value::Tuple(items.into());
                    let cls = Value::Global(self.global(&module, &name));
                    let obj = Object::new(Constructor::Inst, cls, args);
                    self.push(Value::Object(obj), depth + 1)?;
                }
                OBJ => {
                    let (mut items, depth) = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err(invalid("OBJ without a class")));
                    }
                    let cls = items.remove(0);
                    self.callable(&cls, "OBJ")?;
                    let depth = depth + 1;
                    let args = Value::Tuple(items.into());
                    let obj = Object::new(Constructor::Obj, cls, args);
                    self.push(Value::Object(obj), depth)?;
                }
                MEMOIZE => {
                    let i = self.memo.count as u64;
                    self.memo_put(i)?;
                }
                PUT | BINPUT | LONG_BINPUT => {
                    let i = self.memo_index(op)?;
                    self.memo_put(i)?;
                }
                GET | BINGET | LONG_BINGET => {
                    let i = self.memo_index(op)?;
                    self.memo_get(i)?;
                }
                PERSID | BINPERSID => {
                    return Err(
                        self.err(ErrorKind::Unsupported("persistent ids (PERSID, BINPERSID)"))
                    );
                }
                EXT1 | EXT2 | EXT4 => {
                    return Err(self.err(ErrorKind::Unsupported(
                        "the copyreg extension registry (EXT1, EXT2, EXT4)",
                    )));
                }
                NEXT_BUFFER | READONLY_BUFFER => {
                    return Err(self.err(ErrorKind::Unsupported(
                        "out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER); pickle in-band",
                    )));
                }
                other => return Err(self.err(ErrorKind::UnknownOpcode(other))),
            }
        }
    }

    /// Refuses a callable or class that cannot be one: only a global or an
    /// object (a `getattr` result, a `functools.partial`) can be called.
    fn callable(&self, v: &Value, opcode: &str) -> Result<(), Error> {
        match v {
            Value::Global(_) | Value::Object(_) => Ok(()),
            other => Err(self.err(invalid(format!(
                "{opcode} calls a {}, which is not callable",
                other.type_name()
            )))),
        }
    }

    /// The next `n` bytes as a str. Returns the `Arc` rather than a
    /// `Value`: a `Result<Value, _>` came back through memory a byte at a
    /// time and was reloaded whole, a store-forwarding stall on every
    /// string.
    #[inline(always)]
    fn str_at(&mut self, n: u64) -> Result<std::sync::Arc<str>, Error> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.into()),
            Err(_) => Err(self.err(invalid(
                "a str is not valid UTF-8 (a lone surrogate, which Rust strings cannot hold?)",
            ))),
        }
    }

    fn parse_int(&self, text: &str) -> Result<Value, Error> {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        BigInt::parse_decimal(text).map(Value::int).ok_or_else(|| {
            self.err(invalid(format!(
                "integer operand {:?} is not decimal or has more than {} digits",
                text.chars().take(40).collect::<String>(),
                mp_value::MAX_STR_DIGITS
            )))
        })
    }

    fn check_depth(&self, depth: usize) -> Result<(), Error> {
        if depth > self.limits.max_depth {
            return Err(self.err(ErrorKind::Limit(Limit::Depth, self.limits.max_depth)));
        }
        Ok(())
    }

    fn set_of(&self, items: impl Iterator<Item = Value>) -> Result<Set, Error> {
        Set::from_values(items).map_err(|u| self.err(ErrorKind::Unhashable(u)))
    }

    fn set_items(&self, dict: &mut Dict, items: Vec<Value>) -> Result<(), Error> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(invalid("odd number of items for SETITEMS or DICT")));
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            dict.insert(k, v)
                .map_err(|u| self.err(ErrorKind::Unhashable(u)))?;
        }
        Ok(())
    }

    /// `items` into the target; `depth` is that of a container of them.
    fn append(&mut self, items: Vec<Value>, depth: usize) -> Result<(), Error> {
        self.check_depth(depth)?;
        let at = self.at;
        let target = self.target()?;
        match &mut target.value {
            Value::List(l) => {
                let l = l.make_mut();
                if l.is_empty() {
                    *l = items;
                } else {
                    l.extend(items);
                }
            }
            Value::Object(o) => o.make_mut().ops.push(ObjectOp::Append(items)),
            other => {
                return Err(Error::at(
                    invalid(format!("APPEND or APPENDS on a {}", other.type_name())),
                    at,
                ));
            }
        }
        target.depth = target.depth.max(depth);
        Ok(())
    }

    /// `SETITEMS`: the pairs above the last mark into the item under it.
    /// For a dict (the common case: every dict CPython pickles), they go
    /// straight from the stack, not through a `Vec` of their own; the
    /// checks and their order are those of `pop_mark` then `setitems`.
    fn setitems_marked(&mut self) -> Result<(), Error> {
        let (mark, depth) = self.take_mark()?;
        let n = self.stack.len() - mark;
        if !n.is_multiple_of(2) {
            return Err(self.err(invalid("odd number of items for SETITEMS")));
        }
        if mark <= self.fence() || !matches!(self.stack[mark - 1].value, Value::Dict(_)) {
            let items = self.stack.drain(mark..).map(|i| i.value).collect();
            return self.setitems(items, depth);
        }
        let at = self.at;
        let (below, items) = self.stack.split_at_mut(mark);
        let target = below.last_mut().expect("mark > fence >= 0");
        let Value::Dict(d) = &mut target.value else {
            return Err(Error::at(invalid("SETITEMS target changed"), at));
        };
        if d.is_shared() {
            return Err(Error::at(ErrorKind::Recursive, at));
        }
        d.reserve(n / 2);
        for pair in items.chunks_exact_mut(2) {
            let k = std::mem::take(&mut pair[0].value);
            let v = std::mem::take(&mut pair[1].value);
            d.insert(k, v)
                .map_err(|u| Error::at(ErrorKind::Unhashable(u), at))?;
        }
        target.depth = target.depth.max(depth);
        self.stack.truncate(mark);
        Ok(())
    }

    /// `items` (key, value, key, value…) into the target; `depth` is that
    /// of a container of them.
    fn setitems(&mut self, items: Vec<Value>, depth: usize) -> Result<(), Error> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(invalid("odd number of items for SETITEMS")));
        }
        self.check_depth(depth)?;
        let at = self.at;
        let target = self.target()?;
        match &mut target.value {
            Value::Dict(d) => {
                d.reserve(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.insert(k, v)
                        .map_err(|u| Error::at(ErrorKind::Unhashable(u), at))?;
                }
            }
            Value::Object(o) => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                o.make_mut().ops.push(ObjectOp::SetItems(pairs));
            }
            other => {
                return Err(Error::at(
                    invalid(format!("SETITEM or SETITEMS on a {}", other.type_name())),
                    at,
                ));
            }
        }
        target.depth = target.depth.max(depth);
        Ok(())
    }
}

fn is_container(v: &Value) -> bool {
    matches!(
        v,
        Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Object(_)
    )
}

/// Text as latin-1 bytes, if every character is below U+0100.
fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

fn is_latin1_name(enc: &str) -> bool {
    matches!(
        enc.to_ascii_lowercase().replace('_', "-").as_str(),
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1"
    )
}

/// The built-in values CPython pickles by reduction in protocols below 4
/// (sets, frozensets, bytearrays) and below 3 (bytes): read back as those
/// values, as CPython's unpickler gets them.
fn builtin_reduction(callable: &Value, args: &Value) -> Option<Result<Value, ErrorKind>> {
    let Value::Global(g) = callable else {
        return None;
    };
    let args = args.as_seq()?;
    let items = |v: &Value| v.as_seq().map(<[Value]>::to_vec);
    match (g.module(), g.name(), args) {
        ("builtins", "set", []) => Some(Ok(Value::Set(Set::new()))),
        ("builtins", "set", [v]) => {
            let v = items(v)?;
            Some(
                Set::from_values(v)
                    .map(Value::Set)
                    .map_err(ErrorKind::Unhashable),
            )
        }
        ("builtins", "frozenset", []) => Some(Ok(Value::FrozenSet(Set::new()))),
        ("builtins", "frozenset", [v]) => {
            let v = items(v)?;
            Some(
                Set::from_values(v)
                    .map(Value::FrozenSet)
                    .map_err(ErrorKind::Unhashable),
            )
        }
        ("builtins", "bytearray", []) => Some(Ok(Value::ByteArray(Vec::new().into()))),
        ("builtins", "bytearray", [Value::Bytes(b)]) => {
            Some(Ok(Value::ByteArray(b.to_vec().into())))
        }
        ("builtins", "bytearray", [Value::Str(s), Value::Str(enc)]) if is_latin1_name(enc) => {
            latin1(s).map(|b| Ok(Value::ByteArray(b.into())))
        }
        ("builtins", "bytes", []) => Some(Ok(Value::Bytes(Vec::new().into()))),
        ("_codecs", "encode", [Value::Str(s), Value::Str(enc)]) if is_latin1_name(enc) => {
            latin1(s).map(|b| Ok(Value::Bytes(b.into())))
        }
        _ => None,
    }
}

/// Python's `raw-unicode-escape` decoding (protocol 0's `UNICODE`):
/// `\uXXXX` and `\UXXXXXXXX` are escapes, every other byte is a latin-1
/// character.
fn raw_unicode_escape(b: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && (b[i + 1] == b'u' || b[i + 1] == b'U') {
            let n = if b[i + 1] == b'u' { 4 } else { 8 };
            let hex = b
                .get(i + 2..i + 2 + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .ok_or("truncated \\u escape in UNICODE")?;
            let code = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u escape in UNICODE")?;
            out.push(
                char::from_u32(code).ok_or("a surrogate or out-of-range \\u escape in UNICODE")?,
            );
            i += 2 + n;
        } else {
            out.push(char::from(c));
            i += 1;
        }
    }
    Ok(out)
}

/// The bytes of protocol 0's `STRING` operand: a quoted Python 2 `str`
/// literal with its escapes.
fn unquote_py2(line: &[u8]) -> Result<Vec<u8>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = match line {
        [q, inner @ .., last] if (*q == b'\'' || *q == b'"') && last == q => inner,
        _ => return Err("the STRING opcode argument must be quoted".into()),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = inner.get(i) else {
            return Err("a STRING ends in a backslash".into());
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let hex = inner
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("bad \\x escape in STRING")?;
                out.push(hex);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(b: &[u8]) -> Result<Value, Error> {
        loads_with(b, &Limits::default())
    }

    #[test]
    fn protocol_0_text_opcodes() {
        // pickle.dumps(("a'b", 1, 2**70, 1.5, True, None, b"", u"\u20ac"), 0)
        let p = b"(Va'b\np0\nI1\nL1180591620717411303424L\nF1.5\nI01\nNc_codecs\nencode\np1\n(V\np2\nVlatin1\np3\ntp4\nRp5\nV\\u20ac\np6\ntp7\n.";
        let v = load(p).unwrap();
        assert_eq!(
            v.to_string(),
            "(\"a'b\", 1, 1180591620717411303424, 1.5, True, None, b'', '€')"
        );
        assert_eq!(unquote_py2(b"'a\\x41\\101\\n\\''").unwrap(), b"aAA\n'");
    }

    #[test]
    fn memo_of_open_containers_does_not_share_them() {
        // EMPTY_LIST MEMOIZE BININT1 1 APPEND GET 0 TUPLE2: ([1], [1]) shared.
        let v = load(b"\x80\x04]\x94K\x01ah\x00\x86.").unwrap();
        let t = v.as_seq().unwrap();
        assert!(t[0].is(&t[1]));
        assert_eq!(v.to_string(), "([1], [1])");
    }

    #[test]
    fn the_scan_finds_the_entries_gets_read() {
        let mut wanted = Vec::new();
        // EMPTY_LIST MEMOIZE BININT1 1 APPEND GET 0 TUPLE2.
        assert!(scan_gets(b"\x80\x04]\x94K\x01ah\x00\x86.", &mut wanted));
        assert_eq!(wanted, [1]);
        // LONG_BINGET 70, past the input's length: never set, no bit.
        assert!(scan_gets(b"\x80\x04N\x94j\x46\x00\x00\x00.", &mut wanted));
        assert!(wanted.iter().all(|w| *w == 0));
        // Explicit PUTs, text operands, truncation: not exact.
        assert!(!scan_gets(b"K\x07q\x00h\x00.", &mut wanted));
        assert!(!scan_gets(b"I1\n.", &mut wanted));
        assert!(!scan_gets(b"\x80\x04\x8c\x05ab", &mut wanted));
        assert!(!scan_gets(
            b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff.",
            &mut wanted
        ));
    }

    #[test]
    fn a_get_of_a_skipped_entry_reads_the_pickle_again() {
        // As if the scan had missed the GET: the machine notices and
        // `loads_with` reads again keeping every entry.
        let p = b"\x80\x04]\x94K\x01ah\x00\x86.";
        let limits = Limits::default();
        let spare = Buffers::default();
        let mut reader = Reader::new(p, &limits, spare, true);
        assert!(reader.run().is_err());
        assert!(reader.rescan);
        let v = load(p).unwrap();
        let t = v.as_seq().unwrap();
        assert!(t[0].is(&t[1]));
    }

    /// Reads `p` keeping every memo entry, as before the scan.
    fn load_keeping_all(p: &[u8]) -> Result<Value, Error> {
        let limits = Limits::default();
        let spare = Buffers::default();
        Reader::new(p, &limits, spare, false).run()
    }

    #[test]
    fn skipping_entries_changes_nothing_read() {
        let shared = Value::from(vec![Value::Int(1), Value::from("s")]);
        let inner = Value::from((shared.clone(), "t"));
        let values = [
            Value::from((shared.clone(), shared.clone(), inner.clone(), inner, "t")),
            Value::from((Value::from("a"), Value::from("a"), shared)),
            Value::from(vec![Value::Dict(mp_value::Dict::new()); 3]),
        ];
        let mut pickles: Vec<Vec<u8>> = values.iter().map(crate::dumps).collect();
        let written = pickles.len();
        // GETs of a str and of an open list, a tuple of them, DUP:
        // ((['x'], 'x', ['x']), (['x'], 'x', ['x'])), one list, one tuple.
        pickles.push(b"\x80\x04]\x94\x8c\x01x\x94ah\x01h\x00\x872\x86.".to_vec());
        for (i, p) in pickles.iter().enumerate() {
            let (skipped, kept) = (load(p).unwrap(), load_keeping_all(p).unwrap());
            assert_eq!(skipped.to_string(), kept.to_string());
            // The writer memoizes by identity: equal bytes, equal sharing.
            assert_eq!(crate::dumps(&skipped), crate::dumps(&kept));
            if i < written {
                assert_eq!(&crate::dumps(&skipped), p);
            }
        }
        let v = load(&pickles[written]).unwrap();
        let t = v.as_seq().unwrap();
        assert!(t[0].is(&t[1]));
        let inner = t[0].as_seq().unwrap();
        assert!(inner[0].is(&inner[2]));
    }

    #[test]
    fn skipped_entries_still_count_against_the_limit() {
        let p = b"\x80\x04N\x94\x94\x94.";
        assert!(loads_with(p, &Limits::default().max_memo(3)).is_ok());
        let e = loads_with(p, &Limits::default().max_memo(2)).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Limit(Limit::Memo, 2));
    }

    #[test]
    fn recursive_structures_are_refused() {
        // l = []; l.append(l)
        let e = load(b"\x80\x04]\x94h\x00a.").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Recursive);
        // DUP then APPEND of itself.
        assert_eq!(load(b"]2a.").unwrap_err().kind(), &ErrorKind::Recursive);
    }

    #[test]
    fn sparse_memo_indices_do_not_allocate() {
        let v = load(b"K\x07r\xff\xff\xff\xff0j\xff\xff\xff\xff.").unwrap();
        assert_eq!(v.as_i64(), Some(7));
        let e = load(b"K\x07j\x05\x00\x00\x00.").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::MemoMissing(5));
    }

    #[test]
    fn pop_takes_a_mark_first_as_cpython() {
        assert_eq!(load(b"K\x01(0.").unwrap().as_i64(), Some(1));
        assert!(matches!(
            load(b"(0").unwrap_err().kind(),
            ErrorKind::Truncated
        ));
        assert!(matches!(
            load(b"K\x01(.").unwrap_err().kind(),
            ErrorKind::Invalid(_)
        ));
    }
}
