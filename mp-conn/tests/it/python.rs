//! Driving `tests/python/mp_peer.py`, a peer built on CPython's own
//! `multiprocessing.connection`, under the interpreters `mp-testsupport`
//! finds (a missing one is skipped loudly unless `CI=true` or
//! `MP_REQUIRE_PYTHON=1`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long any one peer command may take (64 MiB echoes included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) use mp_testsupport::{Python, find};

/// The peer script.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mp_peer.py")
}

/// A running `mp_peer.py`: commands in on stdin, one reply line each out.
pub(crate) struct Peer {
    pub(crate) python: Python,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Peer {
    pub(crate) fn start(python: &Python) -> Peer {
        let mut child = Command::new(&python.path)
            .arg(script())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the CPython peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let stdin = child.stdin.take();
        let mut peer = Peer {
            python: python.clone(),
            child,
            stdin,
            lines,
            stderr: Some(stderr),
        };
        let ready = peer.line();
        assert_eq!(ready, format!("ready 3.{}", python.minor));
        peer
    }

    /// Sends one command line.
    pub(crate) fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").expect("write to the CPython peer");
        stdin.flush().unwrap();
    }

    /// The next line the peer prints.
    pub(crate) fn line(&mut self) -> String {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!("CPython 3.{} peer gave no reply ({e})", self.python.minor)
            }
        }
    }

    /// Starts `op=serve ...` and returns the address the CPython Listener
    /// is bound to; the command's verdict follows with [`Peer::result`].
    pub(crate) fn serve(&mut self, args: &str) -> mp_conn::Address {
        self.send(&format!("op=serve {args}"));
        let line = self.line();
        let address = line
            .strip_prefix("address ")
            .unwrap_or_else(|| panic!("expected an address, got {line:?}"));
        address.parse().expect("a parsable address")
    }

    /// The verdict of the last command: `Ok(detail)` or `Err("Type: msg")`.
    pub(crate) fn result(&mut self) -> Result<String, String> {
        let line = self.line();
        if let Some(ok) = line.strip_prefix("ok ") {
            Ok(ok.to_string())
        } else if let Some(err) = line.strip_prefix("error ") {
            Err(err.to_string())
        } else {
            panic!("unexpected peer line {line:?}")
        }
    }

    /// Reads the verdict of the last command and asserts that CPython
    /// raised `AuthenticationError`.
    pub(crate) fn expect_authentication_error(&mut self) {
        let verdict = self.result().unwrap_err();
        assert!(verdict.starts_with("AuthenticationError"), "{verdict}");
    }

    /// Closes stdin, waits for a clean exit, and returns the peer's stderr.
    pub(crate) fn finish(mut self) -> String {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("CPython peer did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(status.success(), "CPython peer failed: {status}\n{stderr}");
        stderr
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The tests `cpython_3_11` to `cpython_3_15`: each calls
/// `$run(minor)`, which finds that interpreter (or skips) and runs against it.
macro_rules! cpython_tests {
    ($run:path) => {
        #[test]
        fn cpython_3_11() {
            $run(11);
        }

        #[test]
        fn cpython_3_12() {
            $run(12);
        }

        #[test]
        fn cpython_3_13() {
            $run(13);
        }

        #[test]
        fn cpython_3_14() {
            $run(14);
        }

        #[test]
        fn cpython_3_15() {
            $run(15);
        }
    };
}
pub(crate) use cpython_tests;

/// `key` as the peer's `authkey=` word.
pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
