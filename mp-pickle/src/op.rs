//! Pickle opcodes (CPython's `pickletools` names), with their operand
//! layouts. Integers in operands are little-endian unless said otherwise;
//! "line" is text up to a `\n`.

// Protocol 0 and 1.
pub(crate) const MARK: u8 = b'('; // push a mark
pub(crate) const STOP: u8 = b'.'; // end; the top of the stack is the value
pub(crate) const POP: u8 = b'0'; // discard the top (or the top mark)
pub(crate) const POP_MARK: u8 = b'1'; // discard up to and including the mark
pub(crate) const DUP: u8 = b'2'; // push the top again
pub(crate) const FLOAT: u8 = b'F'; // line: repr of a float
pub(crate) const INT: u8 = b'I'; // line: decimal int, or "00"/"01" for False/True
pub(crate) const BININT: u8 = b'J'; // i32
pub(crate) const BININT1: u8 = b'K'; // u8
pub(crate) const LONG: u8 = b'L'; // line: decimal int with an optional trailing 'L'
pub(crate) const BININT2: u8 = b'M'; // u16
pub(crate) const NONE: u8 = b'N';
pub(crate) const PERSID: u8 = b'P'; // line: persistent id
pub(crate) const BINPERSID: u8 = b'Q'; // persistent id from the stack
pub(crate) const REDUCE: u8 = b'R'; // callable, args -> callable(*args)
pub(crate) const STRING: u8 = b'S'; // line: quoted Python 2 str
pub(crate) const BINSTRING: u8 = b'T'; // i32 length, Python 2 str bytes
pub(crate) const SHORT_BINSTRING: u8 = b'U'; // u8 length, Python 2 str bytes
pub(crate) const UNICODE: u8 = b'V'; // line: raw-unicode-escape text
pub(crate) const BINUNICODE: u8 = b'X'; // u32 length, UTF-8
pub(crate) const APPEND: u8 = b'a'; // list, item -> list.append(item)
pub(crate) const BUILD: u8 = b'b'; // obj, state -> obj.__setstate__(state)
pub(crate) const GLOBAL: u8 = b'c'; // line module, line name
pub(crate) const DICT: u8 = b'd'; // mark, k, v, ... -> dict
pub(crate) const EMPTY_DICT: u8 = b'}';
pub(crate) const APPENDS: u8 = b'e'; // list, mark, items -> list.extend(items)
pub(crate) const GET: u8 = b'g'; // line: decimal memo index
pub(crate) const BINGET: u8 = b'h'; // u8 memo index
pub(crate) const INST: u8 = b'i'; // line module, line name; mark, args -> cls(*args)
pub(crate) const LONG_BINGET: u8 = b'j'; // u32 memo index
pub(crate) const LIST: u8 = b'l'; // mark, items -> list
pub(crate) const EMPTY_LIST: u8 = b']';
pub(crate) const OBJ: u8 = b'o'; // mark, cls, args -> cls(*args)
pub(crate) const PUT: u8 = b'p'; // line: decimal memo index
pub(crate) const BINPUT: u8 = b'q'; // u8 memo index
pub(crate) const LONG_BINPUT: u8 = b'r'; // u32 memo index
pub(crate) const SETITEM: u8 = b's'; // dict, k, v -> dict[k] = v
pub(crate) const TUPLE: u8 = b't'; // mark, items -> tuple
pub(crate) const EMPTY_TUPLE: u8 = b')';
pub(crate) const SETITEMS: u8 = b'u'; // dict, mark, k, v, ... -> dict.update
pub(crate) const BINFLOAT: u8 = b'G'; // f64, big-endian

// Protocol 2.
pub(crate) const PROTO: u8 = 0x80; // u8 protocol
pub(crate) const NEWOBJ: u8 = 0x81; // cls, args -> cls.__new__(cls, *args)
pub(crate) const EXT1: u8 = 0x82; // u8 extension code
pub(crate) const EXT2: u8 = 0x83; // u16 extension code
pub(crate) const EXT4: u8 = 0x84; // i32 extension code
pub(crate) const TUPLE1: u8 = 0x85;
pub(crate) const TUPLE2: u8 = 0x86;
pub(crate) const TUPLE3: u8 = 0x87;
pub(crate) const NEWTRUE: u8 = 0x88;
pub(crate) const NEWFALSE: u8 = 0x89;
pub(crate) const LONG1: u8 = 0x8a; // u8 length, two's complement int
pub(crate) const LONG4: u8 = 0x8b; // i32 length, two's complement int

// Protocol 3.
pub(crate) const BINBYTES: u8 = b'B'; // u32 length, bytes
pub(crate) const SHORT_BINBYTES: u8 = b'C'; // u8 length, bytes

// Protocol 4.
pub(crate) const SHORT_BINUNICODE: u8 = 0x8c; // u8 length, UTF-8
pub(crate) const BINUNICODE8: u8 = 0x8d; // u64 length, UTF-8
pub(crate) const BINBYTES8: u8 = 0x8e; // u64 length, bytes
pub(crate) const EMPTY_SET: u8 = 0x8f;
pub(crate) const ADDITEMS: u8 = 0x90; // set, mark, items -> set.update(items)
pub(crate) const FROZENSET: u8 = 0x91; // mark, items -> frozenset
pub(crate) const NEWOBJ_EX: u8 = 0x92; // cls, args, kwargs -> cls.__new__(cls, *args, **kwargs)
pub(crate) const STACK_GLOBAL: u8 = 0x93; // module, name -> the global
pub(crate) const MEMOIZE: u8 = 0x94; // memo[len(memo)] = top
pub(crate) const FRAME: u8 = 0x95; // u64 length of the frame that follows

// Protocol 5.
pub(crate) const BYTEARRAY8: u8 = 0x96; // u64 length, bytearray
pub(crate) const NEXT_BUFFER: u8 = 0x97; // push the next out-of-band buffer
pub(crate) const READONLY_BUFFER: u8 = 0x98; // make the top buffer read-only

/// The highest protocol this crate reads.
pub(crate) const HIGHEST_PROTOCOL: u8 = 5;
