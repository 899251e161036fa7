//! An authenticated echo server: every message a client sends comes back
//! verbatim, until that client closes.
//!
//! ```text
//! echo_server --address ADDR --authkey KEY [--digest NAME]
//! ```
//!
//! `ADDR` is `HOST:PORT` for TCP (port 0 picks a free port) or a path for
//! AF_UNIX. The first line on stdout is the bound address. Every client is
//! served on its own thread; a failed handshake is reported on stderr and
//! serving goes on. The command line is a contract other tests rely on.

use std::io::Write;
use std::process::ExitCode;

use mp_conn::{Address, Connection, Digest, Error, Listener};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut address = None;
    let mut authkey = None;
    let mut digest = Digest::Sha256;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => address = Some(value()?.parse::<Address>()?),
            "--authkey" => authkey = Some(value()?.into_bytes()),
            "--digest" => digest = value()?.parse::<Digest>()?,
            _ => return Err(format!("unknown argument {flag:?}; usage: echo_server --address ADDR --authkey KEY [--digest NAME]").into()),
        }
    }
    let address = address.ok_or("--address is required")?;
    let authkey = authkey.ok_or("--authkey is required")?;
    let mut listener = Listener::builder()
        .address(address)
        .authkey(authkey)
        .digest(digest)
        .backlog(128)
        .bind()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", listener.address())?;
    stdout.flush()?;
    drop(stdout);
    loop {
        match listener.accept() {
            Ok(conn) => {
                std::thread::spawn(move || {
                    if let Err(e) = echo(conn) {
                        eprintln!("echo_server: client failed: {e}");
                    }
                });
            }
            Err(Error::Closed) => return Ok(()),
            Err(Error::Authentication(e)) => {
                eprintln!("echo_server: handshake failed: AuthenticationError: {e}")
            }
            Err(e) => eprintln!("echo_server: handshake failed: {e}"),
        }
    }
}

/// Echoes messages until the client closes, reusing one buffer.
fn echo(mut conn: Connection) -> mp_conn::Result<()> {
    let mut buf = Vec::new();
    loop {
        match conn.recv_bytes_into_vec(&mut buf) {
            Ok(n) => conn.send_bytes(&buf[..n])?,
            Err(Error::Eof) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
