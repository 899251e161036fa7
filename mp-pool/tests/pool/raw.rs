//! The raw calls: a function as an `FnRef` and encoded arguments in,
//! encoded results out (what a manager serving another process's pool
//! calls uses), under every start method.

use mp_context::FnRef;
use mp_pool::Error;

use crate::{LONG, METHODS, pool, square};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "raw_calls_match_the_typed_ones",
        raw_calls_match_the_typed_ones,
    ),
    (
        "raw_calls_refuse_bad_references_and_arguments",
        raw_calls_refuse_bad_references_and_arguments,
    ),
];

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

fn dec(bytes: &[u8]) -> u64 {
    postcard::from_bytes(bytes).unwrap()
}

fn fails_on_three(n: u64) -> u64 {
    assert!(n != 3, "three is refused (expected by the test)");
    n
}

fn raw_calls_match_the_typed_ones() {
    for method in METHODS {
        let p = pool(method, 2);
        let f = FnRef::new(square);
        let r = p.apply_async_raw(&f, &enc(&9u64)).unwrap();
        assert_eq!(dec(&r.get(LONG).unwrap()), 81, "{method}");
        assert!(r.successful().unwrap());

        let items: Vec<Vec<u8>> = (0..50u64).map(|n| enc(&n)).collect();
        let all = p.map_async_raw(&f, items.clone(), Some(7)).unwrap();
        let got: Vec<u64> = all.get(LONG).unwrap().iter().map(|b| dec(b)).collect();
        assert_eq!(got, p.map(square, 0..50, None).unwrap(), "{method}");
        assert!(
            p.map_async_raw(&f, Vec::new(), None)
                .unwrap()
                .get(LONG)
                .unwrap()
                .is_empty()
        );

        let ordered: Vec<u64> = p
            .imap_raw(&f, items.clone(), 3, true)
            .unwrap()
            .map(|r| dec(&r.unwrap()))
            .collect();
        assert_eq!(ordered, (0..50).map(|n| n * n).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = p
            .imap_raw(&f, items, 3, false)
            .unwrap()
            .map(|r| dec(&r.unwrap()))
            .collect();
        unordered.sort_unstable();
        assert_eq!(unordered, ordered);

        // A panic stays with its item, as in the typed calls.
        let g = FnRef::new(fails_on_three);
        let per_item: Vec<_> = p
            .imap_raw(&g, (0..5u64).map(|n| enc(&n)), 1, true)
            .unwrap()
            .collect();
        assert!(
            matches!(per_item[3], Err(Error::Panicked { .. })),
            "{per_item:?}"
        );
        assert_eq!(dec(per_item[4].as_ref().unwrap()), 4);
        p.close();
        p.join().unwrap();
    }
}

fn raw_calls_refuse_bad_references_and_arguments() {
    let p = pool("fork", 1);
    // Arguments that are not the function's: that task fails alone.
    let f = FnRef::new(square);
    let r = p.apply_async_raw(&f, b"not a u64 at all").unwrap();
    assert!(
        matches!(r.get(LONG), Err(Error::ArgsNotDecodable { .. })),
        "{:?}",
        r.get(LONG)
    );
    // A reference of another build (its check offset altered) is refused
    // before anything is sent.
    let mut wire = postcard::to_allocvec(&f).unwrap();
    wire[0] ^= 0x01;
    let forged: FnRef = postcard::from_bytes(&wire).unwrap();
    assert!(matches!(
        p.apply_async_raw(&forged, &enc(&1u64)),
        Err(Error::BadFunction { .. })
    ));
    assert!(matches!(
        p.imap_raw(&forged, [enc(&1u64)], 1, true),
        Err(Error::BadFunction { .. })
    ));
    assert_eq!(p.apply(square, 4).unwrap(), 16);
    p.close();
    p.join().unwrap();
}
