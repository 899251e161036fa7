//! The CPython manager interop rows: one CPython 3.13 client program
//! (`python/manager_interop.py`: dict set/get and queue put + get through
//! `SyncManager(address, authkey).connect()` proxies) against three
//! servers, each a process of its own, in the same run: CPython's
//! `SyncManager` server, ours (the `manager_server` example of mp-manager
//! with `--serializer pickle`), and the raw limit, a server that reads
//! each request frame and answers it with canned bytes (no decoding, no
//! objects; its `--role` lives in this binary). The CPU per call is the
//! server's alone (every thread of its process), which is what the issue's
//! goal is about: at least 1.3x CPython's calls per second and at most half
//! its server CPU time per call.

use crate::measure::Placement;
use crate::table::{Goal, Unit};
use crate::{Ctx, Examples, PyFigure, Spec, Turns, Who, contender, py_script, python, spec};

/// The role of the canned-reply server (`mp-bench --role canned-manager
/// --address A --authkey K [--serializer pickle]`).
pub(crate) const ROLE_CANNED: &str = "canned-manager";

/// Calls per repetition, by placement (as the mp-manager rows).
fn calls(p: Placement) -> u64 {
    match p {
        Placement::Same => 20_000,
        Placement::Free | Placement::Split => 10_000,
    }
}

/// The server command for the script's `--server`, or why there is none.
fn server_arg(exe: Result<std::path::PathBuf, String>, extra: &[&str]) -> Result<String, String> {
    let exe = exe?;
    let mut words = vec![exe.to_string_lossy().into_owned()];
    words.extend(extra.iter().map(|w| (*w).to_string()));
    if words.iter().any(|w| w.contains(char::is_whitespace)) {
        return Err(format!("n/a (a path with spaces: {words:?})"));
    }
    Ok(words.join(" "))
}

/// A contender that runs the client script against `server`. The raw
/// limit runs under `--raw-only` too: its client is CPython by nature (the
/// limit of a server for CPython clients), found here if the run did not
/// look for it.
fn client_of(
    who: Who,
    key: String,
    server: Result<String, String>,
    args: Vec<String>,
) -> crate::Contender {
    contender(who, key, move |ctx, plan| {
        let server = server.clone()?;
        let mut all = vec!["--server".to_string(), server];
        all.extend(args.iter().cloned());
        let found;
        let python = match ctx.python() {
            Ok(p) => p,
            Err(_) if who == Who::Raw => {
                found = python::Python::find()?;
                &found
            }
            Err(e) => return Err(e),
        };
        python.run(
            "manager_interop.py",
            &all,
            plan,
            std::time::Duration::from_secs(300),
        )
    })
}

/// The rows, in the order they print.
pub(crate) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for op in ["dict_set", "dict_get", "queue"] {
        for p in Placement::ALL {
            let name = format!("mgr_pyclient_{op}{}", p.tag());
            v.push(spec(name.clone(), move |ctx: &mut Ctx, refs| {
                let no_build = ctx.opts.no_build;
                let ours_exe = ctx
                    .examples
                    .get_or_insert_with(|| Examples::build(no_build))
                    .get("mp-manager", "manager_server");
                let raw_exe = std::env::current_exe().map_err(|e| format!("error: {e}"));
                let cpus = python::cpus_arg(p, &ctx.allowed);
                let mut args = vec!["--op".to_string(), op.to_string()];
                if let Ok(c) = &cpus {
                    args.extend(c.iter().cloned());
                }
                let cpus_ok = |s: Result<String, String>| match &cpus {
                    Ok(_) => s,
                    Err(e) => Err(e.clone()),
                };
                let raw = client_of(
                    Who::Raw,
                    format!("raw.canned_manager{}", p.tag()),
                    cpus_ok(server_arg(raw_exe, &["--role", ROLE_CANNED])),
                    args.clone(),
                );
                let ours = client_of(
                    Who::Ours,
                    format!("ours.{name}"),
                    cpus_ok(server_arg(ours_exe, &[])),
                    args.clone(),
                );
                let mut py_args = vec!["--server".to_string(), "cpython".to_string()];
                py_args.extend(args);
                Turns {
                    unit: Unit::Rate("calls/s"),
                    plan: ctx.plan(calls(p)),
                    raw,
                    refs: Vec::new(),
                    ours,
                    cpython: PyFigure::Turn(py_script(
                        format!("py.{name}"),
                        "manager_interop.py",
                        py_args,
                    )),
                    krate: None,
                    // Issue 12's goals against CPython (1.3x the calls,
                    // half the server CPU) lie beyond the floor: see
                    // RETIRED_WHY in docs.rs. These are the house goals
                    // for manager calls (as the `mgr_*` rows).
                    goals: vec![Goal::Raw(0.8), Goal::CpuRaw(1.3)],
                    name,
                }
                .measure(ctx, refs)
            }));
        }
    }
    v
}

/// `--role canned-manager --address A --authkey K [--serializer S]`: the
/// raw limit of a manager server. It authenticates each connection as a
/// manager does (mp-conn's listener), then answers the first request of a
/// connection that contains `create` with `('#RETURN', ('1', exposed))`
/// and every other request with `('#RETURN', None)`, written once as
/// pickles: all that is left is the framing, the handshake and the
/// system calls. It prints its address first and serves until killed.
#[cfg(feature = "conn")]
pub(crate) fn canned_role(args: &[String]) -> Result<(), String> {
    use mp_value::{Tuple, Value};
    use std::io::Write;

    let mut address = None;
    let mut authkey = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--address" => address = Some(v.clone()),
            "--authkey" => authkey = Some(v.clone().into_bytes()),
            "--serializer" if v == "pickle" => {}
            other => return Err(format!("{ROLE_CANNED}: unknown option {other:?} {v:?}")),
        }
    }
    let address: mp_conn::Address = address
        .ok_or("--address is required")?
        .parse()
        .map_err(|e| format!("bad address: {e}"))?;
    let mut listener = mp_conn::Listener::builder()
        .address(address)
        .authkey(authkey.ok_or("--authkey is required")?)
        .backlog(128)
        .bind()
        .map_err(|e| format!("{e:?}"))?;
    let exposed: Vec<Value> = ["__getitem__", "__setitem__", "get", "put", "qsize"]
        .into_iter()
        .map(Value::from)
        .collect();
    let created = mp_pickle::dumps(&Value::from((
        "#RETURN",
        ("1", Value::Tuple(Tuple::from(exposed))),
    )));
    let none = mp_pickle::dumps(&Value::from(("#RETURN", Value::None)));
    println!("{}", listener.address());
    let _ = std::io::stdout().flush();
    let (created, none) = (std::sync::Arc::new(created), std::sync::Arc::new(none));
    loop {
        let Ok(mut conn) = listener.accept() else {
            continue;
        };
        let (created, none) = (created.clone(), none.clone());
        std::thread::spawn(move || {
            let mut first = true;
            let mut buf = Vec::new();
            while conn.recv_bytes_into_vec(&mut buf).is_ok() {
                let create = first && buf.windows(6).any(|w| w == b"create");
                first = false;
                let reply = if create { &created } else { &none };
                if conn.send_bytes(reply).is_err() {
                    break;
                }
            }
        });
    }
}

/// Without mp-conn there is no listener to serve with.
#[cfg(not(feature = "conn"))]
pub(crate) fn canned_role(_: &[String]) -> Result<(), String> {
    Err("n/a (built without the conn feature)".into())
}
