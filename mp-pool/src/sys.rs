//! The system calls the pool makes itself, all through rustix's safe API:
//! the worker pipes, the supervisor's epoll set and wake-up eventfd, and a
//! worker's resident memory.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mp_conn::{HEADER_LEN, Header};
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

/// A pidfd of this process (readable once it has exited), for forked
/// workers to inherit and watch. Opened once per process and kept: each
/// pool's start under fork is otherwise a `pidfd_open` dearer. A fork
/// child that starts pools of its own opens one per pool (the kept one
/// names its parent), so no lock is ever taken that a fork could leave
/// held.
pub(crate) fn pidfd_of_self() -> io::Result<Arc<OwnedFd>> {
    static KEPT: OnceLock<(u32, Arc<OwnedFd>)> = OnceLock::new();
    let open = || -> io::Result<Arc<OwnedFd>> {
        let fd = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )?;
        Ok(Arc::new(fd))
    };
    let me = std::process::id();
    match KEPT.get() {
        Some((pid, fd)) if *pid == me => Ok(fd.clone()),
        Some(_) => open(),
        None => {
            let fd = open()?;
            // Another thread may have kept one first: this one serves its
            // pool alone then.
            let _ = KEPT.set((me, fd.clone()));
            Ok(fd)
        }
    }
}

/// Puts `fd` in nonblocking mode (the pool's own ends of the pipes).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// One `read` that never blocks, into `buf`'s spare capacity (replacing
/// its contents; nothing is cleared first, so only the pages the bytes
/// land on are written): `Ok(None)` when nothing is there, `Ok(Some(0))`
/// at end of file.
pub(crate) fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.clear();
    loop {
        match rustix::io::read(fd, rustix::buffer::spare_capacity(&mut *buf)) {
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

/// How much a [`FrameReader`] reads ahead: a batch of small units, and the
/// start of the next, in one system call.
const READ_AHEAD: usize = 64 * 1024;

/// The read-ahead of a [`FrameReader`] until a message has not fitted: a
/// worker that only ever gets a task or two (a pool started for one call)
/// allocates less than glibc's first large-request size (1 KiB), which
/// would consolidate the free lists and so write, and copy from the
/// parent, pages all over a forked worker's heap.
const FIRST_READ_AHEAD: usize = 1000;

/// How far past what has arrived a long message's buffer grows at a time
/// (a header's length is not trusted with an allocation).
const GROW_AHEAD: usize = 1 << 20;

/// Reads messages in CPython's framing (`mp-conn`'s header) from a
/// blocking fd that no one else reads: a worker's task pipe.
///
/// Each `read` takes whatever has arrived, up to [`READ_AHEAD`] bytes, so
/// a batch costs one system call (an exact reader needs two, header and
/// payload); the rest of a longer message is read straight into it. The
/// read-ahead buffer is allocated on first use and never cleared, so a
/// forked worker writes (and copies from its parent) only the pages its
/// bytes land on.
pub(crate) struct FrameReader {
    fd: OwnedFd,
    /// `buf[at..]` is read and not consumed.
    buf: Vec<u8>,
    at: usize,
    /// The read-ahead's size for the next read.
    read_ahead: usize,
}

impl FrameReader {
    pub(crate) fn new(fd: OwnedFd) -> FrameReader {
        FrameReader {
            fd,
            buf: Vec::new(),
            at: 0,
            read_ahead: FIRST_READ_AHEAD,
        }
    }

    /// Whether bytes are buffered: the next receive starts without a read.
    pub(crate) fn has_buffered(&self) -> bool {
        self.at < self.buf.len()
    }

    /// Receives the next message into `msg` (its old contents are
    /// replaced; its allocation is reused). `Ok(false)` at end of file
    /// between messages.
    ///
    /// # Errors
    ///
    /// `InvalidData` for a header CPython never sends, `UnexpectedEof`
    /// for end of file inside a message, and the read's errors.
    pub(crate) fn recv(&mut self, msg: &mut Vec<u8>) -> io::Result<bool> {
        let mut head = [0; HEADER_LEN];
        if !self.take(&mut head)? {
            return Ok(false);
        }
        let invalid = |e: mp_conn::Error| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        let len = match mp_conn::decode_header(head).map_err(invalid)? {
            Header::Short(len) => u64::from(len),
            Header::Long => {
                // The long form: -1, then an 8-byte length.
                let mut long = [0; 8];
                if !self.take(&mut long)? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                mp_conn::decode_long_length(long).map_err(invalid)?
            }
        };
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidData)?;
        let buffered = (self.buf.len() - self.at).min(len);
        if msg.len() < buffered {
            msg.resize(buffered, 0);
        }
        msg[..buffered].copy_from_slice(&self.buf[self.at..self.at + buffered]);
        self.at += buffered;
        let mut filled = buffered;
        if filled < len {
            // Messages this long come: read ahead more from now on.
            self.read_ahead = READ_AHEAD;
        }
        while filled < len {
            // The buffer is reused from message to message: it is grown
            // (and cleared) only past its longest message so far.
            let target = len.min(filled.max(msg.len()).saturating_add(GROW_AHEAD));
            if msg.len() < target {
                msg.resize(target, 0);
            }
            while filled < target {
                match rustix::io::read(&self.fd, &mut msg[filled..target]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => filled += n,
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        msg.truncate(len);
        Ok(true)
    }

    /// Fills `out` from the read-ahead, reading as needed; `Ok(false)` if
    /// end of file came before its first byte.
    fn take(&mut self, out: &mut [u8]) -> io::Result<bool> {
        let mut have = 0;
        while have < out.len() {
            if !self.has_buffered() && !self.fill()? {
                return if have == 0 {
                    Ok(false)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            let n = (out.len() - have).min(self.buf.len() - self.at);
            out[have..have + n].copy_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
            have += n;
        }
        Ok(true)
    }

    /// One read into the (empty) read-ahead; false at end of file.
    fn fill(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.at = 0;
        if self.buf.capacity() < self.read_ahead {
            self.buf.reserve_exact(self.read_ahead);
        }
        loop {
            match rustix::io::read(&self.fd, rustix::buffer::spare_capacity(&mut self.buf)) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for FrameReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Writes `payload` as one message in CPython's framing to a blocking fd:
/// header and payload in one `writev` unless the pipe is full.
///
/// # Errors
///
/// The write's errors (`BrokenPipe` once the reader is gone).
pub(crate) fn write_frame(fd: BorrowedFd<'_>, payload: &[u8]) -> io::Result<()> {
    let mut buf = [0; 12];
    let header = mp_conn::encode_header(payload.len() as u64, &mut buf);
    let total = header.len() + payload.len();
    let mut done = 0;
    while done < total {
        let written = if done < header.len() {
            rustix::io::writev(fd, &[IoSlice::new(&header[done..]), IoSlice::new(payload)])
        } else {
            rustix::io::write(fd, &payload[done - header.len()..])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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

/// How many events one [`Epoll::wait`] takes (level-triggered: the rest
/// come with the next).
const EVENTS_PER_WAIT: usize = 64;

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
    pub(crate) fn wait(&self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
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
        // On the stack: an event may hold a pointer, so a buffer of them
        // could not travel with the supervisor between threads, and a
        // fresh heap one would be written (and copied from a forked
        // worker) each time.
        let mut events = [const { MaybeUninit::<epoll::Event>::uninit() }; EVENTS_PER_WAIT];
        match epoll::wait(&self.fd, &mut events[..], ts.as_ref()) {
            Ok((events, _)) => ready.extend(events.iter().map(|e| e.data.u64())),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
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
        let mut buf = Vec::with_capacity(16);
        assert_eq!(read_nonblocking(r.as_fd(), &mut buf).unwrap(), None);
        let chunk = vec![1u8; 1 << 16];
        while write_nonblocking(w.as_fd(), &chunk).unwrap().is_some() {}
        assert_eq!(read_nonblocking(r.as_fd(), &mut buf).unwrap(), Some(16));
        assert_eq!(buf, [1; 16]);
        drop(w);
        let mut buf = Vec::with_capacity(4096);
        while read_nonblocking(r.as_fd(), &mut buf).unwrap() != Some(0) {}
    }

    /// Frames written by `write_frame` come back whole and in order from
    /// a `FrameReader`: empty, short, longer than the read-ahead, and
    /// longer than a pipe holds (written by a thread meanwhile).
    #[test]
    fn frames_travel_whole_and_in_order() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let sizes = [0, 1, 5, FIRST_READ_AHEAD, 3000, 70_000, 0, 300_000, 7];
        let messages: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let sent = messages.clone();
        let writer = std::thread::spawn(move || {
            for m in &sent {
                write_frame(w.as_fd(), m).unwrap();
            }
        });
        let mut reader = FrameReader::new(r);
        let mut msg = Vec::new();
        for m in &messages {
            assert!(reader.recv(&mut msg).unwrap());
            assert_eq!(&msg, m);
        }
        writer.join().unwrap();
        // The writer is gone: end of file, between messages.
        assert!(!reader.recv(&mut msg).unwrap());
        assert!(!reader.has_buffered());
    }

    fn read_back(bytes: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        rustix::io::write(&w, bytes).unwrap();
        drop(w);
        let mut reader = FrameReader::new(r);
        let mut out = Vec::new();
        let mut msg = Vec::new();
        while reader.recv(&mut msg)? {
            out.push(msg.clone());
        }
        Ok(out)
    }

    #[test]
    fn bad_or_cut_frames_are_errors() {
        // Two messages in one read, then end of file.
        let got = read_back(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 1, b'!']).unwrap();
        assert_eq!(got, [b"hi".to_vec(), b"!".to_vec()]);
        let cut = |bytes: &[u8]| read_back(bytes).unwrap_err().kind();
        assert_eq!(
            cut(&[0, 0]),
            io::ErrorKind::UnexpectedEof,
            "inside a header"
        );
        assert_eq!(cut(&[0, 0, 0, 9, 1, 2]), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            cut(&[0xff, 0xff, 0xff, 0xff, 0]),
            io::ErrorKind::UnexpectedEof
        );
        // A negative length other than -1 is not CPython's, and neither
        // is the long form (-1, then 8 bytes) for a short message.
        assert_eq!(cut(&[0xff, 0xff, 0xff, 0xfe]), io::ErrorKind::InvalidData);
        let long = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3];
        assert_eq!(cut(&long), io::ErrorKind::InvalidData);
    }

    #[test]
    fn epoll_reports_the_eventfd() {
        let ep = Epoll::new().unwrap();
        let ev = EventFd::new().unwrap();
        ep.add(ev.as_fd(), 7, false).unwrap();
        let mut ready = Vec::new();
        ep.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert!(ready.is_empty());
        ev.signal();
        ep.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready, [7]);
        ev.drain();
        ready.clear();
        ep.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert!(ready.is_empty());
    }
}
