//! Finalizers: work that must be done before this process ends (CPython's
//! `util.Finalize` with an `exitpriority`, run by `_run_finalizers` in
//! `util._exit_function`, which is our [`shutdown`](crate::shutdown)).
//!
//! A queue's feeder thread is the reason they exist: a process that put
//! items and then ends must first hand them to the queue, whichever way it
//! ends (returning from its target or from `main`, [`exit`](crate::exit),
//! `std::process::exit`). Every one of those paths runs
//! [`shutdown`](crate::shutdown), which runs the finalizers of priority 0
//! and above, then terminates daemonic children and joins the others, then
//! runs the rest, as CPython's exit function does. Crates above this one
//! (mp-queue) register them; this crate knows nothing about queues.
//!
//! Finalizers belong to the process that registered them: a forked child
//! starts with none (CPython clears `_finalizer_registry` in `_bootstrap`),
//! since the threads and buffers they would flush exist only in the parent.

use std::sync::{Mutex, MutexGuard};

/// One registered finalizer.
struct Entry {
    id: u64,
    priority: i32,
    run: Box<dyn FnOnce() + Send>,
}

/// The registry of this process.
pub(crate) struct Registry {
    /// The process the entries belong to (0 before the first use): a
    /// registry seen from another pid is a fork child's copy.
    pid: u32,
    next_id: u64,
    entries: Vec<Entry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pid: 0,
    next_id: 1,
    entries: Vec::new(),
});

/// The registry, emptied first if it was copied from another process by a
/// fork that did not go through this crate (a raw `fork(2)`).
fn registry() -> MutexGuard<'static, Registry> {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id();
    if reg.pid != me {
        forget_entries(&mut reg);
        reg.pid = me;
    }
    reg
}

/// Drops a copied parent's entries without running their destructors:
/// what they hold (threads, buffers) is the parent's, and a fork child
/// frees nothing it inherited.
fn forget_entries(reg: &mut Registry) {
    std::mem::forget(std::mem::take(&mut reg.entries));
}

/// Held across the fork start method's `fork(2)`, so that the child's copy
/// of the registry is consistent.
pub(crate) fn lock_for_fork() -> MutexGuard<'static, Registry> {
    registry()
}

/// In a fork child, on the copy held across the fork: no finalizers.
pub(crate) fn clear_in_fork_child(reg: &mut Registry) {
    forget_entries(reg);
    reg.pid = std::process::id();
}

/// Registers `run` to be called once, in this process, when it shuts down
/// (CPython's `Finalize(obj, callback, exitpriority=priority)`): those of
/// priority 0 and above before daemonic children are terminated and the
/// others joined, the rest afterwards; higher priorities first, and among
/// equal ones the later registered first.
///
/// Registering one also makes the main process shut down when it exits
/// (an `atexit` hook, which the first [`Process::start`](crate::Process::start)
/// otherwise installs), so that finalizers run even in a program that
/// never started a child. A panicking finalizer is reported on stderr and
/// the others still run.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static FLUSHED: AtomicBool = AtomicBool::new(false);
/// let f = mp_context::register_finalizer(-5, || FLUSHED.store(true, Ordering::Relaxed));
/// assert!(f.is_pending());
/// mp_context::shutdown(); // what every way out of a process does
/// assert!(FLUSHED.load(Ordering::Relaxed) && !f.is_pending());
/// ```
pub fn register_finalizer(priority: i32, run: impl FnOnce() + Send + 'static) -> Finalizer {
    let id = {
        let mut reg = registry();
        let id = reg.next_id;
        reg.next_id += 1;
        reg.entries.push(Entry {
            id,
            priority,
            run: Box::new(run),
        });
        id
    };
    crate::process::ensure_atexit();
    Finalizer {
        id,
        pid: std::process::id(),
    }
}

/// A registered finalizer (see [`register_finalizer`]): cancel it, or run
/// it early.
#[derive(Debug)]
pub struct Finalizer {
    id: u64,
    pid: u32,
}

impl Finalizer {
    /// Takes the entry out of the registry, if this process registered it
    /// and it has not run.
    fn take(&self) -> Option<Entry> {
        if self.pid != std::process::id() {
            return None;
        }
        let mut reg = registry();
        let at = reg.entries.iter().position(|e| e.id == self.id)?;
        Some(reg.entries.swap_remove(at))
    }

    /// Removes it without running it (CPython's `Finalize.cancel`); `false`
    /// if it had already run or been cancelled.
    pub fn cancel(&self) -> bool {
        self.take().is_some()
    }

    /// Runs it now, if it is still pending (CPython's `Finalize.__call__`);
    /// `false` if it had already run or been cancelled.
    pub fn run(&self) -> bool {
        match self.take() {
            Some(entry) => {
                call(entry);
                true
            }
            None => false,
        }
    }

    /// Whether it is still registered (CPython's `still_active`).
    pub fn is_pending(&self) -> bool {
        self.pid == std::process::id() && registry().entries.iter().any(|e| e.id == self.id)
    }
}

fn call(entry: Entry) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(entry.run)).is_err() {
        eprintln!("mp-context: a finalizer panicked");
    }
}

/// Runs the pending finalizers of priority `min` and above (all of them
/// for `None`), highest priority first, each outside the registry's lock
/// (so that a finalizer may register or cancel others).
pub(crate) fn run_finalizers(min: Option<i32>) {
    loop {
        let next = {
            let mut reg = registry();
            let best = reg
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| min.is_none_or(|m| e.priority >= m))
                .max_by_key(|(_, e)| (e.priority, e.id))
                .map(|(i, _)| i);
            best.map(|i| reg.entries.swap_remove(i))
        };
        match next {
            Some(entry) => call(entry),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn finalizers_run_by_priority_then_latest_first_and_once() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let push = |tag: &'static str| {
            let order = order.clone();
            move || order.lock().unwrap().push(tag)
        };
        // As CPython's _TestFinalize: by priority, the later first.
        let _a = register_finalizer(10, push("a"));
        let _b = register_finalizer(10, push("b"));
        let cancelled = register_finalizer(5, push("cancelled"));
        let early = register_finalizer(3, push("early"));
        let _low = register_finalizer(-5, push("low"));
        let _mid = register_finalizer(0, push("mid"));
        assert!(cancelled.cancel());
        assert!(!cancelled.cancel());
        assert!(early.run());
        assert!(!early.run() && !early.is_pending());
        run_finalizers(Some(0));
        assert_eq!(*order.lock().unwrap(), ["early", "b", "a", "mid"]);
        run_finalizers(None);
        run_finalizers(None);
        assert_eq!(*order.lock().unwrap(), ["early", "b", "a", "mid", "low"]);
    }
}
