//! Driving `tests/python/pickle_peer.py` under real CPython interpreters,
//! 3.11 to 3.15, as `mp-testsupport` finds them (a missing one is skipped
//! loudly, or fails the test under `CI=true`/`MP_REQUIRE_PYTHON=1`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) use mp_testsupport::Python;

/// How long one reply may take, under heavy load.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pickle_peer.py")
}

/// Runs `pickle_peer.py ARGS` to the end and returns its stdout.
pub(crate) fn run(python: &Python, args: &[&str]) -> String {
    let out = Command::new(&python.path)
        .arg(script())
        .args(args)
        .output()
        .expect("run the CPython peer");
    assert!(
        out.status.success(),
        "CPython 3.{} peer {args:?} failed: {}",
        python.minor,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the peer prints text")
}

/// `pickle_peer.py echo`: pickles in, CPython's loads + dumps out.
pub(crate) struct Echo {
    minor: u32,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Echo {
    pub(crate) fn start(python: &Python) -> Echo {
        let mut child = Command::new(&python.path)
            .arg(script())
            .arg("echo")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the CPython peer");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take().expect("piped");
        let mut echo = Echo {
            minor: python.minor,
            child,
            stdin,
            lines,
        };
        assert_eq!(echo.line(), "ready");
        echo
    }

    fn line(&mut self) -> String {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!("CPython 3.{} peer gave no reply ({e})", self.minor)
            }
        }
    }

    /// CPython's `pickle.loads(pickle)`, dumped again with protocols 2 to
    /// 5, or the exception it raised (`"Type: message"`).
    pub(crate) fn round(&mut self, pickle: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        writeln!(self.stdin, "{}", hex(pickle)).expect("write to the peer");
        self.stdin.flush().expect("flush to the peer");
        let line = self.line();
        if let Some(err) = line.strip_prefix("error ") {
            return Err(err.to_string());
        }
        let rest = line
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("peer said {line:?}"));
        Ok(rest.split(' ').map(unhex).collect())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from the peer"))
        .collect()
}

pub(crate) use mp_testsupport::each_cpython;
