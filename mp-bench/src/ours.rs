//! Our figures for mp-conn: round trips over `pipe(true)` (default and
//! low-latency mode) and over `pipe_pair()`, byte streams received with
//! `recv_bytes_into_vec`, authenticated connect + handshake, `wait()` and
//! the reusable `Waiter`.
//!
//! The peers are forked after their connection is made, so each end would
//! read exactly (an end that existed at a fork may be shared); each says it
//! is its end's only reader (`set_exact_reads(false)`), which is the
//! read-ahead path these rows measure. The exact-read path has rows of its
//! own (`exact_reads.rs`).
//! Written against the mp-conn API contract; compiled with `--features conn`.

use std::io::{self, Read as _};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use mp_conn::{Address, Connection, Listener, Waitable, Waiter};

use crate::measure::{Placement, Plan, forked_ops, forked_pair, forked_stream, run_blocks};
use crate::raw::{self, MSG_LEN};
use crate::sys;
use crate::table::Rep;

/// Whether this build has the mp-conn rows.
pub(crate) const BUILT: bool = true;

fn io(e: mp_conn::Error) -> io::Error {
    io::Error::from(e)
}

/// 64-byte round trips over `mp_conn::pipe(true)`: the parent sends and
/// receives, the child echoes. `low_latency` switches both ends to the
/// spinning mode.
pub(crate) fn pingpong(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
    low_latency: Option<Duration>,
) -> Result<Vec<Rep>, String> {
    pingpong_over(placement, allowed, plan, low_latency, false, || {
        mp_conn::pipe(true)
    })
}

/// 64-byte round trips over `mp_conn::pipe_pair()` (two OS pipes), as
/// [`pingpong`] does over the socketpair.
pub(crate) fn pingpong_pipe_pair(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    pingpong_over(placement, allowed, plan, None, false, mp_conn::pipe_pair)
}

/// 64-byte round trips over the ends `make` makes; each end reads exactly
/// if `exact`, else ahead.
pub(crate) fn pingpong_over(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
    low_latency: Option<Duration>,
    exact: bool,
    make: impl FnOnce() -> mp_conn::Result<(Connection, Connection)>,
) -> Result<Vec<Rep>, String> {
    let ping = |mut a: Connection| {
        a.set_exact_reads(exact);
        a.set_low_latency(low_latency);
        let msg = [7u8; MSG_LEN];
        move || {
            a.send_bytes(&msg).map_err(io)?;
            let back = a.recv_bytes().map_err(io)?;
            if back.len() != MSG_LEN {
                return Err(io::Error::other("short echo"));
            }
            Ok(())
        }
    };
    let echo = |mut b: Connection| {
        b.set_exact_reads(exact);
        b.set_low_latency(low_latency);
        move || {
            let m = b.recv_bytes().map_err(io)?;
            b.send_bytes(&m).map_err(io)
        }
    };
    let setup = || make().map_err(io);
    forked_ops(placement, allowed, plan, setup, ping, echo)
}

/// One-way transfer of `size`-byte messages over `pipe(true)`; the
/// receiver reuses one buffer (`recv_bytes_into_vec`).
pub(crate) fn stream(size: usize, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    let receiver = |mut a: Connection| {
        a.set_exact_reads(false);
        let mut buf = Vec::new();
        move || {
            let n = a.recv_bytes_into_vec(&mut buf).map_err(io)?;
            if n != size {
                return Err(io::Error::other("wrong message size"));
            }
            Ok(())
        }
    };
    let send = |b: &Connection, buf: &[u8]| b.send_bytes(buf).map_err(io);
    let setup = || mp_conn::pipe(true).map_err(io);
    forked_stream(size, allowed, plan, setup, receiver, send)
}

const KEY: &[u8] = b"mp-bench authkey";

fn read_line(fd: OwnedFd) -> io::Result<String> {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s)?;
    Ok(s.trim_end().to_string())
}

/// Authenticated connect + handshake: a forked child binds a `Listener`
/// with an authkey, tells the parent its address and accepts (handshake
/// included) and closes; the parent runs `client` with the key each time.
pub(crate) fn connect(
    family: raw::Family,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    let dir = raw::SockDir::new("ours").map_err(|e| format!("error: {e}"))?;
    let bind_to: Address = match family {
        raw::Family::Unix => Address::Unix(dir.0.join("sock")),
        raw::Family::Inet => "127.0.0.1:0".parse().map_err(|e| format!("error: {e}"))?,
    };
    forked_pair(
        Placement::Free,
        allowed,
        plan,
        sys::pipe,
        |addr_r: OwnedFd, plan| {
            let text = read_line(addr_r)?;
            let addr: Address = text
                .parse()
                .map_err(|e| io::Error::other(format!("bad address {text:?}: {e}")))?;
            run_blocks(plan, || {
                drop(mp_conn::client(&addr, Some(KEY)).map_err(io)?);
                Ok(())
            })
        },
        |addr_w: OwnedFd, plan| {
            let mut listener = Listener::builder()
                .address(bind_to)
                .backlog(64)
                .authkey(KEY)
                .bind()
                .map_err(io)?;
            sys::write_all(addr_w.as_fd(), listener.address().to_string().as_bytes())?;
            drop(addr_w);
            run_blocks(plan, || {
                drop(listener.accept().map_err(io)?);
                Ok(())
            })
        },
    )
}

/// Both ends of one `pipe(true)`.
type Pair = (Connection, Connection);

/// `k` idle connections plus one with a message waiting (last).
fn idle_and_ready(k: usize) -> io::Result<(Vec<Pair>, Pair)> {
    let mut idle = Vec::with_capacity(k);
    for _ in 0..k {
        idle.push(mp_conn::pipe(true).map_err(io)?);
    }
    let ready = mp_conn::pipe(true).map_err(io)?;
    ready.1.send_bytes(b"x").map_err(io)?;
    Ok((idle, ready))
}

/// `mp_conn::wait` over `k` idle connections and one ready one.
pub(crate) fn wait(k: usize, plan: &Plan) -> Result<Vec<Rep>, String> {
    let run = || -> io::Result<Vec<Rep>> {
        let (idle, ready) = idle_and_ready(k)?;
        let mut objects: Vec<&dyn Waitable> =
            idle.iter().map(|(r, _)| r as &dyn Waitable).collect();
        objects.push(&ready.0);
        run_blocks(plan, || {
            let got = mp_conn::wait(&objects, None).map_err(io)?;
            if got.len() != 1 {
                return Err(io::Error::other(format!("wait found {} ready", got.len())));
            }
            Ok(())
        })
    };
    run().map_err(|e| format!("error: {e}"))
}

/// The reusable `Waiter`: `k` idle connections and one ready one
/// registered once, then one `wait` per operation.
pub(crate) fn waiter(k: usize, plan: &Plan) -> Result<Vec<Rep>, String> {
    let run = || -> io::Result<Vec<Rep>> {
        let (idle, ready) = idle_and_ready(k)?;
        let mut waiter = Waiter::new().map_err(io)?;
        for (i, (r, _)) in idle.iter().enumerate() {
            waiter.add(r, i).map_err(io)?;
        }
        waiter.add(&ready.0, k).map_err(io)?;
        let mut got = Vec::new();
        run_blocks(plan, || {
            got.clear();
            waiter.wait(None, &mut got).map_err(io)?;
            if got.len() != 1 {
                return Err(io::Error::other(format!(
                    "Waiter found {} ready",
                    got.len()
                )));
            }
            Ok(())
        })
    };
    run().map_err(|e| format!("error: {e}"))
}
