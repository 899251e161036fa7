//! The `echo_server` and `echo_client` examples as processes, against each
//! other and against CPython.
//!
//! `cargo test` builds the examples next to the test binary
//! (`target/<profile>/examples/`). When only this test target was built
//! (`cargo test --test it`), the test builds them itself with
//! `cargo build --examples` into a separate target directory, so that it
//! never waits on the build lock the outer cargo may hold.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::python::{Peer, find, hex};

/// The directory that holds the compiled examples.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/it-<hash> -> target/<profile>/examples
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let next_to_us = profile_dir.join("examples");
        if next_to_us.join("echo_server").exists() && next_to_us.join("echo_client").exists() {
            return next_to_us;
        }
        let target = profile_dir.join("interop-examples");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--examples", "-p", "mp-conn", "--target-dir"])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
        target.join("debug/examples")
    })
}

fn example(name: &str) -> Command {
    Command::new(examples_dir().join(name))
}

/// A running echo_server and the address it printed.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(address: &str, key: &str) -> Server {
        let mut child = example("echo_server")
            .args(["--address", address, "--authkey", key])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "echo_server printed no address");
        Server {
            child,
            address: first.trim().to_string(),
        }
    }

    /// Stops the server and returns what it said on stderr.
    fn stop(mut self) -> String {
        self.child.kill().unwrap();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Runs echo_client to completion (with a generous upper bound).
fn run_client(address: &str, key: &str, messages: usize, size: usize) -> Output {
    let mut child = example("echo_client")
        .args(["--address", address, "--authkey", key])
        .args([
            "--messages",
            &messages.to_string(),
            "--size",
            &size.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("echo_client hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn examples_against_each_other_and_cpython() {
    let dir = tempfile_dir();
    let unix = dir.join("echo.sock");
    for address in [unix.to_str().unwrap(), "127.0.0.1:0"] {
        let server = Server::start(address, "sesame");
        // Several clients at once, one of them with a wrong key.
        let good: Vec<_> = (0..3)
            .map(|i| {
                let a = server.address.clone();
                std::thread::spawn(move || run_client(&a, "sesame", 50, 1000 * i + 1))
            })
            .collect();
        let bad = run_client(&server.address, "wrong", 1, 1);
        assert_eq!(bad.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&bad.stderr).contains("AuthenticationError"));
        for g in good {
            let out = g.join().unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let big = run_client(&server.address, "sesame", 2, 4 << 20);
        assert!(big.status.success(), "{big:?}");

        // CPython's Client against the example server.
        if let Some(python) = find(13) {
            let mut peer = Peer::start(&python);
            peer.send(&format!(
                "op=connect address={} authkey={} sizes=0,1,16385",
                server.address,
                hex(b"sesame")
            ));
            assert_eq!(peer.result(), Ok("3".into()));
            peer.finish();
        }
        let stderr = server.stop();
        assert!(stderr.contains("handshake failed"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);

    // The example client against CPython's Listener (legacy 3.11 and the
    // newest included).
    for minor in [11, 13, 15] {
        let Some(python) = find(minor) else { continue };
        let mut peer = Peer::start(&python);
        let address = peer.serve(&format!(
            "family=AF_INET authkey={} action=echo",
            hex(b"sesame")
        ));
        let out = run_client(&address.to_string(), "sesame", 20, 20000);
        assert!(out.status.success(), "3.{minor}: {out:?}");
        assert_eq!(peer.result(), Ok("20".into()));
        peer.finish();
    }
}

/// A private directory for the unix socket path.
fn tempfile_dir() -> PathBuf {
    let mp_conn::Address::Unix(path) = mp_conn::arbitrary_address(mp_conn::Family::Unix).unwrap()
    else {
        unreachable!()
    };
    path.parent().unwrap().to_path_buf()
}
