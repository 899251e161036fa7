//! The registry of fuzz targets and their seed corpora.

mod fd_message;
mod handshake;
mod manager;
mod pickle;
mod pool;
mod queue;

pub use fd_message::fd_message;
pub use handshake::{client_handshake, listener_handshake};
pub use manager::manager_request;
pub use pickle::pickle_reader;
pub use pool::{pool_wire, pool_wire_seeds};

/// A queue's shared memory and side channel after a corrupt or hostile
/// peer: every operation must return (an error is fine), never panic,
/// wait past its timeout or allocate beyond what the input pays for.
pub fn queue_shared_state(data: &[u8]) {
    mp_queue::__fuzz::shared_state(data);
}

/// One fuzz target: a name, a seed corpus, and the function under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name used on the command line and in `fuzz/fuzz_targets/`.
    pub name: &'static str,
    /// Valid or interesting inputs that mutations start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// The function under test; it must not panic on any input.
    pub run: fn(&[u8]),
}

/// Every target of the project.
pub static TARGETS: &[Target] = &[
    Target {
        name: "auth_digest_prefix",
        seeds: auth_seeds,
        run: auth_digest_prefix,
    },
    Target {
        name: "frame_decoder",
        seeds: frame_seeds,
        run: frame_decoder,
    },
    Target {
        name: "listener_handshake",
        seeds: handshake::listener_seeds,
        run: listener_handshake,
    },
    Target {
        name: "client_handshake",
        seeds: handshake::client_seeds,
        run: client_handshake,
    },
    Target {
        name: "fd_message",
        seeds: fd_message::seeds,
        run: fd_message,
    },
    Target {
        name: "pickle_reader",
        seeds: pickle::seeds,
        run: pickle_reader,
    },
    Target {
        name: "pool_wire",
        seeds: pool_wire_seeds,
        run: pool_wire,
    },
    Target {
        name: "manager_request",
        seeds: manager::manager_seeds,
        run: manager_request,
    },
    Target {
        name: "queue_shared_state",
        seeds: queue::seeds,
        run: queue_shared_state,
    },
];

fn auth_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        b"{sha256}0123456789012345678901234567890123456789".to_vec(),
        b"{md5}abc".to_vec(),
        b"{sha3_384}".to_vec(),
        vec![0; 16],
        vec![0; 20],
        b"#CHALLENGE#{sha256}0123456789012345678901234567890123456789".to_vec(),
        b"#CHALLENGE#01234567890123456789".to_vec(),
        b"#WELCOME#".to_vec(),
    ];
    seeds.push(mp_auth::Challenge::from_random(mp_auth::Digest::Sha384, &[7; 40]).to_wire());
    seeds
}

/// The `{digest}` prefix parser and everything that consumes peer
/// handshake bytes: challenge parsing, reply creation and verification.
pub fn auth_digest_prefix(data: &[u8]) {
    use mp_auth::{Policy, create_response, parse_challenge, parse_digest_prefix, verify_response};
    if let Ok((digest, payload)) = parse_digest_prefix(data) {
        assert!(payload.len() <= data.len());
        if let Some(d) = digest {
            assert!(data.starts_with(format!("{{{}}}", d.name()).as_bytes()));
        }
    }
    if let Ok(message) = parse_challenge(data) {
        for policy in [Policy::CPYTHON, Policy::refuse_md5()] {
            if let Ok(reply) = create_response(b"key", message, policy) {
                // Our own reply to any challenge we accept must verify.
                verify_response(b"key", message, &reply, policy).expect("own reply verifies");
            }
        }
    }
    let challenge = b"{sha256}0123456789012345678901234567890123456789";
    let _ = verify_response(b"key", challenge, data, Policy::CPYTHON);
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let framed = |payloads: &[&[u8]]| {
        let mut wire = Vec::new();
        for p in payloads {
            let mut h = [0; 12];
            wire.extend_from_slice(mp_conn::encode_header(p.len() as u64, &mut h));
            wire.extend_from_slice(p);
        }
        wire
    };
    let mut long = vec![0xff; 4];
    long.extend((1u64 << 31).to_be_bytes());
    long.extend([1, 2, 3]);
    vec![
        framed(&[b"hello", b"", b"world"]),
        framed(&[&[7; 300]]),
        framed(&[b""]),
        long,
        vec![0x7f, 0xff, 0xff, 0xff, 0],
        vec![0xff, 0xff, 0xff, 0xfe],
        vec![0, 0],
    ]
}

/// CPython's message framing as a peer sends it: the header codec and the
/// `FrameDecoder`, fed in chunks whose sizes come from the input itself,
/// under a cap. Decoded messages must re-encode to exactly the bytes used,
/// and nothing may be allocated beyond the input.
pub fn frame_decoder(data: &[u8]) {
    use mp_conn::{FrameDecoder, Header, decode_header, decode_long_length, encode_header};
    if let Some(h) = data.first_chunk::<4>() {
        match decode_header(*h) {
            Ok(Header::Short(n)) => assert!(n <= 0x7fff_ffff),
            Ok(Header::Long) => assert_eq!(h, &[0xff; 4]),
            Err(_) => assert!(i32::from_be_bytes(*h) < -1),
        }
    }
    if let Some(l) = data.first_chunk::<8>()
        && let Ok(len) = decode_long_length(*l)
    {
        let mut out = [0; 12];
        assert_eq!(&encode_header(len, &mut out)[4..], l);
    }
    // The first byte picks the chunk size, the second the cap.
    let (chunk, cap, wire) = match data {
        [c, m, rest @ ..] => (usize::from(*c % 64) + 1, usize::from(*m) * 64, rest),
        _ => return,
    };
    let mut decoder = FrameDecoder::new(cap);
    let mut reencoded = Vec::new();
    let mut consumed = 0;
    'outer: for piece in wire.chunks(chunk) {
        let mut input = piece;
        while !input.is_empty() {
            match decoder.feed(input) {
                Ok((used, message)) => {
                    assert!(used <= input.len());
                    assert!(used > 0 || message.is_some(), "no progress");
                    consumed += used;
                    input = &input[used..];
                    if let Some(m) = message {
                        assert!(m.len() <= cap);
                        let mut out = [0; 12];
                        reencoded.extend_from_slice(encode_header(m.len() as u64, &mut out));
                        reencoded.extend_from_slice(&m);
                    }
                }
                Err(_) => {
                    assert!(decoder.feed(b"x").is_err(), "a failed decoder stays failed");
                    break 'outer;
                }
            }
        }
    }
    if decoder.is_at_boundary() {
        assert_eq!(reencoded, wire[..consumed]);
    }
}
