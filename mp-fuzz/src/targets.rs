//! The registry of fuzz targets and their seed corpora.

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
pub static TARGETS: &[Target] = &[Target {
    name: "auth_digest_prefix",
    seeds: auth_seeds,
    run: auth_digest_prefix,
}];

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
