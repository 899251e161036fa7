//! Stand-in for the mp-conn rows when this build lacks the `conn`
//! feature: every "ours" cell says so instead of showing a number.

use std::time::Duration;

use crate::measure::{Placement, Plan};
use crate::raw;
use crate::table::Rep;

/// Whether this build has the mp-conn rows.
pub(crate) const BUILT: bool = false;

fn not_built() -> Result<Vec<Rep>, String> {
    Err("n/a (not built: mp-bench without feature conn)".into())
}

pub(crate) fn pingpong(
    _: Placement,
    _: &[usize],
    _: &Plan,
    _: Option<Duration>,
) -> Result<Vec<Rep>, String> {
    not_built()
}

pub(crate) fn pingpong_pipe_pair(_: Placement, _: &[usize], _: &Plan) -> Result<Vec<Rep>, String> {
    not_built()
}

pub(crate) fn stream(_: usize, _: &[usize], _: &Plan) -> Result<Vec<Rep>, String> {
    not_built()
}

pub(crate) fn connect(_: raw::Family, _: &[usize], _: &Plan) -> Result<Vec<Rep>, String> {
    not_built()
}

pub(crate) fn wait(_: usize, _: &Plan) -> Result<Vec<Rep>, String> {
    not_built()
}

pub(crate) fn waiter(_: usize, _: &Plan) -> Result<Vec<Rep>, String> {
    not_built()
}
