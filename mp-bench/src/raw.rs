//! The raw-syscall limits: the least a program can do for each operation,
//! straight on the system calls, measured now on this machine.

use std::ffi::CString;
use std::io;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use crate::measure::{Placement, Plan, forked_ops, forked_stream, run_blocks};
use crate::sys;
use crate::table::Rep;

/// The payload of the round-trip rows.
pub(crate) const MSG_LEN: usize = 64;

/// How the raw ping-pong moves its 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PingPong {
    /// One `write` of 64 bytes, one `read` of 64 bytes.
    Plain,
    /// CPython's framing: one `write` of header + payload, then `read`
    /// the 4-byte header and `read` the payload.
    Framed,
    /// Plain, but each receive first spins on `recv(MSG_DONTWAIT)` for up
    /// to the given time before blocking (the limit of a low-latency mode).
    Spin(Duration),
}

fn spin_read_exact(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    spin: Duration,
) -> io::Result<()> {
    let mut got = 0;
    let t0 = Instant::now();
    while got < buf.len() {
        match sys::recv_nonblocking(fd, &mut buf[got..])? {
            Some(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(n) => got += n,
            None if t0.elapsed() >= spin => return sys::read_exact(fd, &mut buf[got..]),
            None => std::hint::spin_loop(),
        }
    }
    Ok(())
}

/// One side's receive of a 64-byte message in the given style.
fn recv_msg(
    fd: std::os::fd::BorrowedFd<'_>,
    style: PingPong,
    buf: &mut [u8; 4 + MSG_LEN],
) -> io::Result<()> {
    match style {
        PingPong::Plain => sys::read_exact(fd, &mut buf[4..]),
        PingPong::Framed => {
            sys::read_exact(fd, &mut buf[..4])?;
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len != MSG_LEN {
                return Err(io::Error::other(format!("unexpected frame length {len}")));
            }
            sys::read_exact(fd, &mut buf[4..])
        }
        PingPong::Spin(spin) => spin_read_exact(fd, &mut buf[4..], spin),
    }
}

fn send_msg(
    fd: std::os::fd::BorrowedFd<'_>,
    style: PingPong,
    buf: &[u8; 4 + MSG_LEN],
) -> io::Result<()> {
    match style {
        PingPong::Framed => sys::write_all(fd, buf),
        PingPong::Plain | PingPong::Spin(_) => sys::write_all(fd, &buf[4..]),
    }
}

/// 64-byte round trips over a socketpair between two forked peers.
pub(crate) fn pingpong(
    style: PingPong,
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    let ping = |a: OwnedFd| {
        let mut msg = [7u8; 4 + MSG_LEN];
        msg[..4].copy_from_slice(&(MSG_LEN as u32).to_be_bytes());
        let mut buf = [0u8; 4 + MSG_LEN];
        move || {
            send_msg(a.as_fd(), style, &msg)?;
            recv_msg(a.as_fd(), style, &mut buf)
        }
    };
    let echo = |b: OwnedFd| {
        let mut buf = [0u8; 4 + MSG_LEN];
        move || {
            recv_msg(b.as_fd(), style, &mut buf)?;
            buf[..4].copy_from_slice(&(MSG_LEN as u32).to_be_bytes());
            send_msg(b.as_fd(), style, &buf)
        }
    };
    forked_ops(placement, allowed, plan, sys::socketpair, ping, echo)
}

/// 64-byte round trips over two OS pipes (one each way) between two
/// forked peers: one `write` of 64 bytes, one `read` of 64 bytes, as the
/// plain socketpair ping-pong does. The limit of `mp_conn::pipe_pair`.
pub(crate) fn pingpong_pipes(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    let setup = || -> io::Result<((OwnedFd, OwnedFd), (OwnedFd, OwnedFd))> {
        let (r1, w1) = sys::pipe()?;
        let (r2, w2) = sys::pipe()?;
        // (parent's (read, write), child's (read, write))
        Ok(((r1, w2), (r2, w1)))
    };
    let ping = |(r, w): (OwnedFd, OwnedFd)| {
        let msg = [7u8; MSG_LEN];
        let mut buf = [0u8; MSG_LEN];
        move || {
            sys::write_all(w.as_fd(), &msg)?;
            sys::read_exact(r.as_fd(), &mut buf)
        }
    };
    let echo = |(r, w): (OwnedFd, OwnedFd)| {
        let mut buf = [0u8; MSG_LEN];
        move || {
            sys::read_exact(r.as_fd(), &mut buf)?;
            sys::write_all(w.as_fd(), &buf)
        }
    };
    forked_ops(placement, allowed, plan, setup, ping, echo)
}

/// One-way transfer of `size`-byte chunks over a socketpair: the child
/// writes, the parent reads into one reused buffer.
pub(crate) fn stream(size: usize, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    let receiver = |a: OwnedFd| {
        let mut buf = vec![0u8; size];
        move || sys::read_exact(a.as_fd(), &mut buf)
    };
    let send = |b: &OwnedFd, buf: &[u8]| sys::write_all(b.as_fd(), buf);
    forked_stream(size, allowed, plan, sys::socketpair, receiver, send)
}

/// Address family of the connect rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Unix,
    Inet,
}

enum RawListener {
    Unix(UnixListener),
    Inet(TcpListener),
}

#[derive(Clone)]
enum RawAddr {
    Unix(std::path::PathBuf),
    Inet(std::net::SocketAddr),
}

/// A private directory for unix socket paths, removed on drop.
#[derive(Debug)]
pub(crate) struct SockDir(pub(crate) std::path::PathBuf);

impl SockDir {
    pub(crate) fn new(tag: &str) -> io::Result<SockDir> {
        let dir = std::env::temp_dir().join(format!("mp-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        Ok(SockDir(dir))
    }
}

impl Drop for SockDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raw connect + accept: the child accepts and closes, the parent
/// connects and reads until the close arrives (one full cycle per op).
pub(crate) fn connect(family: Family, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    let dir = SockDir::new("raw").map_err(|e| format!("error: {e}"))?;
    let setup = || -> io::Result<(RawAddr, RawListener)> {
        Ok(match family {
            Family::Unix => {
                let path = dir.0.join("sock");
                let l = UnixListener::bind(&path)?;
                (RawAddr::Unix(path), RawListener::Unix(l))
            }
            Family::Inet => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                (RawAddr::Inet(l.local_addr()?), RawListener::Inet(l))
            }
        })
    };
    forked_ops(
        Placement::Free,
        allowed,
        plan,
        setup,
        |addr| {
            let mut byte = [0u8; 1];
            move || {
                let n = match &addr {
                    RawAddr::Unix(p) => UnixStream::connect(p)?.read(&mut byte)?,
                    RawAddr::Inet(a) => TcpStream::connect(a)?.read(&mut byte)?,
                };
                if n != 0 {
                    return Err(io::Error::other("server sent data"));
                }
                Ok(())
            }
        },
        |listener| {
            move || {
                match &listener {
                    RawListener::Unix(l) => drop(l.accept()?),
                    RawListener::Inet(l) => drop(l.accept()?),
                }
                Ok(())
            }
        },
    )
}

/// `k` idle socketpairs plus one with a byte waiting; returns the pairs
/// (the ready one last).
pub(crate) fn idle_and_ready(k: usize) -> io::Result<Vec<(OwnedFd, OwnedFd)>> {
    let mut pairs = Vec::with_capacity(k + 1);
    for _ in 0..k {
        pairs.push(sys::socketpair()?);
    }
    let ready = sys::socketpair()?;
    sys::write_all(ready.1.as_fd(), b"x")?;
    pairs.push(ready);
    Ok(pairs)
}

/// One `poll()` over `k` idle fds and one ready fd, the array prepared
/// once.
pub(crate) fn poll(k: usize, plan: &Plan) -> Result<Vec<Rep>, String> {
    let run = || -> io::Result<Vec<Rep>> {
        let pairs = idle_and_ready(k)?;
        let fds: Vec<_> = pairs.iter().map(|(r, _)| r.as_fd()).collect();
        let mut set = sys::PollSet::new(&fds);
        run_blocks(plan, || match set.poll()? {
            1 => Ok(()),
            n => Err(io::Error::other(format!("poll found {n} ready"))),
        })
    };
    run().map_err(|e| format!("error: {e}"))
}

/// One `epoll_wait()` over `k` idle fds and one ready fd, registered once.
pub(crate) fn epoll(k: usize, plan: &Plan) -> Result<Vec<Rep>, String> {
    let run = || -> io::Result<Vec<Rep>> {
        let pairs = idle_and_ready(k)?;
        let mut ep = sys::Epoll::new()?;
        for (i, (r, _)) in pairs.iter().enumerate() {
            ep.add(r.as_fd(), i as u64)?;
        }
        run_blocks(plan, || match ep.wait()? {
            1 => Ok(()),
            n => Err(io::Error::other(format!("epoll found {n} ready"))),
        })
    };
    run().map_err(|e| format!("error: {e}"))
}

/// The working set of the malloc rows (as in CPython's heap test and our
/// `heap_bench`: a few blocks alive at a time).
const RING: usize = 8;

/// System `malloc` + `free` pairs of `size` bytes.
pub(crate) fn malloc_free(size: usize, plan: &Plan) -> Result<Vec<Rep>, String> {
    let mut ring = [0usize; RING];
    let mut sum = 0u64;
    let reps = run_blocks(plan, || {
        sum = sum.wrapping_add(sys::malloc_free_loop(size, 1, &mut ring)?);
        Ok(())
    });
    sys::free_ring(&mut ring);
    std::hint::black_box(sum);
    reps.map_err(|e| format!("error: {e}"))
}

/// The internal role names of the raw process-start loops.
pub(crate) const ROLE_FORK_WAIT: &str = "raw-fork-waitpid";
pub(crate) const ROLE_FORK_EXEC: &str = "raw-fork-exec-true";

/// Runs raw process-start role `role` (one of the `ROLE_*` names) in a
/// freshly exec'ed copy of this executable, which serves it first thing
/// in `main`, before it allocates anything else. `fork` copies the
/// parent's page tables, so in this process, grown by the rows measured
/// before, it would be slower than in a small program: the limit is the
/// small program's.
pub(crate) fn in_fresh_process(role: &str, plan: &Plan) -> Result<Vec<Rep>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("error: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--role", role]).args(plan.args());
    crate::measure::run_reps(&mut cmd, Duration::from_secs(300), plan)
}

/// `fork()` + `_exit(0)` in the child + `waitpid()`.
pub(crate) fn fork_wait(plan: &Plan) -> Result<Vec<Rep>, String> {
    sys::prepare_fork_loop()
        .and_then(|()| run_blocks(plan, sys::fork_exit_wait))
        .map_err(|e| format!("error: {e}"))
}

/// `fork()` + `execv("/bin/true")` + `waitpid()`.
pub(crate) fn fork_exec_true(plan: &Plan) -> Result<Vec<Rep>, String> {
    let path = CString::new("/bin/true").expect("no NUL");
    sys::prepare_fork_loop()
        .and_then(|()| run_blocks(plan, || sys::fork_exec_wait(&path)))
        .map_err(|e| format!("error: {e}"))
}
