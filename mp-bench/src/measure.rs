//! Measurement machinery shared by every contender: warm-up then timed
//! blocks, forked peer pairs pinned to CPUs, and running other programs
//! (the CPython scripts, our crates' examples, our own roles) that print
//! `rep OPS WALL_SECONDS CPU_SECONDS` lines.

use std::io::{self, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;
use crate::table::Rep;

/// How much to run: `warmup` untimed operations, then `reps` timed blocks
/// of `n` operations each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    pub(crate) warmup: u64,
    pub(crate) n: u64,
    pub(crate) reps: usize,
}

impl Plan {
    /// The arguments every script and role takes for this plan.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--warmup".into(),
            self.warmup.to_string(),
            "--count".into(),
            self.n.to_string(),
            "--reps".into(),
            self.reps.to_string(),
        ]
    }
}

/// Runs `op` `plan.warmup` times, then `plan.reps` blocks of `plan.n`
/// times; returns each block's wall and CPU time (this process and its
/// waited-for children).
pub(crate) fn run_blocks(
    plan: &Plan,
    mut op: impl FnMut() -> io::Result<()>,
) -> io::Result<Vec<Rep>> {
    for _ in 0..plan.warmup {
        op()?;
    }
    let mut reps = Vec::with_capacity(plan.reps);
    for _ in 0..plan.reps {
        let cpu0 = sys::cpu_now();
        let t0 = Instant::now();
        for _ in 0..plan.n {
            op()?;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = sys::cpu_now() - cpu0;
        reps.push(Rep {
            ops: plan.n as f64,
            wall,
            cpu,
        });
    }
    Ok(reps)
}

/// Where the two peers of a round trip run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// The scheduler decides.
    Free,
    /// Both pinned to one CPU.
    Same,
    /// One CPU each.
    Split,
}

impl Placement {
    pub(crate) const ALL: [Placement; 3] = [Placement::Free, Placement::Same, Placement::Split];

    /// The row-name suffix, as in cpython-baseline.txt.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Placement::Free => "",
            Placement::Same => "@same",
            Placement::Split => "@split",
        }
    }

    /// The CPUs of (parent, child), or an error when the machine has too few.
    pub(crate) fn cpus(self, allowed: &[usize]) -> Result<(Option<usize>, Option<usize>), String> {
        match self {
            Placement::Free => Ok((None, None)),
            Placement::Same => match allowed.first() {
                Some(&c) => Ok((Some(c), Some(c))),
                None => Err("n/a (no CPU in affinity mask)".into()),
            },
            Placement::Split => match allowed {
                [a, b, ..] => Ok((Some(*a), Some(*b))),
                _ => Err("n/a (needs 2 CPUs)".into()),
            },
        }
    }
}

/// The CPUs this process may use, read once at start.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    sys::allowed_cpus().unwrap_or_default()
}

fn pin(cpu: Option<usize>) -> io::Result<()> {
    match cpu {
        Some(c) => sys::set_cpus(&[c]),
        None => Ok(()),
    }
}

fn encode_f64s(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect()
}

/// Runs a two-process measurement: `setup` makes both peers' ends, then we
/// fork; the child drops the parent's end, pins itself and runs `child`,
/// the parent drops the child's end, pins itself and runs `parent`. Each
/// timed block's CPU time is the parent's plus the child's (reported back
/// over a private pipe); wall time is the parent's.
pub(crate) fn forked_pair<P, C>(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
    setup: impl FnOnce() -> io::Result<(P, C)>,
    parent: impl FnOnce(P, &Plan) -> io::Result<Vec<Rep>>,
    child: impl FnOnce(C, &Plan) -> io::Result<Vec<Rep>>,
) -> Result<Vec<Rep>, String> {
    let (parent_cpu, child_cpu) = placement.cpus(allowed)?;
    let err = |what: &str, e: io::Error| format!("error: {what}: {e}");
    let (p_end, c_end) = setup().map_err(|e| err("setup", e))?;
    let (report_r, report_w) = sys::pipe().map_err(|e| err("pipe", e))?;
    let mut c_slot = Some((c_end, report_w));
    let mut p_slot = Some((p_end, report_r));
    let pid = sys::fork_run(|| {
        drop(p_slot.take());
        let (c_end, report_w) = c_slot.take().expect("child end");
        if pin(child_cpu).is_err() {
            return 3;
        }
        match child(c_end, plan) {
            Ok(reps) => {
                let cpus: Vec<f64> = reps.iter().map(|r| r.cpu).collect();
                match sys::write_all(std::os::fd::AsFd::as_fd(&report_w), &encode_f64s(&cpus)) {
                    Ok(()) => 0,
                    Err(_) => 4,
                }
            }
            Err(e) => {
                eprintln!("mp-bench peer: {e}");
                2
            }
        }
    })
    .map_err(|e| err("fork", e))?;
    drop(c_slot.take());
    let (p_end, report_r) = p_slot.take().expect("parent end");
    let result = pin(parent_cpu).and_then(|()| parent(p_end, plan));
    // Back to every allowed CPU for whatever runs next.
    let _ = sys::set_cpus(allowed);
    let mut reaped = None;
    if result.is_err() {
        // Give the peer a moment to fail on its own (its error is the
        // interesting one), then make sure it ends.
        let deadline = Instant::now() + Duration::from_secs(2);
        while reaped.is_none() && Instant::now() < deadline {
            reaped = sys::try_wait_pid(pid).ok().flatten();
            std::thread::sleep(Duration::from_millis(5));
        }
        if reaped.is_none() {
            sys::kill(pid);
        }
    }
    let mut report = Vec::new();
    let read = std::fs::File::from(report_r).read_to_end(&mut report);
    let status = match reaped {
        Some(status) => status,
        None => sys::wait_pid(pid).map_err(|e| err("waitpid", e))?,
    };
    // The peer's failure explains the parent's (a broken pipe, ...): name it first.
    match (sys::status_problem(status), result) {
        (Some(problem), Err(e)) => Err(format!("error: {problem}; parent: {e}")),
        (Some(problem), Ok(_)) => Err(format!("error: {problem}")),
        (None, Err(e)) => Err(err("parent", e)),
        (None, Ok(reps)) => finish(reps, read, &report),
    }
}

/// [`forked_pair`] where each peer measures one operation with
/// [`run_blocks`]: `parent` and `child` make it from their end (after the
/// fork, in the process that runs it).
pub(crate) fn forked_ops<P, C, PO, CO>(
    placement: Placement,
    allowed: &[usize],
    plan: &Plan,
    setup: impl FnOnce() -> io::Result<(P, C)>,
    parent: impl FnOnce(P) -> PO,
    child: impl FnOnce(C) -> CO,
) -> Result<Vec<Rep>, String>
where
    PO: FnMut() -> io::Result<()>,
    CO: FnMut() -> io::Result<()>,
{
    forked_pair(
        placement,
        allowed,
        plan,
        setup,
        |p, plan| run_blocks(plan, parent(p)),
        |c, plan| run_blocks(plan, child(c)),
    )
}

/// A one-way stream between two unpinned forked peers ([`forked_ops`]):
/// per operation the child sends one `size`-byte message (of ones) with
/// `send`, and the parent runs the receiving operation `receiver` makes.
pub(crate) fn forked_stream<P, C, PO>(
    size: usize,
    allowed: &[usize],
    plan: &Plan,
    setup: impl FnOnce() -> io::Result<(P, C)>,
    receiver: impl FnOnce(P) -> PO,
    send: impl Fn(&C, &[u8]) -> io::Result<()>,
) -> Result<Vec<Rep>, String>
where
    PO: FnMut() -> io::Result<()>,
{
    let sender = |c: C| {
        let buf = vec![1u8; size];
        move || send(&c, &buf)
    };
    forked_ops(Placement::Free, allowed, plan, setup, receiver, sender)
}

fn finish(mut reps: Vec<Rep>, read: io::Result<usize>, report: &[u8]) -> Result<Vec<Rep>, String> {
    let err = |what: &str, e: io::Error| format!("error: {what}: {e}");
    read.map_err(|e| err("report", e))?;
    let child_cpus = decode_f64s(report);
    if child_cpus.len() != reps.len() {
        return Err(format!(
            "error: peer reported {} blocks, expected {}",
            child_cpus.len(),
            reps.len()
        ));
    }
    for (rep, c) in reps.iter_mut().zip(child_cpus) {
        rep.cpu += c;
    }
    Ok(reps)
}

/// Parses `rep OPS WALL CPU` lines.
pub(crate) fn parse_reps(stdout: &str) -> Vec<Rep> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            if w.next()? != "rep" {
                return None;
            }
            let mut num = || w.next()?.parse::<f64>().ok();
            Some(Rep {
                ops: num()?,
                wall: num()?,
                cpu: num()?,
            })
        })
        .collect()
}

/// Prints reps in the format [`parse_reps`] reads (for our own roles).
pub(crate) fn print_reps(reps: &[Rep]) {
    for r in reps {
        println!("rep {} {:.9} {:.9}", r.ops, r.wall, r.cpu);
    }
}

/// What a finished program left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) stdout: String,
    /// CPU seconds of the program and the children it waited for.
    pub(crate) cpu: f64,
}

/// Runs `cmd` to completion with a deadline; stdout captured, stderr
/// captured and shown in the error when it fails.
pub(crate) fn run_program(cmd: &mut Command, timeout: Duration) -> Result<Finished, String> {
    let shown = format!("{:?}", cmd.get_program());
    let cpu0 = sys::cpu_children();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("error: cannot run {shown}: {e}"))?;
    // Drain both pipes on threads so a chatty program cannot block; the
    // readers end with the program, before we fork anything again.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("error: {shown} timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("error: waiting for {shown}: {e}")),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    let cpu = sys::cpu_children() - cpu0;
    let status = status?;
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("error: {shown} {status}: {}", tail.join(" / ")));
    }
    Ok(Finished { stdout, cpu })
}

/// Runs a program that prints `rep` lines and returns them.
pub(crate) fn run_reps(
    cmd: &mut Command,
    timeout: Duration,
    plan: &Plan,
) -> Result<Vec<Rep>, String> {
    let done = run_program(cmd, timeout)?;
    let reps = parse_reps(&done.stdout);
    if reps.len() != plan.reps {
        return Err(format!(
            "error: expected {} rep lines, got {}",
            plan.reps,
            reps.len()
        ));
    }
    Ok(reps)
}

/// Runs one of our crates' examples that prints a rate as its last stdout
/// line (`heap_bench`, `procstart`): one short warm-up run, then one run
/// per repetition. CPU time is the example's whole process (with the
/// children it waited for), start-up included.
pub(crate) fn run_rate_example(
    exe: &Path,
    args: &[String],
    count_flag_value: (u64, u64),
    reps: usize,
    timeout: Duration,
) -> Result<Vec<Rep>, String> {
    let (warm, count) = count_flag_value;
    let run = |n: u64| -> Result<(f64, f64), String> {
        let done = run_program(
            Command::new(exe)
                .args(args)
                .args(["--count", &n.to_string()]),
            timeout,
        )?;
        let last = done
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let rate: f64 = last
            .trim()
            .parse()
            .map_err(|_| format!("error: last stdout line {last:?} is not a number"))?;
        Ok((rate, done.cpu))
    };
    run(warm)?;
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (rate, cpu) = run(count)?;
        if rate.is_nan() || rate <= 0.0 {
            return Err(format!("error: example printed rate {rate}"));
        }
        out.push(Rep {
            ops: count as f64,
            wall: count as f64 / rate,
            cpu,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rep_lines_round_trip_and_other_lines_are_ignored() {
        let text = "info python 3.13\nrep 100 0.5 0.25\nrep 100 0.25 0.125\nbogus\n";
        let reps = parse_reps(text);
        assert_eq!(reps.len(), 2);
        assert_eq!(
            reps[0],
            Rep {
                ops: 100.0,
                wall: 0.5,
                cpu: 0.25
            }
        );
        assert_eq!(decode_f64s(&encode_f64s(&[1.5, -2.0])), vec![1.5, -2.0]);
    }

    #[test]
    fn placements_need_enough_cpus() {
        assert!(Placement::Split.cpus(&[0]).is_err());
        assert_eq!(Placement::Split.cpus(&[2, 5]), Ok((Some(2), Some(5))));
        assert_eq!(Placement::Same.cpus(&[3, 4]), Ok((Some(3), Some(3))));
        assert_eq!(Placement::Free.cpus(&[]), Ok((None, None)));
    }
}
