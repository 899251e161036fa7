//! The thread-pool rows (issue 13): trivial tasks (`n + 1`) through
//! `apply_async`, `map` with `chunksize=1` and `map` with the default
//! chunk size, on two worker threads, in this process.
//!
//! - ours: mp-dummy's `Pool` (a closure per task);
//! - CPython: `multiprocessing.pool.ThreadPool` (`python/pool.py
//!   --threads`);
//! - raw: the plain pool of std threads a Rust programmer writes in ten
//!   lines: boxed jobs over an `mpsc` channel whose receiver the workers
//!   share behind a `Mutex`, results over one `mpsc` channel (for `map`,
//!   each job maps one chunk and sends back its `Vec`, reassembled in
//!   order). References: the other textbook queue, a `Mutex<VecDeque>`
//!   with a `Condvar` (`raw.std_pool_condvar_*`), and, for `apply_async`,
//!   the channel pool with a result slot per task (an `Arc` of a `Mutex`
//!   and a `Condvar`, waited for in order), which is what a result handle
//!   per task, as `AsyncResult`, costs a plain pool;
//! - the Rust crate, for `apply_async`: the `threadpool` crate
//!   (`execute` of a closure that sends its result over an `mpsc`
//!   channel).
//!
//! Each repetition starts its own pool (and waits until both threads have
//! run a task) before the clock starts; the CPU time counts the whole
//! repetition, the pool's start and stop included.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::measure::Plan;
use crate::table::{Goal, Rep, Unit};
use crate::{Contender, PyFigure, Spec, Turns, Who, contender, spec, sys};

/// Worker threads in every row (as the process pool rows).
const WORKERS: usize = 2;

const TASKS: Unit = Unit::Rate("task/s");

fn inc(n: u64) -> u64 {
    n + 1
}

/// The sum of `inc(i)` for `i` in `0..n`.
fn expected(n: u64) -> u64 {
    n * (n + 1) / 2
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("error: {e:?}")
}

/// What a row submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ApplyAsync,
    Map1,
    Map,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::ApplyAsync => "apply_async",
            Op::Map1 => "map1",
            Op::Map => "map",
        }
    }

    /// The chunk size of a map (`None`: CPython's default).
    fn chunksize(self) -> Option<usize> {
        match self {
            Op::Map1 => Some(1),
            Op::ApplyAsync | Op::Map => None,
        }
    }
}

/// Runs `plan.reps` repetitions of `block(n)`, which returns the wall
/// seconds of its timed part and the sum of the results; CPU time counts
/// the whole block.
fn repeat(
    plan: &Plan,
    mut block: impl FnMut(u64) -> Result<(f64, u64), String>,
) -> Result<Vec<Rep>, String> {
    if plan.warmup > 0 {
        block(plan.warmup)?;
    }
    (0..plan.reps)
        .map(|_| {
            let cpu0 = sys::cpu_now();
            let (wall, sum) = block(plan.n)?;
            if sum != expected(plan.n) {
                return Err(format!("error: wrong results ({sum})"));
            }
            Ok(Rep {
                ops: plan.n as f64,
                wall,
                cpu: sys::cpu_now() - cpu0,
            })
        })
        .collect()
}

/// Ours: mp-dummy's `Pool`.
fn ours(op: Op, plan: &Plan) -> Result<Vec<Rep>, String> {
    repeat(plan, |n| {
        let pool = mp_dummy::Pool::new(Some(WORKERS)).map_err(err)?;
        pool.map(inc, 0..WORKERS as u64, Some(1)).map_err(err)?;
        let t0 = Instant::now();
        let sum = match op {
            Op::ApplyAsync => {
                let pending = (0..n)
                    .map(|i| pool.apply_async(inc, i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                pending
                    .iter()
                    .map(|r| r.get(None))
                    .sum::<Result<u64, _>>()
                    .map_err(err)?
            }
            Op::Map1 | Op::Map => pool
                .map(inc, 0..n, op.chunksize())
                .map_err(err)?
                .into_iter()
                .sum(),
        };
        let wall = t0.elapsed().as_secs_f64();
        pool.close();
        pool.join().map_err(err)?;
        Ok((wall, sum))
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// The queue of a plain pool.
trait JobQueue: Send + Sync + 'static {
    fn push(&self, job: Job);
    /// The next job; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<Job>;
    fn close(&self);
}

/// Jobs on a `Mutex<VecDeque>` with a `Condvar`.
#[derive(Default)]
struct CondvarQueue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

impl JobQueue for CondvarQueue {
    fn push(&self, job: Job) {
        self.jobs.lock().expect("no panics here").0.push_back(job);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Job> {
        let mut jobs = self.jobs.lock().expect("no panics here");
        loop {
            if let Some(job) = jobs.0.pop_front() {
                return Some(job);
            }
            if jobs.1 {
                return None;
            }
            jobs = self.ready.wait(jobs).expect("no panics here");
        }
    }

    fn close(&self) {
        self.jobs.lock().expect("no panics here").1 = true;
        self.ready.notify_all();
    }
}

/// Jobs over an `mpsc` channel, the receiver shared behind a `Mutex`.
struct ChannelQueue {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    rx: Mutex<mpsc::Receiver<Job>>,
}

impl Default for ChannelQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        ChannelQueue {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(rx),
        }
    }
}

impl JobQueue for ChannelQueue {
    fn push(&self, job: Job) {
        if let Some(tx) = &*self.tx.lock().expect("no panics here") {
            let _ = tx.send(job);
        }
    }

    fn pop(&self) -> Option<Job> {
        self.rx.lock().expect("no panics here").recv().ok()
    }

    fn close(&self) {
        self.tx.lock().expect("no panics here").take();
    }
}

/// A plain pool of [`WORKERS`] std threads on queue `Q`.
struct PlainPool<Q: JobQueue> {
    queue: Arc<Q>,
    threads: Vec<JoinHandle<()>>,
}

impl<Q: JobQueue + Default> PlainPool<Q> {
    fn new() -> PlainPool<Q> {
        let queue = Arc::new(Q::default());
        let threads = (0..WORKERS)
            .map(|_| {
                let q = queue.clone();
                std::thread::spawn(move || {
                    while let Some(job) = q.pop() {
                        job()
                    }
                })
            })
            .collect();
        PlainPool { queue, threads }
    }

    fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.queue.push(Box::new(job));
    }

    fn join(self) {
        self.queue.close();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The raw limit: the plain pool on queue `Q` doing what ours does.
fn plain<Q: JobQueue + Default>(op: Op, plan: &Plan) -> Result<Vec<Rep>, String> {
    repeat(plan, |n| {
        let pool = PlainPool::<Q>::new();
        let (tx, rx) = mpsc::channel::<(usize, Vec<u64>)>();
        for _ in 0..WORKERS {
            let tx = tx.clone();
            pool.execute(move || {
                let _ = tx.send((0, Vec::new()));
            });
        }
        for _ in 0..WORKERS {
            rx.recv().map_err(err)?;
        }
        let t0 = Instant::now();
        let sum = match op {
            Op::ApplyAsync => {
                let (tx, rx) = mpsc::channel::<u64>();
                for i in 0..n {
                    let tx = tx.clone();
                    pool.execute(move || {
                        let _ = tx.send(inc(i));
                    });
                }
                (0..n)
                    .map(|_| rx.recv().map_err(err))
                    .sum::<Result<u64, _>>()?
            }
            Op::Map1 | Op::Map => {
                let items: Vec<u64> = (0..n).collect();
                let size = op
                    .chunksize()
                    .unwrap_or_else(|| items.len().div_ceil(4 * WORKERS))
                    .max(1);
                let mut items = items.into_iter();
                let mut chunks = 0;
                loop {
                    let chunk: Vec<u64> = items.by_ref().take(size).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    let tx = tx.clone();
                    let index = chunks;
                    pool.execute(move || {
                        let _ = tx.send((index, chunk.into_iter().map(inc).collect()));
                    });
                    chunks += 1;
                }
                let mut parts: Vec<Option<Vec<u64>>> = (0..chunks).map(|_| None).collect();
                for _ in 0..chunks {
                    let (index, part) = rx.recv().map_err(err)?;
                    parts[index] = Some(part);
                }
                let mut out = Vec::with_capacity(n as usize);
                for part in parts {
                    out.extend(part.ok_or("error: a chunk is missing")?);
                }
                out.into_iter().sum()
            }
        };
        let wall = t0.elapsed().as_secs_f64();
        pool.join();
        Ok((wall, sum))
    })
}

/// A reference: the plain pool on an `mpsc` job channel, each task with
/// its own result slot (a `Mutex<Option<u64>>` and a `Condvar` in an
/// `Arc`), waited for in order: what an `AsyncResult` per task costs a
/// plain pool.
fn plain_slots(plan: &Plan) -> Result<Vec<Rep>, String> {
    type Slot = Arc<(Mutex<Option<u64>>, Condvar)>;
    repeat(plan, |n| {
        let pool = PlainPool::<ChannelQueue>::new();
        let warm: Vec<Slot> = (0..WORKERS).map(|_| Arc::default()).collect();
        let (t0, sum) = {
            for s in &warm {
                let s = s.clone();
                pool.execute(move || {
                    *s.0.lock().expect("no panics here") = Some(0);
                    s.1.notify_all();
                });
            }
            let take = |s: &Slot| {
                let mut value = s.0.lock().expect("no panics here");
                loop {
                    if let Some(v) = value.take() {
                        return v;
                    }
                    value = s.1.wait(value).expect("no panics here");
                }
            };
            let warmed: u64 = warm.iter().map(take).sum();
            if warmed != 0 {
                return Err("error: wrong warm-up results".into());
            }
            let t0 = Instant::now();
            let slots: Vec<Slot> = (0..n)
                .map(|i| {
                    let slot: Slot = Arc::default();
                    let s = slot.clone();
                    pool.execute(move || {
                        *s.0.lock().expect("no panics here") = Some(inc(i));
                        s.1.notify_all();
                    });
                    slot
                })
                .collect();
            (t0, slots.iter().map(take).sum::<u64>())
        };
        let wall = t0.elapsed().as_secs_f64();
        pool.join();
        Ok((wall, sum))
    })
}

/// The `threadpool` crate: `execute` of a closure that sends its result.
fn threadpool_crate(plan: &Plan) -> Result<Vec<Rep>, String> {
    repeat(plan, |n| {
        let pool = threadpool::ThreadPool::new(WORKERS);
        let (tx, rx) = mpsc::channel::<u64>();
        for _ in 0..WORKERS {
            let tx = tx.clone();
            pool.execute(move || {
                let _ = tx.send(0);
            });
        }
        for _ in 0..WORKERS {
            rx.recv().map_err(err)?;
        }
        let t0 = Instant::now();
        for i in 0..n {
            let tx = tx.clone();
            pool.execute(move || {
                let _ = tx.send(inc(i));
            });
        }
        let sum = (0..n)
            .map(|_| rx.recv().map_err(err))
            .sum::<Result<u64, _>>()?;
        let wall = t0.elapsed().as_secs_f64();
        pool.join();
        Ok((wall, sum))
    })
}

pub(crate) fn specs() -> Vec<Spec> {
    // (op, CPython's tasks a repetition, ours and raw do `scale` times as many)
    let rows = [
        (Op::ApplyAsync, 20_000u64, 10u64),
        (Op::Map1, 20_000, 10),
        (Op::Map, 200_000, 10),
    ];
    rows.into_iter()
        .map(|(op, n, scale)| {
            let name = format!("threadpool_{}", op.name());
            spec(name.clone(), move |ctx, refs| {
                let scaled = move |plan: &Plan| Plan {
                    warmup: plan.warmup * scale,
                    n: plan.n * scale,
                    ..*plan
                };
                let py_args = vec![
                    "--threads".to_string(),
                    "--op".to_string(),
                    op.name().to_string(),
                    "--workers".to_string(),
                    WORKERS.to_string(),
                ];
                let krate = (op == Op::ApplyAsync).then(|| {
                    let c = contender(Who::Crate, format!("threadpool.{name}"), move |_, plan| {
                        threadpool_crate(&scaled(plan))
                    });
                    ("threadpool", c)
                });
                let mut references: Vec<Contender> = vec![contender(
                    Who::Raw,
                    format!("raw.std_pool_condvar_{}", op.name()),
                    move |_, plan| plain::<CondvarQueue>(op, &scaled(plan)),
                )];
                if op == Op::ApplyAsync {
                    references.push(contender(
                        Who::Raw,
                        "raw.std_pool_mpsc_jobs_slot_per_task_apply_async",
                        move |_, plan| plain_slots(&scaled(plan)),
                    ));
                }
                Turns {
                    unit: TASKS,
                    plan: ctx.plan(n),
                    raw: contender(
                        Who::Raw,
                        format!("raw.std_pool_mpsc_jobs_{}", op.name()),
                        move |_, plan| plain::<ChannelQueue>(op, &scaled(plan)),
                    ),
                    refs: references,
                    ours: contender(Who::Ours, format!("ours.{name}"), move |_, plan| {
                        ours(op, &scaled(plan))
                    }),
                    cpython: PyFigure::Turn(contender(
                        Who::Py,
                        format!("py.{name}"),
                        move |ctx, plan| {
                            let plan = Plan { warmup: 1, ..*plan };
                            ctx.run_py("pool.py", &py_args, &plan)
                        },
                    )),
                    krate,
                    goals: vec![Goal::Py(10.0), Goal::Raw(0.5)],
                    name,
                }
                .measure(ctx, refs)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contender_answers_rightly_on_a_tiny_plan() {
        let plan = Plan {
            warmup: 2,
            n: 50,
            reps: 2,
        };
        for op in [Op::ApplyAsync, Op::Map1, Op::Map] {
            assert_eq!(ours(op, &plan).unwrap().len(), 2);
            assert_eq!(plain::<CondvarQueue>(op, &plan).unwrap().len(), 2);
            assert_eq!(plain::<ChannelQueue>(op, &plan).unwrap().len(), 2);
        }
        assert_eq!(threadpool_crate(&plan).unwrap().len(), 2);
        assert_eq!(plain_slots(&plan).unwrap().len(), 2);
    }
}
