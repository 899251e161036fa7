//! The server side: `forkserver.main`, as one poll loop over the alive pipe, the
//! SIGCHLD self-pipe, the listener and its clients.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mp_conn::{Address, Connection, Interest, Listener};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{WaitOptions, waitpid};

use crate::{AUTHKEY_LEN, MAXFDS_TO_SEND, sys, write_signed};

/// How long one client may take over its handshake, and then over its
/// request, before the single-threaded server gives up on it (a stalled
/// client must not stall every other one for long).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// CPython's `listener.listen()` backlog on Linux (`SOMAXCONN`, capped).
const BACKLOG: i32 = 128;

/// What the launching process sends the new server over its stdin (with
/// the "alive" pipe's read end following as an fd).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Config {
    /// The control socket's key ([`AUTHKEY_LEN`] bytes).
    pub(crate) authkey: Vec<u8>,
    /// The path to bind, as bytes (paths need not be UTF-8).
    pub(crate) address: Vec<u8>,
    /// The data for the preload hook.
    pub(crate) preload: Vec<u8>,
}

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
///
/// The write end of the server's "alive" pipe that came with the request
/// is not here: it went to [`ForkServer::global`](crate::ForkServer::global),
/// which now knows the server that forked this child (its address, key and
/// pid), so that the processes the child starts come from that same server
/// (CPython's inherited `_forkserver_alive_fd`), and which keeps the server
/// up while the child lives.
#[derive(Debug)]
pub struct ForkedChild {
    /// The read end of the data pipe: the parent writes the process data
    /// here, then keeps its end open while it lives (EOF here afterwards
    /// means the parent has gone).
    pub data: OwnedFd,
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

/// Reads the configuration from stdin, binds the listener and says so.
fn configure() -> io::Result<(Config, OwnedFd, Listener)> {
    let stdin = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let mut conn = Connection::new(stdin, true, true)?;
    let config: Config = conn.recv()?;
    let alive_r = conn.recv_fds(1)?.pop().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no alive pipe in the configuration",
        )
    })?;
    let bound = if config.authkey.len() == AUTHKEY_LEN {
        bind(&config)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad fork server configuration",
        ))
    };
    match bound {
        Ok(listener) => {
            conn.send_bytes(b"")?;
            Ok((config, alive_r, listener))
        }
        Err(e) => {
            let _ = conn.send_bytes(e.to_string().as_bytes());
            Err(e)
        }
    }
}

fn bind(config: &Config) -> io::Result<Listener> {
    let path = PathBuf::from(OsString::from_vec(config.address.clone()));
    let listener = Listener::builder()
        .address(Address::Unix(path.clone()))
        .backlog(BACKLOG)
        .authkey(config.authkey.clone())
        .handshake_timeout(CLIENT_TIMEOUT)
        .bind()?;
    // The directory is private (0700) already; the socket is 0600 as
    // CPython makes it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn run(hooks: ServerHooks) -> io::Result<()> {
    let (config, alive_r, mut listener) = configure()?;
    let authkey: [u8; AUTHKEY_LEN] = config.authkey[..]
        .try_into()
        .expect("configure checked the key's length");
    let address = PathBuf::from(OsString::from_vec(config.address.clone()));
    // stdin no longer carries anything; children get the null device
    // (CPython's `util._close_stdin`).
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    drop(null);

    if !config.preload.is_empty() {
        (hooks.preload)(&config.preload);
    }

    let (sig_r, sig_w) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?;
    sys::install_server_signals(sig_w.as_fd())?;

    // Child pid -> the write end of its status pipe.
    let mut pid_to_fd: HashMap<i32, OwnedFd> = HashMap::new();
    // Authenticated clients whose request has not arrived yet, with the
    // time they have until it must.
    let mut awaiting: Vec<(Connection, Instant)> = Vec::new();
    loop {
        // Everything that may need the loop is polled together: the
        // "alive" pipe, the SIGCHLD self-pipe, the clients awaiting their
        // request, and the listener's own descriptors (its socket and
        // every handshake in progress), whose `accept` then never blocks.
        // So a client that connects and stays silent, before or after the
        // handshake, never keeps the loop from serving others, reporting
        // exit statuses or noticing that the "alive" pipe closed. Each
        // client is still bounded by its deadline, which bounds the poll.
        let deadline = awaiting
            .iter()
            .map(|(_, d)| *d)
            .chain(listener.next_handshake_deadline())
            .min();
        let mut pollfds = vec![
            PollFd::new(&alive_r, PollFlags::IN),
            PollFd::new(&sig_r, PollFlags::IN),
        ];
        pollfds.extend(awaiting.iter().map(|(c, _)| PollFd::new(c, PollFlags::IN)));
        pollfds.extend(listener.poll_fds().into_iter().map(|(fd, interest)| {
            let flags = match interest {
                Interest::Readable => PollFlags::IN,
                Interest::Writable => PollFlags::OUT,
            };
            PollFd::from_borrowed_fd(fd, flags)
        }));
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        match poll(&mut pollfds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        let ready = |i: usize| !pollfds[i].revents().is_empty();
        let (alive_ready, sig_ready) = (ready(0), ready(1));
        let first_listener_fd = 2 + awaiting.len();
        // One request per wake-up: others still ready wake the next poll.
        let request = (2..first_listener_fd).find(|&i| ready(i)).map(|i| i - 2);
        let listener_ready = (first_listener_fd..pollfds.len()).any(ready)
            || listener.next_handshake_deadline().is_some_and(|d| now >= d);
        drop(pollfds);

        if alive_ready {
            // EOF: no client process holds the write end any more. Closing
            // the listener unlinks the socket; the private directory the
            // client made for it goes too (CPython's temp dir finalizer).
            drop(listener);
            if let Some(dir) = address.parent() {
                let _ = std::fs::remove_dir(dir);
            }
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

        // The listener runs the handshake (it challenges first, then
        // answers, as CPython 3.14's server) with a deadline, doing only
        // what the sockets allow now; a client that fails it is dropped.
        // One that passes has CLIENT_TIMEOUT to send its request.
        if listener_ready && let Ok(Some(conn)) = listener.accept_timeout(Some(Duration::ZERO)) {
            awaiting.push((conn, Instant::now() + CLIENT_TIMEOUT));
        }
        let conn = request.map(|i| awaiting.swap_remove(i).0);
        // Clients too late with their request are dropped (after taking
        // the one that just became ready, whose index is from the poll).
        awaiting.retain(|(_, d)| now < *d);
        let Some(mut conn) = conn else {
            continue;
        };
        let Some((child_r, child_w, alive_w, fds)) = receive_request(&mut conn) else {
            continue;
        };
        drop(conn);
        let server_pid = std::process::id() as i32;
        match sys::fork_server_child() {
            Ok(None) => {
                let child = ForkedChild { data: child_r, fds };
                // Close what belongs to the server and to other clients,
                // as `_serve_one` does.
                drop((
                    listener, alive_r, sig_r, sig_w, pid_to_fd, awaiting, child_w,
                ));
                let _ = sys::restore_child_signals();
                crate::ForkServer::global().adopt(server_pid, address.clone(), authkey, alive_w);
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

/// Receives one request's fds (CPython's `recvfds(s, MAXFDS_TO_SEND + 1)`)
/// from a client whose socket is readable: `[child_r, child_w, alive_w,
/// *fds]`. `None` (with a message on stderr for a malformed request) if the
/// client sent nothing usable.
fn receive_request(conn: &mut Connection) -> Option<(OwnedFd, OwnedFd, OwnedFd, Vec<OwnedFd>)> {
    // The request is one byte (its fds ride on it): once anything is
    // readable, `recv_fds` does not block.
    let fds = match conn.recv_fds(MAXFDS_TO_SEND + 1) {
        Ok(fds) => fds,
        Err(mp_conn::Error::Eof) => return None,
        Err(e) => {
            eprintln!("mp-forkserver: refused a request: {e}");
            return None;
        }
    };
    if fds.len() > MAXFDS_TO_SEND || fds.len() < 3 {
        eprintln!("mp-forkserver: refused a request with {} fds", fds.len());
        return None;
    }
    let mut fds = fds.into_iter();
    let mut next = || fds.next().expect("at least 3 fds");
    let (child_r, child_w, alive_w) = (next(), next(), next());
    Some((child_r, child_w, alive_w, fds.collect()))
}
