//! Finding CPython interpreters and driving `tests/python/mp_peer.py`, a
//! peer built on CPython's own `multiprocessing.connection`.
//!
//! Interpreters: `python3` on PATH (3.11 here, the legacy handshake), and
//! 3.12 and 3.13 under pyenv's root (`$PYENV_ROOT`, `pyenv root`, or
//! `~/.pyenv`). A missing one is skipped loudly, unless
//! `MP_REQUIRE_PYTHON=1`, in which case the test fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long any one peer command may take (64 MiB echoes included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A CPython interpreter to test against.
#[derive(Clone, Debug)]
pub(crate) struct Python {
    pub(crate) path: PathBuf,
    pub(crate) minor: u32,
}

impl Python {
    /// Whether this interpreter speaks only the legacy (HMAC-MD5) handshake.
    pub(crate) fn legacy(&self) -> bool {
        self.minor < 12
    }
}

fn required() -> bool {
    std::env::var("MP_REQUIRE_PYTHON").is_ok_and(|v| v == "1")
}

fn minor_of(path: &Path) -> Option<u32> {
    let out = Command::new(path)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().split_once('.')?;
    (major == "3").then_some(())?;
    minor.parse().ok()
}

fn pyenv_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        return Some(PathBuf::from(root));
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        if out.status.success() {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !root.is_empty() {
                return Some(PathBuf::from(root));
            }
        }
    }
    for home in [
        std::env::var_os("HOME").map(PathBuf::from),
        Some("/root".into()),
    ]
    .into_iter()
    .flatten()
    {
        let root = home.join(".pyenv");
        if root.is_dir() {
            return Some(root);
        }
    }
    None
}

/// The interpreter for CPython 3.`minor`, or `None` after a loud message
/// (a panic when `MP_REQUIRE_PYTHON=1`).
pub(crate) fn find(minor: u32) -> Option<Python> {
    let mut candidates = Vec::new();
    if minor == 11 {
        candidates.push(PathBuf::from("python3"));
    }
    if let Some(root) = pyenv_root() {
        let versions = root.join("versions");
        let exact = match minor {
            12 => Some("3.12.1"),
            13 => Some("3.13.0"),
            _ => None,
        };
        if let Some(exact) = exact {
            candidates.push(versions.join(exact).join("bin/python3"));
        }
        if let Ok(entries) = std::fs::read_dir(&versions) {
            let mut others: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("3.{minor}."))
                })
                .map(|e| e.path().join("bin/python3"))
                .collect();
            others.sort();
            candidates.extend(others);
        }
    }
    for path in candidates {
        if minor_of(&path) == Some(minor) {
            return Some(Python { path, minor });
        }
    }
    let message =
        format!("CPython 3.{minor} not found (python3 on PATH, pyenv root versions/3.{minor}.*)");
    if required() {
        panic!("{message}, and MP_REQUIRE_PYTHON=1");
    }
    eprintln!("\n*** SKIPPING interop test: {message} ***\n");
    None
}

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

/// The tests `cpython_3_11`, `cpython_3_12` and `cpython_3_13`: each calls
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
    };
}
pub(crate) use cpython_tests;

/// `key` as the peer's `authkey=` word.
pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
