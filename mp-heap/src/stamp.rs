//! [`ProcessStamp`]: who a process is, in 64 bits that shared memory can
//! hold, and whether that process still lives; the identity the lock word's
//! owner checks use, for other shared structures that record which process
//! holds a share of them (a queue's producers, say).

use crate::lock::{stamp_pid, stamp_start};
use crate::sys;

/// The calling process's pid, without a system call in the common case
/// (glibc no longer caches `getpid()`): read from a page the kernel wipes
/// in a forked child, so a child sees its own pid at once.
///
/// Per-process state kept in memory that `fork` copies (a handle's
/// "which process made me") compares against it to notice that it now
/// lives in a child.
#[inline]
pub fn current_pid() -> u32 {
    sys::current_pid()
}

/// A process's identity: its pid and its start time (clock ticks after
/// boot, `/proc/PID/stat` field 22), so that a later process given the
/// same pid is told apart from the one recorded.
///
/// Store [`bits`](ProcessStamp::bits) in an `AtomicU64` of a shared
/// structure in one store, and ask [`is_alive`](ProcessStamp::is_alive)
/// from any process whether the one recorded still runs: because pid and
/// start time are written together, a mismatch of start times is final
/// (unlike the lock word, whose pid and stamp are two stores apart).
///
/// ```
/// use mp_heap::ProcessStamp;
///
/// let me = ProcessStamp::current();
/// assert_eq!(me.pid(), std::process::id());
/// assert!(me.is_alive());
/// assert_eq!(ProcessStamp::from_bits(me.bits()), Some(me));
/// assert_eq!(ProcessStamp::from_bits(0), None); // 0: nobody
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessStamp(u64);

impl ProcessStamp {
    /// The calling process's stamp (computed once per process; a forked
    /// child computes its own).
    #[inline]
    pub fn current() -> ProcessStamp {
        ProcessStamp(sys::current_stamp())
    }

    /// The stamp held in `bits` (as [`bits`](ProcessStamp::bits) made
    /// them); `None` for 0, which no process has, so that zeroed shared
    /// memory means "nobody".
    pub fn from_bits(bits: u64) -> Option<ProcessStamp> {
        (bits != 0 && stamp_pid(bits) != 0).then_some(ProcessStamp(bits))
    }

    /// The 64 bits to store: the pid in the top 22, the start time in the
    /// low 42 (0 when `/proc` could not say).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The process id.
    pub fn pid(self) -> u32 {
        stamp_pid(self.0)
    }

    /// Whether the process recorded is still running: it exists, is not a
    /// zombie, and (when both are known) started when the stamp says. A
    /// stamp whose start time is unknown is judged by its pid alone, as is
    /// every stamp when `/proc` cannot be read (then a zombie counts as
    /// alive).
    pub fn is_alive(self) -> bool {
        let pid = self.pid();
        match sys::proc_stat(pid) {
            Ok(None) => sys::process_exists(pid),
            Ok(Some(stat)) if matches!(stat.state, b'Z' | b'X' | b'x') => false,
            Ok(Some(stat)) => {
                let start = stamp_start(self.0);
                start == 0 || start == stamp_start(stat.start_ticks)
            }
            Err(_) => sys::process_exists(pid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_names_a_live_process_and_tells_a_reused_pid_apart() {
        let me = ProcessStamp::current();
        assert_eq!(me.pid(), current_pid());
        assert!(me.is_alive());
        // Our pid with another start time: an earlier process of that pid.
        let start = stamp_start(me.bits());
        let earlier = sys::make_stamp(me.pid(), start.wrapping_sub(1) & ((1 << 42) - 1));
        assert!(!ProcessStamp(earlier).is_alive());
        // An unknown start time: judged by the pid.
        assert!(ProcessStamp(sys::make_stamp(me.pid(), 0)).is_alive());
        // A process that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!ProcessStamp(sys::make_stamp(pid, 5)).is_alive());
    }
}
