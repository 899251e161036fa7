//! The mp-queue rows: items one way from a producer process to a consumer
//! process (`Queue` and `SimpleQueue`, 64-byte `Vec<u8>` items, every
//! placement), a 64 MiB item one way, and a round trip through two
//! queues; each against CPython 3.13 (`python/queue_rows.py`) and the raw limit.
//!
//! - `*_1way_64B`: per operation the child puts one item and the parent
//!   gets one. The raw limit is the least a shared-memory queue does: a
//!   single-producer ring of 64-byte slots in a shared page, copied with
//!   atomics, the consumer (or a producer facing a full ring) spinning up
//!   to 20 us (as our gets do) and then asleep on a futex.
//! - `queue_64MiB`: one 64 MiB item per operation. The raw limit is the
//!   socketpair stream of the `stream_64MiB` row (both sides reuse their
//!   buffers). References: the same stream into a fresh buffer per message
//!   (what any receiver that hands out new memory pays: page faults), and
//!   the system calls of our big-item path, a fresh memfd per item
//!   (`pwrite`, its fd over a socketpair, `pread` into a fresh buffer).
//!   Fresh buffers get the huge-page advice ours get.
//! - `queue_rtt_64B`: the parent puts on one queue and gets from a second,
//!   the child the reverse; the raw limit is the futex ping-pong of the
//!   `sem_pingpong` rows.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use mp_queue::{Queue, QueueError, SimpleQueue};

use crate::measure::{Placement, Plan, forked_ops};
use crate::sys::{self, SharedWords};
use crate::table::{Goal, Rep, Unit};
use crate::{Contender, PyFigure, RTT, Spec, Turns, Who, contender, ours_in, python, spec};

const ITEMS: Unit = Unit::Rate("items/s");
const SMALL: usize = 64;
const BIG: usize = 64 << 20;
/// How long anything may take before a run counts as hung.
const PATIENCE: Duration = Duration::from_secs(120);
/// The spin of the raw ring before it sleeps (as mp-queue's gets).
const SPIN: Duration = Duration::from_micros(20);

fn qerr(e: QueueError) -> io::Error {
    io::Error::other(format!("{e:?}"))
}

/// Which of our queues a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Queue,
    Simple,
}

impl Kind {
    fn stem(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Simple => "simplequeue",
        }
    }

    fn py(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Simple => "simple",
        }
    }
}

/// One of our queues, as both peers hold it.
#[derive(Clone)]
enum AnyQueue {
    Queue(Queue<Vec<u8>>),
    Simple(SimpleQueue<Vec<u8>>),
}

impl AnyQueue {
    fn new(kind: Kind) -> io::Result<AnyQueue> {
        Ok(match kind {
            Kind::Queue => AnyQueue::Queue(Queue::new(0).map_err(qerr)?),
            Kind::Simple => AnyQueue::Simple(SimpleQueue::new().map_err(qerr)?),
        })
    }

    fn put(&self, item: &Vec<u8>) -> io::Result<()> {
        match self {
            AnyQueue::Queue(q) => q.put(item, true, None),
            AnyQueue::Simple(q) => q.put(item),
        }
        .map_err(qerr)
    }

    fn get(&self) -> io::Result<Vec<u8>> {
        match self {
            AnyQueue::Queue(q) => q.get(true, Some(PATIENCE)),
            AnyQueue::Simple(q) => q.get_timeout(Some(PATIENCE)),
        }
        .map_err(qerr)
    }

    /// Flushes this process's feeder (a forked peer leaves with `_exit`,
    /// which runs no finalizer).
    fn flush(&self) -> io::Result<()> {
        if let AnyQueue::Queue(q) = self {
            q.close();
            q.join_thread().map_err(qerr)?;
        }
        Ok(())
    }
}

/// Every operation a peer of `plan` runs (warm-up included).
fn total(plan: &Plan) -> u64 {
    plan.warmup + plan.n * plan.reps as u64
}

/// Ours, one way: the child puts `size`-byte items, the parent gets them.
fn ours_oneway(
    kind: Kind,
    size: usize,
    p: Placement,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    let last = total(plan);
    forked_ops(
        p,
        allowed,
        plan,
        || {
            let q = AnyQueue::new(kind)?;
            Ok((q.clone(), q))
        },
        move |q: AnyQueue| {
            move || {
                if q.get()?.len() != size {
                    return Err(io::Error::other("an item of the wrong size"));
                }
                Ok(())
            }
        },
        move |q: AnyQueue| {
            let item = vec![1u8; size];
            let mut done = 0;
            move || {
                q.put(&item)?;
                done += 1;
                if done == last {
                    q.flush()?;
                }
                Ok(())
            }
        },
    )
}

/// Ours, a round trip: there and back through two queues.
fn ours_rtt(p: Placement, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    let last = total(plan);
    forked_ops(
        p,
        allowed,
        plan,
        || {
            let (there, back) = (AnyQueue::new(Kind::Queue)?, AnyQueue::new(Kind::Queue)?);
            Ok(((there.clone(), back.clone()), (there, back)))
        },
        |(there, back): (AnyQueue, AnyQueue)| {
            let msg = vec![7u8; SMALL];
            move || {
                there.put(&msg)?;
                back.get().map(drop)
            }
        },
        move |(there, back): (AnyQueue, AnyQueue)| {
            let mut done = 0;
            move || {
                back.put(&there.get()?)?;
                done += 1;
                if done == last {
                    back.flush()?;
                }
                Ok(())
            }
        },
    )
}

/// The raw ring's layout in a shared page (32-bit words): two counters,
/// two "asleep" flags on lines of their own, then 60 slots of 16 words.
const HEAD: usize = 0;
const TAIL: usize = 16;
const CONSUMER_ASLEEP: usize = 32;
const PRODUCER_ASLEEP: usize = 48;
const SLOTS_AT: usize = 64;
const SLOT_WORDS: usize = SMALL / 4;
const SLOTS: u32 = ((1024 - SLOTS_AT) / SLOT_WORDS) as u32;

/// Waits until `ready()`: spins up to [`SPIN`], then sleeps on `word`
/// (expected to hold `seen` while not ready), announcing it in `asleep`.
fn raw_wait(page: &SharedWords, word: usize, seen: u32, asleep: usize, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        if t0.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        page.word(asleep).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            sys::futex_wait(page.word(word), seen);
        }
        page.word(asleep).store(0, Ordering::Relaxed);
    }
}

/// Wakes the peer asleep on `word`, if it said it sleeps.
fn raw_wake(page: &SharedWords, word: usize, asleep: usize) {
    fence(Ordering::SeqCst);
    if page.word(asleep).load(Ordering::SeqCst) != 0 {
        sys::futex_wake(page.word(word));
    }
}

fn raw_put(page: &SharedWords, item: &[u32; SLOT_WORDS]) {
    let t = page.word(TAIL).load(Ordering::Relaxed);
    let full = || t.wrapping_sub(page.word(HEAD).load(Ordering::Acquire)) >= SLOTS;
    if full() {
        let h = page.word(HEAD).load(Ordering::Acquire);
        raw_wait(page, HEAD, h, PRODUCER_ASLEEP, || !full());
    }
    let at = SLOTS_AT + (t % SLOTS) as usize * SLOT_WORDS;
    for (i, w) in item.iter().enumerate() {
        page.word(at + i).store(*w, Ordering::Relaxed);
    }
    page.word(TAIL).store(t.wrapping_add(1), Ordering::Release);
    raw_wake(page, TAIL, CONSUMER_ASLEEP);
}

fn raw_get(page: &SharedWords, out: &mut [u32; SLOT_WORDS]) {
    let h = page.word(HEAD).load(Ordering::Relaxed);
    let empty = || page.word(TAIL).load(Ordering::Acquire) == h;
    if empty() {
        raw_wait(page, TAIL, h, CONSUMER_ASLEEP, || !empty());
    }
    let at = SLOTS_AT + (h % SLOTS) as usize * SLOT_WORDS;
    for (i, w) in out.iter_mut().enumerate() {
        *w = page.word(at + i).load(Ordering::Relaxed);
    }
    page.word(HEAD).store(h.wrapping_add(1), Ordering::Release);
    raw_wake(page, HEAD, PRODUCER_ASLEEP);
}

/// The raw limit of the one-way rows (see the module docs).
fn raw_oneway(p: Placement, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    forked_ops(
        p,
        allowed,
        plan,
        || {
            let page = Arc::new(SharedWords::new()?);
            Ok((page.clone(), page))
        },
        |page: Arc<SharedWords>| {
            let mut out = [0u32; SLOT_WORDS];
            move || {
                raw_get(&page, &mut out);
                std::hint::black_box(&out);
                Ok(())
            }
        },
        |page: Arc<SharedWords>| {
            let item = [0x0101_0101u32; SLOT_WORDS];
            move || {
                raw_put(&page, &item);
                Ok(())
            }
        },
    )
}

/// A socketpair stream of `BIG`-byte messages, each read into a fresh
/// buffer.
fn raw_stream_fresh(allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    crate::measure::forked_stream(
        BIG,
        allowed,
        plan,
        sys::socketpair,
        |a: OwnedFd| {
            move || {
                let mut buf = sys::fresh_buffer(BIG);
                sys::read_into(a.as_fd(), &mut buf, BIG)?;
                std::hint::black_box(&buf);
                Ok(())
            }
        },
        |b: &OwnedFd, buf: &[u8]| sys::write_all(b.as_fd(), buf),
    )
}

/// Our big-item path's system calls, bare: a fresh memfd per message
/// (`pwrite`), its fd sent over a socketpair, `pread` into a fresh buffer.
fn raw_memfd(allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    crate::measure::forked_stream(
        BIG,
        allowed,
        plan,
        sys::socketpair,
        |a: OwnedFd| {
            move || {
                let fd = sys::recv_fd(a.as_fd())?;
                let mut buf = sys::fresh_buffer(BIG);
                sys::pread_into(fd.as_fd(), &mut buf, BIG)?;
                std::hint::black_box(&buf);
                Ok(())
            }
        },
        |b: &OwnedFd, buf: &[u8]| {
            let fd = sys::memfd_with(buf)?;
            sys::send_fd(b.as_fd(), fd.as_fd())
        },
    )
}

/// CPython's queue script at placement `p`.
fn py_queue(key: String, p: Placement, args: Vec<String>) -> Contender {
    contender(Who::Py, key, move |ctx, plan| {
        let mut all = python::cpus_arg(p, &ctx.allowed)?;
        all.extend(args.iter().cloned());
        ctx.run_py("queue_rows.py", &all, plan)
    })
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The rows of this module, in table order.
pub(crate) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for kind in [Kind::Queue, Kind::Simple] {
        for p in Placement::ALL {
            let name = format!("{}_1way_64B{}", kind.stem(), p.tag());
            v.push(spec(name.clone(), move |ctx, refs| {
                let py_args = strings(&["--op", "oneway", "--kind", kind.py(), "--size", "64"]);
                Turns {
                    unit: ITEMS,
                    plan: ctx.plan(100_000),
                    raw: crate::raw_at("shm_ring_64B", p, raw_oneway),
                    refs: Vec::new(),
                    ours: ours_in(&name, move |ctx, plan| {
                        ours_oneway(kind, SMALL, p, &ctx.allowed, plan)
                    }),
                    cpython: PyFigure::Turn(py_queue(format!("py.{name}"), p, py_args)),
                    krate: None,
                    goals: vec![Goal::Py(3.0)],
                    name,
                }
                .measure(ctx, refs)
            }));
        }
    }
    v.push(spec("queue_64MiB", |ctx, refs| {
        let name = "queue_64MiB".to_string();
        let py_args = strings(&[
            "--op",
            "oneway",
            "--kind",
            "queue",
            "--size",
            &BIG.to_string(),
        ]);
        Turns {
            unit: Unit::GBps(BIG as u64),
            plan: ctx.plan(8),
            raw: contender(Who::Raw, "raw.stream_64MiB", |ctx, plan| {
                crate::raw::stream(BIG, &ctx.allowed, plan)
            }),
            refs: vec![
                contender(Who::Raw, "raw.stream_64MiB_fresh", |ctx, plan| {
                    raw_stream_fresh(&ctx.allowed, plan)
                }),
                contender(Who::Raw, "raw.memfd_64MiB_fresh", |ctx, plan| {
                    raw_memfd(&ctx.allowed, plan)
                }),
            ],
            ours: ours_in(&name, |ctx, plan| {
                ours_oneway(Kind::Queue, BIG, Placement::Free, &ctx.allowed, plan)
            }),
            cpython: PyFigure::Turn(py_queue(format!("py.{name}"), Placement::Free, py_args)),
            krate: None,
            goals: vec![Goal::Raw(0.8)],
            name,
        }
        .measure(ctx, refs)
    }));
    for p in Placement::ALL {
        let name = format!("queue_rtt_64B{}", p.tag());
        v.push(spec(name.clone(), move |ctx, refs| {
            let py_args = strings(&["--op", "rtt", "--kind", "queue", "--size", "64"]);
            Turns {
                unit: RTT,
                plan: ctx.plan(crate::rtt_count(p)),
                raw: crate::raw_at("futex_pingpong", p, crate::sync::raw_futex_pingpong),
                refs: Vec::new(),
                ours: ours_in(&name, move |ctx, plan| ours_rtt(p, &ctx.allowed, plan)),
                cpython: PyFigure::Turn(py_queue(format!("py.{name}"), p, py_args)),
                krate: None,
                goals: vec![Goal::Py(3.0)],
                name,
            }
            .measure(ctx, refs)
        }));
    }
    v
}
