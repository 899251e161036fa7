//! Integers beyond `i64`: Python's `int` has no size limit, so the model
//! keeps a sign and a magnitude of 64-bit limbs.
//!
//! No big-integer crate: the model needs no arithmetic, only conversions
//! (pickle's little-endian two's complement `LONG` bytes, decimal text,
//! `i128`/`u128`, exact comparison with `f64`), ordering and hashing. That
//! is a few hundred lines here against three crates (num-bigint,
//! num-integer, num-traits) for the users of every crate built on this one.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Python's limit on decimal digits in an `int` ↔ `str` conversion
/// (`sys.int_max_str_digits`, 4300 since CPython 3.11): above it the
/// conversion costs quadratic time, so CPython refuses, and so do we.
pub const MAX_STR_DIGITS: usize = 4300;

/// An integer of any size (normally one outside `i64`; [`Value::Int`] holds
/// the others).
///
/// [`Value::Int`]: crate::Value::Int
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BigInt(Arc<Repr>);

#[derive(PartialEq, Eq, Hash)]
struct Repr {
    negative: bool,
    /// Little-endian 64-bit limbs without trailing zero limbs; zero is empty
    /// (and never negative).
    magnitude: Vec<u64>,
}

impl BigInt {
    fn from_parts(negative: bool, mut magnitude: Vec<u64>) -> BigInt {
        while magnitude.last() == Some(&0) {
            magnitude.pop();
        }
        let negative = negative && !magnitude.is_empty();
        BigInt(Arc::new(Repr {
            negative,
            magnitude,
        }))
    }

    /// Whether the integer is below zero.
    pub fn is_negative(&self) -> bool {
        self.0.negative
    }

    /// The little-endian 64-bit limbs of the absolute value (empty for 0).
    pub fn magnitude(&self) -> &[u64] {
        &self.0.magnitude
    }

    /// The number of bits of the absolute value (0 for 0).
    pub fn bits(&self) -> u64 {
        match self.0.magnitude.last() {
            None => 0,
            Some(top) => {
                (self.0.magnitude.len() as u64 - 1) * 64 + u64::from(64 - top.leading_zeros())
            }
        }
    }

    /// The value as an `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        i64::try_from(self.to_i128()?).ok()
    }

    /// The value as an `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        let m = self.to_u128_magnitude()?;
        if self.is_negative() {
            if m <= 1u128 << 127 {
                Some((m as i128).wrapping_neg())
            } else {
                None
            }
        } else {
            i128::try_from(m).ok()
        }
    }

    /// The value as a `u128`, if it fits.
    pub fn to_u128(&self) -> Option<u128> {
        if self.is_negative() {
            None
        } else {
            self.to_u128_magnitude()
        }
    }

    fn to_u128_magnitude(&self) -> Option<u128> {
        match self.0.magnitude[..] {
            [] => Some(0),
            [lo] => Some(u128::from(lo)),
            [lo, hi] => Some(u128::from(lo) | u128::from(hi) << 64),
            _ => None,
        }
    }

    /// Pickle's encoding of an integer (`LONG1`/`LONG4`, `encode_long` in
    /// CPython): little-endian two's complement in as few bytes as hold the
    /// sign; zero is no bytes at all.
    pub fn from_signed_bytes_le(bytes: &[u8]) -> BigInt {
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut limbs = vec![0u64; bytes.len().div_ceil(8)];
        for (i, b) in bytes.iter().enumerate() {
            let b = if negative { !b } else { *b };
            limbs[i / 8] |= u64::from(b) << (8 * (i % 8));
        }
        if negative {
            // The bytes were inverted; the limbs beyond them are zero, and
            // the magnitude is the inverted value plus one.
            add_one(&mut limbs);
        }
        BigInt::from_parts(negative, limbs)
    }

    /// The inverse of [`BigInt::from_signed_bytes_le`]: the shortest
    /// little-endian two's complement bytes (none for zero), as CPython's
    /// `pickle.encode_long` writes them.
    pub fn to_signed_bytes_le(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self
            .0
            .magnitude
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect();
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        if self.is_negative() {
            // Two's complement over the same width, then a sign byte if the
            // top bit does not say "negative".
            let mut carry = true;
            for b in &mut bytes {
                let (v, c) = (!*b).overflowing_add(u8::from(carry));
                *b = v;
                carry = c;
            }
            if bytes.last().is_some_and(|b| b & 0x80 == 0) {
                bytes.push(0xff);
            }
        } else if bytes.last().is_some_and(|b| b & 0x80 != 0) {
            bytes.push(0);
        }
        bytes
    }

    /// The integer a finite, integral `f64` stands for exactly, or `None`
    /// for NaN, infinities and fractions.
    pub fn from_f64(f: f64) -> Option<BigInt> {
        if !f.is_finite() || f.fract() != 0.0 {
            return None;
        }
        let bits = f.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i64;
        if exponent == 0 {
            // Zero (subnormals are fractions and returned above).
            return Some(BigInt::from(0i64));
        }
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let shift = exponent - 1075; // value = mantissa * 2^shift
        let magnitude = if shift >= 0 {
            shl(&[mantissa], shift as u64)
        } else {
            vec![mantissa >> (-shift)]
        };
        Some(BigInt::from_parts(f < 0.0, magnitude))
    }

    /// The nearest `f64` (ties to even), or `None` when it overflows
    /// (CPython's `float(n)` raises OverflowError there).
    pub fn to_f64(&self) -> Option<f64> {
        let bits = self.bits();
        if bits <= 64 {
            let m = self.0.magnitude.first().copied().unwrap_or(0);
            let f = m as f64; // correctly rounded by the hardware
            return Some(if self.is_negative() { -f } else { f });
        }
        if bits > 1024 {
            return None;
        }
        // Keep the top 64 bits, and whether anything below them is set.
        let drop = bits - 64;
        let top = shr_u64(&self.0.magnitude, drop);
        let sticky = low_bits_nonzero(&self.0.magnitude, drop);
        // Round 64 bits to f64's 53: the low 11 bits decide, ties to even.
        let low = top & 0x7ff;
        let mut m = top >> 11;
        let half = 0x400;
        if low > half || (low == half && (sticky || m & 1 == 1)) {
            m += 1;
        }
        let f = (m as f64) * 2f64.powi((drop + 11) as i32);
        if f.is_infinite() {
            return None;
        }
        Some(if self.is_negative() { -f } else { f })
    }

    /// Parses optional sign and decimal digits (underscores are not
    /// allowed, whitespace is not trimmed). `None` if the text is not an
    /// integer or has more than [`MAX_STR_DIGITS`] digits.
    pub fn parse_decimal(text: &str) -> Option<BigInt> {
        let (negative, digits) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if digits.is_empty()
            || digits.len() > MAX_STR_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut limbs: Vec<u64> = Vec::new();
        // 19 digits at a time: 10^19 < 2^64.
        let first = digits.len() % 19;
        let chunks = std::iter::once(&digits[..first])
            .filter(|c| !c.is_empty())
            .chain(digits.as_bytes()[first..].chunks(19).map(|c| {
                // ASCII digits only, checked above.
                std::str::from_utf8(c).unwrap_or("0")
            }));
        for chunk in chunks {
            let n: u64 = chunk.parse().ok()?;
            let scale = 10u64.pow(chunk.len() as u32);
            mul_add(&mut limbs, scale, n);
        }
        Some(BigInt::from_parts(negative, limbs))
    }

    /// The decimal digits, or `None` past [`MAX_STR_DIGITS`] (as CPython's
    /// `str(n)` refuses).
    pub fn to_decimal(&self) -> Option<String> {
        // log10(2) < 0.30103: an upper bound on the digit count.
        if self.bits() * 30103 / 100_000 > MAX_STR_DIGITS as u64 {
            return None;
        }
        let mut limbs = self.0.magnitude.clone();
        let mut chunks = Vec::new();
        const TEN19: u64 = 10_000_000_000_000_000_000;
        while !limbs.is_empty() {
            chunks.push(div_rem_small(&mut limbs, TEN19));
        }
        let mut s = String::new();
        if self.is_negative() {
            s.push('-');
        }
        match chunks.split_last() {
            None => s.push('0'),
            Some((top, rest)) => {
                s.push_str(&top.to_string());
                for c in rest.iter().rev() {
                    s.push_str(&format!("{c:019}"));
                }
            }
        }
        Some(s)
    }
}

fn add_one(limbs: &mut [u64]) {
    for l in limbs {
        let (v, carry) = l.overflowing_add(1);
        *l = v;
        if !carry {
            return;
        }
    }
}

fn shl(limbs: &[u64], by: u64) -> Vec<u64> {
    let words = (by / 64) as usize;
    let bits = by % 64;
    let mut out = vec![0u64; words];
    let mut carry = 0u64;
    for &l in limbs {
        if bits == 0 {
            out.push(l);
        } else {
            out.push(l << bits | carry);
            carry = l >> (64 - bits);
        }
    }
    if carry != 0 {
        out.push(carry);
    }
    out
}

/// The 64 bits of `limbs` starting at bit `from`.
fn shr_u64(limbs: &[u64], from: u64) -> u64 {
    let word = (from / 64) as usize;
    let bits = from % 64;
    let lo = limbs.get(word).copied().unwrap_or(0);
    let hi = limbs.get(word + 1).copied().unwrap_or(0);
    if bits == 0 {
        lo
    } else {
        lo >> bits | hi << (64 - bits)
    }
}

fn low_bits_nonzero(limbs: &[u64], below: u64) -> bool {
    let word = (below / 64) as usize;
    let bits = below % 64;
    limbs[..word.min(limbs.len())].iter().any(|&l| l != 0)
        || (bits > 0 && limbs.get(word).is_some_and(|&l| l & ((1 << bits) - 1) != 0))
}

fn mul_add(limbs: &mut Vec<u64>, mul: u64, add: u64) {
    let mut carry = u128::from(add);
    for l in limbs.iter_mut() {
        let v = u128::from(*l) * u128::from(mul) + carry;
        *l = v as u64;
        carry = v >> 64;
    }
    if carry != 0 {
        limbs.push(carry as u64);
    }
}

/// Divides in place by `d`, drops leading zero limbs, returns the remainder.
fn div_rem_small(limbs: &mut Vec<u64>, d: u64) -> u64 {
    let mut rem = 0u128;
    for l in limbs.iter_mut().rev() {
        let cur = rem << 64 | u128::from(*l);
        *l = (cur / u128::from(d)) as u64;
        rem = cur % u128::from(d);
    }
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
    rem as u64
}

impl From<i128> for BigInt {
    fn from(v: i128) -> BigInt {
        let m = v.unsigned_abs();
        BigInt::from_parts(v < 0, vec![m as u64, (m >> 64) as u64])
    }
}

impl From<u128> for BigInt {
    fn from(v: u128) -> BigInt {
        BigInt::from_parts(false, vec![v as u64, (v >> 64) as u64])
    }
}

impl From<i64> for BigInt {
    fn from(v: i64) -> BigInt {
        BigInt::from(i128::from(v))
    }
}

impl From<u64> for BigInt {
    fn from(v: u64) -> BigInt {
        BigInt::from(u128::from(v))
    }
}

impl Ord for BigInt {
    fn cmp(&self, other: &BigInt) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        match (a.negative, b.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (negative, _) => {
                let by_magnitude = a
                    .magnitude
                    .len()
                    .cmp(&b.magnitude.len())
                    .then_with(|| a.magnitude.iter().rev().cmp(b.magnitude.iter().rev()));
                if negative {
                    by_magnitude.reverse()
                } else {
                    by_magnitude
                }
            }
        }
    }
}

impl PartialOrd for BigInt {
    fn partial_cmp(&self, other: &BigInt) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BigInt {
    /// Decimal, as Python prints it; past [`MAX_STR_DIGITS`] digits, where
    /// CPython refuses, a short description instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_decimal() {
            Some(s) => f.write_str(&s),
            None => write!(
                f,
                "<{}int of {} bits>",
                if self.is_negative() { "negative " } else { "" },
                self.bits()
            ),
        }
    }
}

impl fmt::Debug for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_match_cpython_encode_long() {
        // pickle.encode_long for each value.
        let cases: &[(i128, &[u8])] = &[
            (0, b""),
            (1, b"\x01"),
            (-1, b"\xff"),
            (127, b"\x7f"),
            (128, b"\x80\x00"),
            (-128, b"\x80"),
            (-129, b"\x7f\xff"),
            (255, b"\xff\x00"),
            (-256, b"\x00\xff"),
            (1 << 63, b"\x00\x00\x00\x00\x00\x00\x00\x80\x00"),
            (-(1 << 63), b"\x00\x00\x00\x00\x00\x00\x00\x80"),
        ];
        for &(v, bytes) in cases {
            let b = BigInt::from(v);
            assert_eq!(b.to_signed_bytes_le(), bytes, "{v}");
            assert_eq!(BigInt::from_signed_bytes_le(bytes).to_i128(), Some(v));
        }
    }

    #[test]
    fn decimal_round_trip() {
        for text in [
            "0",
            "-1",
            "18446744073709551616",
            "-170141183460469231731687303715884105728",
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            let b = BigInt::parse_decimal(text).unwrap();
            assert_eq!(b.to_decimal().unwrap(), text);
        }
        assert_eq!(BigInt::parse_decimal("+5").unwrap().to_i64(), Some(5));
        assert!(BigInt::parse_decimal("").is_none());
        assert!(BigInt::parse_decimal("-").is_none());
        assert!(BigInt::parse_decimal("1_0").is_none());
        assert!(BigInt::parse_decimal(&"9".repeat(MAX_STR_DIGITS + 1)).is_none());
        let huge = BigInt::from_parts(false, vec![u64::MAX; 300]);
        assert!(huge.to_decimal().is_none());
        assert_eq!(huge.to_string(), "<int of 19200 bits>");
    }

    #[test]
    fn floats_convert_exactly() {
        let two100 = BigInt::from_f64(2f64.powi(100)).unwrap();
        assert_eq!(two100.bits(), 101);
        assert_eq!(two100.to_f64(), Some(2f64.powi(100)));
        assert_eq!(BigInt::from_f64(-3.0).unwrap().to_i64(), Some(-3));
        assert!(BigInt::from_f64(0.5).is_none());
        assert!(BigInt::from_f64(f64::NAN).is_none());
        assert_eq!(BigInt::from_f64(-0.0).unwrap().to_i64(), Some(0));
        // 2^64 + 1 rounds to 2^64 (ties to even would not matter here).
        let b = BigInt::from((1u128 << 64) + 1);
        assert_eq!(b.to_f64(), Some(2f64.powi(64)));
        let max = BigInt::from_f64(f64::MAX).unwrap();
        assert_eq!(max.to_f64(), Some(f64::MAX));
        assert!(
            BigInt::from_parts(false, vec![u64::MAX; 17])
                .to_f64()
                .is_none()
        );
    }

    #[test]
    fn ordering() {
        let v: Vec<BigInt> = [-(1i128 << 100), -5, 0, 7, 1 << 90]
            .into_iter()
            .map(BigInt::from)
            .collect();
        for w in v.windows(2) {
            assert!(w[0] < w[1]);
        }
    }
}
