//! The pickle rows (mp-pickle): one manager request and one reply, as
//! CPython 3.13 pickles them, written (`dump_into`, one reused buffer) and
//! read (`loads`) by us and by CPython's C pickler (`pickle.dumps(obj, 4)`,
//! `pickle.loads`). The "raw" figure is copying the pickle's bytes into a
//! reused buffer, the least any codec does to produce or consume them;
//! the crate column is postcard, the codec of Rust peers, on the same
//! `mp_value::Value`.

use std::hint::black_box;
use std::io;

use mp_value::Value;

use crate::measure::{Plan, run_blocks};
use crate::table::{Goal, Row, Unit};
use crate::{Ctx, Spec, Who, row, spec};

/// `('7fded830de50', 'put', ({'id': 7, 'name': 'job', 'weights': [0.5,
/// 1.5], 'tags': ('a', 'b'), 'payload': b'x' * 64},), {})`.
const REQUEST: &str = "800495b300000000000000288c0c376664656438333064653530948c03707574947d94288c026964944b078c046e616d65948c036a6f62948c0777656967687473945d9428473fe0000000000000473ff8000000000000658c0474616773948c0161948c01629486948c077061796c6f616494434078787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878947585947d9474942e";

/// `('#PROXY', (('empty', 'full', 'get', 'get_nowait', 'join', 'put',
/// 'put_nowait', 'qsize', 'task_done'), Token(typeid='Queue',
/// address=('127.0.0.1', 50000), id='7ff4abe09210')))`, the reply in
/// wire_manager.txt.
const REPLY: &str = "800495b4000000000000008c062350524f585994288c05656d707479948c0466756c6c948c03676574948c0a6765745f6e6f77616974948c046a6f696e948c03707574948c0a7075745f6e6f77616974948c057173697a65948c097461736b5f646f6e659474948c186d756c746970726f63657373696e672e6d616e6167657273948c05546f6b656e9493942981948c055175657565948c093132372e302e302e31944d50c386948c0c37666634616265303932313094879462869486942e";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

#[derive(Clone, Copy)]
enum Op {
    Dumps,
    Loads,
}

fn message(hex: &str) -> Result<(Vec<u8>, Value), String> {
    let bytes = unhex(hex);
    let value = mp_pickle::loads(&bytes).map_err(|e| format!("error: {e}"))?;
    if mp_pickle::dumps(&value) != bytes {
        return Err("error: the message does not pickle back to its bytes".into());
    }
    Ok((bytes, value))
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn ours(op: Op, hex: &str, plan: &Plan) -> Result<Vec<crate::table::Rep>, String> {
    let (bytes, value) = message(hex)?;
    let mut buf = Vec::with_capacity(bytes.len());
    let reps = match op {
        Op::Dumps => run_blocks(plan, || {
            buf.clear();
            mp_pickle::dump_into(black_box(&value), &mut buf);
            black_box(&buf);
            Ok(())
        }),
        Op::Loads => run_blocks(plan, || {
            black_box(mp_pickle::loads(black_box(&bytes)).map_err(other)?);
            Ok(())
        }),
    };
    reps.map_err(|e| format!("error: {e}"))
}

fn raw_copy(hex: &str, plan: &Plan) -> Result<Vec<crate::table::Rep>, String> {
    let bytes = unhex(hex);
    let mut buf = Vec::with_capacity(bytes.len());
    run_blocks(plan, || {
        buf.clear();
        buf.extend_from_slice(black_box(&bytes));
        black_box(&buf);
        Ok(())
    })
    .map_err(|e| format!("error: {e}"))
}

fn postcard(op: Op, hex: &str, plan: &Plan) -> Result<Vec<crate::table::Rep>, String> {
    let (_, value) = message(hex)?;
    let encoded = postcard::to_allocvec(&value).map_err(|e| format!("error: {e}"))?;
    let mut buf: Vec<u8> = Vec::with_capacity(encoded.len());
    let reps = match op {
        Op::Dumps => run_blocks(plan, || {
            buf.clear();
            let out = std::mem::take(&mut buf);
            buf = postcard::to_extend(black_box(&value), out).map_err(other)?;
            Ok(())
        }),
        Op::Loads => run_blocks(plan, || {
            black_box(postcard::from_bytes::<Value>(black_box(&encoded)).map_err(other)?);
            Ok(())
        }),
    };
    reps.map_err(|e| format!("error: {e}"))
}

/// The rows `pickle_{dumps,loads}_{request,reply}`.
pub(crate) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for (what, hex) in [("request", REQUEST), ("reply", REPLY)] {
        for (op, verb) in [(Op::Dumps, "dumps"), (Op::Loads, "loads")] {
            let name = format!("pickle_{verb}_{what}");
            v.push(spec(name.clone(), move |ctx: &mut Ctx, _| {
                let unit = Unit::MicrosPerCall;
                let plan = ctx.plan(200_000);
                let raw = ctx.raw(format!("raw.copy_{what}"), unit, |_| raw_copy(hex, &plan));
                let ours = ctx.cell(Who::Ours, &format!("ours.{name}"), unit, |_| {
                    ours(op, hex, &plan)
                });
                let py_plan = ctx.plan(100_000);
                let args = vec![
                    "--op".into(),
                    verb.to_string(),
                    "--hex".into(),
                    hex.to_string(),
                ];
                let cpython = ctx.cell(Who::Py, &format!("py.{name}"), unit, |ctx| {
                    ctx.run_py("pickle_codec.py", &args, &py_plan)
                });
                let krate = ctx.cell(Who::Crate, &format!("postcard.{name}"), unit, |_| {
                    postcard(op, hex, &plan)
                });
                Row {
                    krate: Some(("postcard".into(), krate)),
                    ..row(name, unit, raw, ours, cpython, vec![Goal::Py(1.0)])
                }
            }));
        }
    }
    v
}
