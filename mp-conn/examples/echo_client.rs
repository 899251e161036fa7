//! A client of `echo_server`: sends messages of random content and checks
//! that each comes back unchanged.
//!
//! ```text
//! echo_client --address ADDR --authkey KEY [--messages N] [--size BYTES]
//! ```
//!
//! The content (`SIZE` random bytes, default 64) is generated once, up front,
//! and sent `N` times (default 100). Exits 0 when every echo matched, 2 with
//! `AuthenticationError` on stderr when the handshake failed, 1 otherwise.
//! The command line is a contract other tests rely on.

use std::process::ExitCode;

use mp_conn::{Address, Error, client};

fn main() -> ExitCode {
    match run() {
        Ok(count) => {
            println!("echo_client: {count} messages echoed");
            ExitCode::SUCCESS
        }
        Err(Failure::Auth(e)) => {
            eprintln!("echo_client: AuthenticationError: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Auth(Error),
    Other(Box<dyn std::error::Error>),
}

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Other(e.into())
    }
}

fn run() -> Result<usize, Failure> {
    let mut address = None;
    let mut authkey = None;
    let mut messages = 100usize;
    let mut size = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => address = Some(value()?.parse::<Address>()?),
            "--authkey" => authkey = Some(value()?.into_bytes()),
            "--messages" => messages = value()?.parse()?,
            "--size" => size = value()?.parse()?,
            _ => return Err(format!("unknown argument {flag:?}; usage: echo_client --address ADDR --authkey KEY [--messages N] [--size BYTES]").into()),
        }
    }
    let address = address.ok_or("--address is required")?;
    let authkey = authkey.ok_or("--authkey is required")?;
    let mut payload = vec![0u8; size];
    getrandom::fill(&mut payload).map_err(|e| format!("random source: {e}"))?;
    let mut conn = match client(&address, Some(&authkey)) {
        Ok(conn) => conn,
        Err(e @ Error::Authentication(_)) => return Err(Failure::Auth(e)),
        Err(e) => return Err(e.into()),
    };
    let mut echo = Vec::with_capacity(size);
    for i in 0..messages {
        conn.send_bytes(&payload)?;
        let n = conn.recv_bytes_into_vec(&mut echo)?;
        if echo[..n] != payload[..] {
            return Err(
                format!("message {i}: the echo differs ({n} bytes back, {size} sent)").into(),
            );
        }
    }
    Ok(messages)
}
