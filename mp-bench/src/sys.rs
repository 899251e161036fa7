//! Thin wrappers over the system calls the bench needs: fork and waitpid for
//! the peers, getrusage for CPU time, sched_setaffinity for placements, and
//! the raw-syscall limits themselves (socketpair read/write, poll, epoll,
//! malloc/free, fork + exec).
//!
//! # Safety
//!
//! Every `unsafe` block here is one libc call whose pointer arguments come
//! from live Rust buffers of the stated length, or whose fd arguments come
//! from a `BorrowedFd`/`OwnedFd` that outlives the call. `fork` is only
//! reached through [`fork_run`] and the raw process loops, which check first
//! that the process has a single thread, so the child may run any code.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

fn rusage_secs(who: libc::c_int) -> f64 {
    // SAFETY: `usage` is a valid, writable rusage; getrusage only writes it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User + system CPU seconds of this process and of every child it has
/// waited for (`getrusage(RUSAGE_SELF)` + `getrusage(RUSAGE_CHILDREN)`).
pub(crate) fn cpu_now() -> f64 {
    rusage_secs(libc::RUSAGE_SELF) + rusage_secs(libc::RUSAGE_CHILDREN)
}

/// User + system CPU seconds of the waited-for children only.
pub(crate) fn cpu_children() -> f64 {
    rusage_secs(libc::RUSAGE_CHILDREN)
}

/// The CPUs this process may run on (`sched_getaffinity`).
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        cvt(libc::sched_getaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        ))?;
        set
    };
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the size of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Restricts this process (its calling thread) to `cpus` (`sched_setaffinity`).
pub(crate) fn set_cpus(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t; CPU_SET is bounded by CPU_SETSIZE,
    // which we check first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        cvt(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ))?;
    }
    Ok(())
}

/// How many threads this process has, from `/proc/self/status`.
pub(crate) fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

fn ensure_single_threaded() -> io::Result<()> {
    // A thread that was just joined can linger in /proc for a moment after
    // `join` returns (the output readers of `measure::run_program`): give
    // it a little time before refusing.
    for _ in 0..200 {
        if thread_count()? == 1 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(io::Error::other(format!(
        "refusing to fork: the bench process has {} threads",
        thread_count()?
    )))
}

/// Forks; the child runs `child` and leaves with `_exit` and its return
/// value (101 if it panicked), never returning here. The parent gets the pid.
pub(crate) fn fork_run(child: impl FnOnce() -> i32) -> io::Result<libc::pid_t> {
    ensure_single_threaded()?;
    // SAFETY: the process is single-threaded (checked above), so the child
    // may run arbitrary code; it never returns into the caller's frames.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: _exit ends the child without running the parent's exit
        // handlers or unwinding into the parent's frames.
        unsafe { libc::_exit(code) }
    }
    Ok(pid)
}

/// `waitpid(pid)`, retried on EINTR; returns the raw wait status.
pub(crate) fn wait_pid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `waitpid(pid, WNOHANG)`: `Ok(None)` while the child runs. The child is
/// reaped when it has ended, and [`wait_pid`] must then not be called: use
/// the status returned here.
pub(crate) fn try_wait_pid(pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable int.
    match cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })? {
        0 => Ok(None),
        _ => Ok(Some(status)),
    }
}

/// Describes a wait status that is not a clean `exit(0)`, or `None`.
pub(crate) fn status_problem(status: libc::c_int) -> Option<String> {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => None,
            code => Some(format!("peer exited with status {code}")),
        }
    } else if libc::WIFSIGNALED(status) {
        Some(format!("peer killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some(format!("peer ended with wait status {status:#x}"))
    }
}

/// Sends SIGKILL to `pid` (a peer we forked and now give up on).
pub(crate) fn kill(pid: libc::pid_t) {
    // SAFETY: plain kill(2) on a pid we forked and have not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// A connected pair of AF_UNIX stream sockets, close-on-exec (what
/// `multiprocessing.Pipe(duplex=True)` uses).
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An OS pipe `(read end, write end)`, close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One `write(2)`; returns how many bytes went out.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` bytes.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// One `read(2)`; returns how many bytes came in (0 at end of file).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// One `recv(2)` with `MSG_DONTWAIT`: `Ok(None)` when nothing is there yet.
pub(crate) fn recv_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    let ret = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match cvt_size(ret) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes all of `buf` (a loop of `write`).
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills all of `buf` (a loop of `read`); end of file first is an error.
pub(crate) fn read_exact(fd: BorrowedFd<'_>, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match read(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A prepared `pollfd` array, polled for readability again and again.
#[derive(Debug)]
pub(crate) struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    /// Watches every fd of `fds` for `POLLIN`.
    pub(crate) fn new(fds: &[BorrowedFd<'_>]) -> PollSet {
        PollSet {
            fds: fds
                .iter()
                .map(|fd| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// One `poll(2)` with no timeout; returns how many fds are ready.
    pub(crate) fn poll(&mut self) -> io::Result<usize> {
        // SAFETY: the pointer and length describe our live pollfd vector.
        let n = cvt(unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as _, -1) })?;
        Ok(n as usize)
    }
}

/// An epoll instance with fds registered once (level-triggered `EPOLLIN`).
#[derive(Debug)]
pub(crate) struct Epoll {
    epfd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the fd it returns is ours alone.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: epoll_create1 succeeded, so `epfd` is open.
            epfd: unsafe { OwnedFd::from_raw_fd(epfd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 64],
        })
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)` for readability, keyed by `key`.
    pub(crate) fn add(&mut self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: `ev` is a valid epoll_event; both fds are open.
        cvt(unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })?;
        Ok(())
    }

    /// One `epoll_wait` with no timeout; returns how many events came.
    pub(crate) fn wait(&mut self) -> io::Result<usize> {
        // SAFETY: the pointer and length describe our live event buffer.
        let n = cvt(unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as _,
                -1,
            )
        })?;
        Ok(n as usize)
    }
}

/// `count` malloc + free pairs of `size` bytes with a working set of
/// `ring` live blocks: each step frees the oldest block and mallocs a new
/// one, touching its first byte so that neither call can be elided.
pub(crate) fn malloc_free_loop(size: usize, count: u64, ring: &mut [usize]) -> io::Result<u64> {
    let mut sum = 0u64;
    for i in 0..count {
        let slot = &mut ring[(i as usize) % ring.len()];
        // SAFETY: `*slot` is 0 or a pointer this loop got from malloc and
        // has not freed; free(NULL) is a no-op.
        unsafe { libc::free(*slot as *mut libc::c_void) };
        // SAFETY: plain malloc; a null result is handled below.
        let p = unsafe { libc::malloc(size.max(1)) }.cast::<u8>();
        if p.is_null() {
            *slot = 0;
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // SAFETY: `p` points to at least one writable byte.
        unsafe { p.write_volatile(i as u8) };
        sum = sum.wrapping_add(std::hint::black_box(p as usize) as u64);
        *slot = p as usize;
    }
    Ok(sum)
}

/// Frees what [`malloc_free_loop`] left in `ring`.
pub(crate) fn free_ring(ring: &mut [usize]) {
    for slot in ring {
        // SAFETY: as in `malloc_free_loop`: 0 or a live malloc'd pointer.
        unsafe { libc::free(*slot as *mut libc::c_void) };
        *slot = 0;
    }
}

/// Checks once that forking is safe here, for the raw process loops.
pub(crate) fn prepare_fork_loop() -> io::Result<()> {
    ensure_single_threaded()
}

/// Raw limit of process creation: `fork()`, the child `_exit(0)`s at once,
/// `waitpid`. Call [`prepare_fork_loop`] first.
pub(crate) fn fork_exit_wait() -> io::Result<()> {
    // SAFETY: single-threaded (checked by prepare_fork_loop); the child
    // only calls _exit, which is async-signal-safe.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) }
    }
    check_status(wait_pid(pid)?)
}

/// Raw limit of starting a program: `fork()`, the child `execv`s `path`
/// (argv = `[path]`), `waitpid`. Call [`prepare_fork_loop`] first.
pub(crate) fn fork_exec_wait(path: &CStr) -> io::Result<()> {
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: single-threaded (checked by prepare_fork_loop); the child
    // only calls execv and _exit, both async-signal-safe, on data prepared
    // before the fork.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: `argv` is a null-terminated array of valid C strings.
        unsafe {
            libc::execv(path.as_ptr(), argv.as_ptr());
            libc::_exit(127)
        }
    }
    check_status(wait_pid(pid)?)
}

fn check_status(status: libc::c_int) -> io::Result<()> {
    match status_problem(status) {
        None => Ok(()),
        Some(p) => Err(io::Error::other(p)),
    }
}

/// Raises the soft limit on open files to the hard limit (the 1000-idle
/// `wait` rows need over 2000 fds).
pub(crate) fn raise_nofile_limit() {
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit
    // to read.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A page of memory shared with forked children (`mmap(MAP_SHARED |
/// MAP_ANONYMOUS)`), seen as 32-bit words: the futex words of the raw
/// ping-pong. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct SharedWords {
    ptr: std::ptr::NonNull<std::sync::atomic::AtomicU32>,
    len: usize,
}

// SAFETY: the page is plain shared memory used only through atomics.
unsafe impl Send for SharedWords {}
// SAFETY: as above; `&SharedWords` hands out `&AtomicU32` only.
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// One zeroed page.
    pub(crate) fn new() -> io::Result<SharedWords> {
        let len = 4096;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing aliases nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            std::ptr::NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(SharedWords { ptr, len })
    }

    /// Word `i` of the page (`i < 1024`).
    pub(crate) fn word(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(i < self.len / 4, "word {i} is beyond the page");
        // SAFETY: in bounds (checked), aligned (a page), zero-filled or
        // written atomically only; valid while `self` lives.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; the words
        // borrowed from it cannot outlive `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `FUTEX_WAIT` on a shared (not private) futex: sleeps while `word` holds
/// `expected`; returns on a wake, a mismatch or a signal.
pub(crate) fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a live aligned u32; no timeout (null), so the
    // other arguments are unused.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// `FUTEX_WAKE` of one sleeper on a shared futex.
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: `word` is a live aligned u32.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// A buffer of `len` bytes' capacity in fresh memory, its 2 MiB-aligned
/// interior advised `MADV_HUGEPAGE` (as mp-queue advises a big item's
/// destination): what a receiver that hands out new memory per message
/// pays for, at best.
pub(crate) fn fresh_buffer(len: usize) -> Vec<u8> {
    const HUGE: usize = 2 << 20;
    let mut v: Vec<u8> = Vec::with_capacity(len);
    let start = v.as_mut_ptr() as usize;
    let (lo, hi) = (start.next_multiple_of(HUGE), (start + len) / HUGE * HUGE);
    if hi > lo {
        // SAFETY: `lo..hi` is page-aligned and inside `v`'s allocation;
        // the advice only changes the size of the pages behind it.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    }
    v
}

/// Reads `len` bytes at offset 0 of `fd` into `out` (from its start,
/// through its spare capacity).
pub(crate) fn pread_into(fd: BorrowedFd<'_>, out: &mut Vec<u8>, len: usize) -> io::Result<()> {
    out.clear();
    out.reserve_exact(len);
    while out.len() < len {
        let at = out.len();
        // SAFETY: the destination is the vector's spare capacity (at least
        // `len - at` bytes, reserved above); `set_len` covers only what the
        // call wrote.
        let n = cvt_size(unsafe {
            libc::pread(
                fd.as_raw_fd(),
                out.as_mut_ptr().add(at).cast(),
                len - at,
                at as libc::off_t,
            )
        })?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: `pread` initialised `n` more bytes.
        unsafe { out.set_len(at + n) };
    }
    Ok(())
}

/// A new memfd holding `bytes` (written with `pwrite`).
pub(crate) fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: a static NUL-terminated name; the fd returned is ours alone.
    let fd = cvt(unsafe { libc::memfd_create(c"mp-bench".as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut at = 0;
    while at < bytes.len() {
        // SAFETY: `bytes[at..]` is a live slice of that many bytes.
        let n = cvt_size(unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                bytes[at..].as_ptr().cast(),
                bytes.len() - at,
                at as libc::off_t,
            )
        })?;
        at += n;
    }
    Ok(fd)
}

/// The room `SCM_RIGHTS` of one fd takes in a control buffer.
fn one_fd_space() -> usize {
    // SAFETY: CMSG_SPACE of one int is arithmetic on a constant.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

/// A message header over the one byte `iov` points at and `control`.
fn one_fd_msghdr(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no buffers); the fields set
    // below point at live buffers that outlive the caller's use.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    msg
}

/// Sends `fd` over the unix socket `sock` (one byte, `SCM_RIGHTS`).
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; one_fd_space()];
    let msg = one_fd_msghdr(&mut iov, &mut control);
    // SAFETY: `msg` points at the live iovec and control buffer; the CMSG
    // macros stay inside the control buffer (sized by CMSG_SPACE).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        cvt_size(libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL))?;
    }
    Ok(())
}

/// Receives an fd sent with [`send_fd`].
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; one_fd_space()];
    let mut msg = one_fd_msghdr(&mut iov, &mut control);
    // SAFETY: as in `send_fd`; the fd read out of the control message is a
    // new one the kernel installed for us (close-on-exec).
    unsafe {
        let n = cvt_size(libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC,
        ))?;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("no fd arrived"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads exactly `len` bytes from the stream `fd` into `out` (from its
/// start, through its spare capacity).
pub(crate) fn read_into(fd: BorrowedFd<'_>, out: &mut Vec<u8>, len: usize) -> io::Result<()> {
    out.clear();
    out.reserve_exact(len);
    while out.len() < len {
        let at = out.len();
        // SAFETY: as in `pread_into`.
        let n = cvt_size(unsafe {
            libc::read(fd.as_raw_fd(), out.as_mut_ptr().add(at).cast(), len - at)
        })?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: `read` initialised `n` more bytes.
        unsafe { out.set_len(at + n) };
    }
    Ok(())
}
