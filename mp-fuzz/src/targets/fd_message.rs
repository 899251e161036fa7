//! Typed messages that carry fds, as a peer may send them: bytes and
//! `SCM_RIGHTS` over a real socket pair, received with
//! `Connection::recv`/`recv_parcel` as values that hold connections (with
//! read-ahead and its fds), plain fds and text.
//!
//! An input is a script for the peer:
//!
//! - byte 0, bits 0 to 2: how many fds (0 to 7) go with the peer's first
//!   write, each one end of a fresh socket pair whose other end the
//!   harness keeps; bit 3: receive as parcels and decode afterwards,
//!   rather than with `recv`;
//! - byte 1: the size of that first write (0: everything in one write);
//! - the rest: the bytes the peer sends, then end of file.
//!
//! A failure of the target: a panic, a wait (the peer always ends with end
//! of file), or a leak: once every received value is dropped, each socket
//! pair end that travelled must be closed everywhere, which the harness
//! sees as end of file on the end it kept.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use mp_conn::{Connection, Error, Parcel};
use mp_reduction::Fd;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, recv, sendmsg};

use super::handshake::pair;

/// What the harness decodes each message as.
type Message = (Vec<Connection>, Option<Fd>, String);

/// Seeds: well-formed messages of our own encoder (with the number of fds
/// they need), a message without fds, and fd slots with no fds behind them.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let frame = |fds: u8, payload: &[u8]| {
        let mut input = vec![fds, 0];
        input.extend((payload.len() as u32).to_be_bytes());
        input.extend(payload);
        input
    };
    let mut seeds = Vec::new();
    // A connection holding read-ahead bytes and an fd that came with them.
    let (mut reader, writer) = mp_conn::pipe(true).expect("pipe");
    let (extra, _extra_peer) = pair();
    writer.send_bytes(b"first").expect("send");
    writer.send_fds(&[extra.as_fd()]).expect("send_fds");
    writer.send_bytes(b"later").expect("send");
    reader.recv_bytes().expect("recv");
    let (fd, _fd_peer) = pair();
    let value = (vec![reader], Some(Fd::from(fd)), "seed".to_string());
    if let Ok(parcel) = Parcel::encode(&value) {
        seeds.push(frame(parcel.fds().len() as u8, parcel.bytes()));
        seeds.push(frame(0, parcel.bytes()));
    }
    let plain: Message = (Vec::new(), None, "no fds".into());
    if let Ok(parcel) = Parcel::encode(&plain) {
        seeds.push(frame(0, parcel.bytes()));
        seeds.push(frame(3, parcel.bytes()));
    }
    seeds.push(frame(2, &[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0]));
    seeds
}

/// One `sendmsg` of `bytes` with `fds` as `SCM_RIGHTS`.
fn send_with(sock: &OwnedFd, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) -> usize {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(fds.is_empty() || control.push(SendAncillaryMessage::ScmRights(fds)));
    sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .expect("sendmsg")
}

/// See the module docs.
pub fn fd_message(data: &[u8]) {
    let _ = receive(data);
}

/// What one received message was: the number of connections and the text,
/// or the error.
type Outcome = Result<(usize, bool, String), String>;

/// Runs the script of `data` and returns what each message decoded to;
/// panics on a leak.
fn receive(data: &[u8]) -> Vec<Outcome> {
    let [flags, first, wire @ ..] = data else {
        return Vec::new();
    };
    // Small enough to sit in the socket buffer: the peer never blocks.
    let wire = &wire[..wire.len().min(64 * 1024)];
    let nfds = if wire.is_empty() {
        0
    } else {
        usize::from(flags & 7)
    };
    let as_parcels = flags & 8 != 0;
    let (ours, theirs) = pair();
    let (travelling, kept): (Vec<OwnedFd>, Vec<OwnedFd>) = (0..nfds).map(|_| pair()).unzip();
    let first = match usize::from(*first) {
        0 => wire.len(),
        n => n.min(wire.len()),
    };
    let borrowed: Vec<_> = travelling.iter().map(AsFd::as_fd).collect();
    let mut sent = if wire.is_empty() {
        0
    } else {
        send_with(&theirs, &wire[..first], &borrowed)
    };
    drop(travelling);
    while sent < wire.len() {
        sent += send_with(&theirs, &wire[sent..], &[]);
    }
    drop(theirs);
    let mut outcomes = Vec::new();
    {
        let mut conn = Connection::new(ours, true, false).expect("connection");
        // At most one message per byte, plus the end of file.
        for _ in 0..=wire.len() {
            let result = if as_parcels {
                conn.recv_parcel().and_then(Parcel::decode::<Message>)
            } else {
                conn.recv::<Message>()
            };
            match result {
                Ok((conns, fd, text)) => outcomes.push(Ok((conns.len(), fd.is_some(), text))),
                // The message was consumed: the next one may be fine.
                Err(e @ (Error::Decode(_) | Error::FdTransfer(_))) => {
                    outcomes.push(Err(format!("{e:?}")))
                }
                Err(_) => break,
            }
        }
    }
    // Everything received is dropped: every end that travelled is closed.
    for end in kept {
        let mut byte = [0u8];
        match recv(&end, &mut byte, RecvFlags::DONTWAIT) {
            Ok(_) => {}
            Err(Errno::AGAIN) => panic!("an fd that travelled is still open: leaked"),
            Err(e) => panic!("recv on the kept end: {e}"),
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_as_they_should_and_leak_nothing() {
        let seeds = seeds();
        let got: Vec<Vec<Outcome>> = seeds.iter().map(|s| receive(s)).collect();
        assert_eq!(got[0], [Ok((1, true, "seed".to_string()))]);
        assert!(
            matches!(&got[1][..], [Err(e)] if e.contains("out of range")),
            "{got:?}"
        );
        assert_eq!(got[2], [Ok((0, false, "no fds".to_string()))]);
        // Three fds nobody claims: decoded all the same, and closed.
        assert_eq!(got[3], [Ok((0, false, "no fds".to_string()))]);
        // As parcels, decoded afterwards: the same.
        let mut as_parcel = seeds[0].clone();
        as_parcel[0] |= 8;
        assert_eq!(receive(&as_parcel), got[0]);
    }
}
