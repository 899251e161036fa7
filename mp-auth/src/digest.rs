//! The HMAC digests CPython's handshake accepts, and the `{digest}` prefix
//! parser that tells a modern message from a legacy one.

use hmac::{Hmac, Mac};

use crate::AuthenticationError;

/// A digest the handshake may use; CPython's `_ALLOWED_DIGESTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Digest {
    /// HMAC-MD5: the only digest of CPython 3.11 and older, whose replies
    /// carry no prefix.
    Md5,
    /// HMAC-SHA-256, the default of CPython 3.12 and later (and ours).
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA3-256.
    Sha3_256,
    /// HMAC-SHA3-384.
    Sha3_384,
}

/// The longest digest name, `sha3_256`/`sha3_384` (CPython's
/// `_MAX_DIGEST_LEN`): the closing `}` must come within this many bytes.
const MAX_DIGEST_NAME_LEN: usize = 8;

/// A legacy (CPython <= 3.11) server's challenge is exactly 20 bytes, and a
/// legacy client's reply is a bare 16-byte HMAC-MD5. Neither length can be a
/// modern `{digest}`-prefixed message, which is how the protocol tells them
/// apart (CPython's `_LEGACY_LENGTHS`).
pub const LEGACY_CHALLENGE_LEN: usize = 20;
/// The length of a bare HMAC-MD5 reply from a legacy peer.
pub const MD5_DIGEST_LEN: usize = 16;

impl Digest {
    /// Every digest, in CPython's order of preference for documentation.
    pub const ALL: [Digest; 5] = [
        Digest::Sha256,
        Digest::Sha384,
        Digest::Sha3_256,
        Digest::Sha3_384,
        Digest::Md5,
    ];

    /// The name used on the wire and by `hashlib`, e.g. `"sha3_256"`.
    pub const fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha3_256 => "sha3_256",
            Digest::Sha3_384 => "sha3_384",
        }
    }

    /// The digest called `name` on the wire, if it is one of the allowed ones.
    pub fn from_name(name: &[u8]) -> Option<Digest> {
        Digest::ALL
            .into_iter()
            .find(|d| d.name().as_bytes() == name)
    }

    /// The length in bytes of this digest's MAC.
    pub const fn output_len(self) -> usize {
        match self {
            Digest::Md5 => 16,
            Digest::Sha256 | Digest::Sha3_256 => 32,
            Digest::Sha384 | Digest::Sha3_384 => 48,
        }
    }

    /// HMAC of `message` under `key` with this digest. Any key length is
    /// valid, the empty key included.
    pub fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length (long ones are hashed first), so
            // `new_from_slice` cannot fail for it.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC accepts keys of every length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message),
            Digest::Sha3_256 => run::<Hmac<sha3::Sha3_256>>(key, message),
            Digest::Sha3_384 => run::<Hmac<sha3::Sha3_384>>(key, message),
        }
    }
}

impl Default for Digest {
    /// SHA-256, as CPython's `deliver_challenge` defaults to.
    fn default() -> Self {
        Digest::Sha256
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Digest {
    type Err = AuthenticationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::from_name(s.as_bytes()).ok_or_else(|| AuthenticationError::UnsupportedDigest {
            message: s.as_bytes().to_vec(),
        })
    }
}

/// Splits a challenge or a reply into its digest and payload, as CPython's
/// `_get_digest_name_and_payload` does.
///
/// ```text
/// modern:  b"{" name b"}" payload     name in Digest::ALL, found within 10 bytes
/// legacy:  payload                     exactly 20 (challenge) or 16 (reply) bytes
/// ```
///
/// A legacy message gives `None` (meaning HMAC-MD5 with no prefix) and the
/// whole message as payload.
///
/// # Errors
///
/// [`AuthenticationError::UnsupportedDigest`] for a message that is neither:
/// no prefix, an unclosed prefix, or a name that is not allowed.
///
/// # Examples
///
/// ```
/// use mp_auth::{parse_digest_prefix, Digest};
///
/// let (digest, payload) = parse_digest_prefix(b"{sha256}0123456789abcdef0123")?;
/// assert_eq!(digest, Some(Digest::Sha256));
/// assert_eq!(payload, b"0123456789abcdef0123");
///
/// let (digest, payload) = parse_digest_prefix(&[7u8; 20])?;
/// assert_eq!((digest, payload.len()), (None, 20));
/// # Ok::<(), mp_auth::AuthenticationError>(())
/// ```
pub fn parse_digest_prefix(message: &[u8]) -> Result<(Option<Digest>, &[u8]), AuthenticationError> {
    if message.len() == LEGACY_CHALLENGE_LEN || message.len() == MD5_DIGEST_LEN {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        // CPython searches for `}` in message[1 : MAX_DIGEST_LEN + 2].
        let window = &message[1..message.len().min(MAX_DIGEST_NAME_LEN + 2)];
        if let Some(close) = window.iter().position(|&b| b == b'}')
            && let Some(digest) = Digest::from_name(&window[..close])
        {
            return Ok((Some(digest), &message[close + 2..]));
        }
    }
    Err(AuthenticationError::UnsupportedDigest {
        message: message.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn names_round_trip() {
        for d in Digest::ALL {
            assert_eq!(Digest::from_name(d.name().as_bytes()), Some(d));
            assert_eq!(d.name().parse::<Digest>().unwrap(), d);
            assert_eq!(d.mac(b"k", b"m").len(), d.output_len());
        }
        assert_eq!(Digest::from_name(b"sha1"), None);
        assert_eq!(Digest::default(), Digest::Sha256);
    }

    /// Known answers from Python: `hmac.new(b'key', b'The quick brown fox
    /// jumps over the lazy dog', name).hexdigest()`.
    #[test]
    fn known_answers() {
        let msg = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(
            hex(&Digest::Md5.mac(b"key", msg)),
            "80070713463e7749b90c2dc24911e275"
        );
        assert_eq!(
            hex(&Digest::Sha256.mac(b"key", msg)),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        // The empty key is a real key (bpo-43952).
        assert_eq!(
            hex(&Digest::Md5.mac(b"", b"")),
            "74e6f7298a9c2d168935f58c001bad88"
        );
    }

    #[test]
    fn prefix_parsing_follows_cpython() {
        assert!(parse_digest_prefix(b"").is_err());
        assert!(parse_digest_prefix(b"{sha256").is_err());
        assert!(parse_digest_prefix(b"{sha1}0123456789abcdefghijkl").is_err());
        assert!(parse_digest_prefix(b"no prefix at all, 27 bytes.").is_err());
        // The name must close within the window: `{` + 8 bytes + `}`.
        assert!(parse_digest_prefix(b"{sha3_384}x").is_ok());
        // A legacy length wins even when the bytes look prefixed.
        let sixteen = b"{sha256}01234567";
        assert_eq!(parse_digest_prefix(sixteen).unwrap(), (None, &sixteen[..]));
        let (d, p) = parse_digest_prefix(b"{md5}payload-here").unwrap();
        assert_eq!((d, p), (Some(Digest::Md5), &b"payload-here"[..]));
        let (d, p) = parse_digest_prefix(b"{sha3_256}").unwrap();
        assert_eq!((d, p), (Some(Digest::Sha3_256), &b""[..]));
    }
}
