//! The exact-read rows `pipe_rtt_64B_exact` (each placement): 64-byte
//! round trips over `mp_conn::pipe(true)` with both ends reading exactly,
//! never past the current message. That is what an end that may be shared
//! does (after `try_clone`, after being passed to another process, after a
//! fork), and what CPython always does; beside the read-ahead rows
//! `pipe_rtt_64B`, they show what exactness costs.
//!
//! The raw limit is the framed raw ping-pong (read the 4-byte header, then
//! the payload: the same two reads), shared with the `pipe_rtt_64B` rows'
//! reference rows; CPython's figure is its duplex `Pipe`, shared with those
//! rows too.

use crate::measure::{Placement, Plan};
use crate::table::{Goal, Rep};
use crate::{PyFigure, RTT, Spec, Turns, ours_in, py_pipe, raw, raw_at, rtt_count, spec};

/// Ours: both ends exact.
#[cfg(feature = "conn")]
fn ours(p: Placement, cpus: &[usize], plan: &Plan) -> Result<Vec<Rep>, String> {
    crate::ours::pingpong_over(p, cpus, plan, None, true, || mp_conn::pipe(true))
}

#[cfg(not(feature = "conn"))]
fn ours(_: Placement, _: &[usize], _: &Plan) -> Result<Vec<Rep>, String> {
    Err("n/a (not built: mp-bench without feature conn)".into())
}

/// One `pipe_rtt_64B_exact` row per placement.
pub(crate) fn specs() -> Vec<Spec> {
    Placement::ALL
        .into_iter()
        .map(|p| {
            let name = format!("pipe_rtt_64B_exact{}", p.tag());
            spec(name.clone(), move |ctx, refs| {
                Turns {
                    unit: RTT,
                    plan: ctx.plan(rtt_count(p)),
                    raw: raw_at("pingpong_64B_framed", p, |p, cpus, plan| {
                        raw::pingpong(raw::PingPong::Framed, p, cpus, plan)
                    }),
                    refs: Vec::new(),
                    ours: ours_in(&name, move |ctx, plan| ours(p, &ctx.allowed, plan)),
                    cpython: PyFigure::Turn(py_pipe(p)),
                    krate: None,
                    // Two reads a message, as the framed raw loop and CPython.
                    goals: vec![Goal::Raw(0.9), Goal::Py(1.0)],
                    name,
                }
                .measure(ctx, refs)
            })
        })
        .collect()
}
