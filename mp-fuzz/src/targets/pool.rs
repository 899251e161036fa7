//! The pool's two parsers of peer bytes: what a worker sends the pool (its
//! supervisor parses it, and the results' readers decode every item) and
//! what the pool sends a worker. The first byte of an input picks the
//! direction; the rest is one frame's payload.

use mp_pool::__fuzz::{from_worker, sample_from_worker, sample_to_worker, to_worker};

/// Seeds: well-formed batches both ways, and short or lying ones.
pub fn pool_wire_seeds() -> Vec<Vec<u8>> {
    let with = |dir: u8, payload: Vec<u8>| [vec![dir], payload].concat();
    let from = sample_from_worker();
    let to = sample_to_worker();
    vec![
        with(0, from.clone()),
        with(1, to.clone()),
        with(0, from[..from.len() / 2].to_vec()),
        with(1, to[..to.len() / 2].to_vec()),
        with(
            0,
            vec![b'R', 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ),
        with(
            1,
            vec![
                b'T', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f,
            ],
        ),
        with(0, vec![b'I', 0xff, 0xff, 0xff, 0xff]),
    ]
}

/// Parses the payload in the direction the first byte picks. It must
/// never panic; a well-formed batch parses to at least one record.
pub fn pool_wire(data: &[u8]) {
    let Some((&dir, payload)) = data.split_first() else {
        return;
    };
    let parsed = if dir % 2 == 0 {
        from_worker(payload)
    } else {
        to_worker(payload)
    };
    if let Ok(records) = parsed {
        assert!(records > 0 || payload.is_empty());
    }
}
