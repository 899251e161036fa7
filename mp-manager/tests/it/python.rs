//! Running the CPython peers of the interop suites (`tests/python/*.py`)
//! under a real interpreter, with a deadline: their stdout line by line as
//! it comes, their stderr kept for the failure message.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) use mp_testsupport::Python;

/// How long a whole CPython peer may take, under heavy load.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(300);

/// The path of `tests/python/NAME`.
pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A CPython peer process.
pub(crate) struct Peer {
    minor: u32,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    /// Starts `python script args…`.
    pub(crate) fn start(python: &Python, name: &str, args: &[&str]) -> Peer {
        let mut child = Command::new(&python.path)
            .arg(script(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start CPython 3.{}: {e}", python.minor));
        let lines = read_lines(child.stdout.take().expect("piped"));
        let mut err = child.stderr.take().expect("piped");
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        Peer {
            minor: python.minor,
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The next line of stdout, within `timeout`; `None` at its end.
    pub(crate) fn line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!(
                    "CPython 3.{} peer said nothing for {timeout:?}; so far:\n{}\nstderr:\n{}",
                    self.minor,
                    self.seen.join("\n"),
                    self.stderr_text()
                )
            }
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default()
    }

    /// Reads stdout to its end and waits for the exit, within
    /// [`PEER_TIMEOUT`]; panics with everything the peer said unless it
    /// exited 0. Returns all its lines.
    pub(crate) fn finish(mut self) -> Vec<String> {
        let deadline = Instant::now() + PEER_TIMEOUT;
        while self
            .line(deadline.saturating_duration_since(Instant::now()))
            .is_some()
        {}
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for the peer") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("CPython 3.{} peer did not exit", self.minor);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            panic!(
                "CPython 3.{} peer failed ({status}); stdout:\n{}\nstderr:\n{}",
                self.minor,
                self.seen.join("\n"),
                self.stderr_text()
            );
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `bytes` in lowercase hex (keys on a command line).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
