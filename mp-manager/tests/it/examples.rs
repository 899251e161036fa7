//! The `manager_server` and `manager_bench` examples as processes: their
//! contracts (first stdout line the address; last line the rate).
//!
//! `cargo test` builds the examples next to the test binary; when only
//! this target was built, the test builds them into a separate target
//! directory (never waiting on the outer cargo's build lock).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mp_manager::{BaseManager, NoTypes, QueueProxy, SyncManager};

pub(crate) fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        mp_testsupport::examples_dir(
            "mp-manager",
            &["manager_server", "manager_bench", "queue_worker"],
            env!("CARGO_MANIFEST_DIR"),
        )
    })
}

#[test]
fn manager_server_serves_until_asked_to_stop() {
    for address in ["127.0.0.1:0", "unix"] {
        let dir = std::env::temp_dir().join(format!("mp-manager-ex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let address = if address == "unix" {
            dir.join("sock").to_string_lossy().into_owned()
        } else {
            address.to_string()
        };
        let mut child = Command::new(examples_dir().join("manager_server"))
            .args(["--address", &address, "--authkey", "abracadabra"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let bound: mp_conn::Address = first.trim().parse().unwrap();
        let ctx = mp_context::get_context(Some("fork")).unwrap();
        {
            let m = SyncManager::new(&ctx)
                .with_address(bound.clone())
                .with_authkey(b"abracadabra".to_vec());
            m.connect().unwrap();
            let q: QueueProxy<i64> = m.create("get_queue", &()).unwrap();
            q.put(&1).unwrap();
            let again: QueueProxy<i64> = m.create("get_queue", &()).unwrap();
            assert_eq!(again.get().unwrap(), 1);
            let d = m.dict::<String, i64>().unwrap();
            d.set_item(&"a".into(), &1).unwrap();
            drop((q, again, d));
            assert_eq!(m.number_of_objects().unwrap(), 0);
        }
        // CPython's way to stop a remote server: `shutdown` on a fresh
        // connection.
        let mut conn = mp_conn::client(&bound, Some(b"abracadabra")).unwrap();
        let request = mp_value::Value::from((
            mp_value::Value::None,
            "shutdown",
            mp_value::Value::Tuple(mp_value::Tuple::new()),
            mp_value::Value::Dict(mp_value::Dict::new()),
        ));
        use mp_manager::Codec;
        let mut buf = Vec::new();
        mp_manager::Postcard.encode(&request, &mut buf).unwrap();
        conn.send_bytes(&buf).unwrap();
        conn.recv_bytes().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "manager_server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{status:?}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = BaseManager::<NoTypes>::registry();
    }
}

#[test]
fn manager_bench_prints_a_rate_last() {
    for op in ["dict_set", "dict_get", "queue", "lock", "proxy", "start"] {
        let out = Command::new(examples_dir().join("manager_bench"))
            .args(["--op", op, "--count", "20"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "{op}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let rate: f64 = text.lines().last().unwrap().trim().parse().unwrap();
        assert!(rate > 0.0, "{op}: {text}");
    }
    let bad = Command::new(examples_dir().join("manager_bench"))
        .args(["--op", "nope", "--count", "5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
