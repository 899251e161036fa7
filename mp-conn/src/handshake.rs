//! The mutual handshake over a socket, in as few one-way trips and system
//! calls as the protocol allows: the listener's side as a nonblocking state
//! machine (so that a listener runs many at once next to its listening
//! socket and no slow or hostile client holds up the others), the client's
//! side as [`mp_auth::client_handshake`] over a [`ClientChannel`].
//!
//! The cryptography is `mp-auth`'s sans-IO core; this module only moves its
//! messages. The bytes are CPython's, in CPython's order; only the timing
//! differs. Our client sends its reply and its own challenge in one write,
//! and our listener, finding that challenge behind the reply, sends its
//! verdict and its own reply in one write:
//!
//! ```text
//! listener (deliver, then answer)          client (answer, then deliver)
//!   send  #CHALLENGE#{d}random       ->       recv                      1
//!   recv  reply, recv challenge      <-       send {d}HMAC + challenge  2
//!   send  #WELCOME# + {d}HMAC        ->       recv verdict, recv reply  3
//!   recv  #WELCOME#                  <-       send #WELCOME#            4
//! ```
//!
//! A CPython client sends its challenge only after the verdict, and then
//! the listener answers it on its own (six trips, as between CPython
//! peers); a CPython listener reads one message at a time and finds our
//! client's challenge waiting in its socket.
//!
//! Every message is one frame: a 4-byte big-endian signed length and the
//! payload. Nothing longer than [`MAX_HANDSHAKE_MESSAGE`] is read or
//! allocated: the length header alone decides, and the payload lands in a
//! fixed buffer. Reads take a few bytes beyond the frame at hand only where
//! the protocol guarantees that, in any handshake that succeeds, those
//! bytes are handshake bytes too ([`ReadAhead`]); so whatever the peer sends
//! after its last handshake message stays in the socket for the
//! `Connection`.
//!
//! Sockets stay in blocking mode (what a `Connection` wants): every
//! nonblocking call says `MSG_DONTWAIT`, which saves switching the mode
//! back and forth.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mp_auth::{
    Challenge, Digest, MAX_HANDSHAKE_MESSAGE, MessageChannel, Policy, WELCOME, create_response,
    parse_challenge,
};
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::frame::{self, HEADER_LEN, Header, LONG_LEN};
use crate::sys::wait_fd;
use crate::{Error, Result};

/// The short frame header.
const HEADER: usize = HEADER_LEN;
/// The long frame header (-1, then an 8-byte length).
const LONG_HEADER_LEN: usize = HEADER_LEN + LONG_LEN;
/// A verdict, `#WELCOME#` or `#FAILURE#`, framed.
const VERDICT_FRAME: usize = HEADER + 9;
/// The shortest challenge a handshake can succeed with: `#CHALLENGE#` and
/// the 20 bytes of a legacy one.
const MIN_CHALLENGE: usize = mp_auth::CHALLENGE.len() + mp_auth::LEGACY_CHALLENGE_LEN;
/// The shortest reply a handshake can succeed with: a bare HMAC-MD5.
const MIN_REPLY: usize = mp_auth::MD5_DIGEST_LEN;
/// The most a receive reads past the end of its frame ([`ReadAhead`]).
const MAX_PAST_FRAME: usize = HEADER;
/// Room for one frame and what may be read with or past it.
const INBOX_LEN: usize = HEADER + MAX_HANDSHAKE_MESSAGE + 64;

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

/// How far one receive may read beyond what it knows it needs, to save
/// system calls: a frame's header and (part of) its payload in one `recv`,
/// and the next frame's header along with this frame's payload.
///
/// The rule that keeps this safe: in a handshake that succeeds, every byte
/// read this way belongs to the handshake. A peer's later handshake frames
/// then simply wait in the inbox, and nothing it sends after its last one
/// (its first application message, which a client may send right behind
/// its verdict) is ever taken from the socket. In a handshake that fails,
/// the connection is dropped anyway. Each use below says why it is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReadAhead {
    /// Payload bytes asked for together with the header, before the length
    /// is known. At most the length of the shortest frame of this kind in a
    /// successful handshake, plus what may follow that frame.
    with_header: usize,
    /// Bytes asked for past the end of the frame, once its length is known.
    past_frame: usize,
}

impl ReadAhead {
    /// Exactly the frame: the header, then the payload.
    const EXACT: ReadAhead = ReadAhead {
        with_header: 0,
        past_frame: 0,
    };
    /// A verdict and nothing past it: `#WELCOME#` is 9 bytes, so a verdict
    /// of another length fails the handshake whatever was read with it.
    const LAST_VERDICT: ReadAhead = ReadAhead {
        with_header: VERDICT_FRAME - HEADER,
        past_frame: 0,
    };
}

/// One frame being received into a fixed buffer, plus whatever was read
/// ahead of the next one.
struct Inbox {
    buf: [u8; INBOX_LEN],
    /// Bytes in `buf`, from the start of the current frame.
    filled: usize,
    /// The payload length once the header is complete.
    len: Option<usize>,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buf: [0; INBOX_LEN],
            filled: 0,
            len: None,
        }
    }

    /// Reads until the current frame is whole (`Ok(Some(len))`) or the
    /// socket has nothing more (`Ok(None)`). The first `recv` uses `flags`
    /// (a blocking one waits for the peer's first byte), the others add
    /// `MSG_DONTWAIT`. `started` is set once any byte has arrived.
    fn read(
        &mut self,
        fd: BorrowedFd<'_>,
        mut flags: RecvFlags,
        ahead: ReadAhead,
        started: &mut bool,
    ) -> Result<Option<usize>> {
        loop {
            if self.len.is_none() {
                self.decode_header()?;
            }
            let target = match self.len {
                Some(len) if self.filled >= HEADER + len => return Ok(Some(len)),
                Some(len) => HEADER + len + ahead.past_frame.min(MAX_PAST_FRAME),
                // A long header: read its 8-byte length, to report it.
                None if self.filled >= HEADER => LONG_HEADER_LEN,
                None => HEADER + ahead.with_header,
            };
            let target = target.min(INBOX_LEN);
            let n = match rustix::net::recv(fd, &mut self.buf[self.filled..target], flags) {
                Ok((_, n)) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                // End of file: at a frame boundary it is EOFError, inside
                // one "got end of file during message", as in CPython.
                return Err(if self.filled == 0 {
                    Error::Eof
                } else {
                    Error::TruncatedMessage
                });
            }
            *started = true;
            self.filled += n;
            flags |= RecvFlags::DONTWAIT;
        }
    }

    /// Checks the header once it is complete and refuses anything over the
    /// cap before a byte of payload is used.
    fn decode_header(&mut self) -> Result<()> {
        if self.filled < HEADER {
            return Ok(());
        }
        let mut short = [0u8; HEADER_LEN];
        short.copy_from_slice(&self.buf[..HEADER_LEN]);
        let len = match frame::decode_header(short)? {
            Header::Short(len) => len as usize,
            Header::Long => {
                if self.filled < LONG_HEADER_LEN {
                    return Ok(());
                }
                let mut long = [0u8; LONG_LEN];
                long.copy_from_slice(&self.buf[HEADER_LEN..LONG_HEADER_LEN]);
                return Err(Error::MessageTooLong {
                    len: u64::from_be_bytes(long),
                    max: MAX_HANDSHAKE_MESSAGE,
                });
            }
        };
        if len > MAX_HANDSHAKE_MESSAGE {
            return Err(Error::MessageTooLong {
                len: len as u64,
                max: MAX_HANDSHAKE_MESSAGE,
            });
        }
        self.len = Some(len);
        Ok(())
    }

    /// The payload of the complete frame of `len` bytes.
    fn message(&self, len: usize) -> &[u8] {
        &self.buf[HEADER..HEADER + len]
    }

    /// Drops the complete frame of `len` bytes, keeping what was read
    /// ahead of the next one.
    fn consume(&mut self, len: usize) {
        let end = HEADER + len;
        self.buf.copy_within(end..self.filled, 0);
        self.filled -= end;
        self.len = None;
    }

    /// Bytes of the next frame already read.
    fn buffered(&self) -> usize {
        self.filled
    }
}

/// What the listener waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The challenge is still to be made.
    Start,
    /// The client's reply to our challenge.
    RecvReply,
    /// The client's challenge.
    RecvChallenge,
    /// The client's verdict on our reply.
    RecvVerdict,
}

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

/// The listener's side of a handshake in progress on one accepted socket
/// (CPython's `deliver_challenge`, then `answer_challenge`).
pub(crate) struct Handshake {
    fd: OwnedFd,
    auth: std::sync::Arc<Auth>,
    step: Step,
    /// The challenge we sent, to check the reply against.
    challenge: Option<Challenge>,
    /// The framed messages being sent and how much of them went out.
    outbox: Vec<u8>,
    sent: usize,
    inbox: Box<Inbox>,
    /// When the handshake fails with [`Error::Timeout`].
    deadline: Option<Instant>,
}

impl Handshake {
    /// Starts a listener's handshake on the accepted socket `fd`; it must
    /// finish within the key's timeout from now.
    pub(crate) fn new(fd: OwnedFd, auth: std::sync::Arc<Auth>) -> Handshake {
        let deadline = Instant::now().checked_add(auth.timeout);
        Handshake {
            fd,
            auth,
            step: Step::Start,
            challenge: None,
            outbox: Vec::with_capacity(2 * HEADER + 64 + 16),
            sent: 0,
            inbox: Box::new(Inbox::new()),
            deadline,
        }
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
        if self.sent < self.outbox.len() {
            Want::Write
        } else {
            Want::Read
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
    /// Everything the listener sends asks the client for an answer, which
    /// cannot be in the socket yet: after a send it returns to be polled
    /// rather than try a read that would fail.
    ///
    /// # Errors
    ///
    /// The handshake failed: [`Error::Authentication`], end of file, an
    /// over-long or malformed frame, or a socket error.
    pub(crate) fn advance(&mut self) -> Result<bool> {
        loop {
            if self.sent < self.outbox.len() {
                if !self.flush()? {
                    return Ok(false);
                }
                self.outbox.clear();
                self.sent = 0;
                return Ok(false);
            }
            match self.step {
                Step::Start => {
                    let challenge = Challenge::new(self.auth.digest)?;
                    frame_into(&mut self.outbox, &challenge.to_wire());
                    self.challenge = Some(challenge);
                    self.step = Step::RecvReply;
                }
                Step::RecvReply => {
                    // The reply's header and, for a modern client, the
                    // whole reply and the next header in one read. Safe: a
                    // successful handshake's reply is at least 16 bytes
                    // (legacy) and is followed by a challenge of at least
                    // 35 and a verdict of 13 bytes, while this reads at
                    // most `reply_len + 4 <= 62` bytes past the header,
                    // that is at most 46 past a 16-byte reply.
                    let ahead = ReadAhead {
                        with_header: reply_len(self.auth.digest) + HEADER,
                        past_frame: HEADER,
                    };
                    let Some(len) = self.read(ahead)? else {
                        return Ok(false);
                    };
                    self.check_reply(len)?;
                    self.inbox.consume(len);
                    frame_into(&mut self.outbox, WELCOME);
                    self.step = Step::RecvChallenge;
                    // A pipelining client sent its challenge behind its
                    // reply: answer it in the same write as the verdict. A
                    // client that waits for the verdict has sent nothing
                    // more, so there is no read to try.
                    if self.inbox.buffered() > 0
                        && let Some(len) = self.read(CHALLENGE_AHEAD)?
                    {
                        self.answer(len)?;
                    }
                }
                Step::RecvChallenge => {
                    let Some(len) = self.read(CHALLENGE_AHEAD)? else {
                        return Ok(false);
                    };
                    self.answer(len)?;
                }
                Step::RecvVerdict => {
                    let Some(len) = self.read(ReadAhead::LAST_VERDICT)? else {
                        return Ok(false);
                    };
                    if self.inbox.message(len) != WELCOME {
                        return Err(Error::Authentication(
                            mp_auth::AuthenticationError::DigestSentRejected,
                        ));
                    }
                    self.inbox.consume(len);
                    debug_assert_eq!(self.inbox.buffered(), 0, "read past the handshake");
                    return Ok(true);
                }
            }
        }
    }

    /// The socket, in blocking mode, once [`Self::advance`] said `true`.
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    fn read(&mut self, ahead: ReadAhead) -> Result<Option<usize>> {
        let mut started = false;
        self.inbox
            .read(self.fd.as_fd(), RecvFlags::DONTWAIT, ahead, &mut started)
    }

    /// Checks the client's reply to our challenge; on a wrong one, tells
    /// the client (`#FAILURE#`, as CPython does) and fails.
    fn check_reply(&mut self, len: usize) -> Result<()> {
        let challenge = self.challenge.take().expect("a challenge was sent");
        let reply = self.inbox.message(len);
        if let Err(err) = challenge.verify(&self.auth.key, reply, self.auth.policy) {
            // The socket's buffer is empty at this point, so one
            // nonblocking send of 13 bytes goes through; if it does not,
            // the failure is still ours to report.
            let mut failure = Vec::with_capacity(VERDICT_FRAME);
            frame_into(&mut failure, mp_auth::FAILURE);
            let _ = rustix::net::send(&self.fd, &failure, SEND_FLAGS);
            return Err(Error::Authentication(err));
        }
        Ok(())
    }

    /// Answers the client's challenge, a complete frame of `len` bytes:
    /// the reply goes into the outbox (behind the verdict, if that has
    /// not been sent yet).
    fn answer(&mut self, len: usize) -> Result<()> {
        let message = parse_challenge(self.inbox.message(len)).map_err(Error::Authentication)?;
        let reply = create_response(&self.auth.key, message, self.auth.policy)
            .map_err(Error::Authentication)?;
        self.inbox.consume(len);
        frame_into(&mut self.outbox, &reply);
        self.step = Step::RecvVerdict;
        Ok(())
    }

    /// Writes what the socket takes; `true` once the outbox is sent.
    fn flush(&mut self) -> Result<bool> {
        while self.sent < self.outbox.len() {
            match rustix::net::send(&self.fd, &self.outbox[self.sent..], SEND_FLAGS) {
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
            .field("step", &self.step)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Sends never block and never raise `SIGPIPE`.
const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL.union(SendFlags::DONTWAIT);

/// The client's challenge and nothing past it. Safe: a successful
/// handshake's challenge is at least [`MIN_CHALLENGE`] bytes, and the
/// client's verdict comes only after our reply.
const CHALLENGE_AHEAD: ReadAhead = ReadAhead {
    with_header: MIN_CHALLENGE,
    past_frame: 0,
};

/// The length of a modern reply to a challenge for `digest`:
/// `{name}` and the MAC.
fn reply_len(digest: Digest) -> usize {
    2 + digest.name().len() + digest.output_len()
}

/// Appends `payload` to `out` as one frame (handshake messages are short).
fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_HANDSHAKE_MESSAGE);
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// How the client reads the listener's three messages, in the order
/// [`mp_auth::client_handshake`] receives them.
const CLIENT_READS: [ReadAhead; 3] = [
    // The challenge, in one read for the default (sha256) one: 59 bytes.
    // Safe: a successful handshake's challenge is at least 31 bytes and
    // is followed by a 13-byte verdict and a reply of at least 20.
    ReadAhead {
        with_header: mp_auth::CHALLENGE.len() + 8 + mp_auth::CHALLENGE_RANDOM_LEN,
        past_frame: 0,
    },
    // The verdict and the header of the reply behind it: the verdict of a
    // successful handshake is 9 bytes, and the reply always follows.
    ReadAhead {
        with_header: VERDICT_FRAME - HEADER + HEADER,
        past_frame: HEADER,
    },
    // The reply, the listener's last message: nothing past it (the
    // listener may not send anything before our verdict, but only exact
    // reads make sure that its bytes stay for the connection if it does).
    ReadAhead {
        with_header: MIN_REPLY,
        past_frame: 0,
    },
];

/// The client's end of the handshake as an [`mp_auth::MessageChannel`]
/// over its connected (blocking) socket, with the client's two deadlines:
/// until the listener's first byte, the optional accept timeout; from that
/// byte on, the handshake timeout.
///
/// A receive right after a send waits with `poll` first, since the answer
/// cannot be there yet; any other receive tries the socket first and polls
/// only on `EAGAIN`. With no accept timeout the first receive simply
/// blocks in `recv`.
pub(crate) struct ClientChannel<'fd> {
    fd: BorrowedFd<'fd>,
    inbox: Inbox,
    timeout: Duration,
    deadline: Option<Instant>,
    /// Whether the deadline still waits for the listener's first byte.
    deadline_from_first_byte: bool,
    /// How many messages were received.
    recvs: usize,
    /// Whether we sent something the listener has not answered yet.
    awaiting_answer: bool,
    /// Whether to acknowledge each message at once (TCP only: cleared when
    /// the socket refuses `TCP_QUICKACK`).
    quick_ack: bool,
}

impl<'fd> ClientChannel<'fd> {
    /// A channel over the connected socket `fd` (blocking mode).
    pub(crate) fn new(
        fd: BorrowedFd<'fd>,
        timeout: Duration,
        accept_timeout: Option<Duration>,
    ) -> ClientChannel<'fd> {
        ClientChannel {
            fd,
            inbox: Inbox::new(),
            timeout,
            deadline: accept_timeout.and_then(|t| Instant::now().checked_add(t)),
            deadline_from_first_byte: true,
            recvs: 0,
            awaiting_answer: false,
            quick_ack: true,
        }
    }

    /// Polls for `flags` until the deadline; [`Error::Timeout`] after it.
    fn wait(&self, flags: PollFlags) -> Result<()> {
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout);
                }
                Some(deadline - now)
            }
        };
        if wait_fd(self.fd, flags, timeout)? {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>> {
        let ahead = CLIENT_READS
            .get(self.recvs)
            .copied()
            .unwrap_or(ReadAhead::EXACT);
        self.recvs += 1;
        loop {
            // No deadline: wait in `recv` itself (only before the
            // listener's first byte, when no accept timeout is set).
            let flags = if self.deadline.is_none() {
                RecvFlags::empty()
            } else {
                if self.awaiting_answer {
                    self.wait(PollFlags::IN)?;
                }
                RecvFlags::DONTWAIT
            };
            self.awaiting_answer = false;
            let mut started = false;
            let got = self.inbox.read(self.fd, flags, ahead, &mut started);
            if started && self.deadline_from_first_byte {
                self.deadline_from_first_byte = false;
                self.deadline = Instant::now().checked_add(self.timeout);
            }
            match got? {
                Some(len) => {
                    let message = self.inbox.message(len).to_vec();
                    self.inbox.consume(len);
                    self.ack_now();
                    return Ok(message);
                }
                None => self.awaiting_answer = true,
            }
        }
    }

    /// Sends the ACK of what was just read at once. A CPython listener
    /// writes its `#WELCOME#` and then, in a second write, its answer to
    /// our challenge: its Nagle's algorithm holds that answer until our ACK
    /// of the first, which the kernel would delay by up to 40 ms, since we
    /// have nothing to send meanwhile.
    fn ack_now(&mut self) {
        if self.quick_ack && rustix::net::sockopt::set_tcp_quickack(self.fd, true).is_err() {
            // Not TCP.
            self.quick_ack = false;
        }
    }

    fn send_frames(&mut self, messages: &[&[u8]]) -> Result<()> {
        if messages.iter().any(|m| m.len() > MAX_HANDSHAKE_MESSAGE) {
            return Err(Error::InvalidArgument("handshake message over 256 bytes"));
        }
        let total = messages.iter().map(|m| HEADER + m.len()).sum();
        let mut out = Vec::with_capacity(total);
        for message in messages {
            frame_into(&mut out, message);
        }
        let mut sent = 0;
        while sent < out.len() {
            match rustix::net::send(self.fd, &out[sent..], SEND_FLAGS) {
                Ok(n) => sent += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => self.wait(PollFlags::OUT)?,
                Err(e) => return Err(e.into()),
            }
        }
        self.awaiting_answer = true;
        Ok(())
    }

    /// Whether bytes past the last message received are buffered (never,
    /// by the rule of [`ReadAhead`], once a handshake has succeeded).
    pub(crate) fn read_ahead(&self) -> usize {
        self.inbox.buffered()
    }
}

impl MessageChannel for ClientChannel<'_> {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        Ok(self.send_frames(&[message])?)
    }

    fn send_messages(&mut self, messages: &[&[u8]]) -> io::Result<()> {
        Ok(self.send_frames(messages)?)
    }

    fn recv_message(&mut self, max_len: usize) -> io::Result<Vec<u8>> {
        let message = self.recv_frame()?;
        if message.len() > max_len {
            return Err(Error::MessageTooLong {
                len: message.len() as u64,
                max: max_len,
            }
            .into());
        }
        Ok(message)
    }
}

impl std::fmt::Debug for ClientChannel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientChannel")
            .field("fd", &self.fd)
            .field("deadline", &self.deadline)
            .field("recvs", &self.recvs)
            .finish_non_exhaustive()
    }
}

/// Runs the client's side of the handshake on the connected socket `fd`
/// (blocking mode, left so): [`mp_auth::client_handshake`], pipelined.
///
/// # Errors
///
/// [`Error::Authentication`], [`Error::Timeout`], end of file, an
/// over-long or malformed frame, or a socket error.
pub(crate) fn run_client(
    fd: BorrowedFd<'_>,
    auth: &Auth,
    accept_timeout: Option<Duration>,
) -> Result<()> {
    let mut channel = ClientChannel::new(fd, auth.timeout, accept_timeout);
    mp_auth::client_handshake(&mut channel, &auth.key, auth.digest, auth.policy)?;
    debug_assert_eq!(channel.read_ahead(), 0, "read past the handshake");
    Ok(())
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

    fn blocking_pair() -> (OwnedFd, OwnedFd) {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    /// Runs a listener's handshake on `fd` to the end, polling.
    fn run_listener(fd: OwnedFd, auth: Arc<Auth>) -> Result<OwnedFd> {
        let mut hs = Handshake::new(fd, auth);
        loop {
            if hs.advance()? {
                return Ok(hs.into_fd());
            }
            let timeout = hs
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if !wait_fd(hs.fd(), hs.want().poll_flags(), timeout)? {
                return Err(Error::Timeout);
            }
        }
    }

    /// Our listener against our client, each on its own thread.
    fn run_pair(server: Arc<Auth>, client: Arc<Auth>) -> (Result<()>, Result<()>) {
        let (a, b) = blocking_pair();
        let t = std::thread::spawn(move || run_client(b.as_fd(), &client, None));
        let s = run_listener(a, server).map(drop);
        (s, t.join().unwrap())
    }

    #[test]
    fn both_sides_authenticate_with_every_digest() {
        for d in Digest::ALL {
            let (s, c) = run_pair(auth(b"k", d), auth(b"k", Digest::Sha3_384));
            assert!(s.is_ok() && c.is_ok(), "{d}: {s:?} {c:?}");
            let (s, c) = run_pair(auth(b"k", Digest::Sha3_384), auth(b"k", d));
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

    /// Records what a peer socket receives, frame by frame, and how many
    /// reads it took: the pipelined client writes its reply and challenge
    /// together, and the listener its verdict and reply.
    #[test]
    fn messages_travel_together() {
        let (a, b) = blocking_pair();
        let key = auth(b"k", Digest::Sha256);
        let client_key = key.clone();
        let client = std::thread::spawn(move || run_client(b.as_fd(), &client_key, None));
        // Play the listener by hand, to see the client's writes.
        let challenge = Challenge::new(Digest::Sha256).unwrap();
        let mut out = Vec::new();
        frame_into(&mut out, &challenge.to_wire());
        rustix::net::send(&a, &out, SendFlags::empty()).unwrap();
        let mut buf = [0u8; 512];
        let (_, n) = rustix::net::recv(&a, &mut buf[..], RecvFlags::empty()).unwrap();
        // One read holds both frames: reply (4 + 40) and challenge (4 + 59).
        assert_eq!(n, 44 + 63, "{:?}", &buf[..n]);
        assert_eq!(&buf[..4], &40i32.to_be_bytes());
        challenge
            .verify(b"k", &buf[4..44], Policy::CPYTHON)
            .unwrap();
        let theirs = parse_challenge(&buf[48..n]).unwrap().to_vec();
        // Verdict and reply in one write; the client answers with #WELCOME#.
        let mut out = Vec::new();
        frame_into(&mut out, WELCOME);
        frame_into(
            &mut out,
            &create_response(b"k", &theirs, Policy::CPYTHON).unwrap(),
        );
        rustix::net::send(&a, &out, SendFlags::empty()).unwrap();
        let (_, n) = rustix::net::recv(&a, &mut buf[..], RecvFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"\0\0\0\x09#WELCOME#");
        client.join().unwrap().unwrap();
    }

    /// Feeds raw bytes to a listener-side handshake and returns its error.
    fn listener_error_after(peer_bytes: &[u8]) -> Error {
        let (a, b) = blocking_pair();
        let mut hs = Handshake::new(a, auth(b"k", Digest::Sha256));
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

    /// Our listener against a client that sends everything at once, as
    /// soon as it has the listener's challenge: reply, challenge, verdict
    /// and its first message. The listener must read exactly its part and
    /// leave the message in the socket, whatever the digests.
    #[test]
    fn reads_stop_at_the_handshake_boundary() {
        for (server_digest, client_digest, legacy_reply) in [
            (Digest::Sha256, Digest::Sha256, false),
            (Digest::Sha3_384, Digest::Sha256, true),
            (Digest::Sha3_384, Digest::Md5, true),
            (Digest::Md5, Digest::Sha3_384, false),
        ] {
            let (a, b) = blocking_pair();
            let server = std::thread::spawn(move || run_listener(a, auth(b"k", server_digest)));
            let mut buf = [0u8; 512];
            let (_, n) = rustix::net::recv(&b, &mut buf[..], RecvFlags::empty()).unwrap();
            let theirs = parse_challenge(&buf[4..n]).unwrap();
            let reply = if legacy_reply {
                // A CPython 3.11 client: bare HMAC-MD5 (16 bytes, the
                // shortest reply, so the most the listener can over-read).
                Digest::Md5.mac(b"k", theirs)
            } else {
                create_response(b"k", theirs, Policy::CPYTHON).unwrap()
            };
            let ours = if client_digest == Digest::Md5 {
                // The shortest challenge: a legacy one.
                Challenge::from_random(client_digest, &[3; 20]).message()[5..].to_vec()
            } else {
                Challenge::new(client_digest).unwrap().message().to_vec()
            };
            let mut out = Vec::new();
            frame_into(&mut out, &reply);
            frame_into(&mut out, &[mp_auth::CHALLENGE, &ours].concat());
            frame_into(&mut out, WELCOME);
            frame_into(&mut out, b"after");
            rustix::net::send(&b, &out, SendFlags::empty()).unwrap();
            let server_fd = server.join().unwrap().unwrap();
            let mut rest = [0u8; 64];
            let (_, n) = rustix::net::recv(&server_fd, &mut rest[..], RecvFlags::empty()).unwrap();
            assert_eq!(
                &rest[..n],
                b"\0\0\0\x05after",
                "{server_digest} {client_digest}"
            );
        }
    }

    /// CPython's client order (answer, wait for the verdict, then deliver)
    /// against our listener, over a blocking `Connection`.
    #[test]
    fn unpipelined_client_order() {
        let (a, b) = blocking_pair();
        let server = std::thread::spawn(move || run_listener(a, auth(b"k", Digest::Sha256)));
        let mut conn = crate::Connection::new(b, true, true).unwrap();
        mp_auth::answer_challenge(&mut conn, b"k").unwrap();
        mp_auth::deliver_challenge(&mut conn, b"k", Digest::Sha384).unwrap();
        conn.send_bytes(b"after").unwrap();
        let server_fd = server.join().unwrap().unwrap();
        let mut conn = crate::Connection::new(server_fd, true, true).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"after");
    }

    #[test]
    fn client_deadline_starts_at_the_first_byte() {
        // No accept timeout: a listener that says nothing is waited for
        // (until it hangs up, here); one that stalls after its first byte
        // times out.
        let (a, b) = blocking_pair();
        let short = Arc::new(Auth {
            timeout: Duration::from_millis(200),
            ..(*auth(b"k", Digest::Sha256)).clone()
        });
        let client_auth = short.clone();
        let t = std::thread::spawn(move || run_client(b.as_fd(), &client_auth, None));
        std::thread::sleep(Duration::from_millis(400));
        rustix::net::send(&a, &[0], SendFlags::empty()).unwrap();
        let started = Instant::now();
        assert!(matches!(t.join().unwrap(), Err(Error::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(4));
        // An accept timeout bounds the wait for the first byte.
        let (_a, b) = blocking_pair();
        let started = Instant::now();
        assert!(matches!(
            run_client(b.as_fd(), &short, Some(Duration::from_millis(100))),
            Err(Error::Timeout)
        ));
        assert!(started.elapsed() < Duration::from_secs(4));
        // A listener that hangs up before its challenge: end of file.
        let (a, b) = blocking_pair();
        drop(a);
        assert!(matches!(
            run_client(b.as_fd(), &short, None),
            Err(Error::Eof)
        ));
    }

    #[test]
    fn listener_deadline_starts_at_once() {
        let (a, _b) = blocking_pair();
        let hs = Handshake::new(a, auth(b"k", Digest::Sha256));
        assert!(hs.deadline().is_some());
    }
}
