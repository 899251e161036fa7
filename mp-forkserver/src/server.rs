//! The server side: `forkserver.main`, as a loop over three fds.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{WaitOptions, waitpid};

use crate::channel::{Framed, recv_fds, recv_message};
use crate::{AUTHKEY_LEN, MAXFDS_TO_SEND, sys, write_signed};

/// How long one client may take over its handshake and request before the
/// single-threaded server gives up on it (a stalled client must not stall
/// every other one).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest configuration message (key plus preload data) accepted.
const MAX_CONFIG: usize = 1 << 20;

/// What the embedding program does inside the server: `mp-context` passes
/// its preload runner and its child entry point.
#[derive(Clone, Copy, Debug)]
pub struct ServerHooks {
    /// Runs once in the server before any fork, with the bytes given to
    /// [`ForkServer::set_preload`](crate::ForkServer::set_preload) (not
    /// called when they are empty).
    pub preload: fn(&[u8]),
    /// Runs in each forked child; its return value is the exit code.
    pub child_main: fn(ForkedChild) -> i32,
}

/// What a forked child receives: CPython's `_serve_one` arguments.
#[derive(Debug)]
pub struct ForkedChild {
    /// The read end of the data pipe: the parent writes the process data
    /// here, then keeps its end open while it lives (EOF here afterwards
    /// means the parent has gone).
    pub data: OwnedFd,
    /// A write end of the server's "alive" pipe: holding it keeps the
    /// server running (for grandchildren).
    pub alive: OwnedFd,
    /// The fds the parent passed, in order.
    pub fds: Vec<OwnedFd>,
}

/// Runs the fork server in this process and never returns: reads its
/// configuration (the listener and the "alive" pipe's read end as fds, the
/// 32-byte key, the preload data) from stdin, which the launching process
/// made a unix socket, then serves requests until every holder of the
/// "alive" pipe has gone.
///
/// `mp_context::init` calls this when the process was started as a fork
/// server; other programs have no reason to.
pub fn serve(hooks: ServerHooks) -> ! {
    let code = match run(hooks) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mp-forkserver: {e}");
            1
        }
    };
    let _ = io::stdout().flush();
    sys::exit_immediately(code)
}

fn run(hooks: ServerHooks) -> io::Result<()> {
    let stdin = rustix::stdio::stdin();
    let (config, mut fds) = recv_message(stdin, MAX_CONFIG, 2)?;
    if fds.len() != 2 || config.len() < AUTHKEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad fork server configuration",
        ));
    }
    let alive_r = fds.pop().expect("two fds");
    let listener = UnixListener::from(fds.pop().expect("two fds"));
    let (authkey, preload) = config.split_at(AUTHKEY_LEN);
    // stdin no longer carries anything; children get the null device
    // (CPython's `util._close_stdin`).
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    drop(null);

    if !preload.is_empty() {
        (hooks.preload)(preload);
    }

    let (sig_r, sig_w) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?;
    sys::install_server_signals(sig_w.as_fd())?;

    // Child pid -> the write end of its status pipe.
    let mut pid_to_fd: HashMap<i32, OwnedFd> = HashMap::new();
    loop {
        let mut pollfds = [
            PollFd::new(&listener, PollFlags::IN),
            PollFd::new(&alive_r, PollFlags::IN),
            PollFd::new(&sig_r, PollFlags::IN),
        ];
        match poll(&mut pollfds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = |i: usize| !pollfds[i].revents().is_empty();
        let (listener_ready, alive_ready, sig_ready) = (ready(0), ready(1), ready(2));

        if alive_ready {
            // EOF: no client process holds the write end any more.
            return Ok(());
        }

        if sig_ready {
            let mut drain = [0u8; 512];
            while let Ok(n) = rustix::io::read(&sig_r, &mut drain) {
                if n == 0 {
                    break;
                }
            }
            while let Ok(Some((pid, status))) = waitpid(None, WaitOptions::NOHANG) {
                let code = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code as i64,
                    (None, Some(sig)) => -(sig as i64),
                    _ => continue,
                };
                if let Some(child_w) = pid_to_fd.remove(&pid.as_raw_nonzero().get()) {
                    // A vanished client (EPIPE) is no concern of ours.
                    let _ = write_signed(child_w.as_fd(), code);
                }
            }
        }

        if listener_ready {
            let Ok((stream, _)) = listener.accept() else {
                continue;
            };
            let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
            let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
            // The client answers first, then challenges us (CPython 3.14).
            if mp_auth::deliver_challenge(Framed(&stream), authkey, mp_auth::Digest::Sha256)
                .is_err()
                || mp_auth::answer_challenge(Framed(&stream), authkey).is_err()
            {
                continue;
            }
            let fds = match recv_fds(stream.as_fd(), MAXFDS_TO_SEND + 1) {
                Ok(fds) => fds,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        eprintln!("mp-forkserver: refused a request: {e}");
                    }
                    continue;
                }
            };
            drop(stream);
            if fds.len() > MAXFDS_TO_SEND || fds.len() < 3 {
                eprintln!("mp-forkserver: refused a request with {} fds", fds.len());
                continue;
            }
            let mut fds = fds.into_iter();
            let (child_r, child_w, alive_w) = (
                fds.next().unwrap(),
                fds.next().unwrap(),
                fds.next().unwrap(),
            );
            let fds: Vec<OwnedFd> = fds.collect();
            match sys::fork_server_child() {
                Ok(None) => {
                    let child = ForkedChild {
                        data: child_r,
                        alive: alive_w,
                        fds,
                    };
                    // Close what belongs to the server and to other clients,
                    // as `_serve_one` does.
                    drop((listener, alive_r, sig_r, sig_w, pid_to_fd, child_w));
                    let _ = sys::restore_child_signals();
                    let code = (hooks.child_main)(child);
                    let _ = io::stdout().flush();
                    sys::exit_immediately(code)
                }
                Ok(Some(pid)) => {
                    let _ = write_signed(child_w.as_fd(), pid as i64);
                    pid_to_fd.insert(pid, child_w);
                    drop((child_r, alive_w, fds));
                }
                Err(e) => {
                    eprintln!("mp-forkserver: fork failed: {e}");
                }
            }
        }
    }
}
