//! The sans-IO core of the handshake (challenges, responses, verdicts) and
//! the two drivers, `deliver_challenge` and `answer_challenge`, that run it
//! over any [`MessageChannel`].
//!
//! One direction of the handshake, as bytes (every message is one frame of
//! the channel, which for `mp-conn` is a 4-byte big-endian length prefix):
//!
//! ```text
//! verifier -> answerer   b"#CHALLENGE#" + b"{sha256}" + 40 random bytes   (modern)
//!                        b"#CHALLENGE#" + 20 random bytes                 (legacy <= 3.11)
//! answerer -> verifier   b"{sha256}" + HMAC-SHA256(key, b"{sha256}" + random)
//!                        HMAC-MD5(key, whole challenge message)           (16 bytes, legacy)
//! verifier -> answerer   b"#WELCOME#" | b"#FAILURE#"
//! ```
//!
//! The MAC covers the `{digest}` prefix too, so an answerer cannot downgrade
//! a prefixed challenge. Every read is capped at [`MAX_HANDSHAKE_MESSAGE`].

use std::io;

use crate::digest::{Digest, LEGACY_CHALLENGE_LEN, parse_digest_prefix};
use crate::{AuthenticationError, HandshakeError};

/// The token that starts a challenge message.
pub const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// The verdict for a correct reply.
pub const WELCOME: &[u8] = b"#WELCOME#";
/// The verdict for a wrong reply.
pub const FAILURE: &[u8] = b"#FAILURE#";
/// The number of random bytes in a modern challenge (CPython 3.12's
/// `MESSAGE_LENGTH`; 3.11 used 20, which now marks a legacy peer).
pub const CHALLENGE_RANDOM_LEN: usize = 40;
/// Every handshake read refuses a longer message, so that a peer that has
/// not authenticated cannot make us allocate (CPython's `recv_bytes(256)`).
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;

/// What a handshake accepts beyond CPython's rules.
///
/// The default is CPython's behaviour. [`Policy::refuse_md5`] forbids
/// HMAC-MD5 in both roles, as a FIPS-mode CPython has to: legacy
/// (<= 3.11) peers then fail to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    allow_md5: bool,
}

impl Policy {
    /// CPython's rules: MD5 is accepted (legacy peers work).
    pub const CPYTHON: Policy = Policy { allow_md5: true };

    /// A policy that refuses HMAC-MD5 altogether. An answerer given a legacy
    /// challenge replies with `{sha256}` (which a legacy server rejects), as
    /// CPython does when MD5 is unavailable.
    pub const fn refuse_md5() -> Policy {
        Policy { allow_md5: false }
    }

    /// Whether HMAC-MD5 may be used.
    pub const fn allows_md5(self) -> bool {
        self.allow_md5
    }

    /// `digest` if this policy allows it.
    ///
    /// # Errors
    ///
    /// [`AuthenticationError::DigestRefused`] for MD5 under a policy that
    /// refuses it.
    pub fn check(self, digest: Digest) -> Result<Digest, AuthenticationError> {
        if digest == Digest::Md5 && !self.allow_md5 {
            Err(AuthenticationError::DigestRefused { digest })
        } else {
            Ok(digest)
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::CPYTHON
    }
}

/// A challenge a verifier sends: the `{digest}` prefix and random bytes.
///
/// # Examples
///
/// The whole handshake with no I/O at all:
///
/// ```
/// use mp_auth::{Challenge, Digest, Policy, create_response, parse_challenge};
///
/// let key = b"secret key";
/// let challenge = Challenge::new(Digest::Sha256)?;
/// // ... challenge.to_wire() travels to the answerer ...
/// let wire = challenge.to_wire();
/// let message = parse_challenge(&wire)?;
/// let reply = create_response(key, message, Policy::CPYTHON)?;
/// // ... the reply travels back ...
/// challenge.verify(key, &reply, Policy::CPYTHON)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Challenge {
    /// `b"{name}"` followed by the random bytes; what the MAC covers.
    message: Vec<u8>,
}

impl Challenge {
    /// A fresh challenge for `digest` with [`CHALLENGE_RANDOM_LEN`] bytes
    /// from the operating system's random source.
    ///
    /// # Errors
    ///
    /// The random source failing (`getrandom`), as an `io::Error`.
    pub fn new(digest: Digest) -> io::Result<Challenge> {
        let mut random = [0u8; CHALLENGE_RANDOM_LEN];
        getrandom::fill(&mut random).map_err(io::Error::from)?;
        Ok(Challenge::from_random(digest, &random))
    }

    /// A challenge with the given random bytes (for tests and replays).
    pub fn from_random(digest: Digest, random: &[u8]) -> Challenge {
        Challenge {
            message: with_prefix(digest, random),
        }
    }

    /// The message the MAC covers: `{digest}` plus the random bytes.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The whole challenge as sent: `#CHALLENGE#` plus [`Self::message`].
    pub fn to_wire(&self) -> Vec<u8> {
        [CHALLENGE, &self.message].concat()
    }

    /// Checks a reply to this challenge (CPython's `_verify_challenge`).
    ///
    /// # Errors
    ///
    /// See [`verify_response`].
    pub fn verify(
        &self,
        key: &[u8],
        response: &[u8],
        policy: Policy,
    ) -> Result<(), AuthenticationError> {
        verify_response(key, &self.message, response, policy)
    }
}

/// Takes the challenge message out of a received `#CHALLENGE#` frame.
///
/// # Errors
///
/// [`AuthenticationError::Protocol`] if the frame does not start with
/// `#CHALLENGE#`; [`AuthenticationError::ChallengeTooShort`] if fewer than 20
/// bytes follow it.
pub fn parse_challenge(frame: &[u8]) -> Result<&[u8], AuthenticationError> {
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(AuthenticationError::Protocol {
            message: frame.to_vec(),
        });
    };
    if message.len() < LEGACY_CHALLENGE_LEN {
        return Err(AuthenticationError::ChallengeTooShort { len: message.len() });
    }
    Ok(message)
}

/// The reply to a challenge message (CPython's `_create_response`).
///
/// A prefixed challenge gets `{name}` + HMAC-name over the whole message; a
/// legacy 20-byte challenge gets a bare 16-byte HMAC-MD5, or `{sha256}` +
/// HMAC-SHA256 when the policy refuses MD5.
///
/// # Errors
///
/// [`AuthenticationError::UnsupportedDigest`] for a message with no usable
/// prefix; [`AuthenticationError::DigestRefused`] for `{md5}` under a policy
/// that refuses MD5.
pub fn create_response(
    key: &[u8],
    message: &[u8],
    policy: Policy,
) -> Result<Vec<u8>, AuthenticationError> {
    let digest = match parse_digest_prefix(message)?.0 {
        None if policy.allows_md5() => return Ok(Digest::Md5.mac(key, message)),
        None => Digest::Sha256,
        Some(digest) => policy.check(digest)?,
    };
    Ok(with_prefix(digest, &digest.mac(key, message)))
}

/// `{name}` followed by `tail`: the shape of a modern challenge message
/// and of a modern reply.
fn with_prefix(digest: Digest, tail: &[u8]) -> Vec<u8> {
    let name = digest.name().as_bytes();
    let mut out = Vec::with_capacity(2 + name.len() + tail.len());
    out.push(b'{');
    out.extend_from_slice(name);
    out.push(b'}');
    out.extend_from_slice(tail);
    out
}

/// Checks `response` against the challenge `message` we sent (CPython's
/// `_verify_challenge`). An unprefixed 16-byte reply is a legacy HMAC-MD5.
/// The comparison takes the same time wherever the bytes differ.
///
/// # Errors
///
/// - [`AuthenticationError::UnsupportedDigest`]: no usable prefix;
/// - [`AuthenticationError::DigestRefused`]: MD5 under a refusing policy;
/// - [`AuthenticationError::WrongLength`]: a MAC of the wrong length for its
///   digest (checked before comparing);
/// - [`AuthenticationError::DigestReceivedWrong`]: the MAC does not match.
pub fn verify_response(
    key: &[u8],
    message: &[u8],
    response: &[u8],
    policy: Policy,
) -> Result<(), AuthenticationError> {
    let (digest, mac) = parse_digest_prefix(response)?;
    let digest = policy.check(digest.unwrap_or(Digest::Md5))?;
    let expected = digest.mac(key, message);
    if expected.len() != mac.len() {
        return Err(AuthenticationError::WrongLength {
            digest,
            expected: expected.len(),
            got: mac.len(),
        });
    }
    if constant_time_eq(&expected, mac) {
        Ok(())
    } else {
        Err(AuthenticationError::DigestReceivedWrong)
    }
}

/// Equality of two equal-length slices whose running time does not depend
/// on where they differ (the role of Python's `hmac.compare_digest`).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0 && a.len() == b.len()
}

/// A channel that carries whole messages: what the handshake needs from a
/// connection. `mp-conn`'s `Connection` implements it.
pub trait MessageChannel {
    /// Sends one message.
    ///
    /// # Errors
    ///
    /// Any transport error.
    fn send_message(&mut self, message: &[u8]) -> io::Result<()>;

    /// Sends several messages, in order, each as its own message (the peer
    /// receives them one by one, exactly as if each had been sent with
    /// [`send_message`](Self::send_message)). A channel over a socket
    /// should override it to write them all with one system call, so that
    /// they travel together; the default sends them one at a time.
    ///
    /// # Errors
    ///
    /// Any transport error; some of the messages may have been sent.
    fn send_messages(&mut self, messages: &[&[u8]]) -> io::Result<()> {
        for message in messages {
            self.send_message(message)?;
        }
        Ok(())
    }

    /// Receives one message of at most `max_len` bytes. A longer message
    /// must be refused with an error, without reading or allocating it.
    ///
    /// # Errors
    ///
    /// Any transport error, end of file, or a message over `max_len`.
    fn recv_message(&mut self, max_len: usize) -> io::Result<Vec<u8>>;
}

impl<C: MessageChannel + ?Sized> MessageChannel for &mut C {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        (**self).send_message(message)
    }
    fn send_messages(&mut self, messages: &[&[u8]]) -> io::Result<()> {
        (**self).send_messages(messages)
    }
    fn recv_message(&mut self, max_len: usize) -> io::Result<Vec<u8>> {
        (**self).recv_message(max_len)
    }
}

/// The verifier's side (CPython's `deliver_challenge`): sends a challenge
/// for `digest`, checks the reply, and sends `#WELCOME#` or `#FAILURE#`.
///
/// # Errors
///
/// [`HandshakeError::Authentication`] if the reply is wrong (after
/// `#FAILURE#` has been sent); [`HandshakeError::Io`] for transport errors,
/// end of file, or a reply over 256 bytes.
pub fn deliver_challenge<C: MessageChannel>(
    channel: C,
    key: &[u8],
    digest: Digest,
) -> Result<(), HandshakeError> {
    deliver_challenge_with(channel, key, digest, Policy::CPYTHON)
}

/// [`deliver_challenge`] under an explicit [`Policy`].
///
/// # Errors
///
/// As [`deliver_challenge`]; also [`AuthenticationError::DigestRefused`]
/// (before anything is sent) for MD5 under a refusing policy.
pub fn deliver_challenge_with<C: MessageChannel>(
    mut channel: C,
    key: &[u8],
    digest: Digest,
    policy: Policy,
) -> Result<(), HandshakeError> {
    policy.check(digest)?;
    let challenge = Challenge::new(digest)?;
    channel.send_message(&challenge.to_wire())?;
    let response = channel.recv_message(MAX_HANDSHAKE_MESSAGE)?;
    send_verdict(&mut channel, &challenge, key, &response, policy)
}

/// The verifier's last step, shared by every driver: checks `response` to
/// `challenge` and sends `#WELCOME#`, or `#FAILURE#` and the error.
fn send_verdict<C: MessageChannel>(
    channel: &mut C,
    challenge: &Challenge,
    key: &[u8],
    response: &[u8],
    policy: Policy,
) -> Result<(), HandshakeError> {
    match challenge.verify(key, response, policy) {
        Ok(()) => {
            channel.send_message(WELCOME)?;
            Ok(())
        }
        Err(err) => {
            // Tell the peer, as CPython does; if that fails too, the
            // authentication failure is still the error that matters.
            let _ = channel.send_message(FAILURE);
            Err(err.into())
        }
    }
}

/// The answerer's side (CPython's `answer_challenge`): receives a
/// challenge, sends the reply, and expects `#WELCOME#`.
///
/// # Errors
///
/// [`HandshakeError::Authentication`] for a malformed challenge or any
/// verdict other than `#WELCOME#`; [`HandshakeError::Io`] for transport
/// errors, end of file, or a message over 256 bytes.
pub fn answer_challenge<C: MessageChannel>(channel: C, key: &[u8]) -> Result<(), HandshakeError> {
    answer_challenge_with(channel, key, Policy::CPYTHON)
}

/// [`answer_challenge`] under an explicit [`Policy`].
///
/// # Errors
///
/// As [`answer_challenge`].
pub fn answer_challenge_with<C: MessageChannel>(
    mut channel: C,
    key: &[u8],
    policy: Policy,
) -> Result<(), HandshakeError> {
    let frame = channel.recv_message(MAX_HANDSHAKE_MESSAGE)?;
    let message = parse_challenge(&frame)?;
    let reply = create_response(key, message, policy)?;
    channel.send_message(&reply)?;
    let verdict = channel.recv_message(MAX_HANDSHAKE_MESSAGE)?;
    if verdict == WELCOME {
        Ok(())
    } else {
        Err(AuthenticationError::DigestSentRejected.into())
    }
}

/// The client's side of the mutual handshake, pipelined: CPython's
/// `answer_challenge` followed by `deliver_challenge`, with the same bytes
/// on the wire in the same order, in four one-way trips instead of six.
///
/// After receiving the listener's challenge, the client sends its reply
/// *and* its own challenge in one [`MessageChannel::send_messages`] call,
/// then reads the verdict and the listener's reply:
///
/// ```text
/// client                                  listener
///   recv  #CHALLENGE#{d}random       <-     send                       1
///   send  {d}HMAC + #CHALLENGE#{d}r  ->     recv reply, recv challenge 2
///   recv  #WELCOME#, then {d}HMAC    <-     send both                  3
///   send  #WELCOME# | #FAILURE#      ->     recv                       4
/// ```
///
/// (Unpipelined, `answer_challenge` then `deliver_challenge`, the client's
/// challenge waits for the verdict: six trips.) A listener that reads one
/// message at a time, as CPython's does, simply finds the client's
/// challenge waiting in its socket once it has sent `#WELCOME#`; a listener
/// that rejects the reply closes the connection with the challenge unread.
/// The listener answers with `digest` (sha256 by default), as in
/// [`deliver_challenge_with`].
///
/// # Errors
///
/// - [`AuthenticationError::DigestRefused`] (before anything is received)
///   for MD5 under a refusing policy;
/// - the errors of [`parse_challenge`] and [`create_response`] for a
///   malformed challenge (nothing is sent then);
/// - [`AuthenticationError::DigestSentRejected`] for any verdict other than
///   `#WELCOME#`;
/// - the errors of [`verify_response`] for a wrong reply from the listener
///   (after `#FAILURE#` has been sent);
/// - [`HandshakeError::Io`] for transport errors, end of file, or a
///   message over 256 bytes.
///
/// # Examples
///
/// Against a listener that runs CPython's two steps, one message at a time:
///
/// ```
/// use std::{io, sync::mpsc};
/// use mp_auth::{Digest, MessageChannel, Policy};
///
/// struct End(mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>);
/// impl MessageChannel for End {
///     fn send_message(&mut self, m: &[u8]) -> io::Result<()> {
///         self.0.send(m.to_vec()).map_err(|_| io::ErrorKind::BrokenPipe.into())
///     }
///     fn recv_message(&mut self, max: usize) -> io::Result<Vec<u8>> {
///         let m = self.1.recv().map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
///         if m.len() > max { return Err(io::ErrorKind::InvalidData.into()); }
///         Ok(m)
///     }
/// }
///
/// let (a_tx, b_rx) = mpsc::channel();
/// let (b_tx, a_rx) = mpsc::channel();
/// let listener = std::thread::spawn(move || -> Result<(), mp_auth::HandshakeError> {
///     let mut end = End(b_tx, b_rx);
///     mp_auth::deliver_challenge(&mut end, b"secret key", Digest::Sha256)?;
///     mp_auth::answer_challenge(&mut end, b"secret key")
/// });
/// let client = End(a_tx, a_rx);
/// mp_auth::client_handshake(client, b"secret key", Digest::Sha256, Policy::CPYTHON)?;
/// listener.join().unwrap()?;
/// # Ok::<(), mp_auth::HandshakeError>(())
/// ```
pub fn client_handshake<C: MessageChannel>(
    mut channel: C,
    key: &[u8],
    digest: Digest,
    policy: Policy,
) -> Result<(), HandshakeError> {
    policy.check(digest)?;
    let frame = channel.recv_message(MAX_HANDSHAKE_MESSAGE)?;
    let message = parse_challenge(&frame)?;
    let reply = create_response(key, message, policy)?;
    let challenge = Challenge::new(digest)?;
    channel.send_messages(&[&reply, &challenge.to_wire()])?;
    let verdict = channel.recv_message(MAX_HANDSHAKE_MESSAGE)?;
    if verdict != WELCOME {
        return Err(AuthenticationError::DigestSentRejected.into());
    }
    let response = channel.recv_message(MAX_HANDSHAKE_MESSAGE)?;
    send_verdict(&mut channel, &challenge, key, &response, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::mpsc;

    /// One end of an in-memory message channel.
    struct End {
        tx: mpsc::Sender<Vec<u8>>,
        rx: mpsc::Receiver<Vec<u8>>,
    }

    impl MessageChannel for End {
        fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
            self.tx
                .send(message.to_vec())
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn recv_message(&mut self, max_len: usize) -> io::Result<Vec<u8>> {
            let m = self
                .rx
                .recv()
                .map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            if m.len() > max_len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad message length",
                ));
            }
            Ok(m)
        }
    }

    fn pair() -> (End, End) {
        let (a_tx, b_rx) = mpsc::channel();
        let (b_tx, a_rx) = mpsc::channel();
        (End { tx: a_tx, rx: a_rx }, End { tx: b_tx, rx: b_rx })
    }

    fn run(
        server_key: &'static [u8],
        client_key: &'static [u8],
        digest: Digest,
        server_policy: Policy,
        client_policy: Policy,
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let (mut s, mut c) = pair();
        let t =
            std::thread::spawn(move || answer_challenge_with(&mut c, client_key, client_policy));
        let server = deliver_challenge_with(&mut s, server_key, digest, server_policy);
        (server, t.join().unwrap())
    }

    #[test]
    fn every_digest_authenticates() {
        for d in Digest::ALL {
            let (s, c) = run(b"k", b"k", d, Policy::CPYTHON, Policy::CPYTHON);
            assert!(s.is_ok() && c.is_ok(), "{d}: {s:?} {c:?}");
        }
    }

    #[test]
    fn empty_key_is_a_key() {
        let (s, c) = run(b"", b"", Digest::Sha256, Policy::CPYTHON, Policy::CPYTHON);
        assert!(s.is_ok() && c.is_ok());
        let (s, c) = run(b"", b"x", Digest::Sha256, Policy::CPYTHON, Policy::CPYTHON);
        assert!(matches!(
            s,
            Err(HandshakeError::Authentication(
                AuthenticationError::DigestReceivedWrong
            ))
        ));
        assert!(matches!(
            c,
            Err(HandshakeError::Authentication(
                AuthenticationError::DigestSentRejected
            ))
        ));
    }

    #[test]
    fn wrong_key_fails_on_both_sides() {
        let (s, c) = run(
            b"right",
            b"wrong",
            Digest::Sha3_384,
            Policy::CPYTHON,
            Policy::CPYTHON,
        );
        assert_eq!(s.unwrap_err().to_string(), "digest received was wrong");
        assert_eq!(c.unwrap_err().to_string(), "digest sent was rejected");
    }

    #[test]
    fn md5_refusing_policy() {
        // Server refuses to even offer MD5.
        let (mut s, _c) = pair();
        assert!(matches!(
            deliver_challenge_with(&mut s, b"k", Digest::Md5, Policy::refuse_md5()),
            Err(HandshakeError::Authentication(
                AuthenticationError::DigestRefused { .. }
            ))
        ));
        // A refusing server rejects a bare 16-byte (legacy) reply.
        let ch = Challenge::from_random(Digest::Sha256, &[1; 40]);
        let legacy_reply = Digest::Md5.mac(b"k", ch.message());
        assert!(ch.verify(b"k", &legacy_reply, Policy::CPYTHON).is_ok());
        assert!(matches!(
            ch.verify(b"k", &legacy_reply, Policy::refuse_md5()),
            Err(AuthenticationError::DigestRefused { .. })
        ));
        // A refusing client answers a legacy challenge with {sha256}.
        let reply = create_response(b"k", &[9; 20], Policy::refuse_md5()).unwrap();
        assert!(reply.starts_with(b"{sha256}"));
        assert_eq!(reply.len(), 8 + 32);
    }

    /// What a CPython 3.11 client does: a bare HMAC-MD5 over the whole
    /// prefixed message, which a modern server must accept.
    #[test]
    fn legacy_client_against_modern_server() {
        let ch = Challenge::from_random(Digest::Sha256, &[3; 40]);
        let reply = Digest::Md5.mac(b"key", ch.message());
        assert_eq!(reply.len(), 16);
        ch.verify(b"key", &reply, Policy::CPYTHON).unwrap();
    }

    /// What a modern client does with a CPython 3.11 server's challenge.
    #[test]
    fn modern_client_against_legacy_server() {
        let legacy = [5u8; 20];
        let reply = create_response(b"key", &legacy, Policy::CPYTHON).unwrap();
        assert_eq!(reply, Digest::Md5.mac(b"key", &legacy));
    }

    /// Frame 1 and 2 of section A of `wire_conn.txt` (CPython 3.11 <->
    /// 3.11, key `b'secret key'`): our reply is byte-for-byte CPython's.
    #[test]
    fn reproduces_captured_legacy_reply() {
        let frame = unhex("234348414c4c454e47452363af9c54be1f0c7531330290273d161bb294c72e");
        let message = parse_challenge(&frame).unwrap();
        let reply = create_response(b"secret key", message, Policy::CPYTHON).unwrap();
        assert_eq!(reply, unhex("2471b3ab88bd32bfab7a53c4ecc8a0bf"));
    }

    /// Section B of `wire_conn.txt` (CPython 3.13 <-> 3.13).
    #[test]
    fn reproduces_captured_sha256_reply() {
        let frame = unhex(
            "234348414c4c454e4745237b7368613235367d0a12d0b30f8578fd18b8501847\
             9481a8cf77168205cfc1e4c3e28837c7fcbb4405222814cbce03e9",
        );
        let message = parse_challenge(&frame).unwrap();
        let reply = create_response(b"secret key", message, Policy::CPYTHON).unwrap();
        let expected = unhex(
            "7b7368613235367d843549a9b42eadba66bce1667776efc5240eac2a071eea65\
             ad3e183e7fc225ac",
        );
        assert_eq!(reply, expected);
        verify_response(b"secret key", message, &expected, Policy::CPYTHON).unwrap();
    }

    #[test]
    fn malformed_challenges() {
        assert!(matches!(
            parse_challenge(b"#CHALLENGE#"),
            Err(AuthenticationError::ChallengeTooShort { len: 0 })
        ));
        assert!(matches!(
            parse_challenge(b"hello there, this is not it"),
            Err(AuthenticationError::Protocol { .. })
        ));
        // A prefixed challenge with an unknown digest.
        assert!(matches!(
            create_response(
                b"k",
                b"{sha1}0123456789012345678901234567890123456789",
                Policy::CPYTHON
            ),
            Err(AuthenticationError::UnsupportedDigest { .. })
        ));
    }

    #[test]
    fn wrong_length_reply_is_rejected_before_comparing() {
        let ch = Challenge::from_random(Digest::Sha256, &[0; 40]);
        let mut reply = create_response(b"k", ch.message(), Policy::CPYTHON).unwrap();
        reply.pop();
        assert!(matches!(
            ch.verify(b"k", &reply, Policy::CPYTHON),
            Err(AuthenticationError::WrongLength {
                expected: 32,
                got: 31,
                ..
            })
        ));
    }

    /// A scripted peer: replays canned messages and records what we sent.
    struct Script {
        incoming: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }
    impl MessageChannel for Script {
        fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
            self.sent.push(message.to_vec());
            Ok(())
        }
        fn recv_message(&mut self, _max: usize) -> io::Result<Vec<u8>> {
            self.incoming
                .pop_front()
                .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
        }
    }

    #[test]
    fn failure_verdict_is_sent_on_bogus_reply() {
        let mut peer = Script {
            incoming: VecDeque::from([b"something bogus".to_vec()]),
            sent: vec![],
        };
        let err = deliver_challenge(&mut peer, b"abc", Digest::Sha256).unwrap_err();
        assert!(matches!(err, HandshakeError::Authentication(_)));
        assert_eq!(peer.sent.last().unwrap(), FAILURE);
    }

    #[test]
    fn eof_is_an_io_error() {
        let mut peer = Script {
            incoming: VecDeque::new(),
            sent: vec![],
        };
        assert!(matches!(
            answer_challenge(&mut peer, b"k"),
            Err(HandshakeError::Io(_))
        ));
    }

    /// A listener that runs CPython's steps one message at a time and
    /// records every send call of the client, to see what went together.
    struct ScriptedListener {
        key: &'static [u8],
        challenge: Challenge,
        /// Replaces the listener's reply to the client's challenge.
        bogus_reply: Option<Vec<u8>>,
        /// Replies as CPython 3.11 does: a bare HMAC-MD5.
        legacy_reply: bool,
        /// Each `send_message`/`send_messages` call of the client.
        calls: Vec<Vec<Vec<u8>>>,
        /// The messages received by the listener, in order.
        received: VecDeque<Vec<u8>>,
        recvs: usize,
    }

    impl ScriptedListener {
        fn new(key: &'static [u8], challenge: Challenge) -> ScriptedListener {
            ScriptedListener {
                key,
                challenge,
                bogus_reply: None,
                legacy_reply: false,
                calls: vec![],
                received: VecDeque::new(),
                recvs: 0,
            }
        }
    }

    impl MessageChannel for ScriptedListener {
        fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
            self.send_messages(&[message])
        }
        fn send_messages(&mut self, messages: &[&[u8]]) -> io::Result<()> {
            self.calls
                .push(messages.iter().map(|m| m.to_vec()).collect());
            self.received.extend(messages.iter().map(|m| m.to_vec()));
            Ok(())
        }
        fn recv_message(&mut self, _max: usize) -> io::Result<Vec<u8>> {
            self.recvs += 1;
            match self.recvs {
                1 => Ok(self.challenge.to_wire()),
                2 => {
                    let reply = self.received.pop_front().expect("the client replied");
                    Ok(
                        match self.challenge.verify(self.key, &reply, Policy::CPYTHON) {
                            Ok(()) => WELCOME.to_vec(),
                            Err(_) => FAILURE.to_vec(),
                        },
                    )
                }
                3 => {
                    let frame = self.received.pop_front().expect("the client challenged");
                    if let Some(bogus) = &self.bogus_reply {
                        return Ok(bogus.clone());
                    }
                    let message = parse_challenge(&frame).expect("a well-formed challenge");
                    if self.legacy_reply {
                        return Ok(Digest::Md5.mac(self.key, message));
                    }
                    Ok(create_response(self.key, message, Policy::CPYTHON).unwrap())
                }
                _ => Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    #[test]
    fn client_handshake_pipelines_reply_and_challenge() {
        for digest in Digest::ALL {
            let listener_challenge = Challenge::from_random(Digest::Sha384, &[7; 40]);
            let mut peer = ScriptedListener::new(b"key", listener_challenge.clone());
            client_handshake(&mut peer, b"key", digest, Policy::CPYTHON).unwrap();
            // Two writes: reply + challenge together, then the verdict.
            assert_eq!(peer.calls.len(), 2, "{digest}");
            let first = &peer.calls[0];
            assert_eq!(first.len(), 2);
            assert_eq!(
                first[0],
                create_response(b"key", listener_challenge.message(), Policy::CPYTHON).unwrap()
            );
            let ours = parse_challenge(&first[1]).unwrap();
            assert!(ours.starts_with(format!("{{{}}}", digest.name()).as_bytes()));
            assert_eq!(ours.len(), 2 + digest.name().len() + CHALLENGE_RANDOM_LEN);
            assert_eq!(peer.calls[1], vec![WELCOME.to_vec()]);
        }
    }

    #[test]
    fn client_handshake_against_a_legacy_listener() {
        // CPython 3.11: a bare 20-byte challenge, answered with bare MD5.
        let legacy = Challenge {
            message: vec![5; LEGACY_CHALLENGE_LEN],
        };
        let mut peer = ScriptedListener::new(b"key", legacy);
        client_handshake(&mut peer, b"key", Digest::Sha256, Policy::CPYTHON).unwrap();
        assert_eq!(peer.calls[0][0], Digest::Md5.mac(b"key", &[5; 20]));
        // Its reply to our challenge is a bare HMAC-MD5 over all of it.
        assert_eq!(peer.calls[1], vec![WELCOME.to_vec()]);
        let legacy = Challenge {
            message: vec![5; LEGACY_CHALLENGE_LEN],
        };
        let mut peer = ScriptedListener::new(b"key", legacy);
        peer.legacy_reply = true;
        client_handshake(&mut peer, b"key", Digest::Sha3_256, Policy::CPYTHON).unwrap();
        assert_eq!(peer.calls[1], vec![WELCOME.to_vec()]);
        // A client that refuses MD5 answers a legacy challenge with sha256
        // (which a real 3.11 listener then rejects).
        let legacy = Challenge {
            message: vec![5; LEGACY_CHALLENGE_LEN],
        };
        let mut peer = ScriptedListener::new(b"key", legacy);
        let _ = client_handshake(&mut peer, b"key", Digest::Sha256, Policy::refuse_md5());
        assert!(peer.calls[0][0].starts_with(b"{sha256}"));
    }

    #[test]
    fn client_handshake_rejected_reply_stops_after_the_verdict() {
        let mut peer =
            ScriptedListener::new(b"right", Challenge::from_random(Digest::Sha256, &[2; 40]));
        let err =
            client_handshake(&mut peer, b"wrong", Digest::Sha256, Policy::CPYTHON).unwrap_err();
        assert_eq!(err.to_string(), "digest sent was rejected");
        // Only the pipelined write; no verdict of ours, no further read.
        assert_eq!(peer.calls.len(), 1);
        assert_eq!(peer.recvs, 2);
    }

    #[test]
    fn client_handshake_wrong_listener_reply_gets_failure() {
        let mut peer =
            ScriptedListener::new(b"key", Challenge::from_random(Digest::Sha256, &[2; 40]));
        peer.bogus_reply = Some(b"{sha256}0123456789abcdef0123456789abcdef".to_vec());
        let err = client_handshake(&mut peer, b"key", Digest::Sha256, Policy::CPYTHON).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Authentication(AuthenticationError::DigestReceivedWrong)
        ));
        assert_eq!(peer.calls.last().unwrap(), &vec![FAILURE.to_vec()]);
    }

    #[test]
    fn client_handshake_malformed_challenge_sends_nothing() {
        let mut peer = Script {
            incoming: VecDeque::from([b"#CHALLENGE#short".to_vec()]),
            sent: vec![],
        };
        let err = client_handshake(&mut peer, b"k", Digest::Sha256, Policy::CPYTHON).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Authentication(AuthenticationError::ChallengeTooShort { len: 5 })
        ));
        assert!(peer.sent.is_empty());
        // MD5 under a refusing policy is refused before anything is read.
        let mut peer = Script {
            incoming: VecDeque::new(),
            sent: vec![],
        };
        assert!(matches!(
            client_handshake(&mut peer, b"k", Digest::Md5, Policy::refuse_md5()),
            Err(HandshakeError::Authentication(
                AuthenticationError::DigestRefused { .. }
            ))
        ));
    }

    /// The pipelined client against the real listener steps, over the
    /// in-memory channel, in every combination of keys and digests.
    #[test]
    fn client_handshake_against_deliver_then_answer() {
        for digest in Digest::ALL {
            for (server_key, client_key, ok) in [(b"k", b"k", true), (b"k", b"x", false)] {
                let (mut s, mut c) = pair();
                let t = std::thread::spawn(move || -> Result<(), HandshakeError> {
                    deliver_challenge_with(&mut s, server_key, digest, Policy::CPYTHON)?;
                    answer_challenge_with(&mut s, server_key, Policy::CPYTHON)
                });
                let client = client_handshake(&mut c, client_key, digest, Policy::CPYTHON);
                drop(c);
                let server = t.join().unwrap();
                assert_eq!(client.is_ok(), ok, "{digest}: {client:?}");
                assert_eq!(server.is_ok(), ok, "{digest}: {server:?}");
            }
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
