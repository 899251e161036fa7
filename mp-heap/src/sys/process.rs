//! Who holds a lock: the calling thread's ids, and what `/proc` says about
//! another process (alive, gone, or a zombie; when it started).

use std::{cell::Cell, io};

/// Who the calling thread is, as lock owners are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    /// The process id.
    pub(crate) pid: u32,
    /// The kernel thread id.
    pub(crate) tid: u32,
    /// The process's stamp (pid and start time, [`super::current_stamp`]).
    pub(crate) stamp: u64,
}

thread_local! {
    /// This thread's ids, refreshed when the pid changes (a forked child's
    /// thread has new ones).
    static ME: Cell<Me> = const { Cell::new(Me { pid: 0, tid: 0, stamp: 0 }) };
}

/// The calling thread's ids: one read of the wipe-on-fork page (to notice
/// a fork) and one of a thread-local.
#[inline]
pub(crate) fn me() -> Me {
    let pid = super::current_pid();
    let me = ME.with(Cell::get);
    if me.pid == pid { me } else { refresh_me(pid) }
}

/// The first call on a thread (or after a fork): asks the kernel.
#[cold]
#[inline(never)]
fn refresh_me(pid: u32) -> Me {
    let me = Me {
        pid,
        tid: rustix::thread::gettid().as_raw_nonzero().get() as u32,
        stamp: super::current_stamp(),
    };
    ME.with(|c| c.set(me));
    me
}

/// The fields of `/proc/PID/stat` that lock owners are judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub(crate) state: u8,
    /// Field 22: when the process started, in clock ticks after boot.
    pub(crate) start_ticks: u64,
}

/// Reads `/proc/PID/stat`: `Ok(None)` when there is no such process.
///
/// # Errors
///
/// `/proc` cannot be read (not mounted, for instance) or the line does not
/// parse.
pub(crate) fn proc_stat(pid: u32) -> io::Result<Option<ProcStat>> {
    let text = match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // No such directory; or `/proc` itself is missing.
            if std::path::Path::new("/proc/self/stat").exists() {
                return Ok(None);
            }
            return Err(e);
        }
        // ESRCH: the process went away while the file was read.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    parse_stat(&text)
        .map(Some)
        .ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))
}

/// Parses a stat line: `PID (COMM) STATE PPID ... STARTTIME ...`. The
/// command name may hold spaces and parentheses, so fields are counted
/// from the last `)`.
pub(crate) fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Fields 4..=21 lie between the state (3) and the start time (22).
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Whether a process exists, by `kill(pid, 0)`: the fallback when `/proc`
/// cannot be read. A zombie counts as existing.
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    // EPERM: it exists but belongs to someone else.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = b"4242 (a (b) c) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: b'S',
                start_ticks: 987654
            })
        );
        assert_eq!(parse_stat(b"12 (x) Z 1 2"), None);
        assert_eq!(parse_stat(b"no parens"), None);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not_a_process() {
        let me = super::super::current_pid();
        let stat = proc_stat(me).unwrap().unwrap();
        assert_ne!(stat.state, b'Z');
        assert!(stat.start_ticks > 0);
        assert!(process_exists(me));
        // pid_max is at most 2^22: this pid never exists.
        assert_eq!(proc_stat(1 << 23).unwrap(), None);
        assert!(!process_exists(1 << 23));
    }
}
