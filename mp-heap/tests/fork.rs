//! Fork tests, in their own `harness = false` target so that nothing else
//! runs (no test threads) when they fork.
//!
//! HEAP-03/-04/-07/-11/-15: a forked child sees and writes the parent's
//! shared memory, starts a fresh heap, never frees the parent's blocks, and
//! locked increments from several processes add up exactly; and, beyond
//! CPython, a value's lock held by a child that dies is taken over by the
//! next acquisition, with the owner-died notice.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    process::ExitCode,
    time::{Duration, Instant},
};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mp_heap::{Array, Heap, HeapError, RawArray, Shared, SharedBuffer, Value};

/// Forks a child that runs `f` and exits 0 on success, 1 on panic.
fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: this binary is single-threaded (harness = false), so the
    // child may run arbitrary code; it leaves with `_exit`, never returning
    // into the parent's stack frames.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        // SAFETY: ends the child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits up to 60 s for `pid`; its exit code, or -signal.
fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut status = 0;
        // SAFETY: plain syscall on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid failed");
        if r == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            return -libc::WTERMSIG(status);
        }
        if Instant::now() > deadline {
            // SAFETY: kill our own child that overran its time.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn child_writes_and_parent_sees() {
    let mut buf = SharedBuffer::zeroed(4096).unwrap();
    buf[..5].copy_from_slice(b"hello");
    let ptr = buf.as_ptr() as usize;
    let pid = fork_child(|| {
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(buf.as_ptr() as usize, ptr);
        buf[4096 - 5..].copy_from_slice(b"child");
    });
    assert_eq!(wait_child(pid), 0);
    assert_eq!(&buf[4096 - 5..], b"child");
}

fn child_starts_a_fresh_heap_and_never_frees_parent_blocks() {
    let heap = Heap::with_discard_threshold(0);
    let mut a = heap.malloc(100).unwrap();
    a.fill(9);
    let b = heap.malloc(200).unwrap();
    let parent = std::process::id();
    let before = heap.snapshot();
    // The child takes the blocks out of these; the parent's stay put.
    let (mut a_slot, mut b_slot) = (Some(a), Some(b));
    let pid = fork_child(|| {
        let (mut a, b) = (a_slot.take().unwrap(), b_slot.take().unwrap());
        // Freeing the parent's block here is an error (CPython: ValueError)...
        match b.free() {
            Err(HeapError::WrongProcess { owner, current }) => {
                assert_eq!(owner, parent);
                assert_eq!(current, std::process::id());
            }
            other => panic!("free in child gave {other:?}"),
        }
        // ...the child's heap starts empty...
        let st = heap.stats();
        assert_eq!((st.mallocs, st.frees, st.arenas), (0, 0, 0));
        let mut c = heap.malloc(100).unwrap();
        c.fill(1);
        assert_eq!(heap.stats().arenas, 1);
        assert_ne!(c.arena().identity().unwrap(), a.arena().identity().unwrap());
        drop(c);
        // ...and dropping the parent's block is a no-op that keeps it mapped.
        assert!(a.iter().all(|&x| x == 9));
        a[0] = 10;
        drop(a);
        assert_eq!(heap.stats().frees, 1);
    });
    assert_eq!(wait_child(pid), 0);
    let (a, b) = (a_slot.unwrap(), b_slot.unwrap());
    // The parent's heap is untouched; the child's write shows.
    assert_eq!(heap.snapshot(), before);
    assert_eq!(a[0], 10);
    drop((a, b));
    assert_eq!(heap.stats().arenas, 0);
}

fn locked_increments_from_four_processes_add_up() {
    const PROCS: usize = 4;
    const ROUNDS: u64 = 10_000;
    let v = Value::new(0_u64).unwrap();
    let a = Array::<u64>::zeroed(PROCS + 1).unwrap();
    let pids: Vec<_> = (0..PROCS)
        .map(|p| {
            fork_child(|| {
                for _ in 0..ROUNDS {
                    v.lock().unwrap().update(|n| n + 1);
                    let mut g = a.lock().unwrap();
                    g.update(0, |n| n + 1);
                    g.update(p + 1, |n| n + 1);
                }
            })
        })
        .collect();
    for pid in pids {
        assert_eq!(wait_child(pid), 0);
    }
    assert_eq!(v.get().unwrap(), PROCS as u64 * ROUNDS);
    let totals = a.to_vec().unwrap();
    assert_eq!(totals[0], PROCS as u64 * ROUNDS);
    assert!(totals[1..].iter().all(|&n| n == ROUNDS), "{totals:?}");
}

fn child_prefix_sum_and_doubling_are_seen() {
    // HEAP-07 and HEAP-11, with and without locks.
    let a = Array::from_slice(&[1_i32, 2, 3, 4, 5]).unwrap();
    let mut raw = RawArray::from_slice(&[1.5_f64, 2.5]).unwrap();
    let x = Value::new(7_i64).unwrap();
    let pid = fork_child(|| {
        let mut g = a.lock().unwrap();
        for i in 1..g.len() {
            let prev = g.get(i - 1).unwrap();
            g.update(i, |x| x + prev);
        }
        drop(g);
        for d in raw.iter_mut() {
            *d *= 2.0;
        }
        x.lock().unwrap().update(|n| n * 2);
    });
    assert_eq!(wait_child(pid), 0);
    assert_eq!(a.to_vec().unwrap(), [1, 3, 6, 10, 15]);
    assert_eq!(&*raw, &[3.0, 5.0]);
    assert_eq!(x.get().unwrap(), 14);
}

/// Waits up to 60 s for `cond`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn a_value_lock_held_by_a_dead_child_is_taken_over() {
    // Beyond CPython, which waits forever here.
    let v = Value::new(1_u64).unwrap();
    let a = Array::<u64>::zeroed(2).unwrap();
    // A child that takes both locks, writes, and is SIGKILLed mid-update.
    let pid = fork_child(|| {
        let mut g = v.lock().unwrap();
        g.set(2);
        let mut h = a.lock().unwrap();
        h.set(0, 5);
        std::thread::sleep(Duration::from_secs(60));
        drop((g, h));
    });
    eventually("the child holds both locks", || {
        a.get_lock().owner_pid() == Some(pid as u32)
    });
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    match v.lock() {
        Ok(_) => panic!("a dead owner's lock was handed over without notice"),
        Err(died) => {
            assert_eq!(died.pid(), pid as u32);
            assert_eq!(died.into_inner().get(), 2, "the child's write is there");
        }
    }
    match a.get(0) {
        Err(died) => assert_eq!(died.into_inner(), Some(5)),
        Ok(v) => panic!("no owner-died notice: {v:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(wait_child(pid), -libc::SIGKILL);
    // Once reported, the locks are ordinary again.
    assert_eq!(v.get().unwrap(), 2);
    assert_eq!(a.to_vec().unwrap(), [5, 0]);
    // A child that leaves without releasing (exit, not a signal) counts too.
    let pid = fork_child(|| std::mem::forget(v.lock().unwrap()));
    assert_eq!(wait_child(pid), 0);
    assert!(matches!(v.set(3), Err(died) if died.pid() == pid as u32));
    assert_eq!(v.get().unwrap(), 3);
}

/// Atomic counters in a `Shared` block: a clone moved into a fork child
/// counts in the memory the parent reads (no mapping or fd of its own).
fn atomic_counters_are_shared_with_a_child() {
    let counters: Shared<[AtomicU64; 2]> =
        Shared::new([AtomicU64::new(0), AtomicU64::new(7)]).unwrap();
    let flag: Shared<AtomicU32> = Shared::new(AtomicU32::new(0)).unwrap();
    let (theirs, their_flag) = (counters.clone(), flag.clone());
    let pid = fork_child(move || {
        for _ in 0..1000 {
            theirs[0].fetch_add(1, Ordering::Relaxed);
        }
        theirs[1].store(8, Ordering::Relaxed);
        their_flag.store(1, Ordering::Release);
    });
    assert_eq!(wait_child(pid), 0);
    assert_eq!(flag.load(Ordering::Acquire), 1);
    assert_eq!(counters[0].load(Ordering::Relaxed), 1000);
    assert_eq!(counters[1].load(Ordering::Relaxed), 8);
}

fn main() -> ExitCode {
    let tests: [(&str, fn()); 6] = [
        (
            "atomic_counters_are_shared_with_a_child",
            atomic_counters_are_shared_with_a_child,
        ),
        (
            "a_value_lock_held_by_a_dead_child_is_taken_over",
            a_value_lock_held_by_a_dead_child_is_taken_over,
        ),
        ("child_writes_and_parent_sees", child_writes_and_parent_sees),
        (
            "child_starts_a_fresh_heap_and_never_frees_parent_blocks",
            child_starts_a_fresh_heap_and_never_frees_parent_blocks,
        ),
        (
            "locked_increments_from_four_processes_add_up",
            locked_increments_from_four_processes_add_up,
        ),
        (
            "child_prefix_sum_and_doubling_are_seen",
            child_prefix_sum_and_doubling_are_seen,
        ),
    ];
    if mp_testsupport::harness::run_tests(&tests) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
