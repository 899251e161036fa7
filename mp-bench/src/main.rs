//! `mp-bench`: the driver of `cargo xtask bench [FILTER]`.
//!
//! In one run it measures, for each operation of the issues' Performance
//! sections, our figure, CPython's `multiprocessing` figure (the scripts in
//! `mp-bench/python/`), the raw-syscall limit (a minimal loop straight on
//! the system calls, in this binary) and, where the issue names one, the
//! Rust crate people use today (ipc-channel, procspawn); it prints their
//! ratios, the CPU time per operation and the issue's goals checked. A
//! full run (no filter, no `--quick`, no `--raw-only`) writes the same
//! table, its legend and the goals to `BENCHMARKS.md` at the workspace
//! root and the headline ratios into README.md (see [`docs`]); any other
//! run writes `target/bench/BENCHMARKS.md`, or the file `--out` names.
//!
//! ```text
//! mp-bench [--quick] [--raw-only] [--no-build] [--reps N] [--out PATH] [--list] [FILTER...]
//! ```
//!
//! - `FILTER`: only rows whose name contains one of these substrings.
//! - `--quick`: a tenth of the operations and 3 repetitions instead of 7
//!   (under a minute).
//! - `--raw-only`: only the raw-syscall rows (the smoke test uses this).
//! - `--no-build`: use our crates' examples as already built.
//! - `--out PATH`: write the BENCHMARKS document there, and touch neither
//!   BENCHMARKS.md nor README.md.
//!
//! Our figures for mp-heap and mp-context come from their release-built
//! examples (`heap_bench`, `procstart`), which this driver builds first; a
//! crate or example that does not exist yet shows as "n/a (not built)".
//! The mp-conn rows need the `conn` feature.

#![deny(unsafe_code)]

mod crates;
mod docs;
mod exact_reads;
mod manager;
mod manager_interop;
mod measure;
#[cfg(feature = "conn")]
mod ours;
#[cfg(not(feature = "conn"))]
#[path = "ours_stub.rs"]
mod ours;
mod pickle;
mod pool;
mod python;
mod queue;
mod raw;
mod sync;
mod sys;
mod table;
mod threadpool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use measure::{Placement, Plan};
use python::Python;
use table::{Cell, Goal, Measured, RefRow, Report, Row, Unit};

/// Spin bound of the low-latency rows: long enough to cover a wake-up on
/// the other CPU (a few microseconds when the peer is running), short
/// enough that a blocked peer costs little.
const SPIN: Duration = Duration::from_micros(50);

const USAGE: &str = "usage: mp-bench [--quick] [--raw-only] [--no-build] [--reps N] [--out PATH] [--list] [FILTER...]";

#[derive(Debug, Clone, Default)]
struct Options {
    quick: bool,
    raw_only: bool,
    no_build: bool,
    list: bool,
    reps: Option<usize>,
    out: Option<PathBuf>,
    filters: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--raw-only" => o.raw_only = true,
            "--no-build" => o.no_build = true,
            "--list" => o.list = true,
            "--reps" => {
                let n = it.next().ok_or("--reps needs a value")?;
                o.reps = Some(n.parse().map_err(|e| format!("--reps: {e}"))?);
            }
            "--out" => o.out = Some(PathBuf::from(it.next().ok_or("--out needs a path")?)),
            "-h" | "--help" => return Err(USAGE.into()),
            f if f.starts_with('-') => return Err(format!("unknown option {f:?}\n{USAGE}")),
            f => o.filters.push(f.to_string()),
        }
    }
    Ok(o)
}

/// Where our crates' release-built examples are, or why not.
#[derive(Debug)]
struct Examples {
    dir: Result<PathBuf, String>,
}

impl Examples {
    fn build(no_build: bool) -> Examples {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                return Examples {
                    dir: Err(format!("error: {e}")),
                };
            }
        };
        // target/<profile>/mp-bench -> target/release/examples
        let Some(target) = exe.parent().and_then(Path::parent) else {
            return Examples {
                dir: Err("error: cannot locate target/".into()),
            };
        };
        let dir = target.join("release").join("examples");
        if !no_build {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            eprintln!(
                "mp-bench: cargo build --release --examples -p mp-heap -p mp-context -p mp-pool -p mp-manager"
            );
            let status = Command::new(cargo)
                .current_dir(&workspace)
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "--examples",
                    "-p",
                    "mp-heap",
                    "-p",
                    "mp-context",
                    "-p",
                    "mp-pool",
                    "-p",
                    "mp-manager",
                ])
                .env("CARGO_TARGET_DIR", target)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => {
                    return Examples {
                        dir: Err(format!("n/a (examples failed to build: {s})")),
                    };
                }
                Err(e) => {
                    return Examples {
                        dir: Err(format!("n/a (cannot run cargo: {e})")),
                    };
                }
            }
        }
        Examples { dir: Ok(dir) }
    }

    /// The path of example `name` of `krate`, or "n/a (not built)". The
    /// example's source must be in this workspace: a binary left in
    /// target/ by another branch is not ours to report.
    fn get(&self, krate: &str, name: &str) -> Result<PathBuf, String> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(krate)
            .join("examples")
            .join(format!("{name}.rs"));
        if !source.is_file() {
            return Err(format!(
                "n/a (not built: {krate} has no example {name} yet)"
            ));
        }
        let dir = self.dir.as_ref().map_err(Clone::clone)?;
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "n/a (not built: {krate} has no example {name} yet)"
            ))
        }
    }
}

/// Everything the rows share: options, CPUs, the interpreter, our
/// examples, and measurements already taken (some feed several rows).
struct Ctx {
    opts: Options,
    reps: usize,
    allowed: Vec<usize>,
    python: Result<Python, String>,
    examples: Option<Examples>,
    memo: HashMap<String, Cell>,
    taken: usize,
}

/// Which contender a measurement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Ours,
    Py,
    Raw,
    Crate,
}

impl Ctx {
    /// A plan of `n_full` operations per repetition (a tenth with --quick).
    fn plan(&self, n_full: u64) -> Plan {
        let n = if self.opts.quick {
            (n_full / 10).max(1)
        } else {
            n_full
        };
        Plan {
            warmup: (n / 10).max(1),
            n,
            reps: self.reps,
        }
    }

    /// Measures (once per `key`) and summarises in `unit`.
    fn cell(
        &mut self,
        who: Who,
        key: &str,
        unit: Unit,
        f: impl FnOnce(&mut Ctx) -> Result<Vec<table::Rep>, String>,
    ) -> Cell {
        if self.opts.raw_only && who != Who::Raw {
            return Err("skipped (--raw-only)".into());
        }
        if let Some(c) = self.memo.get(key) {
            return c.clone();
        }
        self.taken += 1;
        eprint!("mp-bench: [{}] {key} ... ", self.taken);
        let t0 = Instant::now();
        let cell = f(self).and_then(|reps| Measured::from_reps(unit, &reps));
        progress(&cell, unit, t0);
        self.memo.insert(key.to_string(), cell.clone());
        cell
    }

    /// Measures several contenders of one row turn about: each repetition
    /// is a fresh run (new processes, warm-up included) of every contender
    /// in turn, so that they share the machine's moods (other load, and
    /// the scheduler's choice of one CPU or two for unpinned peers, which
    /// is made per pair of processes). Returns one cell per contender.
    fn interleaved(&mut self, unit: Unit, plan: &Plan, contenders: Vec<Contender>) -> Vec<Cell> {
        let one = Plan { reps: 1, ..*plan };
        let mut runs: Vec<Option<Result<Vec<table::Rep>, String>>> = contenders
            .iter()
            .map(|c| {
                if self.opts.raw_only && c.who != Who::Raw {
                    Some(Err("skipped (--raw-only)".into()))
                } else if self.memo.contains_key(&c.key) {
                    None
                } else {
                    Some(Ok(Vec::new()))
                }
            })
            .collect();
        let t0 = Instant::now();
        for _ in 0..plan.reps {
            for (c, run) in contenders.iter().zip(runs.iter_mut()) {
                if let Some(Ok(reps)) = run {
                    match (c.run)(self, &one) {
                        Ok(r) => reps.extend(r),
                        Err(e) => *run = Some(Err(e)),
                    }
                }
            }
        }
        let mut cells = Vec::new();
        for (c, run) in contenders.iter().zip(runs) {
            let cell = match run {
                None => self.memo[&c.key].clone(),
                Some(Err(why)) if why.starts_with("skipped") => Err(why),
                Some(result) => {
                    let cell = result.and_then(|reps| Measured::from_reps(unit, &reps));
                    self.taken += 1;
                    eprint!("mp-bench: [{}] {} ... ", self.taken, c.key);
                    progress(&cell, unit, t0);
                    self.memo.insert(c.key.clone(), cell.clone());
                    cell
                }
            };
            cells.push(cell);
        }
        cells
    }

    /// Measures raw-syscall limit `name` (as [`Ctx::cell`]); returns it
    /// with its name.
    fn raw(
        &mut self,
        name: impl Into<String>,
        unit: Unit,
        f: impl FnOnce(&mut Ctx) -> Result<Vec<table::Rep>, String>,
    ) -> (String, Cell) {
        let name = name.into();
        let cell = self.cell(Who::Raw, &name, unit, f);
        (name, cell)
    }

    fn python(&self) -> Result<&Python, String> {
        self.python.as_ref().map_err(Clone::clone)
    }

    /// Runs CPython script `script` of `mp-bench/python/` with `args`.
    fn run_py(
        &self,
        script: &str,
        args: &[String],
        plan: &Plan,
    ) -> Result<Vec<table::Rep>, String> {
        self.python()?
            .run(script, args, plan, Duration::from_secs(300))
    }

    fn py(&mut self, key: &str, unit: Unit, script: &str, extra: Vec<String>, n: u64) -> Cell {
        let plan = self.plan(n);
        self.cell(Who::Py, key, unit, |ctx| ctx.run_py(script, &extra, &plan))
    }

    fn example(
        &mut self,
        key: &str,
        unit: Unit,
        krate: &str,
        name: &str,
        args: Vec<String>,
        n: u64,
    ) -> Cell {
        let plan = self.plan(n);
        self.cell(Who::Ours, key, unit, |ctx| {
            let no_build = ctx.opts.no_build;
            let examples = ctx
                .examples
                .get_or_insert_with(|| Examples::build(no_build));
            let exe = examples.get(krate, name)?;
            measure::run_rate_example(
                &exe,
                &args,
                ((plan.n / 10).max(1), plan.n),
                plan.reps,
                Duration::from_secs(300),
            )
        })
    }
}

fn progress(cell: &Cell, unit: Unit, t0: Instant) {
    match cell {
        Ok(m) => eprintln!(
            "{} {} ({:.0}%), cpu {} us/op [{:.1}s]",
            table::fmt_num(m.median()),
            unit.label(),
            m.spread_pct(),
            table::fmt_num(m.cpu_median()),
            t0.elapsed().as_secs_f64()
        ),
        Err(why) => eprintln!("{why}"),
    }
}

/// How a contender measures: given the context and a plan, its repetitions.
type RunFn = dyn Fn(&Ctx, &Plan) -> Result<Vec<table::Rep>, String>;

/// How a row is made: measures its contenders (adding raw reference rows).
type MakeFn = dyn FnOnce(&mut Ctx, &mut Vec<RefRow>) -> Row;

/// One contender of an [`Ctx::interleaved`] row.
struct Contender {
    who: Who,
    key: String,
    run: Box<RunFn>,
}

fn contender(
    who: Who,
    key: impl Into<String>,
    run: impl Fn(&Ctx, &Plan) -> Result<Vec<table::Rep>, String> + 'static,
) -> Contender {
    Contender {
        who,
        key: key.into(),
        run: Box::new(run),
    }
}

/// Our contender in row `row`.
fn ours_in(
    row: &str,
    run: impl Fn(&Ctx, &Plan) -> Result<Vec<table::Rep>, String> + 'static,
) -> Contender {
    contender(Who::Ours, format!("ours.{row}"), run)
}

/// ipc-channel, the crate compared in row `row`.
fn ipc_in(
    row: &str,
    run: impl Fn(&Ctx, &Plan) -> Result<Vec<table::Rep>, String> + 'static,
) -> Option<(&'static str, Contender)> {
    Some((
        "ipc-channel",
        contender(Who::Crate, format!("ipc.{row}"), run),
    ))
}

/// A row's name and how to measure it; evaluated only when selected.
struct Spec {
    name: String,
    make: Box<MakeFn>,
}

fn spec(
    name: impl Into<String>,
    make: impl FnOnce(&mut Ctx, &mut Vec<RefRow>) -> Row + 'static,
) -> Spec {
    Spec {
        name: name.into(),
        make: Box::new(make),
    }
}

/// Rates of the round-trip rows, per repetition, by placement: a CPU
/// switch costs tens of microseconds unpinned and split, a few on one CPU.
fn rtt_count(p: Placement) -> u64 {
    match p {
        Placement::Same => 20_000,
        Placement::Free | Placement::Split => 10_000,
    }
}

fn py_pipe_key(p: Placement) -> String {
    format!("py.pipe_rtt_64B{}", p.tag())
}

fn py_pipe(p: Placement) -> Contender {
    contender(Who::Py, py_pipe_key(p), move |ctx, plan| {
        let cpus = python::cpus_arg(p, &ctx.allowed)?;
        ctx.run_py("pipe_rtt.py", &cpus, plan)
    })
}

/// CPython's contender `key`: script `script` with `args`.
fn py_script(key: String, script: &'static str, args: Vec<String>) -> Contender {
    contender(Who::Py, key, move |ctx, plan| {
        ctx.run_py(script, &args, plan)
    })
}

const RTT: Unit = Unit::Rate("rt/s");

/// A row without a Rust crate compared: its name, unit, raw limit (name
/// and figure), our figure, CPython's and the goals checked.
fn row(
    name: impl Into<String>,
    unit: Unit,
    (raw_name, raw): (String, Cell),
    ours: Cell,
    cpython: Cell,
    goals: Vec<Goal>,
) -> Row {
    Row {
        name: name.into(),
        unit,
        ours,
        cpython,
        raw_name,
        raw,
        krate: None,
        goals,
    }
}

/// CPython's figure of a [`Turns`] row.
enum PyFigure {
    /// Measured turn about with the row's other contenders.
    Turn(Contender),
    /// Already taken (with another row).
    Taken(Cell),
}

/// A row whose contenders are measured turn about ([`Ctx::interleaved`]),
/// in this order: raw, the raw reference rows, ours, CPython, the crate.
struct Turns {
    name: String,
    unit: Unit,
    plan: Plan,
    /// The raw-syscall limit; its key names it in the table.
    raw: Contender,
    /// Raw variants shown in the reference table, named by their keys.
    refs: Vec<Contender>,
    ours: Contender,
    cpython: PyFigure,
    /// The Rust crate the issue names, if any: its name and contender.
    krate: Option<(&'static str, Contender)>,
    goals: Vec<Goal>,
}

impl Turns {
    /// Measures the contenders and makes the row (its reference rows go
    /// to `refs`).
    fn measure(self, ctx: &mut Ctx, refs: &mut Vec<RefRow>) -> Row {
        let raw_name = self.raw.key.clone();
        let ref_names: Vec<String> = self.refs.iter().map(|c| c.key.clone()).collect();
        let mut contenders = vec![self.raw];
        contenders.extend(self.refs);
        contenders.push(self.ours);
        let taken_py = match self.cpython {
            PyFigure::Turn(c) => {
                contenders.push(c);
                None
            }
            PyFigure::Taken(cell) => Some(cell),
        };
        let krate_name = self.krate.map(|(name, c)| {
            contenders.push(c);
            name
        });
        let mut cells = ctx
            .interleaved(self.unit, &self.plan, contenders)
            .into_iter();
        let mut next = || cells.next().expect("one cell per contender");
        let raw = next();
        for name in ref_names {
            refs.push(RefRow {
                name,
                unit: self.unit,
                cell: next(),
            });
        }
        let ours = next();
        let cpython = taken_py.unwrap_or_else(&mut next);
        let krate = krate_name.map(|name| (name.to_string(), next()));
        Row {
            krate,
            ..row(
                self.name,
                self.unit,
                (raw_name, raw),
                ours,
                cpython,
                self.goals,
            )
        }
    }
}

/// The raw contender `raw.STEM@PLACEMENT` of a round-trip row.
fn raw_at(
    stem: &str,
    p: Placement,
    run: impl Fn(Placement, &[usize], &Plan) -> Result<Vec<table::Rep>, String> + 'static,
) -> Contender {
    contender(
        Who::Raw,
        format!("raw.{stem}{}", p.tag()),
        move |ctx, plan| run(p, &ctx.allowed, plan),
    )
}

/// A round-trip row at placement `p` against CPython's duplex Pipe and
/// ipc-channel's byte channels (no raw reference rows).
fn rtt_turns(
    ctx: &Ctx,
    name: String,
    p: Placement,
    raw: Contender,
    ours: impl Fn(Placement, &[usize], &Plan) -> Result<Vec<table::Rep>, String> + 'static,
    goals: Vec<Goal>,
) -> Turns {
    Turns {
        unit: RTT,
        plan: ctx.plan(rtt_count(p)),
        raw,
        refs: Vec::new(),
        ours: ours_in(&name, move |ctx, plan| ours(p, &ctx.allowed, plan)),
        cpython: PyFigure::Turn(py_pipe(p)),
        krate: ipc_in(&name, move |ctx, plan| {
            crates::pingpong(p, &ctx.allowed, plan)
        }),
        goals,
        name,
    }
}

/// A row of one wait over `k` idle connections plus a ready one, `n`
/// calls a repetition (`n_py` for CPython's `wait()`): the raw call
/// `raw` (named), ours `ours`, CPython's `wait()` (`py.wait_Kidle`).
fn wait_row(
    ctx: &mut Ctx,
    name: String,
    k: usize,
    (n, n_py): (u64, u64),
    (raw_name, raw): (
        String,
        impl FnOnce(usize, &Plan) -> Result<Vec<table::Rep>, String>,
    ),
    ours: impl FnOnce(usize, &Plan) -> Result<Vec<table::Rep>, String>,
    goals: Vec<Goal>,
) -> Row {
    let unit = Unit::MicrosPerCall;
    let plan = ctx.plan(n);
    let raw = ctx.raw(raw_name, unit, |_| raw(k, &plan));
    let ours = ctx.cell(Who::Ours, &format!("ours.{name}"), unit, |_| ours(k, &plan));
    let py_args = vec!["--idle".into(), k.to_string()];
    let cpython = ctx.py(&format!("py.wait_{k}idle"), unit, "wait.py", py_args, n_py);
    row(name, unit, raw, ours, cpython, goals)
}

fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for p in Placement::ALL {
        let name = format!("pipe_rtt_64B{}", p.tag());
        v.push(spec(name.clone(), move |ctx, refs| {
            let raw = raw_at("pingpong_64B", p, |p, cpus, plan| {
                raw::pingpong(raw::PingPong::Plain, p, cpus, plan)
            });
            let framed = raw_at("pingpong_64B_framed", p, |p, cpus, plan| {
                raw::pingpong(raw::PingPong::Framed, p, cpus, plan)
            });
            let ours = |p, cpus: &[usize], plan: &Plan| ours::pingpong(p, cpus, plan, None);
            // Issue 8's goals: the raw STREAM loop is the floor of a
            // STREAM socketpair, so the goals are relative to it (the old
            // ">=1x ipc-channel" and "cpu<=1/3 CPython" lie beyond it; see
            // docs::RETIRED).
            let goals = vec![Goal::Raw(0.9), Goal::CpuRaw(1.2)];
            Turns {
                refs: vec![framed],
                ..rtt_turns(ctx, name, p, raw, ours, goals)
            }
            .measure(ctx, refs)
        }));
    }
    v.extend(exact_reads::specs());
    for p in Placement::ALL {
        let name = format!("pipe_rtt_64B_pipepair{}", p.tag());
        v.push(spec(name.clone(), move |ctx, refs| {
            let raw = raw_at("pingpong_64B_pipes", p, raw::pingpong_pipes);
            // CPython has no two-pipe duplex Pipe: its figure is its
            // ordinary duplex Pipe (shared with the pipe_rtt_64B rows), and
            // ipc-channel is measured again here, turn about with ours.
            // At least ipc-channel's rate on one CPU (issue 8); unpinned
            // and split, the scheduler's placement decides more than the
            // transport, so only the ratio is shown there.
            let mut goals = vec![Goal::Raw(0.9)];
            if p == Placement::Same {
                goals.push(Goal::Crate(1.0));
            }
            rtt_turns(ctx, name, p, raw, ours::pingpong_pipe_pair, goals).measure(ctx, refs)
        }));
    }
    v.push(spec("pipe_rtt_64B_lowlat@split", |ctx, refs| {
        let p = Placement::Split;
        // CPython has no such mode: its figure is its ordinary round trip
        // @split, measured with the pipe_rtt_64B@split row.
        let cpython = if ctx.memo.contains_key(&py_pipe_key(p)) {
            ctx.memo[&py_pipe_key(p)].clone()
        } else {
            let plan = ctx.plan(rtt_count(p));
            ctx.interleaved(RTT, &plan, vec![py_pipe(p)]).remove(0)
        };
        Turns {
            name: "pipe_rtt_64B_lowlat@split".into(),
            unit: RTT,
            plan: ctx.plan(50_000),
            raw: contender(Who::Raw, "raw.pingpong_64B_spin@split", move |ctx, plan| {
                raw::pingpong(raw::PingPong::Spin(SPIN), p, &ctx.allowed, plan)
            }),
            refs: Vec::new(),
            ours: contender(
                Who::Ours,
                "ours.pipe_rtt_64B_lowlat@split",
                move |ctx, plan| ours::pingpong(p, &ctx.allowed, plan, Some(SPIN)),
            ),
            cpython: PyFigure::Taken(cpython),
            krate: None,
            goals: vec![Goal::Py(5.0)],
        }
        .measure(ctx, refs)
    }));
    for (size, label, n) in [(1usize << 20, "1MiB", 500u64), (64 << 20, "64MiB", 8)] {
        let name = format!("stream_{label}");
        v.push(spec(name.clone(), move |ctx, refs| {
            let size_args = vec!["--size".to_string(), size.to_string()];
            Turns {
                unit: Unit::GBps(size as u64),
                plan: ctx.plan(n),
                raw: contender(Who::Raw, format!("raw.stream_{label}"), move |ctx, plan| {
                    raw::stream(size, &ctx.allowed, plan)
                }),
                refs: Vec::new(),
                ours: ours_in(&name, move |ctx, plan| {
                    ours::stream(size, &ctx.allowed, plan)
                }),
                cpython: PyFigure::Turn(py_script(format!("py.{name}"), "stream.py", size_args)),
                krate: ipc_in(&name, move |ctx, plan| {
                    crates::stream(size, &ctx.allowed, plan)
                }),
                // ">= ipc-channel" only where the raw loop leaves room:
                // at 1 MiB ipc-channel runs at the raw write/read loop's
                // rate within the noise (docs::RETIRED_GOALS).
                goals: if size > 1 << 20 {
                    vec![Goal::Raw(0.8), Goal::Crate(1.0)]
                } else {
                    vec![Goal::Raw(0.8)]
                },
                name,
            }
            .measure(ctx, refs)
        }));
    }
    for (family, fam, raw_label) in [
        (raw::Family::Unix, "unix", "unix"),
        (raw::Family::Inet, "inet", "tcp"),
    ] {
        let name = format!("conn_auth_{fam}");
        v.push(spec(name.clone(), move |ctx, refs| {
            let fam_args = vec!["--family".to_string(), fam.to_string()];
            Turns {
                unit: Unit::Rate("conn/s"),
                plan: ctx.plan(2000),
                raw: contender(
                    Who::Raw,
                    format!("raw.connect_{raw_label}"),
                    move |ctx, plan| raw::connect(family, &ctx.allowed, plan),
                ),
                refs: Vec::new(),
                ours: ours_in(&name, move |ctx, plan| {
                    ours::connect(family, &ctx.allowed, plan)
                }),
                cpython: PyFigure::Turn(py_script(format!("py.{name}"), "conn_auth.py", fam_args)),
                krate: None,
                goals: vec![Goal::Py(2.0)],
                name,
            }
            .measure(ctx, refs)
        }));
    }
    for (k, n_fast, n_py) in [
        (1usize, 200_000u64, 20_000u64),
        (100, 20_000, 2_000),
        (1000, 2_000, 200),
    ] {
        let name = format!("wait_{k}idle");
        v.push(spec(name.clone(), move |ctx, _| {
            let raw = (format!("raw.poll_{k}idle"), raw::poll);
            let goals = vec![Goal::Raw(1.0 / 1.2)];
            wait_row(ctx, name, k, (n_fast, n_py), raw, ours::wait, goals)
        }));
    }
    v.push(spec("waiter_1000idle", |ctx, _| {
        let raw = ("raw.epoll_1000idle".to_string(), raw::epoll);
        let goals = vec![Goal::Py(50.0)];
        let name = "waiter_1000idle".to_string();
        wait_row(ctx, name, 1000, (200_000, 200), raw, ours::waiter, goals)
    }));
    for (size, label) in [(64usize, "64B"), (4096, "4KiB"), (1 << 20, "1MiB")] {
        let name = format!("heap_{label}");
        v.push(spec(name.clone(), move |ctx, _| {
            let unit = Unit::Rate("pairs/s");
            let raw_plan = ctx.plan(2_000_000);
            let raw = ctx.raw(format!("raw.malloc_free_{label}"), unit, |_| {
                raw::malloc_free(size, &raw_plan)
            });
            let size_args = vec!["--size".to_string(), size.to_string()];
            let ours = ctx.example(
                &format!("ours.{name}"),
                unit,
                "mp-heap",
                "heap_bench",
                size_args.clone(),
                500_000,
            );
            let cpython = ctx.py(&format!("py.{name}"), unit, "heap.py", size_args, 50_000);
            row(name, unit, raw, ours, cpython, vec![Goal::Py(50.0)])
        }));
    }
    for method in ["fork", "spawn", "forkserver"] {
        let name = format!("proc_{method}");
        v.push(spec(name.clone(), move |ctx, _| {
            let unit = Unit::Rate("proc/s");
            // Measured in a fresh copy of this executable (see
            // raw::in_fresh_process): the real minimum.
            let (raw_name, role, n_raw) = if method == "spawn" {
                ("raw.fork_exec_true", raw::ROLE_FORK_EXEC, 500)
            } else {
                ("raw.fork_waitpid", raw::ROLE_FORK_WAIT, 2000)
            };
            let plan = ctx.plan(n_raw);
            let raw = ctx.raw(raw_name, unit, |_| raw::in_fresh_process(role, &plan));
            let method_args = vec!["--method".to_string(), method.to_string()];
            let (n_ours, n_py) = match method {
                "fork" => (300, 200),
                "spawn" => (100, 10),
                _ => (300, 60),
            };
            let ours = ctx.example(
                &format!("ours.{name}"),
                unit,
                "mp-context",
                "procstart",
                method_args.clone(),
                n_ours,
            );
            let cpython = ctx.py(
                &format!("py.{name}"),
                unit,
                "procstart.py",
                method_args,
                n_py,
            );
            let (krate, goals) = match method {
                "fork" => (None, vec![Goal::Raw(1.0 / 1.5)]),
                "spawn" => {
                    let plan = ctx.plan(200);
                    let c = ctx.cell(Who::Crate, "procspawn.spawn_join", unit, |_| {
                        crates::procspawn(&plan)
                    });
                    (Some(("procspawn".to_string(), c)), vec![Goal::Crate(1.0)])
                }
                _ => (None, vec![Goal::Py(15.0)]),
            };
            Row {
                krate,
                ..row(name, unit, raw, ours, cpython, goals)
            }
        }));
    }
    v.extend(pickle::specs());
    v.extend(sync::specs());
    v.extend(queue::specs());
    v.extend(pool::specs());
    v.extend(threadpool::specs());
    v.extend(manager::specs());
    v.extend(manager_interop::specs());
    v
}

/// The facts a reader needs to judge the run, without local paths (they
/// go into BENCHMARKS.md), and the local ones for the terminal.
fn preamble(ctx: &Ctx, load: &str) -> (Vec<String>, Vec<String>) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let (py, local) = match &ctx.python {
        Ok(p) => (
            format!("CPython {}", p.version),
            vec![format!("CPython: {}", p.exe.display())],
        ),
        Err(why) => (format!("CPython: {why}"), Vec::new()),
    };
    let portable = vec![
        format!(
            "mp-bench{}: {} repetitions; {} CPUs allowed {:?}; {model}; Linux {}; {}",
            if ctx.opts.quick { " --quick" } else { "" },
            ctx.reps,
            ctx.allowed.len(),
            ctx.allowed,
            kernel.trim(),
            docs::utc_date(std::time::SystemTime::now()),
        ),
        format!(
            "{py}; mp-conn rows {}; low-latency spin bound {} us.",
            if ours::BUILT {
                "built"
            } else {
                "not built (feature conn off)"
            },
            SPIN.as_micros()
        ),
        format!(
            "Load average (1 min) at the start: {load}: other work on the machine shows here and in the spreads."
        ),
    ];
    (portable, local)
}

/// The 1-minute load average, as /proc/loadavg says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The workspace root (mp-bench is never used outside it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn default_out() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench")
        .join("BENCHMARKS.md")
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the run's documents: with `--out`, the BENCHMARKS document
/// there; after a full run, BENCHMARKS.md and README.md's headline table;
/// after a partial one, `target/bench/BENCHMARKS.md`.
fn write_docs(opts: &Options, report: &Report) -> Result<(), String> {
    let full = opts.filters.is_empty() && !opts.quick && !opts.raw_only;
    let md = docs::benchmarks_md(report);
    if let Some(out) = &opts.out {
        write_file(out, &md)?;
        eprintln!("mp-bench: written to {}", out.display());
        return Ok(());
    }
    if !full {
        let out = default_out();
        write_file(&out, &md)?;
        eprintln!(
            "mp-bench: a partial run: written to {} (BENCHMARKS.md and README.md are left alone)",
            out.display()
        );
        return Ok(());
    }
    let root = workspace_root();
    write_file(&root.join("BENCHMARKS.md"), &md)?;
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .map_err(|e| format!("{}: {e}", readme_path.display()))?;
    let readme = docs::splice_headlines(&readme, &docs::headlines(report))?;
    write_file(&readme_path, &readme)?;
    eprintln!("mp-bench: written BENCHMARKS.md and README.md's headline table");
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--role") {
        return run_role(&args[1..]);
    }
    let opts = parse_args(args)?;
    let all = specs();
    let selected: Vec<Spec> = all
        .into_iter()
        .filter(|s| {
            opts.filters.is_empty() || opts.filters.iter().any(|f| s.name.contains(f.as_str()))
        })
        .collect();
    if opts.list {
        for s in &selected {
            println!("{}", s.name);
        }
        return Ok(());
    }
    if selected.is_empty() {
        return Err(format!(
            "no benchmark matches {:?} (try --list)",
            opts.filters
        ));
    }
    sys::raise_nofile_limit();
    let reps = opts.reps.unwrap_or(if opts.quick { 3 } else { 7 });
    let python = if opts.raw_only {
        Err("skipped (--raw-only)".into())
    } else {
        Python::find()
    };
    let mut ctx = Ctx {
        reps,
        allowed: measure::allowed_cpus(),
        python,
        examples: None,
        memo: HashMap::new(),
        taken: 0,
        opts,
    };
    let t0 = Instant::now();
    let (preamble, local) = preamble(&ctx, &load_average());
    let mut report = Report {
        preamble,
        local,
        ..Report::default()
    };
    for s in selected {
        let row = (s.make)(&mut ctx, &mut report.refs);
        report.rows.push(row);
    }
    report.preamble.push(format!(
        "Measured in {:.0} s; load average (1 min) at the end: {}.",
        t0.elapsed().as_secs_f64(),
        load_average()
    ));
    print!("\n{}", report.to_text());
    write_docs(&ctx.opts, &report)
}

/// Internal roles, run in a fresh copy of this executable.
fn run_role(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some(manager_interop::ROLE_CANNED) {
        return manager_interop::canned_role(&args[1..]);
    }
    let plan = role_plan(args)?;
    match args[0].as_str() {
        "procspawn" => crates::procspawn_role(&plan).map_err(|e| e.to_string()),
        raw::ROLE_FORK_WAIT => raw_role(raw::fork_wait(&plan)),
        raw::ROLE_FORK_EXEC => raw_role(raw::fork_exec_true(&plan)),
        pool::ROLE_RAW_START => pool::raw_start_role(&plan),
        pool::ROLE_PROCSPAWN_POOL => pool::procspawn_pool_role(&plan),
        other => Err(format!("unknown role {other:?}")),
    }
}

fn raw_role(reps: Result<Vec<table::Rep>, String>) -> Result<(), String> {
    measure::print_reps(&reps?);
    Ok(())
}

/// The plan options of a role: `NAME [--warmup N] [--count N] [--reps N]`.
fn role_plan(args: &[String]) -> Result<Plan, String> {
    let (_, rest) = args.split_first().ok_or("--role needs a name")?;
    let mut plan = Plan {
        warmup: 1,
        n: 1,
        reps: 1,
    };
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let v: u64 = it
            .next()
            .ok_or_else(|| format!("{a} needs a value"))?
            .parse()
            .map_err(|e| format!("{a}: {e}"))?;
        match a.as_str() {
            "--warmup" => plan.warmup = v,
            "--count" => plan.n = v,
            "--reps" => plan.reps = v as usize,
            other => return Err(format!("unknown role option {other:?}")),
        }
    }
    Ok(plan)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The raw process-start loops are served first of all, in a process
    // that has allocated nothing else yet (not even procspawn's state).
    if args.first().map(String::as_str) == Some("--role")
        && args.get(1).is_some_and(|r| {
            r == raw::ROLE_FORK_WAIT || r == raw::ROLE_FORK_EXEC || r == pool::ROLE_RAW_START
        })
    {
        return match run_role(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mp-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // procspawn's children re-enter here and are served before anything else.
    procspawn::init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
