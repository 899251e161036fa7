//! A queue's shared memory and side channel, as a corrupt or hostile peer
//! process may leave them (see `mp_queue::__fuzz::shared_state` for how an
//! input is read).

/// Seeds: nothing scribbled; a half-done operation to recover; indices
/// and entries that lie; datagrams that lie (a sparse memfd, an unsealed
/// one, garbage), with and without a shutdown.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let header =
        |words: &[u64]| -> Vec<u8> { words.iter().flat_map(|w| w.to_le_bytes()).collect() };
    let input = |flags: u8, h: Vec<u8>, ring: Vec<u8>, dgrams: Vec<u8>| {
        let mut v = vec![flags];
        v.extend((h.len() as u16).to_le_bytes());
        v.extend(h);
        v.extend(ring);
        v.extend(dgrams);
        v
    };
    // One INLINE entry of 5 bytes, then a MARKER for datagram 1.
    let mut ring = vec![5, 0, 0, 0, 1, 0, 0, 0, 4, b'a', b'b', b'c', b'd', 0, 0, 0];
    ring.extend([8, 0, 0, 0, 2, 0, 0, 0]);
    ring.extend(1u64.to_le_bytes());
    let mut datagram = b"MPQD".to_vec();
    datagram.extend(1u32.to_le_bytes()); // in a memfd
    datagram.extend(1u64.to_le_bytes()); // seq 1
    datagram.extend(9u64.to_le_bytes()); // 9 bytes
    datagram.extend([0; 8]);
    let framed = |kind: u8, d: &[u8]| {
        let mut v = vec![d.len() as u8, kind];
        v.extend(d);
        v
    };
    let mut pad = vec![0u8; 4096];
    pad[..ring.len()].copy_from_slice(&ring);
    vec![
        input(0, Vec::new(), Vec::new(), Vec::new()),
        input(
            4,
            header(&[0, 32, 2, 2]),
            pad.clone(),
            framed(1 | 2, &datagram),
        ),
        input(
            1,
            header(&[0, 32, 2, 2, 0, 0, 0, 8, 1, 1]),
            pad.clone(),
            framed(1 | 2 | 4, &datagram),
        ),
        input(
            2 | 12,
            header(&[8, 0, u64::MAX, 7]),
            pad.clone(),
            framed(1, &datagram),
        ),
        input(
            4,
            header(&[0, 1 << 40]),
            vec![0xff; 4096],
            framed(0, b"not a datagram"),
        ),
        input(1 | 8, header(&[4096 - 8, 4096 + 24, 1, 1]), pad, Vec::new()),
    ]
}
