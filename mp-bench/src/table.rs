//! The side-by-side table: one row per operation with our figure, CPython's,
//! the raw-syscall limit's and (where the issue names one) the Rust crate's,
//! their ratios, CPU time per operation and the goals checked.
//! Rendered twice from the same rows: aligned text for the terminal and
//! Markdown for the README.

use std::fmt::Write as _;

/// How a row's figure is read off the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unit {
    /// Operations per second (`label` names the operation: "rt/s", ...).
    Rate(&'static str),
    /// Gigabytes (1e9) per second, `bytes` per operation.
    GBps(u64),
    /// Microseconds per call (lower is better).
    MicrosPerCall,
}

impl Unit {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Unit::Rate(label) => label,
            Unit::GBps(_) => "GB/s",
            Unit::MicrosPerCall => "us/call",
        }
    }

    pub(crate) fn higher_is_better(self) -> bool {
        !matches!(self, Unit::MicrosPerCall)
    }

    /// The figure of one repetition.
    pub(crate) fn value(self, rep: &Rep) -> f64 {
        match self {
            Unit::Rate(_) => rep.ops / rep.wall,
            Unit::GBps(bytes) => rep.ops * bytes as f64 / rep.wall / 1e9,
            Unit::MicrosPerCall => rep.wall / rep.ops * 1e6,
        }
    }
}

/// One timed repetition: `ops` operations took `wall` seconds and `cpu`
/// seconds of user + system time, all processes involved counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rep {
    pub(crate) ops: f64,
    pub(crate) wall: f64,
    pub(crate) cpu: f64,
}

/// The repetitions of one contender, summarised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    /// The row's figure, one per repetition.
    pub(crate) values: Vec<f64>,
    /// CPU microseconds per operation, one per repetition.
    pub(crate) cpu_us: Vec<f64>,
}

impl Measured {
    pub(crate) fn from_reps(unit: Unit, reps: &[Rep]) -> Result<Measured, String> {
        if reps.is_empty() {
            return Err("no repetitions".into());
        }
        if let Some(bad) = reps.iter().find(|r| !(r.ops > 0.0 && r.wall > 0.0)) {
            return Err(format!("bad repetition {bad:?}"));
        }
        Ok(Measured {
            values: reps.iter().map(|r| unit.value(r)).collect(),
            cpu_us: reps.iter().map(|r| r.cpu / r.ops * 1e6).collect(),
        })
    }

    pub(crate) fn median(&self) -> f64 {
        median(&self.values)
    }

    /// (max - min) / median, in percent, as in cpython-baseline.txt.
    pub(crate) fn spread_pct(&self) -> f64 {
        let max = self.values.iter().copied().fold(f64::MIN, f64::max);
        let min = self.values.iter().copied().fold(f64::MAX, f64::min);
        (max - min) / self.median() * 100.0
    }

    pub(crate) fn cpu_median(&self) -> f64 {
        median(&self.cpu_us)
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A contender's result, or why there is none ("n/a (not built)", ...).
pub(crate) type Cell = Result<Measured, String>;

/// A goal of the issues, checked against the medians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// Ours performs at least this many times as well as the raw limit.
    Raw(f64),
    /// ... as well as CPython.
    Py(f64),
    /// ... as well as the Rust crate.
    Crate(f64),
    /// Our CPU time per operation is at most this many times the raw limit's.
    CpuRaw(f64),
    /// ... at most this many times CPython's.
    CpuPy(f64),
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) ours: Cell,
    pub(crate) cpython: Cell,
    pub(crate) raw_name: String,
    pub(crate) raw: Cell,
    /// The Rust crate named by the issue, if any: its name and result.
    pub(crate) krate: Option<(String, Cell)>,
    pub(crate) goals: Vec<Goal>,
}

/// How many times better `a` performs than `b` (>1: `a` is better).
fn perf_ratio(unit: Unit, a: &Cell, b: &Cell) -> Option<f64> {
    let (a, b) = (a.as_ref().ok()?.median(), b.as_ref().ok()?.median());
    Some(if unit.higher_is_better() {
        a / b
    } else {
        b / a
    })
}

fn cpu_ratio(a: &Cell, b: &Cell) -> Option<f64> {
    Some(a.as_ref().ok()?.cpu_median() / b.as_ref().ok()?.cpu_median())
}

/// Three significant figures, the way cpython-baseline.txt prints them.
pub(crate) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 1e7 {
        format!("{v:.3e}")
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Longest reason shown in a cell; the whole text is on stderr as the run
/// goes.
const MAX_REASON: usize = 60;

fn fmt_cell(cell: &Cell) -> String {
    match cell {
        Ok(m) => format!("{} ({:.0}%)", fmt_num(m.median()), m.spread_pct()),
        Err(why) if why.chars().count() > MAX_REASON => {
            let cut: String = why.chars().take(MAX_REASON - 3).collect();
            format!("{cut}...")
        }
        Err(why) => why.clone(),
    }
}

fn fmt_cpu(cell: &Cell) -> String {
    match cell {
        Ok(m) => fmt_num(m.cpu_median()),
        Err(_) => "-".into(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

impl Goal {
    /// How the goal reads in the table, `crate_name` filled in.
    pub(crate) fn label(self, crate_name: &str) -> String {
        match self {
            Goal::Raw(f) => format!(">={f:.2}x raw"),
            Goal::Py(f) => format!(">={f}x CPython"),
            Goal::Crate(f) => format!(">={f}x {crate_name}"),
            Goal::CpuRaw(f) => format!("cpu<={f}x raw"),
            Goal::CpuPy(f) => format!("cpu<={f:.2}x CPython"),
        }
    }

    /// Whether a ratio `r` on this goal's metric meets it.
    pub(crate) fn met_by(self, r: f64) -> bool {
        match self {
            Goal::Raw(f) | Goal::Py(f) | Goal::Crate(f) => r >= f,
            Goal::CpuRaw(f) | Goal::CpuPy(f) => r <= f,
        }
    }
}

impl Row {
    fn krate_cell(&self) -> Option<&Cell> {
        self.krate.as_ref().map(|(_, c)| c)
    }

    pub(crate) fn crate_name(&self) -> &str {
        self.krate.as_ref().map_or("crate", |(n, _)| n.as_str())
    }

    /// The other side of a goal stated against CPython or the crate.
    fn against(&self, goal: Goal) -> Option<&Cell> {
        match goal {
            Goal::Raw(_) | Goal::CpuRaw(_) => Some(&self.raw),
            Goal::Py(_) | Goal::CpuPy(_) => Some(&self.cpython),
            Goal::Crate(_) => self.krate_cell(),
        }
    }

    /// `who`'s ratio on `goal`'s metric: how many times better than the
    /// other side (rates), or its CPU per operation over the other's.
    fn ratio_of(&self, who: &Cell, goal: Goal) -> Option<f64> {
        let other = self.against(goal)?;
        match goal {
            Goal::Raw(_) | Goal::Py(_) | Goal::Crate(_) => perf_ratio(self.unit, who, other),
            Goal::CpuRaw(_) | Goal::CpuPy(_) => cpu_ratio(who, other),
        }
    }

    /// Our ratio on `goal`'s metric.
    pub(crate) fn ours_on(&self, goal: Goal) -> Option<f64> {
        self.ratio_of(&self.ours, goal)
    }

    /// What the raw limit itself reaches on a goal stated against CPython
    /// or the crate (`None` for goals stated against the raw limit, or
    /// when a side was not measured). If the raw limit misses the goal, no
    /// program built on the same system calls can meet it: the goal lies
    /// beyond the physical floor.
    pub(crate) fn raw_on(&self, goal: Goal) -> Option<f64> {
        match goal {
            Goal::Raw(_) | Goal::CpuRaw(_) => None,
            _ => self.ratio_of(&self.raw, goal),
        }
    }

    /// The goals that the raw limit itself misses in this run, with what
    /// it reached.
    pub(crate) fn goals_beyond_floor(&self) -> Vec<(Goal, f64)> {
        self.goals
            .iter()
            .filter_map(|&g| self.raw_on(g).filter(|&r| !g.met_by(r)).map(|r| (g, r)))
            .collect()
    }

    /// Each goal with "ok", "MISS (value)" or "pending" (a side is n/a);
    /// a goal the raw limit itself misses says so.
    pub(crate) fn goal_text(&self) -> String {
        let mut parts = Vec::new();
        for &goal in &self.goals {
            let label = goal.label(self.crate_name());
            let mut text = match self.ours_on(goal) {
                Some(r) if goal.met_by(r) => format!("{label}: ok"),
                Some(r) => format!("{label}: MISS ({r:.2})"),
                None => format!("{label}: pending"),
            };
            if let Some(r) = self.raw_on(goal).filter(|&r| !goal.met_by(r)) {
                text.push_str(&format!(" [beyond the floor: raw itself {r:.2}]"));
            }
            parts.push(text);
        }
        parts.join("; ")
    }

    /// The cells of this row, in the order of [`HEADERS`].
    pub(crate) fn cells(&self) -> Vec<String> {
        let na: Cell = Err("-".into());
        let krate = self.krate_cell().unwrap_or(&na);
        vec![
            self.name.clone(),
            self.unit.label().to_string(),
            fmt_cell(&self.ours),
            fmt_cell(&self.cpython),
            self.raw_name.clone(),
            fmt_cell(&self.raw),
            self.krate.as_ref().map_or("-".into(), |(n, _)| n.clone()),
            fmt_cell(krate),
            fmt_ratio(perf_ratio(self.unit, &self.ours, &self.raw)),
            fmt_ratio(perf_ratio(self.unit, &self.ours, &self.cpython)),
            fmt_ratio(perf_ratio(self.unit, &self.ours, krate)),
            fmt_cpu(&self.ours),
            fmt_cpu(&self.raw),
            fmt_cpu(&self.cpython),
            fmt_cpu(krate),
            self.goal_text(),
        ]
    }
}

/// Column headings, in the order of [`Row::cells`].
pub(crate) const HEADERS: [&str; 16] = [
    "benchmark",
    "unit",
    "ours",
    "CPython",
    "raw limit",
    "raw",
    "Rust crate",
    "crate",
    "ours/raw",
    "ours/Py",
    "ours/crate",
    "cpu ours",
    "cpu raw",
    "cpu Py",
    "cpu crate",
    "goals",
];

/// A raw-only reference line (the framed ping-pong, ...).
#[derive(Debug, Clone)]
pub(crate) struct RefRow {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) cell: Cell,
}

/// Everything one run measured, with the facts a reader needs to judge it.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Facts about the run that hold anywhere (no local paths): they go
    /// into BENCHMARKS.md.
    pub(crate) preamble: Vec<String>,
    /// Facts for the terminal only, such as the interpreter's path.
    pub(crate) local: Vec<String>,
    pub(crate) rows: Vec<Row>,
    pub(crate) refs: Vec<RefRow>,
}

/// What every table needs said.
const LEGEND: &[&str] = &[
    "Medians over the repetitions; (N%) = spread (max-min)/median, as in cpython-baseline.txt.",
    "@same = both peers pinned to one CPU, @split = one CPU each, no tag = the scheduler decides.",
    "Ratios say how many times better ours is (>1: ours better; for us/call rows, their time / ours).",
    "cpu = CPU time (user+sys, all processes of the operation) in microseconds per operation.",
    "A goal marked [beyond the floor] is one the raw limit itself misses in this run: no program on the same system calls can meet it.",
];

/// Notes about particular rows, shown when a row whose name starts with
/// the prefix is in the table. A module that adds rows adds its notes
/// here; a row without one needs none.
const ROW_NOTES: &[(&str, &str)] = &[
    (
        "pipe_rtt_64B_pipepair",
        "pipe_rtt_64B_pipepair*: ours is mp_conn::pipe_pair() (two OS pipes, opt-in); raw is a two-pipes ping-pong; CPython is its duplex Pipe (a socketpair), as in pipe_rtt_64B*.",
    ),
    (
        "pipe_rtt_64B_lowlat",
        "pipe_rtt_64B_lowlat*: ours spins a bounded time before blocking; CPython has no such mode, so its figure is its ordinary round trip.",
    ),
    (
        "heap_",
        "heap_* ours: figures printed by the heap_bench example; its cpu is the whole example process (start-up included).",
    ),
    (
        "proc_",
        "proc_* ours: figures printed by the procstart example; its cpu is the whole example process (start-up included).",
    ),
    (
        "proc_forkserver",
        "Under forkserver, cpu (ours and CPython) leaves out the children, which belong to the fork server.",
    ),
    (
        "proc_",
        "raw.fork_waitpid and raw.fork_exec_true run in a freshly exec'ed copy of mp-bench, before it allocates anything (fork copies the parent's page tables, so the bench process itself would fork slower): the raw limit is a small program's.",
    ),
    (
        "threadpool_",
        "threadpool_*: two worker threads in the bench process; ours is mp-dummy's Pool, CPython's multiprocessing.pool.ThreadPool, the threadpool crate (apply_async: execute + an mpsc result channel); raw.std_pool_mpsc_jobs_* is a plain pool of std threads taking boxed jobs from an mpsc channel behind a Mutex, results over one mpsc channel (map: one job per chunk, reassembled in order); raw.std_pool_condvar_* the same on a Mutex<VecDeque> + Condvar; raw.std_pool_mpsc_jobs_slot_per_task_apply_async gives each task its own result slot (Arc<(Mutex<Option<u64>>, Condvar)>), as a result handle per task needs.",
    ),
    (
        "mgr_pyclient_",
        "mgr_pyclient_*: one CPython 3.13 client program (python/manager_interop.py, SyncManager(address, authkey).connect() proxies over AF_UNIX) against three server processes: ours is mp-manager's manager_server --serializer pickle, CPython's its SyncManager server, raw.canned_manager a server in mp-bench that answers every frame with canned bytes (no decoding, no objects); cpu is the server process's alone (every thread, from /proc/PID/task/*/schedstat).",
    ),
    (
        "pool_",
        "pool_*: two workers (fork, or the named start method); ours is mp-pool's pool_bench example, CPython's multiprocessing.Pool, procspawn's Pool; cpu counts the workers; raw.pool_echo_* is two forked workers echoing batches of 8-byte tasks over pipes (no framing or encoding), raw.pool_start_2x_fork_rtt forks two children, one round trip each, waits.",
    ),
];

fn text_table(out: &mut String, headers: &[&str], lines: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for line in lines {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut put = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ");
            }
        }
        out.push('\n');
    };
    put(headers.to_vec());
    for line in lines {
        put(line.iter().map(String::as_str).collect());
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn md_table(out: &mut String, headers: &[&str], lines: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for line in lines {
        let cells: Vec<String> = line.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

fn ref_lines(refs: &[RefRow]) -> Vec<Vec<String>> {
    refs.iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.unit.label().to_string(),
                fmt_cell(&r.cell),
                fmt_cpu(&r.cell),
            ]
        })
        .collect()
}

const REF_HEADERS: [&str; 4] = ["raw reference", "unit", "raw", "cpu raw"];

impl Report {
    /// The legend: what every table needs said, then the notes of the rows
    /// this run has (each once).
    pub(crate) fn legend(&self) -> Vec<String> {
        let mut lines: Vec<String> = LEGEND.iter().map(|l| l.to_string()).collect();
        for (prefix, note) in ROW_NOTES {
            let present = self.rows.iter().any(|r| r.name.starts_with(prefix));
            if present && !lines.iter().any(|l| l == note) {
                lines.push(note.to_string());
            }
        }
        lines
    }

    /// The goals that the raw limit itself misses in this run, as
    /// `row: goal (raw itself r)`; empty when every goal is reachable.
    pub(crate) fn beyond_floor(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| {
                r.goals_beyond_floor().into_iter().map(move |(g, raw)| {
                    format!(
                        "{}: {} (raw itself {raw:.2})",
                        r.name,
                        g.label(r.crate_name())
                    )
                })
            })
            .collect()
    }

    /// The aligned text table for the terminal: the run's facts (local
    /// ones included), the legend, the rows and the reference rows.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        for l in self
            .local
            .iter()
            .chain(&self.preamble)
            .chain(&self.legend())
        {
            let _ = writeln!(out, "{l}");
        }
        let beyond = self.beyond_floor();
        if !beyond.is_empty() {
            let _ = writeln!(out, "Goals beyond the floor: {}.", beyond.join("; "));
        }
        out.push('\n');
        self.tables(&mut out, text_table);
        out
    }

    /// The rows and the reference rows as Markdown tables.
    pub(crate) fn markdown_tables(&self) -> String {
        let mut out = String::new();
        self.tables(&mut out, md_table);
        out
    }

    /// The rows, then the reference rows, each a table as `table` lays it
    /// out.
    fn tables(&self, out: &mut String, table: fn(&mut String, &[&str], &[Vec<String>])) {
        let lines: Vec<Vec<String>> = self.rows.iter().map(Row::cells).collect();
        table(out, &HEADERS, &lines);
        if !self.refs.is_empty() {
            out.push('\n');
            table(out, &REF_HEADERS, &ref_lines(&self.refs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(values: &[f64]) -> Cell {
        Ok(Measured {
            values: values.to_vec(),
            cpu_us: values.iter().map(|v| 1e6 / v).collect(),
        })
    }

    #[test]
    fn median_and_spread_follow_the_baseline_definition() {
        let cell = m(&[90.0, 100.0, 110.0, 95.0, 105.0]).unwrap();
        assert_eq!(cell.median(), 100.0);
        assert!((cell.spread_pct() - 20.0).abs() < 1e-9);
        assert_eq!(median(&[1.0, 3.0]), 2.0);
    }

    #[test]
    fn goals_compare_in_the_direction_of_the_unit() {
        let row = Row {
            name: "wait_1idle".into(),
            unit: Unit::MicrosPerCall,
            ours: m(&[1.0]),
            cpython: m(&[3.0]),
            raw_name: "raw.poll".into(),
            raw: m(&[0.9]),
            krate: None,
            goals: vec![Goal::Raw(1.0 / 1.2), Goal::Py(5.0)],
        };
        let text = row.goal_text();
        assert!(text.contains("raw: ok"), "{text}");
        assert!(text.contains("CPython: MISS (3.00)"), "{text}");
        let pending = Row {
            ours: Err("n/a (not built)".into()),
            ..row
        };
        assert!(pending.goal_text().contains("pending"));
        assert!(pending.cells()[2].contains("not built"));
    }

    /// A row whose raw limit costs `raw_cpu` and CPython `py_cpu` CPU per
    /// operation, at rates raw 100, ours 95, the crate 110.
    fn socketpair_row(name: &str, raw_cpu: f64, py_cpu: f64, goals: Vec<Goal>) -> Row {
        let with_cpu = |v: f64, cpu: f64| {
            Ok(Measured {
                values: vec![v],
                cpu_us: vec![cpu],
            })
        };
        Row {
            name: name.into(),
            unit: Unit::Rate("rt/s"),
            ours: with_cpu(95.0, raw_cpu * 1.1),
            cpython: with_cpu(50.0, py_cpu),
            raw_name: "raw.x".into(),
            raw: with_cpu(100.0, raw_cpu),
            krate: Some(("ipc-channel".into(), with_cpu(110.0, raw_cpu))),
            goals,
        }
    }

    #[test]
    fn goals_the_raw_limit_misses_are_marked_beyond_the_floor() {
        let old = vec![Goal::Crate(1.0), Goal::CpuPy(1.0 / 3.0)];
        let row = socketpair_row("pipe_rtt_64B", 4.0, 10.0, old);
        // The raw STREAM loop reaches 100/110 of the crate, and spends 0.4
        // of CPython's CPU: both goals lie beyond the floor.
        let text = row.goal_text();
        assert!(
            text.contains(">=1x ipc-channel: MISS (0.86) [beyond the floor: raw itself 0.91]"),
            "{text}"
        );
        assert!(
            text.contains("cpu<=0.33x CPython: MISS (0.44) [beyond the floor: raw itself 0.40]"),
            "{text}"
        );
        let now = vec![Goal::Raw(0.9), Goal::CpuRaw(1.2)];
        let row = Row { goals: now, ..row };
        assert_eq!(row.goal_text(), ">=0.90x raw: ok; cpu<=1.2x raw: ok");
        assert!(row.goals_beyond_floor().is_empty());
        // A goal the raw limit meets is not flagged, met or missed by ours.
        let row = Row {
            goals: vec![Goal::Py(1.5)],
            ..row
        };
        assert_eq!(row.goal_text(), ">=1.5x CPython: ok");
        let mut report = Report {
            rows: vec![row],
            ..Report::default()
        };
        assert!(report.beyond_floor().is_empty());
        report.rows[0].goals = vec![Goal::Crate(1.0)];
        assert_eq!(
            report.beyond_floor(),
            ["pipe_rtt_64B: >=1x ipc-channel (raw itself 0.91)"]
        );
        assert!(
            report
                .to_text()
                .contains("Goals beyond the floor: pipe_rtt_64B")
        );
    }

    #[test]
    fn the_legend_carries_the_notes_of_the_rows_present_once() {
        let row = |name: &str| socketpair_row(name, 1.0, 2.0, Vec::new());
        let report = Report {
            rows: vec![row("proc_fork"), row("proc_spawn"), row("a_new_row")],
            ..Report::default()
        };
        let legend = report.legend();
        let forks = legend
            .iter()
            .filter(|l| l.contains("raw.fork_waitpid"))
            .count();
        assert_eq!(forks, 1, "{legend:#?}");
        assert!(legend.iter().any(|l| l.starts_with("proc_* ours")));
        assert!(!legend.iter().any(|l| l.starts_with("heap_*")));
        assert!(!legend.iter().any(|l| l.contains("forkserver")));
        // A row nobody wrote a note for still renders, in both forms.
        assert!(report.to_text().contains("a_new_row"));
        assert!(report.markdown_tables().contains("| a_new_row | rt/s |"));
    }
}
