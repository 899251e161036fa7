//! Small helpers shared by the subcommands: running a command with its
//! output shown and kept, and finding the workspace root.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;

/// The workspace root (the parent of this crate's directory).
pub(crate) fn project_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("xtask"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}

/// A `cargo` command run from the workspace root.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

/// Runs `cmd`, echoing its stdout and stderr as they come, and returns
/// whether it succeeded together with everything it printed.
pub(crate) fn run_teed(cmd: &mut Command) -> Result<(bool, String), String> {
    eprintln!("$ {}", describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // Both streams are echoed and kept; stderr on its own thread so that
    // neither pipe can fill up and stall the child.
    let err_thread = thread::spawn(move || tee(BufReader::new(stderr), true));
    let mut text = tee(BufReader::new(stdout), false);
    text.push_str(&err_thread.join().unwrap_or_default());
    let status = child
        .wait()
        .map_err(|e| format!("waiting for child: {e}"))?;
    Ok((status.success(), text))
}

fn tee(reader: impl BufRead, to_stderr: bool) -> String {
    let mut kept = String::new();
    for line in reader.lines().map_while(Result::ok) {
        if to_stderr {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
        kept.push_str(&line);
        kept.push('\n');
    }
    kept
}

/// Runs `cmd` without showing its output; returns whether it succeeded
/// and everything it printed (stdout, then stderr).
pub(crate) fn run_quiet(cmd: &mut Command) -> Result<(bool, String), String> {
    eprintln!("$ {}", describe(cmd));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Runs `cmd` with inherited stdio and fails if it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", describe(cmd)))
    }
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}
