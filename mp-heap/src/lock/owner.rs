//! Deciding, from another process, whether a lock's owner is still alive.
//!
//! The lock word names its owner by pid. A waiter that has slept for a
//! while asks `/proc/PID/stat`: no such process, or a zombie, means the
//! owner died. A pid can be reused by a newer process, so the lock also
//! keeps the owner's *stamp* (pid and start time); a live process with
//! the right pid but another start time is a newcomer, and the owner is
//! gone. That verdict waits for a second look, [`CONFIRM_AFTER`] later,
//! because a new owner writes its stamp just after taking the word and a
//! waiter may look in between.

use std::time::{Duration, Instant};

use crate::sys::{self, STAMP_START_BITS};

/// How long a pid-reuse suspicion must hold before it is believed: far
/// longer than the few instructions between taking the word and stamping.
pub(crate) const CONFIRM_AFTER: Duration = Duration::from_millis(50);

/// The pid a stamp names.
pub(crate) fn stamp_pid(stamp: u64) -> u32 {
    (stamp >> STAMP_START_BITS) as u32
}

/// The start time a stamp holds (0: unknown).
pub(crate) fn stamp_start(stamp: u64) -> u64 {
    stamp & ((1 << STAMP_START_BITS) - 1)
}

/// A waiter's judgement of one lock's owner, remembered between looks.
#[derive(Debug, Default)]
pub(crate) struct OwnerCheck {
    /// A lock word whose pid looked reused, and since when.
    suspect: Option<(u32, Instant)>,
}

impl OwnerCheck {
    /// Whether process `pid`, the owner named by lock word `word` (whose
    /// stamp reads `stamp`), has died.
    pub(crate) fn owner_died(&mut self, word: u32, pid: u32, stamp: u64) -> bool {
        match sys::proc_stat(pid) {
            // No such process in /proc: gone, unless kill(2) still finds it
            // (a /proc mounted with hidepid hides other users' processes).
            Ok(None) => !sys::process_exists(pid),
            Ok(Some(stat)) if matches!(stat.state, b'Z' | b'X' | b'x') => true,
            Ok(Some(stat)) => {
                let reused = stamp_pid(stamp) == pid
                    && stamp_start(stamp) != 0
                    && stamp_start(stamp) != stamp_start(stat.start_ticks);
                if !reused {
                    self.suspect = None;
                    return false;
                }
                match self.suspect {
                    Some((w, since)) if w == word => since.elapsed() >= CONFIRM_AFTER,
                    _ => {
                        self.suspect = Some((word, Instant::now()));
                        false
                    }
                }
            }
            // /proc unreadable: existence is all that can be known.
            Err(_) => !sys::process_exists(pid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_owner_is_alive_and_a_missing_one_is_dead() {
        let me = sys::current_pid();
        let stamp = sys::current_stamp();
        assert_eq!(stamp_pid(stamp), me);
        let mut check = OwnerCheck::default();
        assert!(!check.owner_died(me, me, stamp));
        // An unstamped lock (stamp of someone else) held by a live pid.
        assert!(!check.owner_died(me, me, 0));
        assert!(check.owner_died(1 << 23, 1 << 23, 0));
    }

    #[test]
    fn a_reused_pid_is_believed_only_on_a_second_look() {
        let me = sys::current_pid();
        let start = stamp_start(sys::current_stamp());
        // The stamp of an earlier process with our pid.
        let old = sys::make_stamp(me, start.wrapping_sub(1) & ((1 << STAMP_START_BITS) - 1));
        let mut check = OwnerCheck::default();
        assert!(
            !check.owner_died(me, me, old),
            "first look: only a suspicion"
        );
        std::thread::sleep(CONFIRM_AFTER + Duration::from_millis(5));
        assert!(check.owner_died(me, me, old), "second look confirms it");
        // A changed word starts over.
        assert!(!check.owner_died(me | 1 << 31, me, old));
    }
}
