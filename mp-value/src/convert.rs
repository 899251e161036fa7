//! `From` conversions from Rust values into [`Value`].

use std::sync::Arc;

use crate::int::BigInt;
use crate::value::{Dict, Global, List, Object, Set, Tuple, Value};

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

macro_rules! small_ints {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
small_ints!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! wide_ints {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::BigInt(BigInt::from(v)),
                }
            }
        }
    )*};
}
wide_ints!(u64, i128, u128);

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::from(v as u64)
    }
}

impl From<isize> for Value {
    fn from(v: isize) -> Value {
        Value::Int(v as i64)
    }
}

impl From<BigInt> for Value {
    fn from(v: BigInt) -> Value {
        Value::int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.into())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v.into())
    }
}

impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Value {
        Value::Str(v)
    }
}

impl From<&[u8]> for Value {
    /// A `bytes`.
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<Vec<u8>> for Value {
    /// A `bytes` (serde serializes a `Vec<u8>` as a list of ints; this is
    /// the explicit conversion).
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<Vec<Value>> for Value {
    /// A `list`.
    fn from(v: Vec<Value>) -> Value {
        Value::List(v.into())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None`, or the value.
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::None, Into::into)
    }
}

macro_rules! wrappers {
    ($($t:ident => $variant:ident),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v)
            }
        }
    )*};
}
wrappers!(List => List, Tuple => Tuple, Dict => Dict, Global => Global, Object => Object);

impl From<Set> for Value {
    /// A `set` (use [`Value::FrozenSet`] for a frozenset).
    fn from(v: Set) -> Value {
        Value::Set(v)
    }
}

macro_rules! tuples {
    ($(($($n:ident),+)),*) => {$(
        impl<$($n: Into<Value>),+> From<($($n,)+)> for Value {
            /// A `tuple`.
            #[allow(non_snake_case, reason = "the type parameters name the items")]
            fn from(($($n,)+): ($($n,)+)) -> Value {
                Value::Tuple(Tuple::from(vec![$($n.into()),+]))
            }
        }
        impl<$($n: Into<Value>),+> From<($($n,)+)> for Tuple {
            #[allow(non_snake_case, reason = "the type parameters name the items")]
            fn from(($($n,)+): ($($n,)+)) -> Tuple {
                Tuple::from(vec![$($n.into()),+])
            }
        }
    )*};
}
tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F)
);
