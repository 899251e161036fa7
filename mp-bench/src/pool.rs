//! The pool rows (issue 10): trivial tasks through `apply_async`, `map`
//! with `chunksize=1` and with the default chunk size, and a pool's whole
//! life (start, one task, close, join), for ours (mp-pool's `pool_bench`
//! example), CPython's `multiprocessing.Pool` (`python/pool.py`) and, for
//! `apply_async`, procspawn's `Pool`; all with two workers.
//!
//! The task rows run unpinned and with everything on one CPU (`@same`: the
//! bench pins itself before it starts a contender, whose workers inherit
//! the mask). Their raw limit is two forked workers that echo batches of
//! 8-byte tasks over pipes (64 a write for the per-task rows, the default
//! chunk for `map`): the cost of the pipes and the copies, with no
//! framing, encoding or bookkeeping. The start rows' raw limit forks two
//! children, makes one round trip with each over pipes and waits for them,
//! in a fresh copy of this binary.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::measure::{Placement, Plan, print_reps, run_blocks, run_rate_example, run_reps};
use crate::table::{Goal, Rep, Unit};
use crate::{Contender, Ctx, Examples, PyFigure, Spec, Turns, Who, contender, spec, sys};

/// Workers in every pool row (the figures are for two).
const WORKERS: usize = 2;

/// The role that runs procspawn's pool (see [`procspawn_pool_role`]).
pub(crate) const ROLE_PROCSPAWN_POOL: &str = "procspawn-pool";

/// The role of the raw pool-start loop (see [`raw_start_role`]).
pub(crate) const ROLE_RAW_START: &str = "raw-pool-start";

/// Tasks a raw write carries in the per-task rows: as many as a pool that
/// batches well puts in one system call.
const RAW_BATCH: usize = 64;

/// Batches each raw worker holds at a time.
const RAW_WINDOW: usize = 4;

const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `f` with this process pinned as `placement` says (its children
/// inherit the mask), then unpinned.
fn pinned<T>(
    placement: Placement,
    allowed: &[usize],
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let (cpu, _) = placement.cpus(allowed)?;
    if let Some(c) = cpu {
        sys::set_cpus(&[c]).map_err(|e| format!("error: pin: {e}"))?;
    }
    let result = f();
    if cpu.is_some() {
        let _ = sys::set_cpus(allowed);
    }
    result
}

/// The path of mp-pool's `pool_bench` example (built on first use).
fn pool_bench(ctx: &mut Ctx) -> Result<PathBuf, String> {
    if ctx.opts.raw_only {
        return Err("skipped (--raw-only)".into());
    }
    let no_build = ctx.opts.no_build;
    ctx.examples
        .get_or_insert_with(|| Examples::build(no_build))
        .get("mp-pool", "pool_bench")
}

/// Our contender: `pool_bench` with `args`, `scale` times the row's count.
fn ours(
    row: &str,
    exe: Result<PathBuf, String>,
    args: Vec<String>,
    scale: u64,
    placement: Placement,
) -> Contender {
    contender(Who::Ours, format!("ours.{row}"), move |ctx, plan| {
        let exe = exe.clone()?;
        let count = plan.n * scale;
        pinned(placement, &ctx.allowed, || {
            run_rate_example(&exe, &args, ((count / 10).max(1), count), 1, TIMEOUT)
        })
    })
}

/// CPython's contender: `pool.py` with `args` (one warm-up block or pool).
fn cpython(row: &str, args: Vec<String>, placement: Placement) -> Contender {
    contender(Who::Py, format!("py.{row}"), move |ctx, plan| {
        let plan = Plan { warmup: 1, ..*plan };
        pinned(placement, &ctx.allowed, || {
            ctx.run_py("pool.py", &args, &plan)
        })
    })
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| w.to_string()).collect()
}

/// A row of trivial tasks.
struct TaskRow {
    /// The `pool_bench` op.
    op: &'static str,
    /// CPython's tasks a repetition (ours and raw do `scale` times as many).
    n: u64,
    scale: u64,
    /// The raw limit's batch (`None`: the default chunk).
    batch: Option<usize>,
    goals: Vec<Goal>,
}

pub(crate) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    let task_rows = [
        TaskRow {
            op: "apply_async",
            n: 20_000,
            scale: 10,
            batch: Some(RAW_BATCH),
            goals: vec![Goal::Py(3.0), Goal::Crate(4.0)],
        },
        TaskRow {
            op: "map1",
            n: 20_000,
            scale: 10,
            batch: Some(RAW_BATCH),
            goals: vec![Goal::Py(3.0)],
        },
        TaskRow {
            op: "map",
            n: 1_000_000,
            scale: 1,
            batch: None,
            goals: vec![Goal::Py(2.0)],
        },
    ];
    for TaskRow {
        op,
        n,
        scale,
        batch,
        goals,
    } in task_rows
    {
        for placement in [Placement::Free, Placement::Same] {
            let name = format!("pool_{op}{}", placement.tag());
            let goals = goals.clone();
            v.push(spec(name.clone(), move |ctx, refs| {
                let exe = pool_bench(ctx);
                let workers = WORKERS.to_string();
                let ours_args =
                    words(&["--op", op, "--workers", &workers, "--start-method", "fork"]);
                let py_args = words(&["--op", op, "--workers", &workers, "--method", "fork"]);
                let krate = (op == "apply_async").then(|| {
                    let c = contender(Who::Crate, format!("procspawn.{name}"), move |ctx, plan| {
                        pinned(placement, &ctx.allowed, || procspawn_pool(plan))
                    });
                    ("procspawn", c)
                });
                let raw_name = match batch {
                    Some(b) => format!("raw.pool_echo_{b}x8B{}", placement.tag()),
                    None => format!("raw.pool_echo_chunks{}", placement.tag()),
                };
                Turns {
                    unit: Unit::Rate("task/s"),
                    plan: ctx.plan(n),
                    raw: contender(Who::Raw, raw_name, move |ctx, plan| {
                        let items = plan.n * scale;
                        // The default chunk: items / (4 * workers), rounded up.
                        let batch = batch.unwrap_or(items.div_ceil(4 * WORKERS as u64) as usize);
                        pinned(placement, &ctx.allowed, || {
                            raw_echo(batch, items, plan.reps)
                        })
                    }),
                    refs: Vec::new(),
                    ours: ours(&name, exe, ours_args, scale, placement),
                    cpython: PyFigure::Turn(cpython(&name, py_args, placement)),
                    krate,
                    goals,
                    name,
                }
                .measure(ctx, refs)
            }));
        }
    }
    // (method, CPython's pools a repetition, ours do `scale` times as many)
    for (method, n, scale) in [("fork", 20, 10), ("forkserver", 10, 10)] {
        let name = format!("pool_start_{method}");
        v.push(spec(name.clone(), move |ctx, refs| {
            let exe = pool_bench(ctx);
            let workers = WORKERS.to_string();
            let ours_args = words(&[
                "--op",
                "start",
                "--workers",
                &workers,
                "--start-method",
                method,
            ]);
            let py_args = words(&["--op", "start", "--workers", &workers, "--method", method]);
            Turns {
                unit: Unit::Rate("pool/s"),
                plan: ctx.plan(n),
                raw: contender(Who::Raw, "raw.pool_start_2x_fork_rtt", move |_, plan| {
                    let plan = Plan {
                        warmup: plan.n,
                        n: plan.n * 50,
                        ..*plan
                    };
                    crate::raw::in_fresh_process(ROLE_RAW_START, &plan)
                }),
                refs: Vec::new(),
                ours: ours(&name, exe, ours_args, scale, Placement::Free),
                cpython: PyFigure::Turn(cpython(&name, py_args, Placement::Free)),
                krate: None,
                goals: vec![Goal::Py(10.0)],
                name,
            }
            .measure(ctx, refs)
        }));
    }
    v
}

/// The worker of the raw echo: answers each batch of `batch` 8-byte tasks
/// with `n + 1` for each, until a batch starting with `u64::MAX`.
fn echo_worker(tasks: OwnedFd, results: OwnedFd, batch: usize) -> i32 {
    let mut buf = vec![0u8; batch * 8];
    loop {
        if sys::read_exact(tasks.as_fd(), &mut buf).is_err() {
            return 2;
        }
        if buf[..8] == u64::MAX.to_le_bytes() {
            return 0;
        }
        for chunk in buf.chunks_exact_mut(8) {
            let n = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            chunk.copy_from_slice(&(n + 1).to_le_bytes());
        }
        if sys::write_all(results.as_fd(), &buf).is_err() {
            return 3;
        }
    }
}

/// The raw limit of the task rows: `items` 8-byte tasks (rounded down to
/// whole batches) echoed in batches of `batch` by two forked workers, each
/// holding up to [`RAW_WINDOW`] batches; one fresh pair of workers per
/// repetition. CPU time counts the workers (waited for at the end).
fn raw_echo(batch: usize, items: u64, reps: usize) -> Result<Vec<Rep>, String> {
    let run = || -> io::Result<Rep> {
        let batches = (items / batch as u64).max(1);
        let window = if batch > RAW_BATCH { 1 } else { RAW_WINDOW };
        let mut ends = Vec::new();
        let mut pids = Vec::new();
        for _ in 0..WORKERS {
            let (tasks_r, tasks_w) = sys::pipe()?;
            let (results_r, results_w) = sys::pipe()?;
            pids.push(sys::fork_run(move || {
                echo_worker(tasks_r, results_w, batch)
            })?);
            ends.push((tasks_w, results_r));
        }
        let mut out = vec![0u8; batch * 8];
        let mut back = vec![0u8; batch * 8];
        let (mut sent, mut received, mut next) = (0u64, 0u64, 0u64);
        let mut outstanding = [0usize; WORKERS];
        let mut sum = 0u64;
        let cpu0 = sys::cpu_now();
        let t0 = Instant::now();
        let mut send = |w: usize, sent: &mut u64, next: &mut u64| -> io::Result<()> {
            for chunk in out.chunks_exact_mut(8) {
                chunk.copy_from_slice(&next.to_le_bytes());
                *next += 1;
            }
            *sent += 1;
            sys::write_all(ends[w].0.as_fd(), &out)
        };
        for (w, o) in outstanding.iter_mut().enumerate() {
            while *o < window && sent < batches {
                send(w, &mut sent, &mut next)?;
                *o += 1;
            }
        }
        while received < batches {
            for (w, o) in outstanding.iter_mut().enumerate() {
                if *o == 0 {
                    continue;
                }
                sys::read_exact(ends[w].1.as_fd(), &mut back)?;
                sum = back.chunks_exact(8).fold(sum, |s, c| {
                    s.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes")))
                });
                received += 1;
                *o -= 1;
                if sent < batches {
                    send(w, &mut sent, &mut next)?;
                    *o += 1;
                }
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let stop = [0xffu8; 8].repeat(batch);
        for (tasks_w, _) in &ends {
            sys::write_all(tasks_w.as_fd(), &stop)?;
        }
        for pid in pids {
            if let Some(problem) = sys::status_problem(sys::wait_pid(pid)?) {
                return Err(io::Error::other(problem));
            }
        }
        let n = batches * batch as u64;
        // Each task n came back as n + 1: the sum of 1..=n.
        if sum != n * (n + 1) / 2 {
            return Err(io::Error::other("the raw workers answered wrongly"));
        }
        Ok(Rep {
            ops: n as f64,
            wall,
            cpu: sys::cpu_now() - cpu0,
        })
    };
    (0..reps)
        .map(|_| run().map_err(|e| format!("error: {e}")))
        .collect()
}

/// One raw pool life: fork two children, one 8-byte round trip with each
/// over pipes, wait for both.
fn raw_start_once() -> io::Result<()> {
    let mut peers = Vec::new();
    for _ in 0..WORKERS {
        let (tasks_r, tasks_w) = sys::pipe()?;
        let (results_r, results_w) = sys::pipe()?;
        let pid = sys::fork_run(move || {
            let mut b = [0u8; 8];
            match sys::read_exact(tasks_r.as_fd(), &mut b) {
                Ok(()) => i32::from(sys::write_all(results_w.as_fd(), &b).is_err()),
                Err(_) => 2,
            }
        })?;
        peers.push((pid, tasks_w, results_r));
    }
    for (_, tasks_w, _) in &peers {
        sys::write_all(tasks_w.as_fd(), &1u64.to_le_bytes())?;
    }
    for (pid, _, results_r) in peers {
        let mut b = [0u8; 8];
        sys::read_exact(results_r.as_fd(), &mut b)?;
        if let Some(problem) = sys::status_problem(sys::wait_pid(pid)?) {
            return Err(io::Error::other(problem));
        }
    }
    Ok(())
}

/// The raw pool-start role (in a fresh copy of this binary, as the other
/// raw process loops): `rep` lines on stdout.
pub(crate) fn raw_start_role(plan: &Plan) -> Result<(), String> {
    sys::prepare_fork_loop().map_err(|e| e.to_string())?;
    let reps = run_blocks(plan, raw_start_once).map_err(|e| e.to_string())?;
    print_reps(&reps);
    Ok(())
}

fn inc(n: u64) -> u64 {
    n + 1
}

/// Jobs procspawn's pool holds at a time in the role: each spawned job
/// keeps two ipc-channel pairs (fds) open until it is joined, so all of a
/// repetition's jobs at once would run out of fds.
const PROCSPAWN_WINDOW: usize = 256;

/// The procspawn pool role: per repetition a `procspawn::Pool` of two,
/// warmed up, `count` jobs spawned (at most [`PROCSPAWN_WINDOW`] unjoined)
/// and joined; CPU time counts the whole repetition, the pool's start and
/// its (killed and waited for) workers included.
pub(crate) fn procspawn_pool_role(plan: &Plan) -> Result<(), String> {
    sys::raise_nofile_limit();
    let err = |e: procspawn::SpawnError| format!("procspawn: {e}");
    let mut reps = Vec::new();
    for _ in 0..plan.reps {
        let cpu0 = sys::cpu_now();
        let pool = procspawn::Pool::new(WORKERS).map_err(err)?;
        for i in 0..plan.warmup.max(WORKERS as u64) {
            pool.spawn(i, inc).join().map_err(err)?;
        }
        let t0 = Instant::now();
        let mut pending = std::collections::VecDeque::new();
        let mut sum = 0;
        for i in 0..plan.n {
            if pending.len() == PROCSPAWN_WINDOW {
                let h: procspawn::JoinHandle<u64> = pending.pop_front().expect("a full window");
                sum += h.join().map_err(err)?;
            }
            pending.push_back(pool.spawn(i, inc));
        }
        for h in pending {
            sum += h.join().map_err(err)?;
        }
        let wall = t0.elapsed().as_secs_f64();
        pool.shutdown();
        drop(pool);
        if sum != plan.n * (plan.n + 1) / 2 {
            return Err("procspawn's pool answered wrongly".into());
        }
        reps.push(Rep {
            ops: plan.n as f64,
            wall,
            cpu: sys::cpu_now() - cpu0,
        });
    }
    print_reps(&reps);
    Ok(())
}

/// Runs [`procspawn_pool_role`] in a fresh copy of this binary.
fn procspawn_pool(plan: &Plan) -> Result<Vec<Rep>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("error: {e}"))?;
    let mut cmd = Command::new(exe);
    let plan = Plan {
        warmup: WORKERS as u64,
        ..*plan
    };
    cmd.args(["--role", ROLE_PROCSPAWN_POOL]).args(plan.args());
    run_reps(&mut cmd, TIMEOUT, &plan)
}
