//! The mp-sync rows: an uncontended `Lock` acquire + release, and a
//! `Semaphore` ping-pong between two processes in every placement; each
//! against CPython 3.13 (`python/sync.py`) and the raw limit.
//!
//! - `lock_acq+rel`: ours is `drop(lock.lock())` on an `mp_sync::Lock`;
//!   the raw limit is the least a lock can do, a compare-and-swap acquire
//!   and a store release (a spinlock, which can never wake a sleeper); the
//!   reference row `raw.cas_swap` is the least a lock that can put waiters
//!   to sleep does: the same CAS, and a swap release that sees whether
//!   anyone sleeps (glibc's `pthread_mutex_unlock` does the same).
//! - `sem_pingpong`: per round trip one process releases `ping` and
//!   acquires `pong`, the other the reverse; the raw limit is a futex
//!   ping-pong on two shared words (store, `FUTEX_WAKE`; `FUTEX_WAIT` while
//!   the word is 0).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::measure::{Placement, Plan, forked_ops, run_blocks};
use crate::table::{Goal, Rep, Unit};
use crate::{Contender, PyFigure, RTT, Spec, Turns, Who, contender, ours_in, python, spec};

const PAIRS: Unit = Unit::Rate("pairs/s");

fn err(e: impl std::fmt::Display) -> String {
    format!("error: {e}")
}

/// Ours: an uncontended `mp_sync::Lock`, through its guard.
fn lock_pairs(plan: &Plan) -> Result<Vec<Rep>, String> {
    let lock = mp_sync::Lock::new().map_err(err)?;
    run_blocks(plan, || {
        drop(lock.lock().map_err(|e| io::Error::other(e.to_string()))?);
        Ok(())
    })
    .map_err(err)
}

/// A compare-and-swap acquire, then `release`: the raw lock pairs.
fn raw_pairs(plan: &Plan, release: fn(&AtomicU32) -> io::Result<()>) -> Result<Vec<Rep>, String> {
    let word = AtomicU32::new(0);
    run_blocks(plan, || {
        while word
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        release(&word)
    })
    .map_err(err)
}

/// The raw limit: a store release (a spinlock's).
fn release_by_store(word: &AtomicU32) -> io::Result<()> {
    word.store(0, Ordering::Release);
    Ok(())
}

/// The reference: a swap release that looks for sleepers (bit 31), as a
/// futex lock's must.
fn release_by_swap(word: &AtomicU32) -> io::Result<()> {
    if word.swap(0, Ordering::Release) & (1 << 31) != 0 {
        return Err(io::Error::other("nobody sleeps in this loop"));
    }
    Ok(())
}

/// Ours: two `mp_sync::Semaphore`s between forked peers.
fn sem_pingpong(p: Placement, allowed: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    let ping = mp_sync::Semaphore::new(0).map_err(err)?;
    let pong = mp_sync::Semaphore::new(0).map_err(err)?;
    let sems = (ping.clone(), pong.clone());
    forked_ops(
        p,
        allowed,
        plan,
        || Ok(((ping, pong), sems)),
        |(ping, pong): (mp_sync::Semaphore, mp_sync::Semaphore)| {
            move || {
                ping.release()
                    .map_err(|e| io::Error::other(e.to_string()))?;
                pong.acquire(true, None);
                Ok(())
            }
        },
        |(ping, pong): (mp_sync::Semaphore, mp_sync::Semaphore)| {
            move || {
                ping.acquire(true, None);
                pong.release().map_err(|e| io::Error::other(e.to_string()))
            }
        },
    )
}

/// The raw limit: a futex ping-pong on two words of a shared page.
pub(crate) fn raw_futex_pingpong(
    p: Placement,
    allowed: &[usize],
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    // Word 0: ping, word 16 (another cache line): pong.
    let (ping, pong) = (0, 16);
    fn post(w: &AtomicU32) {
        w.store(1, Ordering::Release);
        crate::sys::futex_wake(w);
    }
    fn take(w: &AtomicU32) {
        while w.load(Ordering::Acquire) == 0 {
            crate::sys::futex_wait(w, 0);
        }
        w.store(0, Ordering::Relaxed);
    }
    let setup = || {
        let page = Arc::new(crate::sys::SharedWords::new()?);
        Ok((page.clone(), page))
    };
    forked_ops(
        p,
        allowed,
        plan,
        setup,
        move |page: Arc<crate::sys::SharedWords>| {
            move || {
                post(page.word(ping));
                take(page.word(pong));
                Ok(())
            }
        },
        move |page: Arc<crate::sys::SharedWords>| {
            move || {
                take(page.word(ping));
                post(page.word(pong));
                Ok(())
            }
        },
    )
}

/// CPython's semaphore ping-pong at placement `p`.
fn py_sem(p: Placement) -> Contender {
    contender(
        Who::Py,
        format!("py.sem_pingpong{}", p.tag()),
        move |ctx, plan| {
            let mut args = python::cpus_arg(p, &ctx.allowed)?;
            args.extend(["--op".to_string(), "semaphore".to_string()]);
            ctx.run_py("sync.py", &args, plan)
        },
    )
}

/// The rows of this module, in table order.
pub(crate) fn specs() -> Vec<Spec> {
    let mut v = vec![spec("lock_acq+rel", |ctx, refs| {
        let n = 20_000_000;
        Turns {
            name: "lock_acq+rel".into(),
            unit: PAIRS,
            plan: ctx.plan(n),
            raw: contender(Who::Raw, "raw.cas_store", |_, plan| {
                raw_pairs(plan, release_by_store)
            }),
            refs: vec![contender(Who::Raw, "raw.cas_swap", |_, plan| {
                raw_pairs(plan, release_by_swap)
            })],
            ours: ours_in("lock_acq+rel", |_, plan| lock_pairs(plan)),
            // CPython is some 20x slower: a tenth of the work per repetition.
            cpython: PyFigure::Turn(contender(Who::Py, "py.lock_acq+rel", |ctx, plan| {
                let plan = Plan {
                    n: (plan.n / 10).max(1),
                    warmup: (plan.warmup / 10).max(1),
                    ..*plan
                };
                ctx.run_py("sync.py", &["--op".to_string(), "lock".to_string()], &plan)
            })),
            krate: None,
            goals: vec![Goal::Py(2.0), Goal::Raw(1.0 / 1.5)],
        }
        .measure(ctx, refs)
    })];
    for p in Placement::ALL {
        let name = format!("sem_pingpong{}", p.tag());
        v.push(spec(name.clone(), move |ctx, refs| {
            Turns {
                unit: RTT,
                plan: ctx.plan(crate::rtt_count(p)),
                raw: crate::raw_at("futex_pingpong", p, raw_futex_pingpong),
                refs: Vec::new(),
                ours: ours_in(&name, move |ctx, plan| sem_pingpong(p, &ctx.allowed, plan)),
                cpython: PyFigure::Turn(py_sem(p)),
                krate: None,
                goals: vec![Goal::Raw(0.8)],
                name,
            }
            .measure(ctx, refs)
        }));
    }
    v
}
