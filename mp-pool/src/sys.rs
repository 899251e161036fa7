//! The system calls the pool makes itself, all through rustix's safe API:
//! the worker pipes, the supervisor's epoll set and wake-up eventfd, and a
//! worker's resident memory.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::io::Errno;

/// How much a worker pipe should hold, so that batches of tasks and
/// results rarely wait for the other side. Linux's default is 64 KiB and
/// an unprivileged process may ask for up to `/proc/sys/fs/pipe-max-size`
/// (1 MiB by default); 256 KiB keeps a pool of many workers under the
/// per-user budget of pipe memory (`pipe-user-pages-soft`, 64 MiB).
const PIPE_SIZE: usize = 256 * 1024;

/// A pipe for one direction between the pool and a worker: `(read,
/// write)`, close-on-exec, enlarged where the kernel allows (best effort:
/// a refusal leaves the default size, which only costs more calls).
pub(crate) fn worker_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let _ = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE);
    Ok((r, w))
}

/// Puts `fd` in nonblocking mode (the pool's own ends of the pipes).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// One `read` that never blocks: `Ok(None)` when nothing is there, `Ok(Some(0))`
/// at end of file.
pub(crate) fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// One `write` that never blocks: `Ok(None)` when the pipe is full.
pub(crate) fn write_nonblocking(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::write(fd, buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The supervisor's wake-up: an eventfd that submitters write to when the
/// supervisor sleeps.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        Ok(EventFd(rustix::event::eventfd(0, flags)?))
    }

    /// Makes the eventfd readable. Never blocks (a full counter is already
    /// readable).
    pub(crate) fn signal(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Resets the eventfd.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut buf);
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A level-triggered epoll set whose events carry a `u64` key.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// The buffer [`Epoll::wait`] fills (kept by the waiting thread: an epoll
/// event may hold a pointer, so it cannot travel between threads).
pub(crate) fn epoll_events() -> Vec<epoll::Event> {
    Vec::with_capacity(256)
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        Ok(Epoll {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// Watches `fd` for readability (`write`: writability) under `key`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64, write: bool) -> io::Result<()> {
        let flags = if write {
            epoll::EventFlags::OUT
        } else {
            epoll::EventFlags::IN
        };
        Ok(epoll::add(
            &self.fd,
            fd,
            epoll::EventData::new_u64(key),
            flags,
        )?)
    }

    /// Stops watching `fd` (an fd that was not watched is fine).
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.fd, fd);
    }

    /// Waits up to `timeout` (`None`: no limit) and appends the keys of
    /// the ready fds to `ready`.
    pub(crate) fn wait(
        &self,
        timeout: Option<Duration>,
        events: &mut Vec<epoll::Event>,
        ready: &mut Vec<u64>,
    ) -> io::Result<()> {
        // epoll_wait takes milliseconds before Linux 5.11: round up, so
        // that a deadline is never reported early, and cap at a day.
        let ts = timeout.map(|t| {
            let t = t.min(Duration::from_secs(86_400));
            let ms = t.as_nanos().div_ceil(1_000_000) as i64;
            rustix::time::Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            }
        });
        events.clear();
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut *events),
            ts.as_ref(),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        ready.extend(events.iter().map(|e| e.data.u64()));
        Ok(())
    }
}

/// Reads this process's resident memory from `/proc/self/statm` (kept
/// open: one `pread` per look).
#[derive(Debug)]
pub(crate) struct ResidentMemory {
    statm: OwnedFd,
    page: u64,
}

impl ResidentMemory {
    pub(crate) fn open() -> io::Result<ResidentMemory> {
        let statm = rustix::fs::open(
            "/proc/self/statm",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(ResidentMemory {
            statm,
            page: rustix::param::page_size() as u64,
        })
    }

    /// The resident set size in bytes (the second field, in pages).
    pub(crate) fn bytes(&self) -> io::Result<u64> {
        let mut buf = [0u8; 128];
        let n = rustix::io::pread(&self.statm, &mut buf, 0)?;
        parse_statm(&buf[..n])
            .map(|pages| pages * self.page)
            .ok_or_else(|| io::Error::other("unreadable /proc/self/statm"))
    }
}

/// The resident pages in a `statm` line: `size resident shared ...`.
fn parse_statm(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_and_resident_memory() {
        assert_eq!(parse_statm(b"4213 1011 598 1 0 3040 0\n"), Some(1011));
        assert_eq!(parse_statm(b"4213"), None);
        let rss = ResidentMemory::open().unwrap().bytes().unwrap();
        assert!(rss > 0);
    }

    #[test]
    fn nonblocking_pipe_reports_full_and_empty() {
        let (r, w) = worker_pipe().unwrap();
        set_nonblocking(r.as_fd()).unwrap();
        set_nonblocking(w.as_fd()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(read_nonblocking(r.as_fd(), &mut buf).unwrap(), None);
        let chunk = vec![0u8; 1 << 16];
        while write_nonblocking(w.as_fd(), &chunk).unwrap().is_some() {}
        assert_eq!(read_nonblocking(r.as_fd(), &mut buf).unwrap(), Some(16));
        drop(w);
        while read_nonblocking(r.as_fd(), &mut [0; 4096]).unwrap() != Some(0) {}
    }

    #[test]
    fn epoll_reports_the_eventfd() {
        let ep = Epoll::new().unwrap();
        let ev = EventFd::new().unwrap();
        ep.add(ev.as_fd(), 7, false).unwrap();
        let (mut events, mut ready) = (epoll_events(), Vec::new());
        ep.wait(Some(Duration::ZERO), &mut events, &mut ready)
            .unwrap();
        assert!(ready.is_empty());
        ev.signal();
        ep.wait(Some(Duration::from_secs(5)), &mut events, &mut ready)
            .unwrap();
        assert_eq!(ready, [7]);
        ev.drain();
        ready.clear();
        ep.wait(Some(Duration::ZERO), &mut events, &mut ready)
            .unwrap();
        assert!(ready.is_empty());
    }
}
