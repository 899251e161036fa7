//! `Display` (and `Debug`) for [`Value`]: close to Python's `repr`, for
//! error messages and `__repr__` fallbacks, written without recursion.
//!
//! Exact where Python's rule is simple (numbers, quotes and escapes,
//! containers); "printable" is approximated without Unicode's category
//! tables (controls, spaces other than ' ', format characters, private use
//! and surrogates are escaped; other characters are kept). Globals print
//! as `<class 'm.Name'>` when the name is capitalised, else `<function
//! m.name>`; objects as `Name(args)`, with their state when they have one.

use std::fmt::{self, Write as _};

use crate::value::{ObjectOp, Value};

enum Piece<'a> {
    Value(&'a Value),
    Lit(&'static str),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut work = vec![Piece::Value(self)];
        while let Some(p) = work.pop() {
            match p {
                Piece::Lit(s) => f.write_str(s)?,
                Piece::Text(s) => f.write_str(&s)?,
                Piece::Value(v) => scalar_or_push(v, f, &mut work)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Pushes `open`, the items separated by ", ", and `close` (in reverse,
/// for the work stack).
fn push_seq<'a>(
    work: &mut Vec<Piece<'a>>,
    open: &'static str,
    items: Vec<Vec<Piece<'a>>>,
    close: &'static str,
) {
    work.push(Piece::Lit(close));
    for (i, item) in items.into_iter().enumerate().rev() {
        work.extend(item.into_iter().rev());
        if i > 0 {
            work.push(Piece::Lit(", "));
        }
    }
    work.push(Piece::Lit(open));
}

fn scalar_or_push<'a>(
    v: &'a Value,
    f: &mut fmt::Formatter<'_>,
    work: &mut Vec<Piece<'a>>,
) -> fmt::Result {
    let one = |v: &'a Value| vec![Piece::Value(v)];
    match v {
        Value::None => f.write_str("None"),
        Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
        Value::Int(i) => write!(f, "{i}"),
        Value::BigInt(b) => write!(f, "{b}"),
        Value::Float(x) => f.write_str(&float_repr(*x)),
        Value::Str(s) => f.write_str(&str_repr(s)),
        Value::Bytes(b) => f.write_str(&bytes_repr(b)),
        Value::ByteArray(b) => write!(f, "bytearray({})", bytes_repr(b)),
        Value::List(l) => {
            push_seq(work, "[", l.iter().map(one).collect(), "]");
            Ok(())
        }
        Value::Tuple(t) => {
            let close = if t.len() == 1 { ",)" } else { ")" };
            push_seq(work, "(", t.iter().map(one).collect(), close);
            Ok(())
        }
        Value::Dict(d) => {
            let items = d
                .iter()
                .map(|(k, v)| vec![Piece::Value(k), Piece::Lit(": "), Piece::Value(v)])
                .collect();
            push_seq(work, "{", items, "}");
            Ok(())
        }
        Value::Set(s) if s.is_empty() => f.write_str("set()"),
        Value::Set(s) => {
            push_seq(work, "{", s.iter().map(one).collect(), "}");
            Ok(())
        }
        Value::FrozenSet(s) if s.is_empty() => f.write_str("frozenset()"),
        Value::FrozenSet(s) => {
            push_seq(work, "frozenset({", s.iter().map(one).collect(), "})");
            Ok(())
        }
        Value::Global(g) => {
            let last = g.name().rsplit('.').next().unwrap_or_default();
            if last.starts_with(|c: char| c.is_uppercase()) {
                write!(f, "<class '{}.{}'>", g.module(), g.name())
            } else {
                write!(f, "<function {}.{}>", g.module(), g.name())
            }
        }
        Value::Object(o) => {
            let d = o.data();
            let with_ops = !d.ops.is_empty();
            // Pushed in reverse: what is printed last goes first.
            if with_ops {
                work.push(Piece::Lit(">"));
                for op in d.ops.iter().rev() {
                    match op {
                        ObjectOp::Build(state) => {
                            work.push(Piece::Value(state));
                            work.push(Piece::Lit(" with state "));
                        }
                        ObjectOp::Append(items) => {
                            push_seq(work, "[", items.iter().map(one).collect(), "]");
                            work.push(Piece::Lit(" with items "));
                        }
                        ObjectOp::SetItems(pairs) => {
                            let items = pairs
                                .iter()
                                .map(|(k, v)| {
                                    vec![Piece::Value(k), Piece::Lit(": "), Piece::Value(v)]
                                })
                                .collect();
                            push_seq(work, "{", items, "}");
                            work.push(Piece::Lit(" with entries "));
                        }
                    }
                }
            }
            match &d.args {
                Value::Tuple(t) => {
                    let mut items: Vec<Vec<Piece<'a>>> = t.iter().map(one).collect();
                    if let Some(k) = &d.kwargs {
                        items.push(vec![Piece::Lit("**"), Piece::Value(k)]);
                    }
                    push_seq(work, "(", items, ")");
                }
                other => {
                    work.push(Piece::Lit(")"));
                    work.push(Piece::Value(other));
                    work.push(Piece::Lit("(*"));
                }
            }
            match &d.callable {
                Value::Global(g) if g.module() == "builtins" => {
                    work.push(Piece::Text(g.name().to_string()))
                }
                Value::Global(g) => work.push(Piece::Text(format!("{}.{}", g.module(), g.name()))),
                other => work.push(Piece::Value(other)),
            }
            if with_ops {
                work.push(Piece::Lit("<"));
            }
            Ok(())
        }
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed
/// notation for decimal exponents -4..16, else scientific with a signed,
/// at least two-digit exponent.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Whether Python's `str.isprintable()` holds for `c`, approximately.
fn printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || matches!(u,
            0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
            | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xfeff | 0xfff9..=0xfffb
            | 0xe000..=0xf8ff | 0xf0000..)
        || (0xd800..=0xdfff).contains(&u))
}

/// Python's `repr(str)`.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x7f && (c as u32) >= 0x20 => out.push(c),
            c if (c as u32) >= 0x80 && printable(c) => out.push(c),
            c => {
                let u = c as u32;
                let _ = if u < 0x100 {
                    write!(out, "\\x{u:02x}")
                } else if u < 0x10000 {
                    write!(out, "\\u{u:04x}")
                } else {
                    write!(out, "\\U{u:08x}")
                };
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(bytes)`.
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote as char);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dict, Global, Object, Set, Tuple};

    #[test]
    fn floats_print_as_python_does() {
        for (x, s) in [
            (1.0, "1.0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
            (12345678901234567.0, "1.2345678901234568e+16"),
        ] {
            assert_eq!(float_repr(x), s, "{x:e}");
        }
    }

    #[test]
    fn strings_and_bytes_print_as_python_does() {
        assert_eq!(str_repr("a'b"), "\"a'b\"");
        assert_eq!(str_repr("a'b\""), "'a\\'b\"'");
        assert_eq!(str_repr("tab\t\x00é\u{200b}😀"), "'tab\\t\\x00é\\u200b😀'");
        assert_eq!(bytes_repr(b"\x00a'\xff"), "b\"\\x00a'\\xff\"");
    }

    #[test]
    fn containers_and_objects() {
        let v = Value::Tuple(Tuple::from(vec![
            Value::List(vec![Value::Int(1), Value::None].into()),
            Value::Tuple(vec![Value::Bool(true)].into()),
            Value::Tuple(Tuple::new()),
            Value::Dict(Dict::from_pairs([("a", 1.5)]).unwrap()),
            Value::Set(Set::new()),
            Value::FrozenSet(Set::from_values([2]).unwrap()),
        ]));
        assert_eq!(
            v.to_string(),
            "([1, None], (True,), (), {'a': 1.5}, set(), frozenset({2}))"
        );
        let e = Object::reduce(Global::new("builtins", "KeyError"), ("k",));
        assert_eq!(Value::from(e).to_string(), "KeyError('k')");
        let empty = Object::reduce(Global::new("_queue", "Empty"), Tuple::new());
        assert_eq!(Value::from(empty).to_string(), "_queue.Empty()");
        let t = Object::new_obj(
            Global::new("multiprocessing.managers", "Token"),
            Tuple::new(),
        )
        .with_state(("Queue", "7f"));
        assert_eq!(
            Value::from(t).to_string(),
            "<multiprocessing.managers.Token() with state ('Queue', '7f')>"
        );
        assert_eq!(
            Value::Global(Global::new("queue", "Full")).to_string(),
            "<class 'queue.Full'>"
        );
    }

    #[test]
    fn deep_values_print_without_recursion() {
        let mut v = Value::None;
        for _ in 0..100_000 {
            v = Value::List(vec![v].into());
        }
        let s = v.to_string();
        assert_eq!(s.len(), 100_000 * 2 + 4);
    }
}
