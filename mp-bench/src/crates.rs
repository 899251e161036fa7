//! The Rust crates people use today, as the issues name them: ipc-channel
//! (round trips and byte streams) and procspawn (spawn + join).

use std::io;
use std::process::Command;
use std::time::Duration;

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender};

use crate::measure::{
    Placement, Plan, forked_ops, forked_stream, print_reps, run_blocks, run_reps,
};
use crate::raw::MSG_LEN;
use crate::table::Rep;

fn ipc_err(e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("ipc-channel: {e:?}"))
}

type Ends = (
    (IpcBytesSender, IpcBytesReceiver),
    (IpcBytesReceiver, IpcBytesSender),
);

/// Two byte channels, one each way: (parent's (tx, rx), child's (rx, tx)).
fn two_channels() -> io::Result<Ends> {
    let (to_child, child_rx) = ipc::bytes_channel()?;
    let (to_parent, parent_rx) = ipc::bytes_channel()?;
    Ok(((to_child, parent_rx), (child_rx, to_parent)))
}

/// 64-byte round trips over ipc-channel's byte channels.
pub(crate) fn pingpong(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    let ping = |(tx, rx): (IpcBytesSender, IpcBytesReceiver)| {
        let msg = [7u8; MSG_LEN];
        move || {
            tx.send(&msg)?;
            let back = rx.recv().map_err(ipc_err)?;
            if back.len() != MSG_LEN {
                return Err(io::Error::other("short echo"));
            }
            Ok(())
        }
    };
    let echo = |(rx, tx): (IpcBytesReceiver, IpcBytesSender)| {
        move || {
            let m = rx.recv().map_err(ipc_err)?;
            tx.send(&m)
        }
    };
    forked_ops(placement, allowed, plan, two_channels, ping, echo)
}

/// One-way transfer of `size`-byte messages over an ipc-channel byte
/// channel (each receive returns a fresh `Vec`, as its API does).
pub(crate) fn stream(size: usize, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    let receiver = |rx: IpcBytesReceiver| {
        move || {
            let m = rx.recv().map_err(ipc_err)?;
            if m.len() != size {
                return Err(io::Error::other("wrong message size"));
            }
            Ok(())
        }
    };
    let send = |tx: &IpcBytesSender, buf: &[u8]| tx.send(buf);
    let setup = || ipc::bytes_channel().map(|(tx, rx)| (rx, tx));
    forked_stream(size, allowed, plan, setup, receiver, send)
}

fn noop(_: ()) {}

/// The `procspawn` role (in a process of its own, so that procspawn's
/// machinery never shares a process with our forks): spawn + join of a
/// trivial function, `rep` lines on stdout.
pub(crate) fn procspawn_role(plan: &Plan) -> io::Result<()> {
    let reps = run_blocks(plan, || {
        procspawn::spawn((), noop)
            .join()
            .map_err(|e| io::Error::other(format!("procspawn: {e}")))
    })?;
    print_reps(&reps);
    Ok(())
}

/// Runs [`procspawn_role`] in a fresh copy of this executable.
pub(crate) fn procspawn(plan: &Plan) -> Result<Vec<Rep>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("error: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["--role", "procspawn"]).args(plan.args());
    run_reps(&mut cmd, Duration::from_secs(120), plan)
}
