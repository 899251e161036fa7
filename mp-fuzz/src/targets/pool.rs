//! The pool's parsers of peer bytes: what a worker sends the pool (its
//! supervisor parses it, and the results' readers decode every item) and
//! what the pool sends a worker, as one frame's payload or as the framed
//! stream a worker reads from its task pipe. The first byte of an input
//! picks which; the rest is the payload or the stream.

use mp_pool::__fuzz::{from_worker, sample_from_worker, sample_to_worker, task_frames, to_worker};

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
        with(2, framed(&[&to, &[], &to[..3]])),
        with(2, vec![0, 0, 0, 9, b'T']),
        with(2, vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
    ]
}

/// Payloads in CPython's framing, one after another.
fn framed(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Parses the rest as the first byte picks (0: from a worker, 1: to a
/// worker, 2: a task pipe's stream). It must never panic; a well-formed
/// batch parses to at least one record.
pub fn pool_wire(data: &[u8]) {
    let Some((&dir, payload)) = data.split_first() else {
        return;
    };
    let parsed = match dir % 3 {
        0 => from_worker(payload),
        1 => to_worker(payload),
        _ => {
            let _ = task_frames(payload);
            return;
        }
    };
    if let Ok(records) = parsed {
        assert!(records > 0 || payload.is_empty());
    }
}
