//! What the worker threads run: units of work (one `apply_async`, one
//! chunk of a `map` or an `imap`), and the panic capture around each call.
//!
//! A submission is one allocation: the task (its input, and the slot its
//! outcome goes to) is one `Arc`, queued as `Arc<dyn Unit>` with the index
//! of the chunk, and read by its `AsyncResult` through the same `Arc`.

use std::any::Any;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{PoolError, Result};
use super::result::{Callbacks, HasSlot, ResultSlot, Slot, lock};

/// Work a worker thread can run, or drop when the pool stops.
pub(crate) trait Unit: Send + Sync {
    /// Runs chunk `index` (once: a unit that was cancelled, or already
    /// ran, does nothing).
    fn run(&self, index: usize);
    /// Fails chunk `index` with `error` unless it has finished; its input
    /// is dropped, and a later end of a running call is discarded.
    fn cancel(&self, index: usize, error: &PoolError);
}

/// One entry of the pool's queue: chunk `index` of `unit`.
#[derive(Clone)]
pub(crate) struct Queued {
    pub(crate) unit: Arc<dyn Unit>,
    pub(crate) index: usize,
}

impl Queued {
    pub(crate) fn run(&self) {
        self.unit.run(self.index)
    }

    pub(crate) fn cancel(&self, error: &PoolError) {
        self.unit.cancel(self.index, error)
    }
}

/// The chunks of one `map`, handed out in order to whichever workers hold
/// a share of it: a `map` of many chunks is a few channel messages (one
/// per worker at most), not one per chunk, and a chunk is taken with one
/// atomic step.
pub(crate) struct Batch {
    unit: Arc<dyn Unit>,
    /// The next chunk to hand out (past `end`: none left).
    next: AtomicUsize,
    end: usize,
}

impl Batch {
    pub(crate) fn new(unit: Arc<dyn Unit>, chunks: usize) -> Batch {
        Batch {
            unit,
            next: AtomicUsize::new(0),
            end: chunks,
        }
    }

    /// The next chunk, once (to a worker that runs it, or to a stopping
    /// pool that fails it).
    pub(crate) fn claim(&self) -> Option<Queued> {
        if self.next.load(Ordering::Relaxed) >= self.end {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.end).then(|| Queued {
            unit: self.unit.clone(),
            index,
        })
    }

    /// Fails every chunk not handed out yet with `error`.
    pub(crate) fn cancel_rest(&self, error: &PoolError) {
        while let Some(q) = self.claim() {
            q.cancel(error);
        }
    }
}

thread_local! {
    /// Set while this thread runs a task (or an initializer): the panic
    /// hook then records the panic instead of printing it.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// The last panic's message and location, as the hook saw them.
    static PANIC: Cell<Option<(String, Option<String>)>> = const { Cell::new(None) };
}

/// Installs (once per process) the panic hook that keeps a task's panic
/// quiet and records its message and location for the task's error, as
/// mp-pool's workers do; other panics go to the hook that was there before.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                PANIC.with(|p| p.set(Some((payload_text(info.payload()), location))));
            } else {
                previous(info)
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic whose payload is not a string".into())
}

/// Calls `f`, turning its panic into [`PoolError::Panicked`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T> {
    IN_TASK.with(|t| t.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(false));
    result.map_err(|payload| {
        // The hook's record, if this panic went through it (a
        // `resume_unwind` does not).
        let (message, location) = PANIC
            .with(Cell::take)
            .unwrap_or_else(|| (payload_text(&*payload), None));
        PoolError::Panicked { message, location }
    })
}

/// `apply_async`: the function and its argument until a worker takes them,
/// and then the result, in one slot (one lock, one allocation).
pub(crate) struct ApplyTask<F, A, R> {
    slot: Slot<R, (F, A)>,
}

impl<F, A, R> ApplyTask<F, A, R> {
    pub(crate) fn new(f: F, args: A, callbacks: Callbacks<R>) -> ApplyTask<F, A, R> {
        ApplyTask {
            slot: Slot::with_input(callbacks, (f, args)),
        }
    }
}

impl<F, A, R> Unit for ApplyTask<F, A, R>
where
    F: FnOnce(A) -> R + Send,
    A: Send,
    R: Send,
{
    fn run(&self, _: usize) {
        if let Some((f, args)) = self.slot.take_input() {
            self.slot.complete(guarded(move || f(args)));
        }
    }

    fn cancel(&self, _: usize, error: &PoolError) {
        self.slot.complete(Err(error.clone()));
    }
}

impl<F, A, R> HasSlot<R> for ApplyTask<F, A, R>
where
    F: Send,
    A: Send,
    R: Send,
{
    fn slot(&self) -> &dyn ResultSlot<R> {
        &self.slot
    }
}

enum Chunk<A, R> {
    Queued(Vec<A>),
    Running,
    Done(Vec<R>),
    Failed(PoolError),
}

/// `map_async`: the function, each chunk's input and then its results,
/// and the slot of the whole list.
pub(crate) struct MapTask<F, A, R> {
    f: F,
    chunks: Box<[Mutex<Chunk<A, R>>]>,
    /// Chunks not finished yet: the one that brings it to 0 fills the slot.
    remaining: AtomicUsize,
    items: usize,
    slot: Slot<Vec<R>>,
}

impl<F, A, R> MapTask<F, A, R> {
    /// A task over `chunks` (at least one).
    pub(crate) fn new(f: F, chunks: Vec<Vec<A>>, slot: Slot<Vec<R>>) -> MapTask<F, A, R> {
        let items = chunks.iter().map(Vec::len).sum();
        MapTask {
            f,
            remaining: AtomicUsize::new(chunks.len()),
            chunks: chunks
                .into_iter()
                .map(|c| Mutex::new(Chunk::Queued(c)))
                .collect(),
            items,
            slot,
        }
    }

    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Files chunk `index`'s outcome unless it has one; the last one
    /// assembles the list (or the first error by position).
    fn finish(&self, index: usize, outcome: Result<Vec<R>>) {
        {
            let mut chunk = lock(&self.chunks[index]);
            if !matches!(*chunk, Chunk::Queued(_) | Chunk::Running) {
                return;
            }
            let old = std::mem::replace(
                &mut *chunk,
                match outcome {
                    Ok(v) => Chunk::Done(v),
                    Err(e) => Chunk::Failed(e),
                },
            );
            drop(chunk);
            // A cancelled chunk's input is dropped here, unlocked.
            drop(old);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut out = Vec::with_capacity(self.items);
        for chunk in self.chunks.iter() {
            let taken = std::mem::replace(&mut *lock(chunk), Chunk::Running);
            match taken {
                Chunk::Done(v) => out.extend(v),
                Chunk::Failed(e) => return self.slot.complete(Err(e)),
                Chunk::Queued(_) | Chunk::Running => unreachable!("every chunk has finished"),
            }
        }
        self.slot.complete(Ok(out));
    }
}

impl<F, A, R> Unit for MapTask<F, A, R>
where
    F: Fn(A) -> R + Send + Sync,
    A: Send,
    R: Send,
{
    fn run(&self, index: usize) {
        let items = {
            let mut chunk = lock(&self.chunks[index]);
            match std::mem::replace(&mut *chunk, Chunk::Running) {
                Chunk::Queued(items) => items,
                other => {
                    *chunk = other;
                    return;
                }
            }
        };
        // As CPython's `list(map(f, chunk))`, a chunk stops at its first
        // failure (the map reports the first error by position anyway), so
        // one guard covers the chunk.
        let out = guarded(|| items.into_iter().map(&self.f).collect());
        self.finish(index, out);
    }

    fn cancel(&self, index: usize, error: &PoolError) {
        self.finish(index, Err(error.clone()));
    }
}

impl<F, A, R> HasSlot<Vec<R>> for MapTask<F, A, R>
where
    F: Send + Sync,
    A: Send,
    R: Send,
{
    fn slot(&self) -> &dyn ResultSlot<Vec<R>> {
        &self.slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::result::AsyncResult;

    #[test]
    fn a_panic_becomes_the_error_with_its_location() {
        install_panic_hook();
        let e = guarded(|| -> u8 { panic!("boom {}", 7) }).unwrap_err();
        match e {
            PoolError::Panicked { message, location } => {
                assert_eq!(message, "boom 7");
                assert!(location.unwrap().contains("task.rs"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(guarded(|| 3).unwrap(), 3);
    }

    #[test]
    fn a_map_task_assembles_in_order_and_cancels_what_is_left() {
        let task = Arc::new(MapTask::new(
            |n: u32| n * 10,
            vec![vec![1, 2], vec![3]],
            Slot::new(Callbacks::new()),
        ));
        let result = AsyncResult::new(task.clone() as Arc<dyn HasSlot<Vec<u32>>>);
        task.run(1);
        assert!(!result.ready());
        task.run(0);
        task.run(0);
        assert_eq!(result.get(None).unwrap(), [10, 20, 30]);

        let task = Arc::new(MapTask::new(
            |n: u32| n,
            vec![vec![1], vec![2]],
            Slot::new(Callbacks::new()),
        ));
        let result = AsyncResult::new(task.clone() as Arc<dyn HasSlot<Vec<u32>>>);
        task.run(0);
        task.cancel(1, &PoolError::Terminated);
        task.run(1);
        assert!(matches!(result.get(None), Err(PoolError::Terminated)));
    }
}
