//! A producer's pool of memfds for big items, so that a big item's bytes
//! go into pages that are already there.
//!
//! A fresh memfd per item costs its sender the allocation of every page
//! and its last reader their freeing: measured on the development VM, 64
//! MiB took 33-40 ms to write into a fresh memfd (and 9 ms to free) but
//! 15-20 ms into one whose pages exist. So each producer process keeps a
//! few memfds per queue and writes the next big item into one no consumer
//! is reading:
//!
//! ```text
//! pooled memfd: offset  size  field (little-endian)
//!               0       8     b"MPQPOOL\0"
//!               8       8     done: the last generation a consumer finished
//!                             reading (written by it)
//!               16      8     at: where this generation's payload starts
//!               at      len   the payload: `at` is 4096 less the length of
//!                             a byte vector's prefix, so that its bulk
//!                             starts on the second page
//! ```
//!
//! The item's datagram carries the generation the producer gave this use
//! of the file; the consumer writes it to `done` once it has copied the
//! payload out (`pwrite`, no mapping). The producer reuses a file whose
//! `done` equals the generation it sent. A file never marked done (its
//! consumer died, its datagram was discarded) is dropped from the pool
//! after [`RETIRE_AFTER`]; whoever still holds a copy keeps the pages
//! until it closes it. An item that cannot get a pooled file (the pool is
//! full and busy, or the item bigger than its budget) takes a fresh sealed
//! memfd, as before the pool.
//!
//! Trust: a pooled file is not sealed (it is written again), so a peer
//! holding it may change it while a consumer reads: garbage for that
//! item, nothing worse (the consumer copies with `pread`, never maps it,
//! and checks that the pages are really there before it allocates).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::MemfdFlags;

use crate::side::{PAGE, pwrite_all};

/// Where the consumer writes the generation it finished.
pub(crate) const DONE_AT: u64 = 8;
/// Where the producer writes the payload's offset.
const AT_AT: u64 = 16;
/// The header's end: no payload starts before it.
const HEADER_END: u64 = 24;
const MAGIC: [u8; 8] = *b"MPQPOOL\0";

/// Files per pool.
const MAX_FILES: usize = 4;
/// Bytes of payload capacity per pool: a process that once sent big items
/// keeps at most this much shared memory per queue for the next ones.
const MAX_BYTES: u64 = 256 << 20;
/// How long a file may wait for its consumer's word before it leaves the
/// pool.
pub(crate) const RETIRE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Use {
    Free,
    /// Being written, or waiting in this process's feeder.
    Leased,
    /// Its datagram went out with `generation` at `since`.
    Sent {
        since: Instant,
    },
}

#[derive(Debug)]
struct File {
    fd: Arc<OwnedFd>,
    /// Payload bytes the file holds room for.
    cap: u64,
    generation: u32,
    state: Use,
}

/// A producer process's pool (one per queue per process).
#[derive(Debug, Default)]
pub(crate) struct Pool {
    files: Mutex<Vec<File>>,
}

/// One use of a pooled file, by one item: freed for reuse if the item is
/// dropped unsent, marked sent once its datagram went out.
#[derive(Debug)]
pub(crate) struct Lease {
    pool: Arc<Pool>,
    fd: Arc<OwnedFd>,
    generation: u32,
    sent: AtomicBool,
}

impl Lease {
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// The item's datagram went out: the file now waits for its consumer.
    pub(crate) fn sent(&self) {
        self.sent.store(true, Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let sent = self.sent.load(Ordering::Relaxed);
        let mut files = self.pool.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.iter_mut().find(|f| Arc::ptr_eq(&f.fd, &self.fd)) {
            f.state = if sent {
                Use::Sent {
                    since: Instant::now(),
                }
            } else {
                Use::Free
            };
        }
    }
}

/// Reads the `done` word of a pooled file.
fn done_word(fd: &OwnedFd) -> Option<u32> {
    read_word(fd, DONE_AT).map(|w| w as u32)
}

fn read_word(fd: &OwnedFd, at: u64) -> Option<u64> {
    let mut word = [0u8; 8];
    match rustix::io::pread(fd, &mut word, at) {
        Ok(8) => Some(u64::from_le_bytes(word)),
        _ => None,
    }
}

/// Where a received pooled file's payload starts, if its header says so
/// sensibly (after the header, within the first page).
pub(crate) fn payload_at(fd: &OwnedFd) -> Option<u64> {
    read_word(fd, AT_AT).filter(|at| (HEADER_END..=PAGE).contains(at))
}

impl Pool {
    /// Writes `parts` (`len` bytes, of which the first `head` come before
    /// the bulk) into a pooled file and leases it; `Ok(None)` when no file
    /// can be had (the caller uses a fresh sealed memfd).
    pub(crate) fn write(
        self: &Arc<Self>,
        parts: &[&[u8]],
        len: u64,
        head: u64,
    ) -> io::Result<Option<Lease>> {
        if len > MAX_BYTES || head > PAGE - HEADER_END {
            return Ok(None);
        }
        let (fd, generation) = {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            // Files whose consumer finished are free; files that waited
            // too long leave.
            files.retain_mut(|f| match f.state {
                Use::Sent { since } => {
                    if done_word(&f.fd) == Some(f.generation) {
                        f.state = Use::Free;
                        true
                    } else {
                        since.elapsed() < RETIRE_AFTER
                    }
                }
                Use::Free | Use::Leased => true,
            });
            let total: u64 = files.iter().map(|f| f.cap).sum();
            let best = files
                .iter()
                .enumerate()
                .filter(|(_, f)| matches!(f.state, Use::Free))
                .min_by_key(|(_, f)| (f.cap < len, f.cap.abs_diff(len)))
                .map(|(i, f)| (i, f.cap));
            let i = match best {
                Some((i, cap)) if cap >= len || total - cap + len <= MAX_BYTES => i,
                _ if files.len() < MAX_FILES && total + len <= MAX_BYTES => {
                    files.push(File {
                        fd: Arc::new(new_file()?),
                        cap: 0,
                        generation: 0,
                        state: Use::Free,
                    });
                    files.len() - 1
                }
                _ => return Ok(None),
            };
            let f = &mut files[i];
            f.generation = f.generation.wrapping_add(1).max(1);
            f.cap = f.cap.max(len);
            f.state = Use::Leased;
            (Arc::clone(&f.fd), f.generation)
        };
        let lease = Lease {
            pool: Arc::clone(self),
            fd,
            generation,
            sent: AtomicBool::new(false),
        };
        // A failed write drops the lease unsent: the file is free again.
        let at = PAGE - head;
        pwrite_all(lease.fd(), &[&at.to_le_bytes()], AT_AT)?;
        pwrite_all(lease.fd(), parts, at)?;
        Ok(Some(lease))
    }
}

/// A new pooled file: its header, no payload yet.
fn new_file() -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("mp-queue-pool", MemfdFlags::CLOEXEC)?;
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&MAGIC);
    pwrite_all(&fd, &[&header], 0)?;
    Ok(fd)
}

/// Tells the producer that the payload of generation `generation` was read.
pub(crate) fn mark_done(fd: &OwnedFd, generation: u32) {
    // Best effort: a file we cannot write stays busy until it retires.
    let _ = rustix::io::pwrite(fd, &u64::from(generation).to_le_bytes(), DONE_AT);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_payload(fd: &OwnedFd, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let at = payload_at(fd).unwrap();
        assert_eq!(rustix::io::pread(fd, &mut out, at).unwrap(), len);
        out
    }

    #[test]
    fn a_file_is_reused_only_once_its_reader_is_done() {
        let pool = Arc::new(Pool::default());
        let first = pool.write(&[b"one"], 3, 0).unwrap().unwrap();
        first.sent();
        let (fd1, generation1) = (Arc::clone(&first.fd), first.generation());
        drop(first);
        // Not done yet: another file.
        let second = pool.write(&[b"two"], 3, 0).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&second.fd, &fd1));
        second.sent();
        drop(second);
        assert_eq!(read_payload(&fd1, 3), b"one");
        mark_done(&fd1, generation1);
        let third = pool.write(&[b"333"], 3, 1).unwrap().unwrap();
        assert!(Arc::ptr_eq(&third.fd, &fd1), "the finished file is reused");
        assert_ne!(third.generation(), generation1);
        assert_eq!(read_payload(&fd1, 3), b"333");
    }

    #[test]
    fn an_unsent_lease_frees_its_file_and_a_full_pool_says_none() {
        let pool = Arc::new(Pool::default());
        let lease = pool.write(&[b"x"], 1, 0).unwrap().unwrap();
        let fd = Arc::clone(&lease.fd);
        drop(lease); // never sent
        let again = pool.write(&[b"y"], 1, 0).unwrap().unwrap();
        assert!(Arc::ptr_eq(&again.fd, &fd));
        again.sent();
        let busy: Vec<_> = (0..MAX_FILES - 1)
            .map(|_| pool.write(&[b"z"], 1, 0).unwrap().unwrap())
            .collect();
        for lease in &busy {
            lease.sent();
        }
        assert!(
            pool.write(&[b"w"], 1, 0).unwrap().is_none(),
            "every file is busy"
        );
        assert!(pool.write(&[], MAX_BYTES + 1, 0).unwrap().is_none());
        drop((again, busy));
    }
}
