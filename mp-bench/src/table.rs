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

impl Row {
    fn krate_cell(&self) -> Option<&Cell> {
        self.krate.as_ref().map(|(_, c)| c)
    }

    /// Each goal with "ok", "MISS (value)" or "pending" (a side is n/a).
    pub(crate) fn goal_text(&self) -> String {
        let na: Cell = Err(String::new());
        let krate = self.krate_cell().unwrap_or(&na);
        let crate_name = self.krate.as_ref().map_or("crate", |(n, _)| n.as_str());
        let mut parts = Vec::new();
        for goal in &self.goals {
            let (label, got, ok) = match *goal {
                Goal::Raw(f) => {
                    let r = perf_ratio(self.unit, &self.ours, &self.raw);
                    (format!(">={f:.2}x raw"), r, r.map(|r| r >= f))
                }
                Goal::Py(f) => {
                    let r = perf_ratio(self.unit, &self.ours, &self.cpython);
                    (format!(">={f}x CPython"), r, r.map(|r| r >= f))
                }
                Goal::Crate(f) => {
                    let r = perf_ratio(self.unit, &self.ours, krate);
                    (format!(">={f}x {crate_name}"), r, r.map(|r| r >= f))
                }
                Goal::CpuRaw(f) => {
                    let r = cpu_ratio(&self.ours, &self.raw);
                    (format!("cpu<={f}x raw"), r, r.map(|r| r <= f))
                }
                Goal::CpuPy(f) => {
                    let r = cpu_ratio(&self.ours, &self.cpython);
                    (format!("cpu<={f:.2}x CPython"), r, r.map(|r| r <= f))
                }
            };
            parts.push(match (ok, got) {
                (Some(true), _) => format!("{label}: ok"),
                (Some(false), Some(r)) => format!("{label}: MISS ({r:.2})"),
                _ => format!("{label}: pending"),
            });
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
    pub(crate) preamble: Vec<String>,
    pub(crate) rows: Vec<Row>,
    pub(crate) refs: Vec<RefRow>,
}

const LEGEND: &[&str] = &[
    "Medians over the repetitions; (N%) = spread (max-min)/median, as in cpython-baseline.txt.",
    "@same = both peers pinned to one CPU, @split = one CPU each, no tag = the scheduler decides.",
    "Ratios say how many times better ours is (>1: ours better; for us/call rows, their time / ours).",
    "cpu = CPU time (user+sys, all processes of the operation) in microseconds per operation.",
    "heap_*/proc_* ours: figures printed by the heap_bench/procstart examples; their cpu is the whole example process (start-up included).",
    "Under forkserver, cpu (ours and CPython) leaves out the children, which belong to the fork server.",
    "raw.fork_waitpid and raw.fork_exec_true run in a freshly exec'ed copy of mp-bench, before it allocates anything (fork copies the parent's page tables, so the bench process itself would fork slower): the raw limit is a small program's.",
    "pipe_rtt_64B_pipepair*: ours is mp_conn::pipe_pair() (two OS pipes, opt-in); raw is a two-pipes ping-pong; CPython is its duplex Pipe (a socketpair), as in pipe_rtt_64B*.",
    "pool_*: two workers (fork, or the named start method); ours is mp-pool's pool_bench example, CPython's multiprocessing.Pool, procspawn's Pool; cpu counts the workers; raw.pool_echo_* is two forked workers echoing batches of 8-byte tasks over pipes (no framing or encoding), raw.pool_start_2x_fork_rtt forks two children, one round trip each, waits.",
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
    /// For the rows with a "cpu <= f x CPython" goal: the raw limit's own
    /// CPU per operation as a fraction of CPython's in this run, so that a
    /// reader sees when the goal lies below what the system calls alone
    /// cost. `None` when no such row has both figures.
    pub(crate) fn cpu_floor_note(&self) -> Option<String> {
        let parts: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                let f = r.goals.iter().find_map(|g| match *g {
                    Goal::CpuPy(f) => Some(f),
                    _ => None,
                })?;
                let floor = cpu_ratio(&r.raw, &r.cpython)?;
                let below = if floor > f { " (goal below it)" } else { "" };
                Some(format!("{} {floor:.2}{below}", r.name))
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "CPU floor of the cpu<=x CPython goals, this run: the raw limit's cpu per operation / CPython's = {}.",
            parts.join(", ")
        ))
    }

    /// Preamble, legend and the run's notes, in order.
    fn header_lines(&self) -> Vec<String> {
        self.preamble
            .iter()
            .cloned()
            .chain(LEGEND.iter().map(|l| l.to_string()))
            .chain(self.cpu_floor_note())
            .collect()
    }

    /// The aligned text table for the terminal.
    pub(crate) fn to_text(&self) -> String {
        self.render(str::to_string, text_table)
    }

    /// The same table as Markdown, for the README.
    pub(crate) fn to_markdown(&self) -> String {
        self.render(|line| format!("{}  ", md_escape(line)), md_table)
    }

    /// The header lines (each as `line` writes it), then the rows and the
    /// reference rows, each a table as `table` lays it out.
    fn render(
        &self,
        line: impl Fn(&str) -> String,
        table: fn(&mut String, &[&str], &[Vec<String>]),
    ) -> String {
        let mut out = String::new();
        for l in self.header_lines() {
            let _ = writeln!(out, "{}", line(&l));
        }
        out.push('\n');
        let lines: Vec<Vec<String>> = self.rows.iter().map(Row::cells).collect();
        table(&mut out, &HEADERS, &lines);
        if !self.refs.is_empty() {
            out.push('\n');
            table(&mut out, &REF_HEADERS, &ref_lines(&self.refs));
        }
        out
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

    #[test]
    fn cpu_floor_note_names_rows_whose_goal_is_below_the_raw_cpu() {
        let row = |name: &str, raw_cpu: f64, py_cpu: f64| Row {
            name: name.into(),
            unit: Unit::Rate("rt/s"),
            ours: m(&[1.0]),
            cpython: Ok(Measured {
                values: vec![1.0],
                cpu_us: vec![py_cpu],
            }),
            raw_name: "raw.x".into(),
            raw: Ok(Measured {
                values: vec![1.0],
                cpu_us: vec![raw_cpu],
            }),
            krate: None,
            goals: vec![Goal::CpuPy(1.0 / 3.0)],
        };
        let mut report = Report {
            rows: vec![row("a", 4.0, 10.0), row("b", 2.0, 10.0)],
            ..Report::default()
        };
        let note = report.cpu_floor_note().unwrap();
        assert!(note.contains("a 0.40 (goal below it)"), "{note}");
        assert!(
            note.contains("b 0.20,") || note.ends_with("b 0.20."),
            "{note}"
        );
        assert!(!note.contains("b 0.20 (goal"), "{note}");
        assert!(report.to_text().contains(&note));
        assert!(report.to_markdown().contains(&note));
        report.rows[0].goals = vec![Goal::Raw(0.9)];
        report.rows[1].cpython = Err("n/a".into());
        assert_eq!(report.cpu_floor_note(), None);
    }
}
