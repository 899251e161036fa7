//! The pickle reader (mp-pickle), fed what a CPython peer could send.

use mp_pickle::{Limits, dumps, loads, loads_with};

/// Frames of real CPython 3.11 manager sessions (wire_manager.txt): a
/// `#PROXY` reply with a Token, `#ERROR` with `_queue.Empty()`, a
/// `#RETURN` of exposed method names, a request.
const CAPTURED: [&str; 4] = [
    "800495b4000000000000008c062350524f585994288c05656d707479948c0466756c6c948c03676574948c0a6765745f6e6f77616974948c046a6f696e948c03707574948c0a7075745f6e6f77616974948c057173697a65948c097461736b5f646f6e659474948c186d756c746970726f63657373696e672e6d616e6167657273948c05546f6b656e9493942981948c055175657565948c093132372e302e302e31944d50c386948c0c37666634616265303932313094879462869486942e",
    "80049522000000000000008c06234552524f52948c065f7175657565948c05456d70747994939429529486942e",
    "80049571000000000000008c072352455455524e948c0c37666465643833306465353094288c05656d707479948c0466756c6c948c03676574948c0a6765745f6e6f77616974948c046a6f696e948c03707574948c0a7075745f6e6f77616974948c057173697a65948c097461736b5f646f6e65947494869486942e",
    "8004951f00000000000000288c0c376664656438333064653530948c03707574944b0185947d9474942e",
];

/// Hex text (the captures' form) as bytes.
pub(super) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

pub(crate) fn seeds() -> Vec<Vec<u8>> {
    use mp_value::{Dict, Global, Object, Set, Tuple, Value};
    let mut seeds: Vec<Vec<u8>> = CAPTURED.iter().map(|h| unhex(h)).collect();
    let shared = Value::from(vec![Value::Int(1), Value::from("s")]);
    let values = [
        Value::from((shared.clone(), shared, Value::int(1u128 << 100), -1.5, "é")),
        Value::Dict(Dict::from_pairs([(1, "a"), (2, "b")]).unwrap_or_default()),
        Value::FrozenSet(Set::from_values([1, 2, 3]).unwrap_or_default()),
        Value::ByteArray(b"ba".to_vec().into()),
        Object::new_obj(Global::new("m", "C"), Tuple::new())
            .with_state(Dict::from_pairs([("x", 1)]).unwrap_or_default())
            .into(),
        Value::from((0..1200).map(Value::from).collect::<Vec<_>>()),
    ];
    seeds.extend(values.iter().map(dumps));
    // Protocols 0 and 2, as CPython 3 writes them.
    seeds.push(
        b"(lp0\nI1\naVa\\u20ac\np1\nag1\naF1.5\naL12345678901234567890L\na(I1\nI2\ntp2\na."
            .to_vec(),
    );
    seeds.push(b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.".to_vec());
    seeds.push(b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00abq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.".to_vec());
    seeds
}

/// Reads under tight limits. Whatever reads must print, hash, compare,
/// write, and read back from what we wrote into the very same bytes.
pub fn pickle_reader(data: &[u8]) {
    let limits = Limits::default()
        .max_input(1 << 16)
        .max_depth(200)
        .max_memo(10_000)
        .max_items(100_000);
    let Ok(value) = loads_with(data, &limits) else {
        return;
    };
    let _ = value.to_string();
    let _ = value.py_hash();
    let _ = value == value.clone();
    let _ = mp_value::from_value::<Vec<(i64, String)>>(&value);
    let written = dumps(&value);
    let again = loads(&written).expect("our own pickle reads");
    assert_eq!(
        dumps(&again),
        written,
        "rewriting what we read changes the bytes"
    );
}
