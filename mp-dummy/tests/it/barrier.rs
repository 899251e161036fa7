//! `Barrier`: CPython's `_TestBarrier`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mp_dummy::{Barrier, DummyProcess, Error, Queue};

use crate::{LONG, SHORT};

const N: u32 = 5;

/// Runs `f` in `n` processes and joins them.
fn in_processes(n: u32, f: impl Fn(u32) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let ps: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            let p = DummyProcess::new(move |()| f(i), ());
            p.start().unwrap();
            p
        })
        .collect();
    for p in ps {
        p.join(LONG).unwrap();
    }
}

#[test]
fn every_party_passes_each_pass_with_distinct_indexes() {
    let barrier = Barrier::new(N, None).unwrap();
    let indexes = Queue::new(0);
    let (b, q) = (barrier.clone(), indexes.clone());
    in_processes(N, move |_| {
        for _ in 0..3 {
            q.put(b.wait(LONG).unwrap(), true, None).unwrap();
        }
    });
    let mut all: Vec<u32> = (0..3 * N).map(|_| indexes.get_nowait().unwrap()).collect();
    all.sort_unstable();
    let expected: Vec<u32> = (0..N).flat_map(|i| [i; 3]).collect();
    assert_eq!(all, expected);
    assert_eq!((barrier.n_waiting(), barrier.broken()), (0, false));
}

#[test]
fn the_action_runs_once_per_pass_before_anyone_leaves() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let barrier = Barrier::with_action(
        N,
        move || {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
        None,
    )
    .unwrap();
    let (b, seen) = (barrier.clone(), runs.clone());
    in_processes(N, move |_| {
        b.wait(LONG).unwrap();
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "the action ran before the party left"
        );
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failing_action_breaks_the_barrier() {
    let barrier =
        Barrier::with_action(2, || Err("the action failed on purpose".into()), None).unwrap();
    let results = Queue::new(0);
    let (b, q) = (barrier.clone(), results.clone());
    in_processes(2, move |_| q.put(b.wait(LONG), true, None).unwrap());
    let (a, b) = (results.get_nowait().unwrap(), results.get_nowait().unwrap());
    let mut kinds = [describe(&a), describe(&b)];
    kinds.sort_unstable();
    assert_eq!(kinds, ["action", "broken"]);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(LONG), Err(Error::BrokenBarrier)));
}

#[test]
fn a_panicking_action_breaks_the_barrier_without_a_panic() {
    let barrier =
        Barrier::with_action(1, || panic!("an action panic expected by the test"), None).unwrap();
    match barrier.wait(LONG) {
        Err(Error::BarrierAction(e)) => {
            assert!(e.to_string().contains("expected by the test"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(barrier.broken());
}

fn describe(r: &Result<u32, Error>) -> &'static str {
    match r {
        Err(Error::BarrierAction(_)) => "action",
        Err(Error::BrokenBarrier) => "broken",
        _ => "other",
    }
}

#[test]
fn abort_breaks_it_for_waiters_and_reset_repairs_it() {
    let barrier = Barrier::new(N, None).unwrap();
    let broken = Arc::new(AtomicU32::new(0));
    let (b, count) = (barrier.clone(), broken.clone());
    let waiters = std::thread::spawn(move || {
        in_processes(N - 1, move |_| {
            if matches!(b.wait(LONG), Err(Error::BrokenBarrier)) {
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    });
    while barrier.n_waiting() < N - 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    barrier.abort();
    waiters.join().unwrap();
    assert_eq!(broken.load(Ordering::SeqCst), N - 1);
    assert!(barrier.broken());
    barrier.reset();
    assert!(!barrier.broken());
    let b = barrier.clone();
    in_processes(N, move |_| {
        b.wait(LONG).unwrap();
    });
}

#[test]
fn reset_while_parties_wait_breaks_their_wait() {
    let barrier = Barrier::new(3, None).unwrap();
    let b = barrier.clone();
    let waiters = std::thread::spawn(move || {
        let results = Queue::new(0);
        let q = results.clone();
        in_processes(2, move |_| q.put(b.wait(LONG), true, None).unwrap());
        (0..2)
            .map(|_| results.get_nowait().unwrap())
            .collect::<Vec<_>>()
    });
    while barrier.n_waiting() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    barrier.reset();
    for r in waiters.join().unwrap() {
        assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
    }
    assert!(!barrier.broken(), "a reset barrier is usable again");
}

#[test]
fn a_timeout_breaks_the_barrier() {
    let barrier = Barrier::new(2, None).unwrap();
    assert!(matches!(
        barrier.wait(Some(SHORT)),
        Err(Error::BrokenBarrier)
    ));
    assert!(barrier.broken());
    // A default timeout applies when wait gives none.
    let barrier = Barrier::new(2, Some(SHORT)).unwrap();
    assert_eq!(barrier.timeout(), Some(SHORT));
    assert!(matches!(barrier.wait(None), Err(Error::BrokenBarrier)));
}

#[test]
fn a_single_party_barrier_never_waits_and_zero_parties_is_an_error() {
    let barrier = Barrier::new(1, None).unwrap();
    for _ in 0..3 {
        assert_eq!(barrier.wait(None).unwrap(), 0);
    }
    assert_eq!(barrier.parties(), 1);
    assert!(matches!(
        Barrier::new(0, None),
        Err(Error::InvalidArgument(_))
    ));
}
