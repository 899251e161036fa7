//! Unmodified CPython clients (3.11 to 3.15) of a Rust manager server
//! speaking pickle: `SyncManager(address, authkey).connect()` and a
//! `BaseManager` subclass with registered type ids use the SyncManager
//! types, values of classes the server does not know, proxies inside
//! values, threads and a forked child; errors arrive with their Python
//! class; the server ends with no objects (`tests/python/cpython_client.py`
//! has the checks, one interpreter per version runs them all).

use std::sync::Arc;
use std::time::Duration;

use mp_conn::Address;
use mp_manager::{Args, Exception, Pickle, SyncManager};

use crate::python::{Peer, Python, hex};
use crate::support::{KEY, Served};

/// A Rust type a CPython client creates with arguments and calls.
pub(crate) struct Counter {
    n: i64,
}

#[mp_manager::shared]
impl Counter {
    pub(crate) fn new(start: i64) -> Counter {
        Counter { n: start }
    }

    pub(crate) fn incr(&mut self, by: i64) -> i64 {
        self.n += by;
        self.n
    }

    pub(crate) fn check(&self, limit: i64) -> Result<(), Exception> {
        if self.n > limit {
            return Err(Exception::value_error(format!("{} > {limit}", self.n)));
        }
        Ok(())
    }

    pub(crate) fn _private(&self) -> i64 {
        self.n
    }

    #[shared(proxy = "Counter")]
    pub(crate) fn fork(&self) -> Counter {
        Counter { n: self.n }
    }
}

/// The server the CPython clients use: the SyncManager types, a shared
/// queue as `get_queue` (the documentation's remote manager) and
/// `Counter`, speaking pickle at `address`.
pub(crate) fn served_for_cpython(address: Option<Address>) -> Served {
    Served::build(Arc::new(Pickle::new()), address, |r| {
        SyncManager::register_types(r);
        let queue = r
            .instantiate("Queue", Args::default())
            .expect("a queue for get_queue");
        r.register_shared("get_queue", queue);
        r.register_type::<Counter>("Counter");
    })
}

/// What the client script printed for every check it ran, in order.
fn expected(minor: u32, mode: &str) -> Vec<&'static str> {
    let mut names = if mode == "example" {
        vec![
            "dict",
            "list",
            "queue",
            "lock",
            "value_array_namespace",
            "example_queue",
        ]
    } else {
        vec![
            "dict",
            "dict_keys_python_equality",
            "dict_3_14",
            "list",
            "list_3_14",
            "set_3_14",
            "queue",
            "lock",
            "lock_3_14",
            "event_barrier",
            "value_array_namespace",
            "opaque_values",
            "proxies_in_values",
            "errors",
            "threads",
            "child_process",
            "registered_typeids",
        ]
    };
    if minor < 14 {
        names.retain(|n| !n.ends_with("_3_14"));
    }
    names.push("number_of_objects");
    names
}

/// Runs `cpython_client.py ADDRESS KEY MODE` and checks that every check
/// ran and passed.
pub(crate) fn run_client(python: &Python, address: &Address, key: &[u8], mode: &str) {
    let shown = address.to_string();
    let lines = Peer::start(python, "cpython_client.py", &[&shown, &hex(key), mode]).finish();
    let ran: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ok ")).collect();
    let want = expected(python.minor, mode);
    assert_eq!(ran, want, "CPython 3.{}: checks run", python.minor);
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("done {}", want.len()).as_str())
    );
}

fn cpython_clients_use_a_rust_server(python: &Python) {
    // TCP for odd minor versions, an AF_UNIX path for even ones: both
    // address shapes (a `(host, port)` tuple, a `str`) reach CPython.
    let address = if python.minor % 2 == 1 {
        Some("127.0.0.1:0".parse().unwrap())
    } else {
        None
    };
    let s = served_for_cpython(address);
    run_client(python, s.handle.address(), KEY, "full");
    // The client has gone: nothing is left (its references were global
    // ones, dropped by its decrefs; `Served` checks on drop too).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.handle.number_of_objects() != 0 {
        assert!(std::time::Instant::now() < deadline, "objects left");
        std::thread::sleep(Duration::from_millis(10));
    }
}

mp_testsupport::each_cpython!(cpython_clients_use_a_rust_server);

/// The `manager_server` example with `--serializer pickle` (its contract:
/// the address on the first stdout line; exit 0 after `shutdown`) serves
/// the documentation's CPython client code.
#[test]
fn manager_server_example_serves_cpython_clients() {
    let Some(python) = mp_testsupport::find(13) else {
        return;
    };
    let server = std::process::Command::new(crate::examples::examples_dir().join("manager_server"))
        .args([
            "--address",
            "127.0.0.1:0",
            "--authkey",
            "abracadabra",
            "--serializer",
            "pickle",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = crate::support::KillOnDrop(server);
    let server = &mut server.0;
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let address: Address = first.trim().parse().unwrap();
    run_client(&python, &address, b"abracadabra", "example");
    let reply = crate::support::public_pickled(
        &address,
        b"abracadabra",
        "shutdown",
        mp_value::Value::Tuple(mp_value::Tuple::new()),
    );
    assert_eq!(
        reply,
        mp_value::Value::from(("#RETURN", mp_value::Value::None))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "manager_server did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
}
