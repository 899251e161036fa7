//! Test hooks (not part of the API): ways to die inside the ring's
//! critical section, so that the recovery of the next lock owner can be
//! tested without racing a `SIGKILL` against a few instructions.

use crate::core::Inner;
use crate::encode::Encoded;
use crate::ring::Txn;
use crate::{Item, Queue};

/// Ends the calling process with `SIGKILL`.
fn die() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught: this is not reached.
    std::process::abort()
}

/// Takes the ring's lock and leaves it held, with `op` half done.
fn die_holding_the_lock(inner: &Inner, op: impl FnOnce(&Inner, &Txn<'_>)) -> ! {
    let guard = inner.lock();
    let txn = Txn::begin(inner.header());
    op(inner, &txn);
    std::mem::forget(txn);
    std::mem::forget(guard);
    die()
}

/// Dies inside a put of `item`: the entry written and the counters moved,
/// the operation not finished.
pub fn die_inside_put<T: Item>(queue: &Queue<T>, item: &T) -> ! {
    let inner = &queue.core().inner;
    let enc = Encoded::new(item, inner.inline_max, None).expect("encodable");
    die_holding_the_lock(inner, |inner, _| {
        let h = inner.header();
        h.set_accepted(h.accepted() + 1);
        let _ = inner.commit(&enc);
    })
}

/// Dies inside a get: the head moved past an entry, the count not yet.
pub fn die_inside_get<T: Item>(queue: &Queue<T>) -> ! {
    let inner = &queue.core().inner;
    die_holding_the_lock(inner, |inner, _| {
        let mut scratch = Vec::new();
        let _ = inner.ring_for_hooks().pop(&mut scratch);
    })
}
