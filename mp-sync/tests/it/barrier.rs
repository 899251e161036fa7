//! SH-17..21 for `Barrier`, with threads as the parties.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp_sync::{ActionError, Barrier, BarrierAction, SyncError};

use crate::common::{PATIENCE, eventually};

const N: u32 = 5;

/// Counts its runs (in this process: threads share the counter).
#[derive(Clone, Default)]
struct Count(Arc<AtomicU32>);

impl BarrierAction for Count {
    fn run(&self) -> Result<(), ActionError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Fails on its second run.
#[derive(Default)]
struct FailSecond(AtomicU32);

impl BarrierAction for FailSecond {
    fn run(&self) -> Result<(), ActionError> {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            1 => Err("the second pass fails".into()),
            _ => Ok(()),
        }
    }
}

/// Runs `f(i)` on `n` threads and collects what they return.
fn on_threads<T: Send>(n: u32, f: impl Fn(u32) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn({
                    let f = &f;
                    move || f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn parties_pass_in_lock_step_and_get_each_index_once() {
    // SH-17, SH-18: 1 and 10 passes; distinct indices 0..N; one action per pass.
    let count = Count::default();
    let barrier = Barrier::with_action(N, count.clone(), Some(PATIENCE)).unwrap();
    let passes = Mutex::new(Vec::new());
    for rounds in [1, 10] {
        let before = count.0.load(Ordering::SeqCst);
        let indices = on_threads(N, |_| {
            let mut mine = Vec::new();
            for round in 0..rounds {
                passes.lock().unwrap().push(round);
                mine.push(barrier.wait(None).unwrap());
                // Nobody starts the next round before all finished this one.
                let seen = passes
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|&&r| r == round)
                    .count();
                assert_eq!(seen, N as usize);
            }
            mine
        });
        for round in 0..rounds as usize {
            let mut at: Vec<u32> = indices.iter().map(|v| v[round]).collect();
            at.sort();
            assert_eq!(at, (0..N).collect::<Vec<_>>());
        }
        assert_eq!(count.0.load(Ordering::SeqCst) - before, rounds);
        passes.lock().unwrap().clear();
    }
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
    assert_eq!(barrier.parties(), N);
}

#[test]
fn abort_breaks_the_barrier_for_everyone() {
    // SH-19.
    let barrier = Barrier::new(N, Some(PATIENCE)).unwrap();
    let results = on_threads(N, |i| {
        if i == 0 {
            eventually("the others wait", || barrier.n_waiting() == N - 1);
            barrier.abort();
            None
        } else {
            Some(barrier.wait(None))
        }
    });
    let broken = results
        .into_iter()
        .flatten()
        .filter(|r| matches!(r, Err(SyncError::BrokenBarrier)))
        .count();
    assert_eq!(broken, N as usize - 1);
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(None), Err(SyncError::BrokenBarrier)));
    // A broken barrier can be reset and used again.
    barrier.reset();
    assert!(!barrier.broken());
    let ok = on_threads(N, |_| barrier.wait(None).is_ok());
    assert!(ok.into_iter().all(|ok| ok));
}

#[test]
fn reset_while_parties_wait_breaks_their_pass_then_works_for_all() {
    // SH-19.
    let barrier = Barrier::new(N, Some(PATIENCE)).unwrap();
    let outcomes = std::thread::scope(|s| {
        let waiters: Vec<_> = (0..N - 1).map(|_| s.spawn(|| barrier.wait(None))).collect();
        eventually("N-1 wait", || barrier.n_waiting() == N - 1);
        barrier.reset();
        waiters
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(
        outcomes
            .iter()
            .all(|r| matches!(r, Err(SyncError::BrokenBarrier)))
    );
    assert!(!barrier.broken());
    let ok = on_threads(N, |_| barrier.wait(None).is_ok());
    assert!(ok.into_iter().all(|ok| ok));
}

#[test]
fn a_timeout_breaks_the_barrier_for_every_party() {
    // SH-20: one party far too late (it comes once the others gave up).
    let barrier = Barrier::new(3, None).unwrap();
    let results = on_threads(3, |i| {
        if i == 2 {
            eventually("the others time out", || barrier.broken());
            barrier.wait(None)
        } else {
            barrier.wait(Some(Duration::from_millis(100)))
        }
    });
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(SyncError::BrokenBarrier)))
    );
    // The constructor's default timeout does the same.
    let barrier = Barrier::new(2, Some(Duration::from_millis(100))).unwrap();
    assert_eq!(barrier.timeout(), Some(Duration::from_millis(100)));
    assert!(matches!(barrier.wait(None), Err(SyncError::BrokenBarrier)));
    assert!(barrier.broken());
}

#[test]
fn a_single_party_never_blocks_and_zero_parties_are_refused() {
    let barrier = Barrier::new(1, None).unwrap();
    for _ in 0..3 {
        assert_eq!(barrier.wait(None).unwrap(), 0);
    }
    assert!(matches!(
        Barrier::new(0, None),
        Err(SyncError::InvalidArgument(_))
    ));
}

#[test]
fn a_failing_action_breaks_the_pass() {
    let barrier = Barrier::with_action(3, FailSecond::default(), Some(PATIENCE)).unwrap();
    assert!(
        on_threads(3, |_| barrier.wait(None).is_ok())
            .into_iter()
            .all(|ok| ok)
    );
    let results = on_threads(3, |_| barrier.wait(None));
    let action_failed = results
        .iter()
        .filter(|r| matches!(r, Err(SyncError::BarrierAction(_))))
        .count();
    let broken = results
        .iter()
        .filter(|r| matches!(r, Err(SyncError::BrokenBarrier)))
        .count();
    assert_eq!((action_failed, broken), (1, 2));
    let e = results
        .into_iter()
        .find_map(|r| r.err().filter(|e| matches!(e, SyncError::BarrierAction(_))))
        .unwrap();
    assert!(format!("{e:?}").ends_with("the second pass fails"));
    assert!(barrier.broken());
}

#[test]
fn a_thousand_passes_report_in_order() {
    // SH-21: 1000 passes over 5 parties, each pass's values in order.
    let barrier = Barrier::new(N, Some(PATIENCE)).unwrap();
    let log = Mutex::new(Vec::new());
    on_threads(N, |_| {
        for pass in 0..1000_u32 {
            barrier.wait(None).unwrap();
            log.lock().unwrap().push(pass);
            barrier.wait(None).unwrap();
        }
    });
    let log = log.into_inner().unwrap();
    for (k, chunk) in log.chunks(N as usize).enumerate() {
        assert!(chunk.iter().all(|&p| p == k as u32), "pass {k}: {chunk:?}");
    }
}
