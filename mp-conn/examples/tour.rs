//! A short tour of mp-conn: `cargo run --release --example tour`.
//!
//! Each step prints one line; the tour exits non-zero if a step fails.
//! The last step talks to a real CPython `multiprocessing.connection.Client`
//! when `python3` is on PATH.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mp_conn::{Family, Listener, Waitable, client, pipe, wait};

type Step = Result<String, Box<dyn std::error::Error>>;
/// A named step of the tour.
type Named = (&'static str, fn() -> Step);

fn main() -> ExitCode {
    let steps: [Named; 5] = [
        ("pipe", pipe_round_trip),
        ("listener", listener_and_client),
        ("fd passing", fd_passing),
        ("wait", wait_on_many),
        ("cpython", cpython_client),
    ];
    let mut failed = false;
    for (name, step) in steps {
        let start = Instant::now();
        match step() {
            Ok(what) => println!("ok   {name:<10} {what} ({:.1?})", start.elapsed()),
            Err(e) => {
                println!("FAIL {name:<10} {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `Pipe()`, bytes and typed values (postcard) both ways.
fn pipe_round_trip() -> Step {
    let (mut parent, mut child) = pipe(true)?;
    let worker = std::thread::spawn(move || -> mp_conn::Result<()> {
        let (name, numbers): (String, Vec<u32>) = child.recv()?;
        child.send(&(name.to_uppercase(), numbers.iter().sum::<u32>()))
    });
    parent.send(&("tour".to_string(), vec![1u32, 2, 3, 4]))?;
    let (name, sum): (String, u32) = parent.recv()?;
    worker.join().map_err(|_| "worker panicked")??;
    if (name.as_str(), sum) != ("TOUR", 10) {
        return Err(format!("unexpected reply {name} {sum}").into());
    }
    Ok(format!(
        "typed round trip over a socketpair: (\"tour\", [1,2,3,4]) -> ({name:?}, {sum})"
    ))
}

/// An authenticated Listener and client over AF_UNIX and TCP.
fn listener_and_client() -> Step {
    let mut seen = Vec::new();
    for family in [Family::Unix, Family::Inet] {
        let mut listener = Listener::builder()
            .family(family)
            .authkey(*b"tour key")
            .bind()?;
        let address = listener.address().clone();
        let server = std::thread::spawn(move || -> mp_conn::Result<()> {
            let mut conn = listener.accept()?;
            let msg = conn.recv_bytes()?;
            conn.send_bytes(&msg)
        });
        let mut conn = client(&address, Some(b"tour key"))?;
        conn.send_bytes(b"hello")?;
        if conn.recv_bytes()? != b"hello" {
            return Err("echo differs".into());
        }
        server.join().map_err(|_| "server panicked")??;
        // A wrong key is refused.
        let mut listener = Listener::builder()
            .family(family)
            .authkey(*b"tour key")
            .bind()?;
        let address = listener.address().clone();
        let server = std::thread::spawn(move || listener.accept().map(drop));
        let refused = client(&address, Some(b"not the key")).is_err();
        let server_refused = server.join().map_err(|_| "server panicked")?.is_err();
        if !(refused && server_refused) {
            return Err("a wrong key was accepted".into());
        }
        seen.push(format!("{family} {address}"));
    }
    Ok(format!(
        "handshake + echo, wrong key refused on both sides: {}",
        seen.join(", ")
    ))
}

/// Passing a pipe's write end over a connection (SCM_RIGHTS).
fn fd_passing() -> Step {
    let (a, mut b) = pipe(true)?;
    let (reader, writer) = rustix::pipe::pipe()?;
    a.send_fds(&[writer.as_fd()])?;
    drop(writer);
    let received = b.recv_fds(1)?.pop().ok_or("no fd arrived")?;
    let mut file = std::fs::File::from(received);
    std::io::Write::write_all(&mut file, b"written through a passed fd")?;
    drop(file);
    let mut text = String::new();
    std::fs::File::from(reader).read_to_string(&mut text)?;
    Ok(format!("{text:?}"))
}

/// wait() over several connections: only the ones with data are ready.
fn wait_on_many() -> Step {
    let mut pairs = Vec::new();
    for _ in 0..8 {
        pairs.push(pipe(true)?);
    }
    for i in [2, 5] {
        pairs[i].1.send_bytes(b"ready")?;
    }
    let objects: Vec<&dyn Waitable> = pairs.iter().map(|(a, _)| a as &dyn Waitable).collect();
    let ready = wait(&objects, Some(Duration::from_secs(5)))?;
    if ready != [2, 5] {
        return Err(format!("wait returned {ready:?}").into());
    }
    Ok(format!("8 connections, ready: {ready:?}"))
}

/// A real CPython client against our Listener.
fn cpython_client() -> Step {
    let Ok(version) = Command::new("python3").arg("--version").output() else {
        return Ok("skipped: no python3 on PATH".into());
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let mut listener = Listener::builder()
        .family(Family::Inet)
        .authkey(*b"tour key")
        .bind()?;
    let mp_conn::Address::Inet(address) = listener.address().clone() else {
        return Err("not a TCP address".into());
    };
    let script = format!(
        "from multiprocessing.connection import Client\n\
         with Client(('{}', {}), authkey=b'tour key') as c:\n\
         \x20   c.send_bytes(b'hello from ' + __import__('sys').version.split()[0].encode())\n\
         \x20   print(c.recv_bytes().decode())\n",
        address.ip(),
        address.port()
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut conn = listener.accept()?;
    let greeting = conn.recv_bytes()?;
    conn.send_bytes(&[b"rust echoes: ".as_slice(), &greeting].concat())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(format!(
        "{version} client -> our Listener: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}
