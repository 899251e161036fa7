//! The mutual handshake as a nonblocking state machine over a socket, so
//! that a listener can run many at once next to its listening socket and no
//! slow or hostile client holds up the others.
//!
//! The cryptography is `mp-auth`'s sans-IO core; this module only moves its
//! messages. Both orders exist:
//!
//! ```text
//! listener (deliver, then answer)     client (answer, then deliver)
//!   send  #CHALLENGE#{d}random    ->    recv
//!   recv  reply                   <-    send  {d}HMAC
//!   send  #WELCOME# | #FAILURE#   ->    recv
//!   recv  #CHALLENGE#{d}random    <-    send
//!   send  {d}HMAC                 ->    recv
//!   recv  #WELCOME#               <-    send
//! ```
//!
//! Every message is one frame: a 4-byte big-endian signed length and the
//! payload. Reads are exact (never past the frame), so whatever the peer
//! sends after the handshake stays in the socket for the `Connection`.
//! Nothing longer than [`MAX_HANDSHAKE_MESSAGE`] is read or allocated: the
//! length header alone decides, and the payload lands in a fixed buffer.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mp_auth::{
    Challenge, Digest, MAX_HANDSHAKE_MESSAGE, Policy, WELCOME, create_response, parse_challenge,
};
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::{Error, Result};

/// A header of -1 announces an 8-byte length (CPython's framing).
const LONG_HEADER: i32 = -1;

/// The secrets and choices of one side of a handshake.
#[derive(Clone)]
pub(crate) struct Auth {
    /// The key; empty is a real key.
    pub(crate) key: Vec<u8>,
    /// The digest of the challenges this side sends.
    pub(crate) digest: Digest,
    /// What this side accepts beyond CPython's rules.
    pub(crate) policy: Policy,
    /// How long the whole handshake may take once it has started.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Auth")
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("digest", &self.digest)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Which side of the handshake we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The listener: deliver, then answer.
    Listener,
    /// The client: answer, then deliver.
    Client,
}

/// One step of the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    SendChallenge,
    RecvReply,
    SendVerdict,
    RecvChallenge,
    SendReply,
    RecvVerdict,
}

const LISTENER_STEPS: [Step; 6] = [
    Step::SendChallenge,
    Step::RecvReply,
    Step::SendVerdict,
    Step::RecvChallenge,
    Step::SendReply,
    Step::RecvVerdict,
];
const CLIENT_STEPS: [Step; 6] = [
    Step::RecvChallenge,
    Step::SendReply,
    Step::RecvVerdict,
    Step::SendChallenge,
    Step::RecvReply,
    Step::SendVerdict,
];

/// What the caller should wait for before calling [`Handshake::advance`]
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    Read,
    Write,
}

impl Want {
    pub(crate) fn poll_flags(self) -> PollFlags {
        match self {
            Want::Read => PollFlags::IN,
            Want::Write => PollFlags::OUT,
        }
    }
}

/// One frame being received: header first, then a payload of at most
/// [`MAX_HANDSHAKE_MESSAGE`] bytes into a fixed buffer.
struct Inbox {
    header: [u8; 12],
    header_len: usize,
    have: usize,
    /// The payload length once the header is complete.
    len: Option<usize>,
    body: [u8; MAX_HANDSHAKE_MESSAGE],
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            header: [0; 12],
            header_len: 4,
            have: 0,
            len: None,
            body: [0; MAX_HANDSHAKE_MESSAGE],
        }
    }

    fn reset(&mut self) {
        self.header_len = 4;
        self.have = 0;
        self.len = None;
    }

    /// Reads what is available; `Ok(Some(len))` once the frame is whole.
    fn read(&mut self, fd: BorrowedFd<'_>, started: &mut bool) -> Result<Option<usize>> {
        loop {
            let (want, in_header) = match self.len {
                None => (self.header_len - self.have, true),
                Some(len) if self.have == len => return Ok(Some(len)),
                Some(len) => (len - self.have, false),
            };
            let buf = if in_header {
                &mut self.header[self.have..self.have + want]
            } else {
                &mut self.body[self.have..self.have + want]
            };
            let n = match rustix::net::recv(fd, buf, RecvFlags::empty()) {
                Ok((_, n)) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                // End of file: at a frame boundary it is EOFError, inside
                // one "got end of file during message", as in CPython.
                return Err(if in_header && self.have == 0 {
                    Error::Eof
                } else {
                    Error::TruncatedMessage
                });
            }
            *started = true;
            self.have += n;
            if in_header && self.have == self.header_len {
                if let Some(len) = self.decode_header()? {
                    self.have = 0;
                    self.len = Some(len);
                }
            }
        }
    }

    /// Checks a complete header; refuses anything over the cap before a
    /// byte of payload is read. `Ok(None)`: an 8-byte length follows.
    fn decode_header(&mut self) -> Result<Option<usize>> {
        if self.header_len == 12 {
            let mut long = [0u8; 8];
            long.copy_from_slice(&self.header[4..12]);
            return Err(Error::MessageTooLong {
                len: u64::from_be_bytes(long),
                max: MAX_HANDSHAKE_MESSAGE,
            });
        }
        let short = i32::from_be_bytes([
            self.header[0],
            self.header[1],
            self.header[2],
            self.header[3],
        ]);
        if short == LONG_HEADER {
            // Read the 8-byte length too, to report it, then refuse it.
            self.header_len = 12;
            self.have = 4;
            return Ok(None);
        }
        let Ok(len) = usize::try_from(short) else {
            return Err(Error::BadLength("negative message length"));
        };
        if len > MAX_HANDSHAKE_MESSAGE {
            return Err(Error::MessageTooLong {
                len: len as u64,
                max: MAX_HANDSHAKE_MESSAGE,
            });
        }
        Ok(Some(len))
    }
}

/// A handshake in progress on one nonblocking socket.
pub(crate) struct Handshake {
    fd: OwnedFd,
    auth: std::sync::Arc<Auth>,
    steps: &'static [Step; 6],
    step: usize,
    /// The challenge we sent, to check the reply against.
    challenge: Option<Challenge>,
    /// The framed message being sent and how much of it went out.
    outbox: Vec<u8>,
    sent: usize,
    inbox: Box<Inbox>,
    /// Whether the peer has sent anything yet.
    started: bool,
    /// When the handshake fails with [`Error::Timeout`]; `None` waits as
    /// long as it takes.
    deadline: Option<Instant>,
    /// For a client: whether the deadline still waits for the listener's
    /// first byte (the listener may accept long after the connect).
    deadline_from_first_byte: bool,
}

impl Handshake {
    /// Starts a handshake on `fd`, which must be nonblocking. A listener's
    /// deadline runs from now; a client's from the first byte the listener
    /// sends, unless `wait_limit` bounds that wait too.
    pub(crate) fn new(
        fd: OwnedFd,
        auth: std::sync::Arc<Auth>,
        role: Role,
        wait_limit: Option<Duration>,
    ) -> Handshake {
        let now = Instant::now();
        let (steps, deadline, from_first_byte) = match role {
            Role::Listener => (&LISTENER_STEPS, now.checked_add(auth.timeout), false),
            Role::Client => (
                &CLIENT_STEPS,
                wait_limit.and_then(|w| now.checked_add(w)),
                true,
            ),
        };
        let mut hs = Handshake {
            fd,
            auth,
            steps,
            step: 0,
            challenge: None,
            outbox: Vec::new(),
            sent: 0,
            inbox: Box::new(Inbox::new()),
            started: false,
            deadline,
            deadline_from_first_byte: from_first_byte,
        };
        hs.outbox.reserve(64);
        hs
    }

    /// The socket, for polling.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// When this handshake times out.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// What to wait for before the next [`Handshake::advance`].
    pub(crate) fn want(&self) -> Want {
        match self.steps.get(self.step) {
            Some(Step::SendChallenge | Step::SendVerdict | Step::SendReply) => Want::Write,
            // A finished handshake has nothing left to wait for; reading
            // would only notice the peer hanging up.
            Some(Step::RecvReply | Step::RecvChallenge | Step::RecvVerdict) | None => Want::Read,
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// Makes as much progress as the socket allows without blocking.
    /// `Ok(true)`: the handshake is complete, take the socket with
    /// [`Self::into_fd`]; `Ok(false)`: wait for [`Self::want`].
    ///
    /// # Errors
    ///
    /// The handshake failed: [`Error::Authentication`], end of file, an
    /// over-long or malformed frame, or a socket error.
    pub(crate) fn advance(&mut self) -> Result<bool> {
        loop {
            let step = self.steps[self.step];
            match step {
                Step::SendChallenge | Step::SendVerdict | Step::SendReply => {
                    if self.outbox.is_empty() {
                        self.prepare(step)?;
                    }
                    if !self.flush()? {
                        return Ok(false);
                    }
                    self.outbox.clear();
                    self.sent = 0;
                }
                Step::RecvReply | Step::RecvChallenge | Step::RecvVerdict => {
                    let was_started = self.started;
                    let got = self.inbox.read(self.fd.as_fd(), &mut self.started);
                    if self.started && !was_started && self.deadline_from_first_byte {
                        self.deadline_from_first_byte = false;
                        self.deadline = Instant::now().checked_add(self.auth.timeout);
                    }
                    let len = match got {
                        Ok(Some(len)) => len,
                        Ok(None) => return Ok(false),
                        Err(e) => return Err(e),
                    };
                    self.received(step, len)?;
                    self.inbox.reset();
                }
            }
            self.step += 1;
            if self.step == self.steps.len() {
                return Ok(true);
            }
        }
    }

    /// The socket, still nonblocking, once [`Self::advance`] said `true`.
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Fills the outbox for a send step.
    fn prepare(&mut self, step: Step) -> Result<()> {
        match step {
            Step::SendChallenge => {
                let challenge = Challenge::new(self.auth.digest)?;
                frame_into(&mut self.outbox, &challenge.to_wire());
                self.challenge = Some(challenge);
            }
            Step::SendVerdict => frame_into(&mut self.outbox, WELCOME),
            // The reply was framed when the challenge arrived.
            Step::SendReply => {}
            _ => unreachable!("not a send step"),
        }
        Ok(())
    }

    /// Handles a complete received frame of `len` bytes.
    fn received(&mut self, step: Step, len: usize) -> Result<()> {
        let message = &self.inbox.body[..len];
        match step {
            Step::RecvReply => {
                let challenge = self.challenge.take().expect("a challenge was sent");
                if let Err(err) = challenge.verify(&self.auth.key, message, self.auth.policy) {
                    // Tell the peer, as CPython does. The socket's buffer is
                    // empty at this point, so one nonblocking send of 13
                    // bytes goes through; if it does not, the failure is
                    // still ours to report.
                    let mut failure = Vec::with_capacity(16);
                    frame_into(&mut failure, mp_auth::FAILURE);
                    let _ = rustix::net::send(&self.fd, &failure, SendFlags::NOSIGNAL);
                    return Err(Error::Authentication(err));
                }
            }
            Step::RecvChallenge => {
                let challenge = parse_challenge(message).map_err(Error::Authentication)?;
                let reply = create_response(&self.auth.key, challenge, self.auth.policy)
                    .map_err(Error::Authentication)?;
                frame_into(&mut self.outbox, &reply);
                self.sent = 0;
            }
            Step::RecvVerdict => {
                if message != WELCOME {
                    return Err(Error::Authentication(
                        mp_auth::AuthenticationError::DigestSentRejected,
                    ));
                }
            }
            _ => unreachable!("not a receive step"),
        }
        Ok(())
    }

    /// Writes what the socket takes; `true` once the outbox is sent.
    fn flush(&mut self) -> Result<bool> {
        while self.sent < self.outbox.len() {
            match rustix::net::send(&self.fd, &self.outbox[self.sent..], SendFlags::NOSIGNAL) {
                Ok(n) => self.sent += n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("fd", &self.fd)
            .field("step", &self.steps[self.step.min(5)])
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Appends `payload` to `out` as one frame (handshake messages are short).
fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_HANDSHAKE_MESSAGE);
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Runs a handshake to completion on its own (a client does this), polling
/// its one socket. The socket is handed back, still nonblocking.
///
/// # Errors
///
/// As [`Handshake::advance`], and [`Error::Timeout`] past the deadline.
pub(crate) fn run_to_completion(mut hs: Handshake) -> Result<OwnedFd> {
    loop {
        if hs.advance()? {
            return Ok(hs.into_fd());
        }
        let now = Instant::now();
        if hs.expired(now) {
            return Err(Error::Timeout);
        }
        let timeout = hs.deadline().map(|d| d.saturating_duration_since(now));
        crate::listener::poll_one(hs.fd(), hs.want().poll_flags(), timeout)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn auth(key: &[u8], digest: Digest) -> Arc<Auth> {
        Arc::new(Auth {
            key: key.to_vec(),
            digest,
            policy: Policy::CPYTHON,
            timeout: Duration::from_secs(5),
        })
    }

    fn nonblocking_pair() -> (OwnedFd, OwnedFd) {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap()
    }

    /// Drives both state machines in one thread, alternating.
    fn run_pair(server: Arc<Auth>, client: Arc<Auth>) -> (Result<()>, Result<()>) {
        let (a, b) = nonblocking_pair();
        let mut s = Some(Handshake::new(a, server, Role::Listener, None));
        let mut c = Some(Handshake::new(b, client, Role::Client, None));
        let (mut rs, mut rc) = (None, None);
        for _ in 0..100 {
            if let Some(h) = s.as_mut() {
                match h.advance() {
                    Ok(false) => {}
                    Ok(true) => (rs, s) = (Some(Ok(())), None),
                    Err(e) => (rs, s) = (Some(Err(e)), None),
                }
            }
            if let Some(h) = c.as_mut() {
                match h.advance() {
                    Ok(false) => {}
                    Ok(true) => (rc, c) = (Some(Ok(())), None),
                    Err(e) => (rc, c) = (Some(Err(e)), None),
                }
            }
            if s.is_none() && c.is_none() {
                break;
            }
        }
        (rs.expect("server finished"), rc.expect("client finished"))
    }

    #[test]
    fn both_orders_authenticate_with_every_digest() {
        for d in Digest::ALL {
            let (s, c) = run_pair(auth(b"k", d), auth(b"k", Digest::Sha3_384));
            assert!(s.is_ok() && c.is_ok(), "{d}: {s:?} {c:?}");
        }
        let (s, c) = run_pair(auth(b"", Digest::Sha256), auth(b"", Digest::Md5));
        assert!(s.is_ok() && c.is_ok(), "empty key: {s:?} {c:?}");
    }

    #[test]
    fn wrong_key_fails_on_both_sides() {
        let (s, c) = run_pair(
            auth(b"right", Digest::Sha256),
            auth(b"wrong", Digest::Sha256),
        );
        assert!(
            matches!(
                s,
                Err(Error::Authentication(
                    mp_auth::AuthenticationError::DigestReceivedWrong
                ))
            ),
            "{s:?}"
        );
        assert!(
            matches!(
                c,
                Err(Error::Authentication(
                    mp_auth::AuthenticationError::DigestSentRejected
                ))
            ),
            "{c:?}"
        );
    }

    /// Feeds raw bytes to a listener-side handshake and returns its error.
    fn listener_error_after(peer_bytes: &[u8]) -> Error {
        let (a, b) = nonblocking_pair();
        let mut hs = Handshake::new(a, auth(b"k", Digest::Sha256), Role::Listener, None);
        assert!(!hs.advance().unwrap());
        rustix::net::send(&b, peer_bytes, SendFlags::empty()).unwrap();
        rustix::net::shutdown(&b, rustix::net::Shutdown::Write).unwrap();
        loop {
            match hs.advance() {
                Ok(false) => continue,
                Ok(true) => panic!("handshake succeeded on {peer_bytes:?}"),
                Err(e) => return e,
            }
        }
    }

    #[test]
    fn hostile_frames_are_refused_without_reading_them() {
        let mut long = (-1i32).to_be_bytes().to_vec();
        long.extend_from_slice(&(1u64 << 31).to_be_bytes());
        assert!(matches!(
            listener_error_after(&long),
            Error::MessageTooLong { len, max: 256 } if len == 1 << 31
        ));
        assert!(matches!(
            listener_error_after(&(-5i32).to_be_bytes()),
            Error::BadLength(_)
        ));
        let mut big = 300i32.to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 300]);
        assert!(matches!(
            listener_error_after(&big),
            Error::MessageTooLong { len: 300, max: 256 }
        ));
        let mut truncated = 40i32.to_be_bytes().to_vec();
        truncated.extend_from_slice(&[1; 10]);
        assert!(matches!(
            listener_error_after(&truncated),
            Error::TruncatedMessage
        ));
        assert!(matches!(
            listener_error_after(&[0, 0]),
            Error::TruncatedMessage
        ));
        assert!(matches!(listener_error_after(b""), Error::Eof));
        let mut unknown = Vec::new();
        frame_into(&mut unknown, b"{sha1}0123456789012345678901234567");
        assert!(matches!(
            listener_error_after(&unknown),
            Error::Authentication(mp_auth::AuthenticationError::UnsupportedDigest { .. })
        ));
    }

    #[test]
    fn reads_stop_at_the_frame_boundary() {
        // A client that sends its first message right behind its verdict:
        // the listener's handshake must leave that message in the socket.
        let (a, b) = nonblocking_pair();
        let mut s = Handshake::new(a, auth(b"k", Digest::Sha256), Role::Listener, None);
        let mut c = Handshake::new(b, auth(b"k", Digest::Sha256), Role::Client, None);
        let (mut server_done, mut client_done) = (false, false);
        while !server_done || !client_done {
            if !client_done && c.advance().unwrap() {
                let mut msg = Vec::new();
                frame_into(&mut msg, b"after");
                rustix::net::send(c.fd(), &msg, SendFlags::empty()).unwrap();
                client_done = true;
            }
            if !server_done {
                server_done = s.advance().unwrap();
            }
        }
        let server_fd = s.into_fd();
        let mut buf = [0u8; 64];
        let (_, n) = rustix::net::recv(&server_fd, &mut buf[..], RecvFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"\0\0\0\x05after");
    }

    #[test]
    fn client_deadline_starts_at_the_first_byte() {
        let (a, _b) = nonblocking_pair();
        let mut hs = Handshake::new(a, auth(b"k", Digest::Sha256), Role::Client, None);
        assert!(!hs.advance().unwrap());
        assert_eq!(hs.deadline(), None);
        let (a, _b) = nonblocking_pair();
        let hs = Handshake::new(a, auth(b"k", Digest::Sha256), Role::Listener, None);
        assert!(hs.deadline().is_some());
    }
}
