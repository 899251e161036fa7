//! Hostile clients against an authenticated `Listener`: each one gets an
//! error of its own, nothing large is allocated, and a well-behaved client
//! is served while a silent one still holds its connection open.
//!
//! Its own test target (one test), so that the counting allocator sees
//! only this test's work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use mp_conn::{ClientBuilder, Error, Family, Listener};

/// Records the largest single allocation of the whole process.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` unchanged and only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEY: &[u8] = b"hostile test key";
/// Long enough for the well-behaved client to be served first by a wide
/// margin; short enough to keep the test quick.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(4);

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The peak resident set of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[derive(Debug)]
enum Event {
    Accepted,
    Failed(Error),
}

#[test]
fn hostile_clients_fail_alone_and_allocate_nothing_large() {
    let rss_before = peak_rss_kib();
    let mut listener = Listener::builder()
        .family(Family::Unix)
        .authkey(KEY)
        .backlog(32)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .bind()
        .unwrap();
    let address = listener.address().clone();
    let mp_conn::Address::Unix(path) = address.clone() else {
        panic!("not a unix address")
    };
    let (events, received) = mpsc::channel();
    let server = std::thread::spawn(move || {
        // Six hostile clients, one silent, one good: eight outcomes.
        for _ in 0..8 {
            let event = match listener.accept() {
                Ok(mut conn) => {
                    std::thread::spawn(move || {
                        while let Ok(msg) = conn.recv_bytes() {
                            conn.send_bytes(&msg).unwrap();
                        }
                    });
                    Event::Accepted
                }
                Err(e) => Event::Failed(e),
            };
            events.send(event).unwrap();
        }
    });

    // The silent one connects first and says nothing, ever.
    let silent = UnixStream::connect(&path).unwrap();

    let mut long_2gib = (-1i32).to_be_bytes().to_vec();
    long_2gib.extend_from_slice(&(2u64 << 30).to_be_bytes());
    let mut response_300 = frame(&[7u8; 256]);
    response_300.splice(0..4, 300i32.to_be_bytes());
    response_300.extend_from_slice(&[7u8; 44]);
    let mut truncated = 40i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[1u8; 10]);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("2 GiB (long header)", long_2gib),
        ("2 GiB - 1", 0x7fff_ffffi32.to_be_bytes().to_vec()),
        ("negative length", (-2i32).to_be_bytes().to_vec()),
        ("300-byte response", response_300),
        ("unknown digest", frame(b"{sha1}0123456789abcdef01234567")),
        ("truncated frame", truncated),
    ];
    let mut held = Vec::new();
    for (what, bytes) in &hostile {
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(bytes).unwrap();
        // The truncated one hangs up mid-frame; the others stay connected.
        if *what == "truncated frame" {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        held.push(s);
    }

    // A well-behaved client is served while the silent one still waits.
    let mut good = ClientBuilder::new()
        .authkey(KEY)
        .accept_timeout(Some(Duration::from_secs(30)))
        .connect(&address)
        .expect("the good client is served despite the hostile ones");
    good.send_bytes(b"still serving").unwrap();
    assert_eq!(good.recv_bytes().unwrap(), b"still serving");

    let mut outcomes = Vec::new();
    for _ in 0..8 {
        outcomes.push(received.recv_timeout(Duration::from_secs(60)).unwrap());
    }
    server.join().unwrap();
    drop(silent);
    drop(held);

    let accepted_at = outcomes
        .iter()
        .position(|e| matches!(e, Event::Accepted))
        .expect("the good client was accepted");
    let timeout_at = outcomes
        .iter()
        .position(|e| matches!(e, Event::Failed(Error::Timeout)))
        .expect("the silent client timed out");
    assert!(
        accepted_at < timeout_at,
        "the good client waited for the silent one: {outcomes:?}"
    );
    let count = |f: fn(&Error) -> bool| {
        outcomes
            .iter()
            .filter(|e| matches!(e, Event::Failed(err) if f(err)))
            .count()
    };
    assert_eq!(
        count(|e| matches!(e, Error::MessageTooLong { max: 256, .. })),
        3,
        "{outcomes:?}"
    );
    assert_eq!(
        count(|e| matches!(e, Error::BadLength(_))),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        count(|e| matches!(
            e,
            Error::Authentication(mp_auth::AuthenticationError::UnsupportedDigest { .. })
        )),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        count(|e| matches!(e, Error::TruncatedMessage)),
        1,
        "{outcomes:?}"
    );
    assert_eq!(count(|e| matches!(e, Error::Timeout)), 1, "{outcomes:?}");

    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 1 << 20, "an allocation of {largest} bytes");
    let grown = peak_rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
}
