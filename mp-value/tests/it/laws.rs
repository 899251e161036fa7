//! Python's equality laws and hash consistency, as properties.

use mp_value::Value;
use proptest::prelude::*;

use crate::strategy::{hashable, value};

/// Whether `v` holds a NaN anywhere (NaN is not equal to itself).
fn has_nan(v: &Value) -> bool {
    v.to_string().contains("nan")
}

proptest! {
    #[test]
    fn equality_is_reflexive_except_for_nan(v in value()) {
        if !has_nan(&v) {
            prop_assert_eq!(&v, &v.clone());
            // A structurally equal copy (no shared identity) too.
            let copy: Value = postcard::from_bytes(&postcard::to_allocvec(&v).unwrap()).unwrap();
            prop_assert_eq!(&v, &copy);
        }
    }

    #[test]
    fn equality_is_symmetric(a in value(), b in value()) {
        prop_assert_eq!(a == b, b == a);
    }

    #[test]
    fn equal_values_hash_alike(a in hashable(), b in hashable()) {
        if a == b {
            prop_assert_eq!(a.py_hash().unwrap(), b.py_hash().unwrap());
        }
    }

    #[test]
    fn numbers_that_are_equal_hash_alike(i in any::<i32>()) {
        let forms = [Value::Int(i64::from(i)), Value::Float(f64::from(i)), Value::int(i128::from(i))];
        for a in &forms {
            for b in &forms {
                prop_assert_eq!(a, b);
                prop_assert_eq!(a.py_hash().unwrap(), b.py_hash().unwrap());
            }
        }
    }

    #[test]
    fn unhashable_values_are_refused(v in value()) {
        let holds_unhashable = |v: &Value| matches!(v,
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::ByteArray(_));
        if holds_unhashable(&v) {
            prop_assert!(v.py_hash().is_err());
        }
    }

    #[test]
    fn postcard_round_trip_keeps_the_value(v in value()) {
        let bytes = postcard::to_allocvec(&v).unwrap();
        let back: Value = postcard::from_bytes(&bytes).unwrap();
        if !has_nan(&v) {
            prop_assert_eq!(&back, &v);
        }
        prop_assert_eq!(back.to_string(), v.to_string());
    }
}
