//! Hostile input: errors, never a panic, a stack overflow or an
//! allocation the bytes do not pay for.

use mp_pickle::{ErrorKind, Limit, Limits, loads, loads_with};

fn kind(data: &[u8]) -> ErrorKind {
    loads(data)
        .expect_err("hostile input must fail")
        .kind()
        .clone()
}

#[test]
fn truncated_streams_fail_cleanly() {
    let good = mp_pickle::dumps(&mp_value::Value::from((
        1,
        "two",
        vec![mp_value::Value::Float(3.0)],
    )));
    for n in 0..good.len() {
        let e = loads(&good[..n]).expect_err("a prefix is not a pickle");
        assert!(
            matches!(e.kind(), ErrorKind::Truncated | ErrorKind::Invalid(_)),
            "{n}: {e:?}"
        );
    }
    assert!(loads(&good).is_ok());
}

#[test]
fn huge_lengths_allocate_nothing() {
    // Each claims far more bytes than there are.
    for data in [
        &b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"[..], // BINUNICODE8 2^63
        b"\x8e\x00\x00\x00\x00\x00\x00\x00\x01",      // BINBYTES8 2^56
        b"\x96\xff\xff\xff\xff\xff\xff\xff\xff",      // BYTEARRAY8 2^64-1
        b"X\xff\xff\xff\xff",                         // BINUNICODE 4 GiB
        b"B\xff\xff\xff\x7f",                         // BINBYTES 2 GiB
        b"\x8b\xff\xff\xff\x7f",                      // LONG4 2 GiB
        b"\x95\xff\xff\xff\xff\xff\xff\xff\xff",      // FRAME 2^64-1
        b"T\xff\xff\xff\x7f",                         // BINSTRING
    ] {
        assert_eq!(kind(data), ErrorKind::Truncated, "{data:?}");
    }
    assert!(matches!(
        kind(b"\x8b\xff\xff\xff\xff"),
        ErrorKind::Invalid(_)
    ));
}

#[test]
fn nesting_a_hundred_thousand_deep_is_an_error() {
    let n = 100_000;
    let mut lists = vec![b']'; n];
    lists.extend(vec![b'a'; n - 1]);
    lists.push(b'.');
    let e = loads(&lists).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Limit(Limit::Depth, 10_000));
    // Tuples through marks, and dicts as values.
    let mut marks = vec![b'('; n];
    marks.extend(vec![b't'; n]);
    marks.push(b'.');
    assert_eq!(kind(&marks), ErrorKind::Limit(Limit::Depth, 10_000));
    // With the limit raised, it reads, and drops, compares and writes back
    // without recursion.
    let limits = Limits::default().max_depth(n + 1);
    let v = loads_with(&lists, &limits).unwrap();
    assert_eq!(v, v.clone());
    let again = loads_with(&mp_pickle::dumps(&v), &limits).unwrap();
    assert_eq!(again, v);
    drop(v);
    // Marks alone are not values: a million of them fail at the end, and
    // they count against max_items.
    let mut many = vec![b'('; 1_000_000];
    many.push(b'.');
    assert!(matches!(kind(&many), ErrorKind::Invalid(_)));
    let few = Limits::default().max_items(1000);
    assert_eq!(
        loads_with(&many, &few).unwrap_err().kind(),
        &ErrorKind::Limit(Limit::Items, 1000)
    );
}

#[test]
fn unknown_and_refused_opcodes() {
    assert_eq!(kind(b"\xff"), ErrorKind::UnknownOpcode(0xff));
    assert_eq!(kind(b"\x80\x06N."), ErrorKind::UnsupportedProtocol(6));
    assert!(matches!(kind(b"Pid\n."), ErrorKind::Unsupported(_)));
    assert!(matches!(kind(b"N\x51."), ErrorKind::Unsupported(_)));
    assert!(matches!(kind(b"\x82\x01."), ErrorKind::Unsupported(_)));
    assert!(matches!(kind(b"\x80\x05\x97."), ErrorKind::Unsupported(_)));
    let e = loads(b"\x80\x05\x97.").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported in pickles read here: out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER); pickle in-band (at byte 2)"
    );
}

#[test]
fn memo_references_out_of_range() {
    assert_eq!(kind(b"h\x00."), ErrorKind::MemoMissing(0));
    assert_eq!(kind(b"N\x94h\x01."), ErrorKind::MemoMissing(1));
    assert_eq!(
        kind(b"j\xff\xff\xff\xff."),
        ErrorKind::MemoMissing(u64::from(u32::MAX))
    );
    assert_eq!(
        kind(b"g99999999999999999999\n."),
        ErrorKind::Invalid("expected a decimal memo index, found \"99999999999999999999\"".into())
    );
}

#[test]
fn memo_indices_cannot_grow_the_memo() {
    // PUTs at doubling indices: a few hundred bytes that once asked for a
    // memo of 2^40 slots. Sparse indices cost one entry each.
    let mut data = b"N".to_vec();
    let mut i: u64 = 64;
    while i < u64::from(u32::MAX) {
        data.push(b'r');
        data.extend((i as u32).to_le_bytes());
        i = i * 2 + 60;
    }
    data.extend(b"j\x40\x00\x00\x00.");
    assert_eq!(loads(&data).unwrap().to_string(), "None");
    let mut text = b"N".to_vec();
    for k in 0..40 {
        text.extend(format!("p{}\n", 1u64 << (k + 6)).bytes());
    }
    text.extend(format!("g{}\n.", 1u64 << 45).bytes());
    assert!(loads(&text).unwrap().is_none());
}

#[test]
fn memo_and_value_limits() {
    let mut data = Vec::new();
    for _ in 0..100 {
        data.extend(b"N\x94");
    }
    data.push(b'.');
    let small = Limits::default().max_memo(50);
    assert_eq!(
        loads_with(&data, &small).unwrap_err().kind(),
        &ErrorKind::Limit(Limit::Memo, 50)
    );
    // Repeated references: 3 bytes each, bounded by max_items.
    let mut refs = b"]\x94(".to_vec();
    for _ in 0..10_000 {
        refs.extend(b"h\x00");
    }
    refs.extend(b"e.");
    let few = Limits::default().max_items(1000);
    assert_eq!(
        loads_with(&refs, &few).unwrap_err().kind(),
        &ErrorKind::Limit(Limit::Items, 1000)
    );
    let tiny = Limits::default().max_input(4);
    assert_eq!(
        loads_with(b"\x80\x04N.", &tiny).map(|v| v.is_none()),
        Ok(true)
    );
    assert_eq!(
        loads_with(b"\x80\x04N..", &tiny).unwrap_err().kind(),
        &ErrorKind::Limit(Limit::Input, 4)
    );
}

#[test]
fn bad_stack_shapes_are_errors() {
    for data in [
        &b"."[..],
        b"a.",
        b"Na.",
        b"NN\x86\x86.",
        b"Ns.",
        b"NNNs.",
        b"N(u.",
        b"}N(Nu.",
        b"Nb.",
        b"]Nb.",
        b"NN\x93.",
        b"NNR.",
        b")NR.",
        b"N)\x81.",
        b"(o.",
        b"1.",
        b"\x90.",
        b"N(\x90.",
        b"]K\x01\x90.",
    ] {
        let e = loads(data).expect_err("a bad shape");
        assert!(
            matches!(e.kind(), ErrorKind::Invalid(_) | ErrorKind::Truncated),
            "{data:?}: {e:?}"
        );
    }
    // Unhashable keys are Python's TypeError.
    let e = loads(b"}(]Nu.").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unhashable(_)));
    assert_eq!(
        format!("{e:?}"),
        "pickle has a dict key or set member that cannot be hashed (at byte 4): unhashable type: 'list'"
    );
}

#[test]
fn strings_that_rust_cannot_hold() {
    // 'a\udcff' as CPython writes it (surrogatepass).
    let e = loads(b"\x8c\x04a\xed\xb3\xbf.").unwrap_err();
    assert!(e.to_string().contains("surrogate"), "{e}");
    // A Python 2 str with a non-ASCII byte, as CPython's default refuses.
    assert!(matches!(kind(b"U\x01\xff."), ErrorKind::Invalid(_)));
}
