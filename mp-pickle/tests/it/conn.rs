//! A real `multiprocessing.connection.Client` (CPython) sends pickles with
//! `conn.send`; we take them with `recv_bytes` + `mp_pickle::from_slice`
//! (or `loads`), and answer with `send_bytes(mp_pickle::to_vec(..))`,
//! which CPython's `conn.recv()` unpickles.

use std::process::{Command, Stdio};
use std::time::Duration;

use mp_conn::{Family, Listener};
use mp_value::Value;
use serde::{Deserialize, Serialize};

use crate::peer::{Python, each_cpython, hex, script};

const KEY: &[u8] = b"pickle interop";

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    id: u32,
    name: String,
    weights: Vec<f64>,
    tags: std::collections::BTreeSet<String>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Point {
    x: i32,
    y: f64,
}

fn exchange(python: &Python) {
    let mut listener = Listener::builder()
        .family(Family::Unix)
        .authkey(KEY.to_vec())
        .bind()
        .expect("bind a listener");
    let child = Command::new(&python.path)
        .arg(script())
        .args(["client", &listener.address().to_string(), &hex(KEY)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CPython client");
    let mut conn = listener
        .accept_timeout(Some(Duration::from_secs(60)))
        .expect("authenticate the CPython client")
        .expect("the CPython client connects");

    let first: (u8, String) = mp_pickle::from_slice(&conn.recv_bytes().unwrap()).unwrap();
    assert_eq!(first, (1, "a".to_string()));
    let job: Job = mp_pickle::from_slice(&conn.recv_bytes().unwrap()).unwrap();
    assert_eq!(job.id, 7);
    assert_eq!(job.weights, [0.5, 1.5]);
    assert_eq!(job.tags.len(), 2);
    assert_eq!(job.blob, b"\x00\x01");
    // A dataclass instance into a struct, through its state.
    let point: Point = mp_pickle::from_slice(&conn.recv_bytes().unwrap()).unwrap();
    assert_eq!(point, Point { x: 3, y: 4.5 });
    // An exception, as a value.
    let err = mp_pickle::loads(&conn.recv_bytes().unwrap()).unwrap();
    assert_eq!(err.to_string(), "KeyError('k')");
    let nums = mp_pickle::loads(&conn.recv_bytes().unwrap()).unwrap();
    assert_eq!(
        nums.to_string(),
        "[1000000000000000000000000000000, -1, None, True]"
    );

    // Our replies, unpickled by CPython's conn.recv().
    let reply = Job {
        id: 8,
        name: "réponse".into(),
        weights: vec![-0.0, 1e300],
        tags: ["z".to_string()].into(),
        blob: vec![255],
    };
    conn.send_bytes(&mp_pickle::to_vec(&reply).unwrap())
        .unwrap();
    conn.send_bytes(&mp_pickle::dumps(&err)).unwrap();
    conn.send_bytes(&mp_pickle::to_vec(&(u128::MAX, "end")).unwrap())
        .unwrap();
    conn.send_bytes(&mp_pickle::dumps(&Value::None)).unwrap();

    let out = child.wait_with_output().expect("the CPython client exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "{'id': 8, 'name': 'réponse', 'weights': [-0.0, 1e+300], 'tags': ['z'], 'blob': b'\\xff'}",
            "KeyError('k')",
            "(340282366920938463463374607431768211455, 'end')",
        ]
    );
}

each_cpython!(exchange);
