//! The mp-manager rows: calls through a proxy (dict set/get, queue put +
//! get, lock acquire + release) in the three placements, proxy create +
//! drop, and manager start + shutdown; ours is the release-built
//! `manager_bench` example of mp-manager, CPython's `python/manager.py`
//! (its `SyncManager`), the raw limit the framed socketpair ping-pong (a
//! call is one round trip of one small frame each way) or, for start +
//! shutdown, fork + waitpid.

use crate::measure::{self, Placement, Plan};
use crate::table::{Goal, Unit};
use crate::{
    Ctx, Examples, PyFigure, Spec, Turns, Who, contender, py_script, python, raw, raw_at, spec,
};

/// Calls per repetition of the per-call rows, by placement.
fn calls(p: Placement) -> u64 {
    match p {
        Placement::Same => 20_000,
        Placement::Free | Placement::Split => 10_000,
    }
}

/// Our `manager_bench` example (built with the other examples), or why
/// not.
fn bench_exe(ctx: &mut Ctx) -> Result<std::path::PathBuf, String> {
    let no_build = ctx.opts.no_build;
    ctx.examples
        .get_or_insert_with(|| Examples::build(no_build))
        .get("mp-manager", "manager_bench")
}

/// Our contender `key`: `manager_bench` with `args`.
fn ours(
    key: String,
    exe: Result<std::path::PathBuf, String>,
    args: Vec<String>,
) -> crate::Contender {
    contender(Who::Ours, key, move |_, plan: &Plan| {
        let exe = exe.clone()?;
        measure::run_rate_example(
            &exe,
            &args,
            ((plan.n / 10).max(1), plan.n),
            plan.reps,
            std::time::Duration::from_secs(300),
        )
    })
}

/// The rows, in the order they print.
pub(crate) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for op in ["dict_set", "dict_get", "queue", "lock"] {
        for p in Placement::ALL {
            let name = format!("mgr_{op}{}", p.tag());
            v.push(spec(name.clone(), move |ctx, refs| {
                let exe = bench_exe(ctx);
                let cpus = python::cpus_arg(p, &ctx.allowed);
                let mut args = vec!["--op".to_string(), op.to_string()];
                if let Ok(c) = &cpus {
                    args.extend(c.iter().cloned());
                }
                let ours = ours(
                    format!("ours.{name}"),
                    exe.and_then(|e| cpus.map(|_| e)),
                    args.clone(),
                );
                Turns {
                    unit: Unit::Rate("calls/s"),
                    plan: ctx.plan(calls(p)),
                    raw: raw_at("pingpong_64B_framed", p, |p, cpus, plan| {
                        raw::pingpong(raw::PingPong::Framed, p, cpus, plan)
                    }),
                    refs: Vec::new(),
                    ours,
                    cpython: PyFigure::Turn(py_script(format!("py.{name}"), "manager.py", args)),
                    krate: None,
                    goals: vec![Goal::Raw(0.8), Goal::CpuRaw(1.3)],
                    name,
                }
                .measure(ctx, refs)
            }));
        }
    }
    v.push(spec("mgr_proxy_new+drop", |ctx, refs| {
        let name = "mgr_proxy_new+drop".to_string();
        let args = vec!["--op".to_string(), "proxy".to_string()];
        let exe = bench_exe(ctx);
        Turns {
            unit: Unit::Rate("proxies/s"),
            plan: ctx.plan(2_000),
            raw: raw_at("pingpong_64B_framed", Placement::Free, |p, cpus, plan| {
                raw::pingpong(raw::PingPong::Framed, p, cpus, plan)
            }),
            refs: Vec::new(),
            ours: ours(format!("ours.{name}"), exe, args.clone()),
            cpython: PyFigure::Turn(py_script(format!("py.{name}"), "manager.py", args)),
            krate: None,
            goals: vec![Goal::Py(10.0)],
            name,
        }
        .measure(ctx, refs)
    }));
    for method in ["fork", "forkserver"] {
        let name = if method == "fork" {
            "mgr_start+shutdown".to_string()
        } else {
            format!("mgr_start+shutdown_{method}")
        };
        v.push(spec(name.clone(), move |ctx, _| {
            let unit = Unit::Rate("mgr/s");
            let plan = ctx.plan(200);
            let raw = ctx.raw("raw.fork_waitpid", unit, |_| {
                raw::in_fresh_process(raw::ROLE_FORK_WAIT, &plan)
            });
            let args = vec![
                "--op".to_string(),
                "start".to_string(),
                "--method".to_string(),
                method.to_string(),
            ];
            let ours = ctx.example(
                &format!("ours.{name}"),
                unit,
                "mp-manager",
                "manager_bench",
                args.clone(),
                200,
            );
            let cpython = ctx.py(&format!("py.{name}"), unit, "manager.py", args, 60);
            crate::row(name, unit, raw, ours, cpython, vec![Goal::Py(5.0)])
        }));
    }
    v
}
