//! What every kind of queue shares: the shared parts (the ring's header and
//! bytes, the side channel), the per-process state, and the operations on
//! them under the ring's lock.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use mp_heap::{Deadline, ForkCell, OWNER_CHECK_INTERVAL, ProcessLockGuard, ProcessStamp, Shared};

use crate::encode::{self, Big, Encoded, Route};
use crate::error::QueueError;
use crate::feeder::{self, Local};
use crate::ring::{Corrupt, Entry, Header, IMMEDIATE, Kind, Ring, SHUTDOWN, Txn};
use crate::shm::RingBytes;
use crate::side::{self, Payload, Received, ReceivedPayload, Side};
use crate::wake::Waiters;

/// The longest a waiter sleeps before it looks again for producers that
/// died with items in their feeders (whose share of `maxsize` it then
/// takes back): mp-heap's owner-check interval, for the same reason.
pub(crate) const WAIT_SLICE: Duration = OWNER_CHECK_INTERVAL;

/// How long a call that does not block (or whose timeout is shorter)
/// still waits for the ring's lock: critical sections take microseconds,
/// but their holder may be descheduled for a while on a loaded machine.
pub(crate) const LOCK_GRACE: Duration = Duration::from_millis(20);

/// The queue's shared memory and side channel, as this process maps them.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) header: Shared<Header>,
    pub(crate) bytes: RingBytes,
    pub(crate) side: Side,
}

/// A queue as this process holds it: the shared parts, and the state of
/// this process (its feeder); shared by every handle in the process.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) parts: Parts,
    pub(crate) kind: Kind,
    pub(crate) inline_max: usize,
    local: ForkCell<Local>,
    /// Handles in this process's memory (a feeder thread is not one): the
    /// feeder ends once they are gone and its buffer is flushed.
    pub(crate) handles: AtomicUsize,
    /// The item type's name, for messages.
    pub(crate) type_name: &'static str,
}

/// What a get took from the queue, to decode outside the lock.
#[derive(Debug)]
pub(crate) enum Taken {
    /// An INLINE entry's payload.
    Bytes(Vec<u8>),
    /// A side-channel item.
    Side(Vec<std::os::fd::OwnedFd>, ReceivedPayload),
}

/// The ring's lock, held; dropping it releases the lock.
pub(crate) type Guard<'a> = ProcessLockGuard<'a>;

impl Inner {
    pub(crate) fn new(parts: Parts, kind: Kind, type_name: &'static str) -> Inner {
        let inline_max = parts.header.inline_max();
        Inner {
            parts,
            kind,
            inline_max,
            local: ForkCell::new(Local::new()),
            handles: AtomicUsize::new(0),
            type_name,
        }
    }

    pub(crate) fn header(&self) -> &Header {
        &self.parts.header
    }

    fn ring(&self) -> Ring<'_> {
        Ring::new(&self.parts.header, &self.parts.bytes, self.inline_max)
    }

    /// The ring, for the test hooks.
    pub(crate) fn ring_for_hooks(&self) -> Ring<'_> {
        self.ring()
    }

    /// This process's state; a forked child gets its own on first use.
    pub(crate) fn local(&self) -> &Local {
        let local = self.local.get();
        if local.is_current() {
            return local;
        }
        self.local.replace_if(|l| !l.is_current(), Local::new)
    }

    /// Takes the ring's lock, waiting as long as it takes; a lock taken
    /// over from a dead process comes with the ring recovered.
    pub(crate) fn lock(&self) -> Guard<'_> {
        match self.header().lock.lock() {
            Ok(g) => g,
            Err(died) => {
                let g = died.into_inner();
                self.ring().recover();
                g
            }
        }
    }

    /// Takes the ring's lock by `deadline`, or (for a call that does not
    /// block) within [`LOCK_GRACE`]: `None` if the lock stays held that
    /// long (by a process stalled in its critical section, or one that
    /// holds it on purpose).
    pub(crate) fn lock_by(&self, deadline: Deadline) -> Option<Guard<'_>> {
        let deadline = match deadline {
            Deadline::Never => return Some(self.lock()),
            Deadline::At(at) => Deadline::At(at.max(std::time::Instant::now() + LOCK_GRACE)),
        };
        match self.header().lock.lock_until(deadline) {
            Ok(g) => Some(g),
            Err(mp_heap::TryLockError::WouldBlock) => None,
            Err(mp_heap::TryLockError::OwnerDied(died)) => {
                let g = died.into_inner();
                self.ring().recover();
                Some(g)
            }
        }
    }

    /// Registers on `waiters` under `guard`, releases it, and sleeps until
    /// woken, at most until `deadline` and one [`WAIT_SLICE`]; `false`
    /// once the deadline has passed. The caller takes the lock again.
    pub(crate) fn sleep(&self, guard: Guard<'_>, waiters: &Waiters, deadline: Deadline) -> bool {
        let seen = waiters.prepare();
        drop(guard);
        waiters.sleep(seen, Deadline::after(Some(WAIT_SLICE)).min(deadline));
        !deadline.has_passed()
    }

    /// Wakes everyone waiting on anything (shutdown, lost items), after the
    /// lock was released.
    fn wake_everyone(&self) {
        let h = self.header();
        h.not_empty.wake_all();
        h.not_full.wake_all();
        h.all_done.wake_all();
    }

    /// Writes `enc` to the ring (an INLINE entry, or a datagram and its
    /// MARKER), with the lock held; `Ok(false)` if there is no room now.
    pub(crate) fn commit(&self, enc: &Encoded<'_>) -> Result<bool, QueueError> {
        let ring = self.ring();
        let result = match enc.route {
            Route::Ring => ring.push_inline(&enc.parts()),
            Route::Dgram | Route::Memfd => return self.commit_side(&ring, enc),
        };
        match result {
            Ok(done) => Ok(done),
            Err(Corrupt(_)) => {
                // A peer left the ring unreadable: drop what cannot be
                // read, and let the caller try again.
                ring.repair();
                Ok(false)
            }
        }
    }

    fn commit_side(&self, ring: &Ring<'_>, enc: &Encoded<'_>) -> Result<bool, QueueError> {
        let at = match ring.marker_room() {
            Ok(Some(at)) => at,
            Ok(None) => return Ok(false),
            Err(Corrupt(_)) => {
                ring.repair();
                return Ok(false);
            }
        };
        let seq = self.header().next_side_seq();
        let fds: Vec<BorrowedFd<'_>> = enc.fds().iter().map(AsFd::as_fd).collect();
        let parts = enc.parts();
        let payload = match (&enc.route, &enc.big) {
            (Route::Memfd, Some(Big::Sealed(fd, len))) => Payload::Memfd(fd, *len),
            (Route::Memfd, Some(Big::Pooled(lease, len))) => {
                Payload::Pooled(lease.fd(), *len, lease.generation())
            }
            _ => Payload::Inline(&parts),
        };
        if !self.parts.side.send(seq, &payload, &fds)? {
            return Ok(false);
        }
        if let Some(Big::Pooled(lease, _)) = &enc.big {
            lease.sent();
        }
        ring.push_marker(at, seq);
        Ok(true)
    }

    /// After a put committed `enc` under `guard`: ends its operation,
    /// releases the lock, wakes a consumer, tells the item it arrived.
    fn finish_put(&self, txn: Txn<'_>, guard: Guard<'_>, enc: Encoded<'_>) {
        drop(txn);
        drop(guard);
        self.header().not_empty.wake_one();
        enc.delivered();
    }

    /// Accepts `enc` (room under `maxsize` was checked, the lock is held):
    /// commits it now if this process has no backlog and the ring has
    /// room, or hands it to this process's feeder thread.
    pub(crate) fn accept(
        self: &Arc<Self>,
        guard: Guard<'_>,
        local: &Local,
        state: &mut feeder::State,
        enc: Encoded<'_>,
    ) -> Result<(), QueueError> {
        let h = self.header();
        let joinable = self.kind == Kind::Joinable;
        let txn = Txn::begin(h);
        h.set_accepted(h.accepted().saturating_add(1));
        if joinable {
            h.set_unfinished(h.unfinished().saturating_add(1));
        }
        if state.backlog() == 0 {
            match self.commit(&enc) {
                Ok(true) => {
                    self.finish_put(txn, guard, enc);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    h.set_accepted(h.accepted().saturating_sub(1));
                    if joinable {
                        h.set_unfinished(h.unfinished().saturating_sub(1));
                    }
                    return Err(e);
                }
            }
        }
        state.slot = txn.add_pending(local.stamp(), state.slot, 1);
        drop(txn);
        drop(guard);
        if let Err(e) = feeder::ensure_running(self, state) {
            self.withdraw(local, state, 1);
            return Err(QueueError::Io(e));
        }
        state.buffer.push_back(enc.into_owned());
        local.notify();
        Ok(())
    }

    /// Takes `n` items accepted by this process back (they will never be
    /// committed): they no longer count as accepted, nor as unfinished.
    pub(crate) fn withdraw(&self, local: &Local, state: &mut feeder::State, n: u32) {
        if n == 0 {
            return;
        }
        let h = self.header();
        let guard = self.lock();
        let txn = Txn::begin(h);
        h.set_accepted(h.accepted().saturating_sub(n));
        if self.kind == Kind::Joinable {
            h.set_unfinished(h.unfinished().saturating_sub(n));
        }
        txn.sub_pending(local.stamp(), state.slot, n);
        drop(txn);
        drop(guard);
        self.wake_everyone();
    }

    /// A put: waits (until `deadline`) for room under `maxsize`, then
    /// accepts the item.
    pub(crate) fn put(
        self: &Arc<Self>,
        enc: Encoded<'_>,
        deadline: Deadline,
    ) -> Result<(), QueueError> {
        let local = self.local();
        let mut last_look = false;
        loop {
            let mut state = local.state();
            if local.is_closed() {
                return Err(QueueError::Closed);
            }
            let Some(guard) = self.lock_by(deadline) else {
                return Err(QueueError::Full);
            };
            let h = self.header();
            if h.flags() & SHUTDOWN != 0 {
                return Err(QueueError::ShutDown);
            }
            if h.accepted() < h.maxsize() {
                return self.accept(guard, local, &mut state, enc);
            }
            drop(state);
            if last_look {
                return Err(QueueError::Full);
            }
            let in_time = if deadline.has_passed() {
                drop(guard);
                false
            } else {
                self.sleep(guard, &h.not_full, deadline)
            };
            // (The lock is released here: reclaiming takes it.)
            if !in_time {
                // One last look, for producers that died with items.
                self.reclaim_dead(local);
                last_look = true;
            } else if local.reclaim_due() {
                self.reclaim_dead(local);
            }
        }
    }

    /// Looks for dead producers if this process has not lately (the lock
    /// must not be held).
    pub(crate) fn maybe_reclaim(&self) {
        let local = self.local();
        if local.reclaim_due() {
            self.reclaim_dead(local);
        }
    }

    /// A SimpleQueue's put: no feeder; writes under the lock, waiting for
    /// room in the ring as long as it takes.
    pub(crate) fn put_now(&self, enc: Encoded<'_>) -> Result<(), QueueError> {
        let local = self.local();
        let h = self.header();
        loop {
            if local.is_closed() {
                return Err(QueueError::Closed);
            }
            let guard = self.lock();
            let txn = Txn::begin(h);
            match self.commit(&enc) {
                Ok(true) => {
                    h.set_accepted(h.accepted().saturating_add(1));
                    self.finish_put(txn, guard, enc);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => return Err(e),
            }
            drop(txn);
            self.sleep(guard, &h.not_full, Deadline::Never);
        }
    }

    /// A get: the next item, waiting until `deadline`.
    pub(crate) fn get(&self, deadline: Deadline) -> Result<Taken, QueueError> {
        let local = self.local();
        if local.is_closed() {
            return Err(QueueError::Closed);
        }
        let h = self.header();
        if h.items() == 0 && !deadline.has_passed() {
            local.spin_until(|| h.items() > 0 || h.flags() & SHUTDOWN != 0);
        }
        loop {
            let Some(guard) = self.lock_by(deadline) else {
                return Err(QueueError::Empty);
            };
            let ring = self.ring();
            let txn = Txn::begin(h);
            let mut buf = Vec::new();
            match ring.pop(&mut buf) {
                Ok(Some(entry)) => {
                    h.set_accepted(h.accepted().saturating_sub(1));
                    drop(txn);
                    let taken = match entry {
                        Entry::Inline => Ok(Taken::Bytes(buf)),
                        Entry::Marker(seq) => match self.parts.side.recv(seq) {
                            Ok(Received::Item { fds, payload }) => Ok(Taken::Side(fds, payload)),
                            Ok(Received::Missing) => Err(QueueError::Corrupt(
                                "an item's datagram was not on the side channel".into(),
                            )),
                            Err(side::SideError::Corrupt(why)) => {
                                Err(QueueError::Corrupt(why.into()))
                            }
                            Err(side::SideError::Io(e)) => Err(QueueError::Io(e)),
                        },
                    };
                    drop(guard);
                    h.not_full.wake_all();
                    return taken;
                }
                Ok(None) => drop(txn),
                Err(Corrupt(why)) => {
                    ring.repair();
                    drop(txn);
                    drop(guard);
                    self.wake_everyone();
                    return Err(QueueError::Corrupt(why.into()));
                }
            }
            if h.flags() & SHUTDOWN != 0 && h.accepted() == 0 {
                return Err(QueueError::ShutDown);
            }
            if deadline.has_passed() {
                return Err(QueueError::Empty);
            }
            self.sleep(guard, &h.not_empty, deadline);
            if local.reclaim_due() {
                // Items accepted and never coming (they sat in the feeder
                // of a process that died) must stop counting, or a get
                // after a shutdown would wait for them.
                self.reclaim_dead(local);
            }
        }
    }

    /// CPython 3.13's `shutdown(immediate)`, for every process.
    pub(crate) fn shutdown(&self, immediate: bool) {
        let h = self.header();
        let guard = self.lock();
        let txn = Txn::begin(h);
        let mut flags = h.flags() | SHUTDOWN;
        if immediate {
            flags |= IMMEDIATE;
        }
        h.set_flags(flags);
        let mut markers = Vec::new();
        if immediate {
            let dropped = h.items();
            markers = self.ring().clear();
            h.set_accepted(h.accepted().saturating_sub(dropped));
            if self.kind == Kind::Joinable {
                h.set_unfinished(h.unfinished().saturating_sub(dropped));
            }
        }
        drop(txn);
        for seq in markers {
            // Their fds close as the datagrams go; a pooled file is handed
            // back to its producer at once.
            if let Ok(Received::Item {
                payload: ReceivedPayload::Pooled(fd, _, generation),
                ..
            }) = self.parts.side.recv(seq)
            {
                crate::pool::mark_done(&fd, generation);
            }
        }
        drop(guard);
        self.wake_everyone();
    }

    /// JoinableQueue's `task_done()`.
    pub(crate) fn task_done(&self) -> Result<(), QueueError> {
        let h = self.header();
        let guard = self.lock();
        let txn = Txn::begin(h);
        let n = h.unfinished();
        if n == 0 {
            return Err(QueueError::TaskDoneTooManyTimes);
        }
        h.set_unfinished(n - 1);
        drop(txn);
        drop(guard);
        if n == 1 {
            h.all_done.wake_all();
        }
        Ok(())
    }

    /// JoinableQueue's `join()`: until every item put is done, at most
    /// until `deadline`; whether they are.
    pub(crate) fn join_tasks(&self, deadline: Deadline) -> bool {
        let local = self.local();
        let h = self.header();
        loop {
            let Some(guard) = self.lock_by(deadline) else {
                return h.unfinished() == 0;
            };
            if h.unfinished() == 0 {
                return true;
            }
            if deadline.has_passed() {
                return false;
            }
            self.sleep(guard, &h.all_done, deadline);
            if local.reclaim_due() {
                self.reclaim_dead(local);
            }
        }
    }

    /// Takes back the pending items of producers that died with items in
    /// their feeders (judged outside the lock, from `/proc`): they no
    /// longer count as accepted or unfinished, and waiters are woken.
    pub(crate) fn reclaim_dead(&self, local: &Local) {
        let h = self.header();
        let me = local.stamp().bits();
        let dead: Vec<(usize, u64)> = h
            .pending_owners()
            .into_iter()
            .filter(|&(_, stamp)| {
                stamp != me && ProcessStamp::from_bits(stamp).is_some_and(|p| !p.is_alive())
            })
            .collect();
        if dead.is_empty() {
            return;
        }
        let guard = self.lock();
        let mut lost = 0;
        for (i, stamp) in dead {
            let txn = Txn::begin(h);
            lost += txn.reclaim(i, stamp);
        }
        drop(guard);
        if lost > 0 {
            self.wake_everyone();
        }
    }

    /// Commits a feeder's batch, in order, as room comes; discards it if
    /// the queue was shut down with `immediate`.
    pub(crate) fn flush_batch(
        &self,
        local: &Local,
        batch: &mut std::collections::VecDeque<Encoded<'static>>,
    ) {
        let h = self.header();
        let slot = local.state().slot;
        while !batch.is_empty() {
            let guard = self.lock();
            let mut committed = 0;
            let mut changed = false;
            let mut delivered = Vec::new();
            while let Some(enc) = batch.front() {
                if h.flags() & IMMEDIATE != 0 {
                    let n = batch.len() as u32;
                    let txn = Txn::begin(h);
                    h.set_accepted(h.accepted().saturating_sub(n));
                    if self.kind == Kind::Joinable {
                        h.set_unfinished(h.unfinished().saturating_sub(n));
                    }
                    txn.sub_pending(local.stamp(), slot, n);
                    drop(txn);
                    batch.clear();
                    changed = true;
                    break;
                }
                let txn = Txn::begin(h);
                match self.commit(enc) {
                    Ok(true) => {
                        txn.sub_pending(local.stamp(), slot, 1);
                        committed += 1;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        // CPython's feeder prints the error and drops the
                        // item, releasing its share of maxsize.
                        eprintln!(
                            "mp-queue: the feeder thread of a queue of {} dropped an item: {e:?}",
                            self.type_name
                        );
                        h.set_accepted(h.accepted().saturating_sub(1));
                        if self.kind == Kind::Joinable {
                            h.set_unfinished(h.unfinished().saturating_sub(1));
                        }
                        txn.sub_pending(local.stamp(), slot, 1);
                        changed = true;
                        drop(txn);
                        batch.pop_front();
                        continue;
                    }
                }
                drop(txn);
                delivered.extend(batch.pop_front());
            }
            // Room comes when consumers take items: register before the
            // lock goes, wake the consumers of what was committed, sleep.
            let room = (!batch.is_empty()).then(|| h.not_full.prepare());
            drop(guard);
            match committed {
                0 => {}
                1 => h.not_empty.wake_one(),
                _ => h.not_empty.wake_all(),
            }
            if changed {
                self.wake_everyone();
            }
            if let Some(seen) = room {
                h.not_full.sleep(seen, Deadline::after(Some(WAIT_SLICE)));
            }
            for enc in delivered {
                enc.delivered();
            }
            if !batch.is_empty() && local.reclaim_due() {
                self.reclaim_dead(local);
            }
        }
    }
}

/// Decodes what a get took, outside the lock (a memfd's payload is read
/// here: for a `Vec<u8>` item straight into the vector returned).
pub(crate) fn decode_taken<T: serde::de::DeserializeOwned + 'static>(
    taken: Taken,
) -> Result<T, QueueError> {
    let corrupt = |e: side::SideError| match e {
        side::SideError::Corrupt(why) => QueueError::Corrupt(why.into()),
        side::SideError::Io(e) => QueueError::Io(e),
    };
    let (fds, fd, p, generation) = match taken {
        Taken::Bytes(payload) => return encode::decode(payload, Vec::new()),
        Taken::Side(fds, ReceivedPayload::Bytes(payload)) => {
            return encode::decode(payload, fds);
        }
        Taken::Side(fds, ReceivedPayload::Memfd(fd, len)) => {
            let p = side::MemfdPayload { len, sealed: true };
            (fds, fd, p, None)
        }
        Taken::Side(fds, ReceivedPayload::Pooled(fd, len, generation)) => {
            let p = side::MemfdPayload { len, sealed: false };
            (fds, fd, p, Some(generation))
        }
    };
    let item = if encode::is_bytes::<T>() && fds.is_empty() {
        side::read_memfd_bytes(&fd, p)
            .map_err(corrupt)
            .map(|data| encode::give_bytes(data).expect("T is Vec<u8>"))
    } else {
        let mut payload = Vec::new();
        side::read_memfd(&fd, p, &mut payload).map_err(corrupt)?;
        encode::decode(payload, fds)
    };
    if let Some(generation) = generation {
        // Copied out (or refused): the producer may write the file again.
        crate::pool::mark_done(&fd, generation);
    }
    item
}
