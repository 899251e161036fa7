//! Hostile lengths allocate nothing large: a counting global allocator
//! records the largest single allocation made by the test's own thread.
//!
//! Its own test target, so that the allocator sees no other test's work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use mp_conn::{Connection, Error};

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards to `System` unchanged and only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn largest_during(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    f();
    LARGEST.with(|l| l.get())
}

fn raw_peer() -> (Connection, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    (Connection::new(OwnedFd::from(a), true, true).unwrap(), b)
}

#[test]
fn a_2_gib_length_header_allocates_nothing_large() {
    let limit = 1 << 20;
    // Short header just under 2 GiB, then a few bytes and end of file.
    for use_vec in [false, true] {
        let (mut conn, mut raw) = raw_peer();
        raw.write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
        drop(raw);
        let largest = largest_during(|| {
            let r = if use_vec {
                conn.recv_bytes_into_vec(&mut Vec::new()).map(|_| ())
            } else {
                conn.recv_bytes().map(|_| ())
            };
            assert!(matches!(r, Err(Error::TruncatedMessage)));
        });
        assert!(largest <= limit, "allocated {largest} bytes");
    }
    // Long header for 5 GiB, and into a too-short slice (BufferTooShort path).
    let (mut conn, mut raw) = raw_peer();
    let mut wire = vec![0xff; 4];
    wire.extend((5u64 << 30).to_be_bytes());
    wire.extend([0; 100]);
    raw.write_all(&wire).unwrap();
    drop(raw);
    let largest = largest_during(|| {
        let mut buf = [0u8; 10];
        assert!(matches!(
            conn.recv_bytes_into(&mut buf),
            Err(Error::TruncatedMessage)
        ));
    });
    assert!(largest <= limit, "allocated {largest} bytes");
}

#[test]
fn growth_follows_arrived_bytes() {
    // 8 MiB announced, 3 MiB sent: the buffer never reaches the full 8 MiB.
    let (mut conn, mut raw) = raw_peer();
    let writer = std::thread::spawn(move || {
        raw.write_all(&(8u32 << 20).to_be_bytes()).unwrap();
        raw.write_all(&vec![0u8; 3 << 20]).unwrap();
    });
    let largest = largest_during(|| {
        assert!(matches!(conn.recv_bytes(), Err(Error::TruncatedMessage)));
    });
    writer.join().unwrap();
    assert!(largest <= 6 << 20, "allocated {largest} bytes");
}
