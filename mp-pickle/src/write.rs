//! The writer: protocol 4, opcode for opcode as CPython's own pickler
//! writes it, so that CPython reads it and the bytes match CPython's for
//! the same value:
//!
//! - `PROTO 4`, then `FRAME`s of up to 64 KiB (a frame is closed before
//!   the next object once it holds 64 KiB; a frame under 4 bytes gets no
//!   header; a str or bytes payload of 64 KiB or more is written outside
//!   any frame), as `pickle._Framer` does;
//! - the compact opcodes: `BININT1`/`BININT2`/`BININT`/`LONG1`/`LONG4`,
//!   `SHORT_BINUNICODE`/`BINUNICODE`/`BINUNICODE8`, `SHORT_BINBYTES`/
//!   `BINBYTES`/`BINBYTES8`, `TUPLE1`–`TUPLE3`, `EMPTY_*`, `STACK_GLOBAL`;
//! - `MEMOIZE` after every str, bytes, non-empty tuple, list, dict, set,
//!   frozenset, global and object, and `BINGET`/`LONG_BINGET` when the same
//!   object (by identity; globals by name) comes again;
//! - items in batches of 1,000 (`APPENDS`, `SETITEMS`, `ADDITEMS`; a batch
//!   of one is `APPEND`/`SETITEM`);
//! - bytearrays as `builtins.bytearray` reductions (protocol 4 has no
//!   `BYTEARRAY8`), objects as their constructor opcode followed by their
//!   steps in order.
//!
//! It works from an explicit task list, so any depth is fine.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use mp_value::{BigInt, Constructor, Global, ObjectOp, Value};

use crate::op::*;

/// CPython's `_Framer._FRAME_SIZE_TARGET`.
const FRAME_TARGET: usize = 64 * 1024;
/// CPython's `_Framer._FRAME_SIZE_MIN`: smaller frames get no header.
const FRAME_MIN: usize = 4;
/// CPython's `Pickler._BATCHSIZE`.
const BATCH: usize = 1000;
/// `FRAME` and its u64 length.
const FRAME_HEADER: usize = 9;

/// Writes `value` as a protocol 4 pickle.
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    dump_into(value, &mut out);
    out
}

/// Appends the protocol 4 pickle of `value` to `out` (to reuse one buffer
/// across messages).
pub fn dump_into(value: &Value, out: &mut Vec<u8>) {
    let memo = SPARE_MEMO.with(Cell::take).unwrap_or_default();
    let mut w = Writer {
        out,
        frame_start: 0,
        memo,
        globals: HashMap::new(),
        builtins: None,
        next_memo: 0,
    };
    w.out.extend_from_slice(&[PROTO, 4]);
    w.open_frame();
    w.run(value);
    w.out.push(STOP);
    w.close_frame();
    // The memo table is kept for the thread's next pickle (a server writes
    // one per reply), unless one big value made it big.
    let mut memo = w.memo;
    if memo.capacity() <= KEEP_MEMO {
        memo.clear();
        let _ = SPARE_MEMO.try_with(|s| s.set(Some(memo)));
    }
}

type MemoTable = HashMap<usize, u32, BuildHasherDefault<AddressHasher>>;

/// Memo tables bigger than this are freed rather than kept.
const KEEP_MEMO: usize = 1024;

thread_local! {
    static SPARE_MEMO: Cell<Option<MemoTable>> = const { Cell::new(None) };
}

enum Task<'a> {
    Save(&'a Value),
    Op(u8),
    /// Memoize the object at this address.
    Memoize(usize),
    /// Memoize an object we made up (a bytearray's arguments), which no
    /// later reference can name.
    MemoizeAnon,
    /// `TUPLE1`..`TUPLE3` or `TUPLE`, then memoize.
    EndTuple(usize, usize),
    /// `builtins.bytearray`, for a bytearray's reduction.
    Bytearray,
    /// A bytes object made up for a bytearray's reduction.
    FreshBytes(&'a [u8]),
    /// The text of an `INST` opcode.
    Inst(&'a Global),
}

struct Writer<'a, 'o> {
    out: &'o mut Vec<u8>,
    /// Where the open frame's reserved header starts.
    frame_start: usize,
    /// Memo indices by object address (values are borrowed for the whole
    /// write, so addresses are unique).
    memo: MemoTable,
    /// Globals by name: a class is one object in Python, however many
    /// `Global` values name it.
    globals: HashMap<(&'a str, &'a str), u32>,
    /// The memo index of `'builtins'`, once written: CPython's is one
    /// interned object for every built-in class, whichever `Global` names
    /// it (ours, or the bytearray reduction we make up).
    builtins: Option<u32>,
    next_memo: u32,
}

impl<'a> Writer<'a, '_> {
    fn open_frame(&mut self) {
        self.frame_start = self.out.len();
        self.out.extend_from_slice(&[0; FRAME_HEADER]);
    }

    /// Ends the open frame: writes its header, or removes the reserved
    /// space when the frame is too small to deserve one.
    fn close_frame(&mut self) {
        let body = self.out.len() - self.frame_start - FRAME_HEADER;
        if body < FRAME_MIN {
            self.out
                .drain(self.frame_start..self.frame_start + FRAME_HEADER);
        } else {
            self.out[self.frame_start] = FRAME;
            self.out[self.frame_start + 1..self.frame_start + FRAME_HEADER]
                .copy_from_slice(&(body as u64).to_le_bytes());
        }
    }

    /// Before each object, as `Pickler.save` calls `commit_frame`.
    fn frame_boundary(&mut self) {
        if self.out.len() - self.frame_start - FRAME_HEADER >= FRAME_TARGET {
            self.close_frame();
            self.open_frame();
        }
    }

    /// A payload of 64 KiB or more goes outside any frame.
    fn write_large(&mut self, header: &[u8], payload: &[u8]) {
        self.close_frame();
        self.out.extend_from_slice(header);
        self.out.extend_from_slice(payload);
        self.open_frame();
    }

    fn memoize(&mut self) -> u32 {
        self.out.push(MEMOIZE);
        let i = self.next_memo;
        self.next_memo += 1;
        i
    }

    fn get(&mut self, i: u32) {
        match u8::try_from(i) {
            Ok(i) => self.out.extend_from_slice(&[BINGET, i]),
            Err(_) => {
                self.out.push(LONG_BINGET);
                self.out.extend_from_slice(&i.to_le_bytes());
            }
        }
    }

    /// `GET` if the object at `id` is in the memo.
    fn memo_hit(&mut self, id: Option<usize>) -> bool {
        match id.and_then(|id| self.memo.get(&id).copied()) {
            Some(i) => {
                self.get(i);
                true
            }
            None => false,
        }
    }

    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.out.extend_from_slice(&[BININT1, v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.out.push(BININT2);
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(BININT);
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            self.long(&BigInt::from(v));
        }
    }

    fn long(&mut self, v: &BigInt) {
        let b = v.to_signed_bytes_le();
        match u8::try_from(b.len()) {
            Ok(n) => self.out.extend_from_slice(&[LONG1, n]),
            Err(_) => {
                self.out.push(LONG4);
                self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            }
        }
        self.out.extend_from_slice(&b);
    }

    fn str(&mut self, s: &str) {
        let n = s.len();
        if n <= 0xff {
            self.out.extend_from_slice(&[SHORT_BINUNICODE, n as u8]);
            self.out.extend_from_slice(s.as_bytes());
        } else if let Ok(n32) = u32::try_from(n) {
            let mut h = [BINUNICODE, 0, 0, 0, 0];
            h[1..].copy_from_slice(&n32.to_le_bytes());
            self.maybe_large(&h, s.as_bytes());
        } else {
            let mut h = [0; 9];
            h[0] = BINUNICODE8;
            h[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_large(&h, s.as_bytes());
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        let n = b.len();
        if n <= 0xff {
            self.out.extend_from_slice(&[SHORT_BINBYTES, n as u8]);
            self.out.extend_from_slice(b);
        } else if let Ok(n32) = u32::try_from(n) {
            let mut h = [BINBYTES, 0, 0, 0, 0];
            h[1..].copy_from_slice(&n32.to_le_bytes());
            self.maybe_large(&h, b);
        } else {
            let mut h = [0; 9];
            h[0] = BINBYTES8;
            h[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_large(&h, b);
        }
    }

    fn maybe_large(&mut self, header: &[u8], payload: &[u8]) {
        if payload.len() >= FRAME_TARGET {
            self.write_large(header, payload);
        } else {
            self.out.extend_from_slice(header);
            self.out.extend_from_slice(payload);
        }
    }

    /// A global's module or name string: memoized by text.
    /// A global's module or name string: memoized by identity like any
    /// str (the reader keeps CPython's sharing of them: 3.11 writes one
    /// `'collections'` for `OrderedDict` and `defaultdict`, 3.12 two).
    fn name(&mut self, s: &'a std::sync::Arc<str>) {
        self.frame_boundary();
        let id = std::sync::Arc::as_ptr(s) as *const u8 as usize;
        if self.memo_hit(Some(id)) {
            return;
        }
        self.str(s);
        let i = self.memoize();
        self.memo.insert(id, i);
    }

    fn run(&mut self, root: &'a Value) {
        let mut work = Vec::with_capacity(32);
        work.push(Task::Save(root));
        while let Some(t) = work.pop() {
            match t {
                Task::Op(op) => self.out.push(op),
                Task::Memoize(id) => {
                    let i = self.memoize();
                    self.memo.insert(id, i);
                }
                Task::MemoizeAnon => {
                    self.memoize();
                }
                Task::EndTuple(n, id) => {
                    self.out.push(match n {
                        1 => TUPLE1,
                        2 => TUPLE2,
                        3 => TUPLE3,
                        _ => TUPLE,
                    });
                    let i = self.memoize();
                    self.memo.insert(id, i);
                }
                Task::Bytearray => {
                    let g = bytearray_global();
                    self.global(g, None);
                }
                Task::FreshBytes(b) => {
                    self.frame_boundary();
                    self.bytes(b);
                    self.memoize();
                }
                Task::Inst(g) => {
                    self.out.push(INST);
                    self.out.extend_from_slice(g.module().as_bytes());
                    self.out.push(b'\n');
                    self.out.extend_from_slice(g.name().as_bytes());
                    self.out.push(b'\n');
                }
                Task::Save(v) => self.save(v, &mut work),
            }
        }
    }

    /// `STACK_GLOBAL`, or a `GET` of the same class: a class is one
    /// object in Python, however many `Global` values name it.
    fn global(&mut self, g: &'a Global, id: Option<usize>) {
        self.frame_boundary();
        if let Some(&i) = self.globals.get(&(g.module(), g.name())) {
            self.get(i);
            if let Some(id) = id {
                self.memo.insert(id, i);
            }
            return;
        }
        if g.module() == "builtins" {
            match self.builtins {
                Some(i) => self.get(i),
                None => {
                    self.frame_boundary();
                    self.str("builtins");
                    self.builtins = Some(self.memoize());
                }
            }
        } else {
            self.name(g.module_arc());
        }
        self.name(g.name_arc());
        self.out.push(STACK_GLOBAL);
        let i = self.memoize();
        self.globals.insert((g.module(), g.name()), i);
        if let Some(id) = id {
            self.memo.insert(id, i);
        }
    }

    fn save(&mut self, v: &'a Value, work: &mut Vec<Task<'a>>) {
        self.frame_boundary();
        match v {
            Value::None => self.out.push(NONE),
            Value::Bool(b) => self.out.push(if *b { NEWTRUE } else { NEWFALSE }),
            Value::Int(i) => self.int(*i),
            Value::BigInt(b) => match b.to_i64() {
                Some(i) => self.int(i),
                None => self.long(b),
            },
            Value::Float(f) => {
                self.out.push(BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => {
                if !self.memo_hit(v.identity()) {
                    self.str(s);
                    let i = self.memoize();
                    self.memo.insert(v.identity().unwrap_or_default(), i);
                }
            }
            Value::Bytes(b) => {
                if !self.memo_hit(v.identity()) {
                    self.bytes(b);
                    let i = self.memoize();
                    self.memo.insert(v.identity().unwrap_or_default(), i);
                }
            }
            Value::Tuple(t) if t.is_empty() => self.out.push(EMPTY_TUPLE),
            _ if self.memo_hit(v.identity()) => {}
            Value::Tuple(t) => {
                let id = v.identity().unwrap_or_default();
                work.push(Task::EndTuple(t.len(), id));
                work.extend(t.iter().rev().map(Task::Save));
                if t.len() > 3 {
                    work.push(Task::Op(MARK));
                }
            }
            Value::List(l) => {
                self.out.push(EMPTY_LIST);
                self.remember(v);
                batches(work, l, APPEND, APPENDS);
            }
            Value::Dict(d) => {
                self.out.push(EMPTY_DICT);
                self.remember(v);
                if d.len() <= BATCH {
                    push_pairs(work, d.iter(), d.len());
                } else {
                    let pairs: Vec<(&Value, &Value)> = d.iter().collect();
                    for chunk in pairs.chunks(BATCH).rev() {
                        push_pairs(work, chunk.iter().copied(), chunk.len());
                    }
                }
            }
            Value::Set(s) => {
                self.out.push(EMPTY_SET);
                self.remember(v);
                if s.len() <= BATCH {
                    if !s.is_empty() {
                        work.push(Task::Op(ADDITEMS));
                        work.extend(s.iter().rev().map(Task::Save));
                        work.push(Task::Op(MARK));
                    }
                } else {
                    let members: Vec<&Value> = s.iter().collect();
                    for chunk in members.chunks(BATCH).rev() {
                        work.push(Task::Op(ADDITEMS));
                        work.extend(chunk.iter().rev().map(|m| Task::Save(m)));
                        work.push(Task::Op(MARK));
                    }
                }
            }
            Value::FrozenSet(s) => {
                self.out.push(MARK);
                work.push(Task::Memoize(v.identity().unwrap_or_default()));
                work.push(Task::Op(FROZENSET));
                work.extend(s.iter().rev().map(Task::Save));
            }
            Value::ByteArray(b) => {
                // As CPython < 5: bytearray(b'...') or bytearray().
                work.push(Task::Memoize(v.identity().unwrap_or_default()));
                work.push(Task::Op(REDUCE));
                if b.is_empty() {
                    work.push(Task::Op(EMPTY_TUPLE));
                } else {
                    work.push(Task::MemoizeAnon);
                    work.push(Task::Op(TUPLE1));
                    work.push(Task::FreshBytes(b));
                }
                work.push(Task::Bytearray);
            }
            Value::Global(g) => self.global(g, v.identity()),
            Value::Object(o) => {
                let d = o.data();
                // Pushed in reverse: the steps run after the memoize.
                for op in d.ops.iter().rev() {
                    match op {
                        ObjectOp::Build(state) => {
                            work.push(Task::Op(BUILD));
                            work.push(Task::Save(state));
                        }
                        ObjectOp::Append(items) => batches(work, items, APPEND, APPENDS),
                        ObjectOp::SetItems(pairs) => {
                            for chunk in pairs.chunks(BATCH).rev() {
                                work.push(Task::Op(if chunk.len() == 1 {
                                    SETITEM
                                } else {
                                    SETITEMS
                                }));
                                for (k, val) in chunk.iter().rev() {
                                    work.push(Task::Save(val));
                                    work.push(Task::Save(k));
                                }
                                if chunk.len() > 1 {
                                    work.push(Task::Op(MARK));
                                }
                            }
                        }
                    }
                }
                work.push(Task::Memoize(v.identity().unwrap_or_default()));
                match d.constructor {
                    Constructor::Reduce | Constructor::NewObj | Constructor::NewObjEx => {
                        work.push(Task::Op(match d.constructor {
                            Constructor::Reduce => REDUCE,
                            Constructor::NewObj => NEWOBJ,
                            _ => NEWOBJ_EX,
                        }));
                        if let Some(k) = &d.kwargs {
                            work.push(Task::Save(k));
                        }
                        work.push(Task::Save(&d.args));
                        work.push(Task::Save(&d.callable));
                    }
                    Constructor::Inst | Constructor::Obj => {
                        let args = d.args.as_seq().unwrap_or_default();
                        match (&d.callable, d.constructor) {
                            (Value::Global(g), Constructor::Inst) => {
                                work.push(Task::Inst(g));
                                work.extend(args.iter().rev().map(Task::Save));
                            }
                            _ => {
                                work.push(Task::Op(OBJ));
                                work.extend(args.iter().rev().map(Task::Save));
                                work.push(Task::Save(&d.callable));
                            }
                        }
                        work.push(Task::Op(MARK));
                    }
                }
            }
        }
    }

    fn remember(&mut self, v: &Value) {
        let i = self.memoize();
        self.memo.insert(v.identity().unwrap_or_default(), i);
    }
}

/// Pushes one batch of `n` pairs (`MARK` .. `SETITEMS`, or `SETITEM` for
/// one pair), for the task stack.
fn push_pairs<'a>(
    work: &mut Vec<Task<'a>>,
    pairs: impl DoubleEndedIterator<Item = (&'a Value, &'a Value)>,
    n: usize,
) {
    if n == 0 {
        return;
    }
    work.push(Task::Op(if n == 1 { SETITEM } else { SETITEMS }));
    for (k, v) in pairs.rev() {
        work.push(Task::Save(v));
        work.push(Task::Save(k));
    }
    if n > 1 {
        work.push(Task::Op(MARK));
    }
}

/// Pushes `items` in batches of [`BATCH`] (`MARK` .. `many`, or `one` for
/// a batch of a single item), for the task stack.
fn batches<'a>(work: &mut Vec<Task<'a>>, items: &'a [Value], one: u8, many: u8) {
    for chunk in items.chunks(BATCH).rev() {
        work.push(Task::Op(if chunk.len() == 1 { one } else { many }));
        work.extend(chunk.iter().rev().map(Task::Save));
        if chunk.len() > 1 {
            work.push(Task::Op(MARK));
        }
    }
}

/// Hashes an object address: the values are our own (not a peer's), and
/// addresses are already spread, so a multiply does (SipHash would cost
/// more than the rest of a small message's memo work).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One `builtins.bytearray` for every write: its strings live as long as
/// the program, like CPython's class.
fn bytearray_global() -> &'static Global {
    static G: std::sync::OnceLock<Global> = std::sync::OnceLock::new();
    G.get_or_init(|| Global::new("builtins", "bytearray"))
}
