//! The two handshake targets: bytes from a peer, over a real socket pair,
//! against our listener's side of the handshake (the nonblocking state
//! machine a `Listener` runs) and against our client's side (what
//! `client()` runs after connecting).
//!
//! An input is a script for the peer: its first byte holds flags, its
//! second the size of the writes, the rest is what the peer sends.
//!
//! - bit 0 of the flags: half-close (`shutdown(SHUT_WR)`) after the last
//!   write and keep reading, rather than close the socket;
//! - bit 1: *answer* mode: the harness does the one thing random bytes
//!   cannot, answering the random challenge of our side with the right
//!   HMAC, so that the input reaches the later steps of the handshake;
//! - bits 2 to 4: the digest of our side's challenge; bit 5: our side
//!   refuses MD5;
//! - the write size: 0 for one write, otherwise that many bytes a write.
//!
//! The peer always ends with end of file, so no handshake waits for its
//! deadline: a [`Error::Timeout`] is a failure of the target, as are a
//! panic, a `#WELCOME#` sent for a wrong reply, a success on bytes that are
//! not a valid handshake, and a byte taken from the socket past the
//! handshake. Allocation is bounded by construction (handshake messages
//! land in fixed 256-byte buffers); under cargo-fuzz, libFuzzer's
//! `-malloc_limit_mb` checks it too.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mp_auth::{
    CHALLENGE, Challenge, Digest, FAILURE, MAX_HANDSHAKE_MESSAGE, Policy, WELCOME, create_response,
    parse_challenge, verify_response,
};
use mp_conn::__fuzz::{ListenerHandshake, client_handshake as run_client};
use mp_conn::Error;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType, recv, send, shutdown,
    socketpair,
};

/// The key of our side and of the harness in answer mode.
const KEY: &[u8] = b"fuzz key";

/// The handshake deadlines of our side. The peer always ends with end of
/// file, so they are never reached: they are only a bound, generous enough
/// that a busy machine does not reach them either.
const DEADLINE: Duration = Duration::from_secs(2);

/// The first message behind the harness's last handshake message (client
/// target), which must stay in the socket.
const AFTER: &[u8] = b"after";

/// Flag bits of the script's first byte.
const HALF_CLOSE: u8 = 1;
const ANSWER: u8 = 2;
const REFUSE_MD5: u8 = 0x20;

/// What the peer does, decoded from an input.
#[derive(Debug)]
struct Script<'a> {
    half_close: bool,
    answer: bool,
    digest: Digest,
    policy: Policy,
    /// Bytes a write.
    chunk: usize,
    /// What the peer sends (after the harness's answer, in answer mode).
    bytes: &'a [u8],
}

impl Script<'_> {
    fn parse(data: &[u8]) -> Script<'_> {
        let flags = data.first().copied().unwrap_or(HALF_CLOSE);
        let chunk = data.get(1).map_or(0, |&c| usize::from(c));
        Script {
            half_close: flags & HALF_CLOSE != 0,
            answer: flags & ANSWER != 0,
            digest: Digest::ALL[usize::from(flags >> 2 & 7) % Digest::ALL.len()],
            policy: if flags & REFUSE_MD5 != 0 {
                Policy::refuse_md5()
            } else {
                Policy::CPYTHON
            },
            chunk: if chunk == 0 { usize::MAX } else { chunk },
            bytes: data.get(2..).unwrap_or_default(),
        }
    }

    /// The peer's writes: the harness's answer in one piece, then the
    /// script's bytes in chunks.
    fn pieces<'s>(&'s self, answer: &'s [u8]) -> impl Iterator<Item = &'s [u8]> {
        std::iter::once(answer)
            .chain(self.bytes.chunks(self.chunk))
            .filter(|p| !p.is_empty())
    }
}

/// Our listener's side of the handshake against a client that sends the
/// input (see the module's doc for the script).
pub fn listener_handshake(data: &[u8]) {
    let _ = run_listener(data);
}

/// Our client's side of the handshake against a listener that sends the
/// input (see the module's doc for the script).
pub fn client_handshake(data: &[u8]) {
    let _ = run_client_side(data);
}

/// Runs [`listener_handshake`] and returns the handshake's outcome.
fn run_listener(data: &[u8]) -> Result<(), Error> {
    let script = Script::parse(data);
    let (ours, theirs) = pair();
    let mut hs = ListenerHandshake::new(ours, KEY, script.digest, script.policy, DEADLINE);
    // As a Listener does on accept: this sends the challenge.
    let first = hs.advance();
    assert!(!matches!(first, Ok(true)), "no handshake without a reply");
    let mut outcome = first.err().map(Err);
    let sent = recv_available(theirs.as_fd());
    let (challenge, rest) = split_frame(&sent).expect("the challenge goes out in one frame");
    assert!(rest.is_empty(), "only the challenge before the reply");
    let message = parse_challenge(challenge).expect("our challenge parses");
    assert!(message.starts_with(format!("{{{}}}", script.digest.name()).as_bytes()));

    let answer = if script.answer {
        create_response(KEY, message, script.policy).map_or_else(|_| Vec::new(), |r| frame(&r))
    } else {
        Vec::new()
    };
    let stream = [&answer[..], script.bytes].concat();
    let mut written = 0;
    if outcome.is_none() {
        for piece in script.pieces(&answer) {
            let n = send_some(theirs.as_fd(), piece);
            written += n;
            // What a Listener does between two polls: advance while ready.
            outcome = drive(&mut hs, Duration::ZERO);
            if outcome.is_some() || n < piece.len() {
                break;
            }
        }
    }
    let peer = if outcome.is_some() || script.half_close {
        if outcome.is_none() {
            let _ = shutdown(&theirs, Shutdown::Write);
        }
        Some(theirs)
    } else {
        drop(theirs);
        None
    };
    let outcome = outcome.unwrap_or_else(|| finish(&mut hs));
    assert!(
        !matches!(outcome, Err(Error::Timeout)),
        "the listener waited for its deadline after the client's end of file"
    );

    // What the listener sent after its challenge.
    let said = peer.as_ref().map(|p| recv_available(p.as_fd()));
    if outcome.is_err() {
        if answer.is_empty()
            && let Some(said) = &said
        {
            assert!(
                said.is_empty() || *said == frame(FAILURE),
                "listener answered a wrong reply with {said:?}"
            );
        }
        return outcome;
    }
    // Success: the harness answered the challenge; the input must be the
    // client's challenge and #WELCOME#.
    assert!(!answer.is_empty(), "a reply verified without the key");
    let (theirs_challenge, rest) = split_frame(script.bytes).expect("client's challenge");
    let (verdict, rest) = split_frame(rest).expect("client's verdict");
    assert_eq!(verdict, WELCOME);
    let theirs_message = parse_challenge(theirs_challenge).expect("a valid challenge");
    if let Some(said) = said {
        let (verdict, rest) = split_frame(&said).expect("listener's verdict");
        assert_eq!(verdict, WELCOME);
        let (reply, rest) = split_frame(rest).expect("listener's reply");
        assert!(rest.is_empty(), "listener sent more: {rest:?}");
        verify_response(KEY, theirs_message, reply, script.policy)
            .expect("listener's reply verifies");
    }
    // The listener read nothing past the client's verdict: the rest waits
    // in the socket for the connection.
    let consumed = answer.len() + script.bytes.len() - rest.len();
    let fd = hs.into_fd();
    let left = recv_available(fd.as_fd());
    assert_eq!(left, stream[consumed..written], "read past the handshake");
    Ok(())
}

/// Advances the handshake while its socket is ready, waiting at most
/// `timeout` each time; `None` while it is not finished.
fn drive(hs: &mut ListenerHandshake, timeout: Duration) -> Option<Result<(), Error>> {
    loop {
        if hs.expired() {
            return Some(Err(Error::Timeout));
        }
        match hs.wait(timeout) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        match hs.advance() {
            Ok(false) => {}
            Ok(true) => return Some(Ok(())),
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Runs the handshake to its end (at the latest, its deadline).
fn finish(hs: &mut ListenerHandshake) -> Result<(), Error> {
    loop {
        if let Some(outcome) = drive(hs, DEADLINE) {
            return outcome;
        }
    }
}

/// What the fake listener of [`client_handshake`] heard from our client.
#[derive(Debug, Default)]
struct Heard {
    /// The frames read before the harness's answer (answer mode): the
    /// client's reply and challenge.
    before_answer: Vec<Vec<u8>>,
    /// Everything the client sent afterwards, when the socket was only
    /// half-closed.
    after: Option<Vec<u8>>,
}

/// Runs [`client_handshake`] and returns the handshake's outcome.
fn run_client_side(data: &[u8]) -> Result<(), Error> {
    let script = Script::parse(data);
    let (ours, theirs) = pair();
    let (outcome, heard) = std::thread::scope(|s| {
        let server = s.spawn(|| serve(theirs, &script));
        let outcome = run_client(
            ours.as_fd(),
            KEY,
            script.digest,
            script.policy,
            DEADLINE,
            Some(DEADLINE),
        );
        // What the client left in its socket, before the fake listener
        // reads to end of file.
        let left = recv_available(ours.as_fd());
        drop(ours);
        (
            outcome.map(|()| left),
            server.join().expect("the fake listener"),
        )
    });
    assert!(
        !matches!(outcome, Err(Error::Timeout)),
        "the client waited for its deadline after the listener's end of file"
    );
    let mut sent = heard.before_answer.clone();
    if let Some(after) = &heard.after {
        let mut rest = &after[..];
        while let Some((f, r)) = split_frame(rest) {
            sent.push(f.to_vec());
            rest = r;
        }
        assert!(rest.is_empty(), "client sent a partial frame: {rest:?}");
    }
    let left = match outcome {
        Ok(left) => left,
        Err(e) => {
            assert!(
                !sent.iter().any(|f| f == WELCOME),
                "client welcomed a listener whose reply failed"
            );
            return Err(e);
        }
    };
    // The client read nothing past the listener's reply.
    assert_eq!(left, frame(AFTER), "read past the handshake");
    assert!(script.answer, "a reply verified without the key");
    let (challenge, rest) = split_frame(script.bytes).expect("listener's challenge");
    let (verdict, rest) = split_frame(rest).expect("listener's verdict");
    assert_eq!(verdict, WELCOME);
    assert!(rest.is_empty(), "the reply came from the harness");
    let message = parse_challenge(challenge).expect("a valid challenge");
    let [reply, _] = &heard.before_answer[..] else {
        panic!("client sent {:?} before the answer", heard.before_answer);
    };
    verify_response(KEY, message, reply, Policy::CPYTHON).expect("client's reply verifies");
    if let Some(after) = heard.after {
        assert_eq!(after, frame(WELCOME), "client's last words");
    }
    Ok(())
}

/// The fake listener: sends the script's bytes, answers the client's
/// challenge in answer mode, then closes or half-closes.
fn serve(fd: OwnedFd, script: &Script<'_>) -> Heard {
    let mut heard = Heard::default();
    let mut written = 0;
    for piece in script.pieces(&[]) {
        let n = send_some(fd.as_fd(), piece);
        written += n;
        if n < piece.len() {
            break;
        }
        // Give the client a chance to see a partial message.
        std::thread::yield_now();
    }
    // The client answers only a complete challenge frame; for anything
    // else it fails (and closes) or waits for more.
    let complete = match script.bytes[..written].first_chunk::<4>() {
        Some(h) => match usize::try_from(i32::from_be_bytes(*h)) {
            Ok(len) if len <= MAX_HANDSHAKE_MESSAGE => written >= 4 + len,
            _ => false,
        },
        None => false,
    };
    if script.answer && complete {
        heard.before_answer = recv_frames(fd.as_fd(), 2);
        if let [_, challenge] = &heard.before_answer[..]
            && let Ok(message) = parse_challenge(challenge)
            && let Ok(reply) = create_response(KEY, message, Policy::CPYTHON)
        {
            // The listener's first message follows right behind.
            send_some(fd.as_fd(), &[frame(&reply), frame(AFTER)].concat());
        }
    }
    if script.half_close {
        let _ = shutdown(&fd, Shutdown::Write);
        heard.after = Some(recv_to_eof(fd.as_fd()));
    }
    heard
}

/// A connected pair of blocking stream sockets.
pub(super) fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair")
}

/// Sends what the socket takes without blocking; stops at a full buffer
/// or a closed peer.
fn send_some(fd: BorrowedFd<'_>, bytes: &[u8]) -> usize {
    let mut sent = 0;
    while sent < bytes.len() {
        match send(
            fd,
            &bytes[sent..],
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    sent
}

/// Everything in the socket's buffer now (up to end of file).
fn recv_available(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((_, 0)) => return out,
            Ok((_, n)) => out.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => {}
            Err(_) => return out,
        }
    }
}

/// Waits until `fd` is readable, for at most [`DEADLINE`] from `start`.
fn readable(fd: BorrowedFd<'_>, start: Instant) -> bool {
    let left = DEADLINE.saturating_sub(start.elapsed());
    let timeout = Timespec {
        tv_sec: left.as_secs() as i64,
        tv_nsec: i64::from(left.subsec_nanos()),
    };
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
}

/// Reads until `count` whole frames came, or end of file; the client
/// under test ends every path with one or the other.
fn recv_frames(fd: BorrowedFd<'_>, count: usize) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let mut frames = Vec::new();
        let mut rest = &got[..];
        while let Some((f, r)) = split_frame(rest) {
            frames.push(f.to_vec());
            rest = r;
        }
        if frames.len() >= count || !readable(fd, start) {
            return frames;
        }
        match recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((_, 0)) => return frames,
            Ok((_, n)) => got.extend_from_slice(&buf[..n]),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(_) => return frames,
        }
    }
}

/// Everything the peer sends until it closes.
fn recv_to_eof(fd: BorrowedFd<'_>) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while readable(fd, start) {
        match recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((_, 0)) => break,
            Ok((_, n)) => out.extend_from_slice(&buf[..n]),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(_) => break,
        }
    }
    out
}

/// One frame: the 4-byte big-endian length and the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The payload of the whole frame at the start of `bytes`, and the rest.
fn split_frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (header, rest) = bytes.split_first_chunk::<4>()?;
    let len = usize::try_from(i32::from_be_bytes(*header)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A script: flags, write size and the frames of `payloads`.
fn script(flags: u8, chunk: u8, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![flags, chunk];
    for p in payloads {
        out.extend_from_slice(&frame(p));
    }
    out
}

/// A script: flags, write size and raw bytes.
fn raw(flags: u8, chunk: u8, bytes: &[u8]) -> Vec<u8> {
    [&[flags, chunk][..], bytes].concat()
}

/// Challenges as CPython's peers send them: 3.12+ (`{digest}` and 40
/// random bytes) and 3.11 (20 bytes, HMAC-MD5 implied).
fn challenges() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [Digest::Sha256, Digest::Md5, Digest::Sha3_384]
        .into_iter()
        .map(|d| Challenge::from_random(d, &[0x5a; 40]).to_wire())
        .collect();
    out.push([CHALLENGE, &[0xa5; 20]].concat());
    out
}

/// Seeds for both targets: they differ only in whose challenge the
/// harness answers.
fn handshake_seeds() -> Vec<Vec<u8>> {
    let both = HALF_CLOSE | ANSWER;
    let mut seeds = Vec::new();
    for (i, c) in challenges().iter().map(Vec::as_slice).enumerate() {
        // Valid transcripts, in one write, byte by byte, in between.
        let digest_bits = (i as u8 % 5) << 2;
        seeds.push(script(both | digest_bits, 0, &[c, WELCOME]));
        seeds.push(script(both, 1, &[c, WELCOME, b"after"]));
        seeds.push(script(ANSWER | digest_bits, 7, &[c, WELCOME]));
        seeds.push(script(both, 0, &[c, FAILURE]));
        seeds.push(script(HALF_CLOSE, 0, &[c, WELCOME]));
    }
    let wrong_modern = [b"{sha256}".as_slice(), &[0; 32]].concat();
    let long = [&(-1i32).to_be_bytes()[..], &(1u64 << 31).to_be_bytes()].concat();
    seeds.extend([
        // Wrong replies: modern, legacy (bare HMAC-MD5), unknown digest.
        script(
            HALF_CLOSE,
            0,
            &[&wrong_modern, &challenges()[0][..], WELCOME],
        ),
        script(HALF_CLOSE, 3, &[&[0; 16]]),
        script(HALF_CLOSE | REFUSE_MD5, 0, &[&[0; 16]]),
        script(HALF_CLOSE, 0, &[b"{sha1}0123456789012345678901234567"]),
        // Too short a challenge, a verdict of the wrong size.
        script(both, 0, &[b"#CHALLENGE#short", WELCOME]),
        script(both, 0, &[&challenges()[0][..], b"#WELCOME#!"]),
        // Hostile headers: huge, negative, long, over the cap, truncated.
        raw(HALF_CLOSE, 0, &[0x7f, 0xff, 0xff, 0xff]),
        raw(HALF_CLOSE, 0, &(-5i32).to_be_bytes()),
        raw(HALF_CLOSE, 0, &long),
        raw(
            HALF_CLOSE,
            2,
            &[&300i32.to_be_bytes()[..], &[0; 300]].concat(),
        ),
        raw(both, 0, &[&40i32.to_be_bytes()[..], &[1; 10]].concat()),
        raw(0, 0, &[0, 0]),
        Vec::new(),
    ]);
    seeds
}

/// Seeds of [`listener_handshake`]: what a client sends.
pub(super) fn listener_seeds() -> Vec<Vec<u8>> {
    handshake_seeds()
}

/// Seeds of [`client_handshake`]: what a listener sends.
pub(super) fn client_seeds() -> Vec<Vec<u8>> {
    let mut seeds = handshake_seeds();
    let c = &challenges()[0][..];
    let wrong = [b"{sha256}".as_slice(), &[0; 32]].concat();
    seeds.extend([
        // A listener that answers with a wrong reply, or a legacy one.
        script(HALF_CLOSE, 0, &[c, WELCOME, &wrong]),
        script(HALF_CLOSE, 0, &[&challenges()[3][..], WELCOME, &[0; 16]]),
        // A listener that says nothing at all, or only half a header.
        raw(HALF_CLOSE, 0, &[]),
        raw(0, 1, &[0, 0, 0]),
    ]);
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_frame_is_challenge(seed: &[u8]) -> bool {
        split_frame(&seed[2..]).is_some_and(|(c, _)| parse_challenge(c).is_ok())
    }

    #[test]
    fn valid_transcripts_succeed_and_others_fail() {
        let mut ok = 0;
        for seed in listener_seeds() {
            let s = Script::parse(&seed);
            let valid = s.answer
                && first_frame_is_challenge(&seed)
                && split_frame(&seed[2..])
                    .and_then(|(_, r)| split_frame(r))
                    .is_some_and(|(v, _)| v == WELCOME);
            let got = run_listener(&seed);
            // Only the policy may refuse a valid transcript (MD5).
            if valid && (s.policy.allows_md5() || !seed.windows(5).any(|w| w == b"{md5}")) {
                assert!(got.is_ok(), "{seed:?}: {got:?}");
                ok += 1;
            } else if !valid {
                assert!(got.is_err(), "{seed:?}");
            }
        }
        assert!(ok >= 8, "{ok} successful transcripts");
    }

    #[test]
    fn client_succeeds_only_on_valid_transcripts() {
        let mut ok = 0;
        for seed in client_seeds() {
            let s = Script::parse(&seed);
            let got = run_client_side(&seed);
            let valid = s.answer
                && first_frame_is_challenge(&seed)
                && split_frame(&seed[2..])
                    .and_then(|(_, r)| split_frame(r))
                    .is_some_and(|(v, r)| v == WELCOME && r.is_empty());
            // A closed listener may miss the client's #WELCOME#.
            if valid && s.half_close {
                assert!(got.is_ok(), "{seed:?}: {got:?}");
                ok += 1;
            } else if !valid {
                assert!(got.is_err(), "{seed:?}");
            }
        }
        assert!(ok >= 4, "{ok} successful transcripts");
    }

    #[test]
    fn hostile_headers_are_refused() {
        for target in [run_listener, run_client_side] {
            let got = target(&raw(HALF_CLOSE, 0, &(-5i32).to_be_bytes()));
            assert!(matches!(got, Err(Error::BadLength(_))), "{got:?}");
            let got = target(&raw(HALF_CLOSE, 0, &[0x7f, 0xff, 0xff, 0xff]));
            assert!(
                matches!(got, Err(Error::MessageTooLong { max: 256, .. })),
                "{got:?}"
            );
            let got = target(&raw(0, 1, &[0, 0, 0]));
            assert!(matches!(got, Err(Error::TruncatedMessage)), "{got:?}");
        }
    }
}
