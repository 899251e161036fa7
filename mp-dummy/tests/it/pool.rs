//! The thread pool: results, failures, lifecycle, chunk sizes, callbacks,
//! initializers, and a property test against the sequential map.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use mp_dummy::pool::{Callbacks, Pool, PoolError, PoolState};
use proptest::prelude::*;

/// Long enough for anything to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn square(n: u64) -> u64 {
    n * n
}

/// A gate that tasks wait on until the test opens it.
#[derive(Clone)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new((Mutex::new(false), std::sync::Condvar::new())))
    }
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the gate was never opened");
            open = self.0.1.wait_timeout(open, left).unwrap().0;
        }
    }
}

#[test]
fn map_and_imap_give_results_in_order() {
    let pool = Pool::new(Some(3)).unwrap();
    let expected: Vec<u64> = (0..1000).map(square).collect();
    assert_eq!(pool.map(square, 0..1000, None).unwrap(), expected);
    assert_eq!(pool.map(square, 0..1000, Some(7)).unwrap(), expected);
    assert_eq!(
        pool.starmap(|(a, b): (u64, u64)| a * b, [(2, 3), (4, 5)], None)
            .unwrap(),
        [6, 20]
    );
    for chunksize in [1, 3, 100, 5000] {
        let got: Vec<u64> = pool
            .imap(square, 0..1000, chunksize)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, expected, "chunksize {chunksize}");
    }
    // Later items finishing first still come in order.
    let slow_first = |n: u64| {
        if n == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    };
    let got: Vec<u64> = pool
        .imap(slow_first, 0..20, 1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    let async_map = pool
        .starmap_async(|(a, b): (u32, u32)| a + b, vec![(1, 1); 10], Some(3))
        .unwrap();
    assert_eq!(async_map.get(Some(PATIENCE)).unwrap(), vec![2; 10]);
}

#[test]
fn imap_unordered_gives_every_result() {
    let pool = Pool::new(Some(4)).unwrap();
    for chunksize in [1, 7, 2000] {
        let got: HashSet<u64> = pool
            .imap_unordered(square, 0..1000, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..1000).map(square).collect::<HashSet<_>>());
    }
    // The one that finishes first comes first.
    let gate = Gate::new();
    let g = gate.clone();
    let mut it = pool
        .imap_unordered(
            move |n: u64| {
                if n == 0 {
                    g.wait();
                }
                n
            },
            0..2,
            1,
        )
        .unwrap();
    assert_eq!(it.next_timeout(Some(PATIENCE)).unwrap().unwrap(), 1);
    gate.open();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert!(it.next().is_none());
}

#[test]
fn imap_reads_an_endless_input_lazily() {
    let pool = Pool::builder().processes(2).imap_window(4).build().unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let r = read.clone();
    let input = (0u64..).inspect(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let firsts: Vec<u64> = pool
        .imap(square, input, 2)
        .unwrap()
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(firsts, [0, 1, 4, 9, 16]);
    // The window bounds how far ahead the input was read: 4 chunks of 2
    // after the three chunks consumed.
    assert!(read.load(Ordering::SeqCst) <= 2 * (3 + 4), "{read:?}");
}

#[test]
fn a_panicking_task_is_reported_and_the_pool_goes_on() {
    let pool = Pool::new(Some(2)).unwrap();
    let e = pool
        .apply(|n: u32| -> u32 { panic!("task {n} failed on purpose") }, 3)
        .unwrap_err();
    match &e {
        PoolError::Panicked { message, location } => {
            assert_eq!(message, "task 3 failed on purpose");
            assert!(
                location.as_deref().unwrap().contains("pool.rs"),
                "{location:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_task_error());
    // The pool still works, and a map reports the first failure by position.
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    let fails_on = |n: u64| {
        if n == 5 || n == 9 {
            panic!("item {n}");
        }
        n
    };
    for chunksize in [None, Some(1), Some(4)] {
        let e = pool.map(fails_on, 0..20, chunksize).unwrap_err();
        assert!(e.to_string().contains("item 5"), "{e}");
    }
    // imap gives each item its own outcome.
    let got: Vec<Result<u64, PoolError>> = pool.imap(fails_on, 0..12, 4).unwrap().collect();
    assert_eq!(got.len(), 12);
    for (n, r) in got.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, n as u64),
            Err(e) => {
                assert!(n == 5 || n == 9, "{n}: {e}");
                assert!(e.to_string().contains(&format!("item {n}")));
            }
        }
    }
    // A panic payload that is not a string.
    let e = pool.apply(|()| std::panic::panic_any(7u8), ()).unwrap_err();
    assert!(e.to_string().contains("not a string"), "{e}");
    assert_eq!(pool.map(square, 0..4, None).unwrap(), [0, 1, 4, 9]);
}

#[test]
fn terminate_stops_work_in_flight() {
    let pool = Pool::new(Some(2)).unwrap();
    let gate = Gate::new();
    let started = Arc::new(Barrier::new(3));
    let ran = Arc::new(AtomicUsize::new(0));
    let running: Vec<_> = (0..2)
        .map(|_| {
            let (g, s, r) = (gate.clone(), started.clone(), ran.clone());
            pool.apply_async(
                move |()| {
                    s.wait();
                    g.wait();
                    r.fetch_add(1, Ordering::SeqCst);
                    1
                },
                (),
            )
            .unwrap()
        })
        .collect();
    started.wait();
    let r = ran.clone();
    let queued = pool
        .map_async(
            move |n: u64| {
                r.fetch_add(1, Ordering::SeqCst);
                n
            },
            0..10_000,
            Some(1),
        )
        .unwrap();
    let t0 = Instant::now();
    pool.terminate();
    // terminate returns at once, with the tasks still blocked.
    assert!(t0.elapsed() < PATIENCE);
    assert_eq!(pool.state(), PoolState::Terminated);
    assert!(matches!(
        queued.get(Some(PATIENCE)),
        Err(PoolError::Terminated)
    ));
    for r in &running {
        assert!(matches!(r.get(Some(PATIENCE)), Err(PoolError::Terminated)));
    }
    let e = pool.apply(square, 1).unwrap_err();
    assert!(e.to_string().contains("terminated"), "{e}");
    pool.terminate();
    // The running tasks finish in the background; join waits for them.
    gate.open();
    pool.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 2, "no queued task ran");
}

#[test]
fn get_times_out_and_the_task_goes_on() {
    let pool = Pool::new(Some(1)).unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let r = pool
        .apply_async(
            move |n: u32| {
                g.wait();
                n
            },
            5,
        )
        .unwrap();
    assert!(matches!(
        r.get(Some(Duration::from_millis(20))),
        Err(PoolError::Timeout)
    ));
    assert!(!r.wait(Some(Duration::from_millis(1))));
    assert!(!r.ready());
    assert!(matches!(r.successful(), Err(PoolError::NotReady)));
    gate.open();
    assert!(r.wait(Some(PATIENCE)));
    assert!(r.ready());
    assert!(r.successful().unwrap());
    assert_eq!(r.get(Some(Duration::ZERO)).unwrap(), 5);
    assert!(matches!(r.get(None), Err(PoolError::ResultTaken)));

    let gate = Gate::new();
    let g = gate.clone();
    let mut it = pool
        .imap(
            move |n: u32| {
                g.wait();
                n
            },
            [1, 2],
            1,
        )
        .unwrap();
    assert!(matches!(
        it.next_timeout(Some(Duration::from_millis(20))),
        Some(Err(PoolError::Timeout))
    ));
    gate.open();
    assert_eq!(it.next_timeout(Some(PATIENCE)).unwrap().unwrap(), 1);
    assert_eq!(it.next().unwrap().unwrap(), 2);
}

#[test]
fn callbacks_get_the_value_or_the_error() {
    let pool = Pool::new(Some(2)).unwrap();
    let (tx, rx) = mpsc::channel();
    let (etx, erx) = mpsc::channel();
    let t = tx.clone();
    let r = pool
        .apply_async_with(
            square,
            9,
            Callbacks::new().on_success(move |v| t.send(v).unwrap()),
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), 81);
    // The value went to the callback.
    assert!(matches!(r.get(Some(PATIENCE)), Err(PoolError::ResultTaken)));
    assert!(r.successful().unwrap());

    let e2 = etx.clone();
    let r = pool
        .apply_async_with(
            |()| -> u64 { panic!("for the error callback") },
            (),
            Callbacks::new()
                .on_success(move |v| tx.send(v).unwrap())
                .on_error(move |e| e2.send(e).unwrap()),
        )
        .unwrap();
    let e = erx.recv_timeout(PATIENCE).unwrap();
    assert!(e.to_string().contains("for the error callback"));
    assert!(matches!(
        r.get(Some(PATIENCE)),
        Err(PoolError::Panicked { .. })
    ));

    let (mtx, mrx) = mpsc::channel();
    pool.map_async_with(
        square,
        0..5,
        Some(2),
        Callbacks::new().on_success(move |v| mtx.send(v).unwrap()),
    )
    .unwrap();
    assert_eq!(mrx.recv_timeout(PATIENCE).unwrap(), [0, 1, 4, 9, 16]);
    // An empty map calls back at once, on this thread.
    let (mtx, mrx) = mpsc::channel();
    let r = pool
        .starmap_async_with(
            |(a, b): (u8, u8)| a + b,
            Vec::new(),
            None,
            Callbacks::new().on_success(move |v: Vec<u8>| mtx.send(v.len()).unwrap()),
        )
        .unwrap();
    assert_eq!(mrx.try_recv().unwrap(), 0);
    assert!(r.ready());
    // A panicking callback does not break the pool.
    pool.apply_async_with(
        square,
        1,
        Callbacks::new().on_success(|_| panic!("this callback panic is expected by the test")),
    )
    .unwrap()
    .wait(Some(PATIENCE));
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    // A submission that fails runs no callback.
    pool.close();
    let (ctx, crx) = mpsc::channel::<u64>();
    assert!(
        pool.apply_async_with(
            square,
            1,
            Callbacks::new().on_success(move |v| ctx.send(v).unwrap())
        )
        .is_err()
    );
    assert!(crx.recv_timeout(Duration::from_millis(10)).is_err());
    drop(etx);
}

#[test]
fn a_closed_or_terminated_pool_refuses_work_naming_its_state() {
    let pool = Pool::new(Some(1)).unwrap();
    assert_eq!(pool.state(), PoolState::Running);
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    pool.close();
    assert_eq!(pool.state(), PoolState::Closed);
    let check = |e: PoolError, state: &str| {
        assert!(matches!(e, PoolError::NotRunning(_)), "{e:?}");
        assert!(e.to_string().contains(state), "{e}");
    };
    check(pool.apply(square, 1).unwrap_err(), "closed");
    check(pool.map(square, 0..3, None).unwrap_err(), "closed");
    check(pool.imap(square, 0..3, 1).unwrap_err(), "closed");
    check(pool.imap_unordered(square, 0..3, 1).unwrap_err(), "closed");
    check(
        pool.starmap_async(|(a,): (u64,)| a, [(1,)], None)
            .unwrap_err(),
        "closed",
    );
    pool.terminate();
    check(pool.apply_async(square, 1).unwrap_err(), "terminated");
    // A closed pool reads none of the input.
    let pool = Pool::new(Some(1)).unwrap();
    pool.close();
    let read = AtomicUsize::new(0);
    let input = (0..3u64).inspect(|_| {
        read.fetch_add(1, Ordering::SeqCst);
    });
    assert!(pool.map(square, input, None).is_err());
    assert_eq!(read.load(Ordering::SeqCst), 0);
    // A zero chunksize is an argument error.
    let pool = Pool::new(Some(1)).unwrap();
    assert!(matches!(
        pool.map(square, 0..3, Some(0)),
        Err(PoolError::InvalidArgument(_))
    ));
    assert!(matches!(
        pool.imap(square, 0..3, 0),
        Err(PoolError::InvalidArgument(_))
    ));
}

#[test]
fn imap_after_close_ends_with_not_running() {
    let pool = Pool::builder().processes(1).imap_window(1).build().unwrap();
    let mut it = pool.imap(square, 0..10, 1).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.close();
    let rest: Vec<_> = it.collect();
    assert!(rest.len() <= 2, "{rest:?}");
    let last = rest.last().unwrap();
    assert!(
        matches!(last, Err(PoolError::NotRunning(PoolState::Closed))),
        "{last:?}"
    );
    pool.join().unwrap();
}

#[test]
fn an_initializer_runs_once_per_thread() {
    thread_local!(static BASE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    let inits = Arc::new(Mutex::new(Vec::new()));
    let i = inits.clone();
    let pool = Pool::builder()
        .processes(3)
        .initializer(
            move |base: u64| {
                i.lock().unwrap().push(std::thread::current().id());
                BASE.with(|b| b.set(base));
            },
            100,
        )
        .build()
        .unwrap();
    let got = pool
        .map(|n: u64| BASE.with(|b| b.get()) + n, 0..50, Some(1))
        .unwrap();
    assert_eq!(got, (100..150).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    let inits = inits.lock().unwrap();
    assert_eq!(inits.len(), 3);
    assert_eq!(
        inits.iter().collect::<HashSet<_>>().len(),
        3,
        "one per thread"
    );
}

#[test]
fn a_failing_initializer_is_an_error_not_a_loop() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let pool = Pool::builder()
        .processes(2)
        .initializer(
            move |()| {
                t.fetch_add(1, Ordering::SeqCst);
                panic!("the initializer fails on purpose");
            },
            (),
        )
        .build()
        .unwrap();
    // Queued work fails, later submissions are refused, with the message.
    let first = pool.apply_async(square, 1);
    let check = |e: PoolError| {
        assert!(matches!(e, PoolError::InitializerFailed { .. }), "{e:?}");
        assert!(
            e.to_string().contains("the initializer fails on purpose"),
            "{e}"
        );
    };
    match first {
        Ok(r) => check(r.get(Some(PATIENCE)).unwrap_err()),
        Err(e) => check(e),
    }
    let deadline = Instant::now() + PATIENCE;
    while pool.state() != PoolState::Broken {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    check(pool.map(square, 0..10, None).unwrap_err());
    pool.join().unwrap();
    assert!(tries.load(Ordering::SeqCst) <= 2, "no thread was restarted");
}

#[test]
fn maxtasksperchild_replaces_threads() {
    let inits = Arc::new(AtomicUsize::new(0));
    let i = inits.clone();
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .initializer(
            move |()| {
                i.fetch_add(1, Ordering::SeqCst);
            },
            (),
        )
        .build()
        .unwrap();
    let threads: HashSet<_> = pool
        .map(
            |_: u32| format!("{:?}", std::thread::current().id()),
            0..30,
            Some(1),
        )
        .unwrap()
        .into_iter()
        .collect();
    assert!(threads.len() >= 10, "{threads:?}");
    pool.close();
    pool.join().unwrap();
    assert!(inits.load(Ordering::SeqCst) >= 10);
}

#[test]
fn chunk_sizes_and_empty_inputs() {
    let pool = Pool::new(Some(2)).unwrap();
    for n in [0usize, 1, 2, 9, 100] {
        let expected: Vec<u64> = (0..n as u64).map(square).collect();
        for chunksize in [None, Some(1), Some(2), Some(n + 1), Some(1000)] {
            assert_eq!(
                pool.map(square, 0..n as u64, chunksize).unwrap(),
                expected,
                "{n} {chunksize:?}"
            );
        }
        for chunksize in [1, n + 1] {
            let got: Vec<u64> = pool
                .imap(square, 0..n as u64, chunksize)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, expected);
        }
    }
    let empty = pool.map_async(square, Vec::new(), Some(1)).unwrap();
    assert!(empty.ready());
    assert_eq!(empty.get(None).unwrap(), Vec::<u64>::new());
    assert!(pool.imap(square, Vec::new(), 1).unwrap().next().is_none());
    assert!(
        pool.imap_unordered(square, Vec::new(), 5)
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn join_waits_for_every_submitted_task_after_close() {
    let pool = Pool::new(Some(2)).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let results: Vec<_> = (0..20)
        .map(|i| {
            let d = done.clone();
            pool.apply_async(
                move |n: u64| {
                    std::thread::sleep(Duration::from_millis(2));
                    d.fetch_add(1, Ordering::SeqCst);
                    n
                },
                i,
            )
            .unwrap()
        })
        .collect();
    pool.close();
    pool.join().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 20);
    for (i, r) in results.iter().enumerate() {
        assert!(r.ready());
        assert_eq!(r.get(None).unwrap(), i as u64);
    }
    pool.join().unwrap();
}

#[test]
fn a_map_submitted_before_close_finishes_in_order() {
    // A map's chunks are handed out from shares that workers hold: after
    // close, with the channel drained, the shares still run every chunk.
    let pool = Pool::builder()
        .processes(3)
        .maxtasksperchild(7)
        .build()
        .unwrap();
    let result = pool.map_async(square, 0..2_000, Some(1)).unwrap();
    pool.close();
    pool.join().unwrap();
    let expected: Vec<u64> = (0..2_000).map(square).collect();
    assert_eq!(result.get(None).unwrap(), expected);
}

#[test]
fn terminate_during_a_map_runs_none_of_its_remaining_chunks() {
    let pool = Pool::new(Some(2)).unwrap();
    let gate = Gate::new();
    let started = Arc::new(Barrier::new(3));
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, s, r) = (gate.clone(), started.clone(), ran.clone());
    // Both workers hold a share and block in their first chunk.
    let result = pool
        .map_async(
            move |n: u64| {
                if n < 2 {
                    s.wait();
                    g.wait();
                }
                r.fetch_add(1, Ordering::SeqCst);
                n
            },
            0..10_000,
            Some(1),
        )
        .unwrap();
    started.wait();
    pool.terminate();
    assert!(matches!(
        result.get(Some(PATIENCE)),
        Err(PoolError::Terminated)
    ));
    gate.open();
    pool.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 2, "only the running chunks ran");
}

#[test]
fn join_from_a_callback_does_not_wait_for_its_own_thread() {
    let pool = Arc::new(Pool::new(Some(2)).unwrap());
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    pool.apply_async_with(
        square,
        2,
        Callbacks::new().on_success(move |_| {
            p.close();
            tx.send(p.join().is_ok()).unwrap();
        }),
    )
    .unwrap();
    assert!(rx.recv_timeout(PATIENCE).unwrap());
    pool.join().unwrap();
}

#[test]
fn dropping_the_pool_terminates_it() {
    let gate = Gate::new();
    let started = Arc::new(Barrier::new(2));
    let (g, s) = (gate.clone(), started.clone());
    let pool = Pool::new(Some(1)).unwrap();
    let running = pool
        .apply_async(
            move |()| {
                s.wait();
                g.wait();
            },
            (),
        )
        .unwrap();
    started.wait();
    let queued = pool.apply_async(square, 3).unwrap();
    let t0 = Instant::now();
    drop(pool);
    assert!(t0.elapsed() < PATIENCE);
    assert!(matches!(
        queued.get(Some(PATIENCE)),
        Err(PoolError::Terminated)
    ));
    assert!(matches!(
        running.get(Some(PATIENCE)),
        Err(PoolError::Terminated)
    ));
    gate.open();
}

#[test]
fn task_arguments_and_results_are_not_kept_alive() {
    // CPython's test_release_task_refs: once a result is taken and dropped,
    // nothing of the task remains.
    let pool = Pool::new(Some(2)).unwrap();
    let arg = Arc::new(5u64);
    let weak = Arc::downgrade(&arg);
    let r = pool
        .apply_async(|a: Arc<u64>| Arc::new(*a + 1), arg)
        .unwrap();
    let out = r.get(Some(PATIENCE)).unwrap();
    assert_eq!(*out, 6);
    let out_weak = Arc::downgrade(&out);
    drop((r, out));
    let deadline = Instant::now() + PATIENCE;
    while weak.strong_count() + out_weak.strong_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the task's values are still alive"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_input_iterator_panic_reaches_the_caller_after_earlier_results() {
    let pool = Pool::new(Some(2)).unwrap();
    let input = (0..10u64).inspect(|&n| {
        if n == 6 {
            panic!("the input fails on purpose");
        }
    });
    let mut it = pool.imap(square, input, 2).unwrap();
    let mut got = Vec::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for r in it.by_ref() {
            got.push(r.unwrap());
        }
    }));
    assert!(caught.is_err());
    assert_eq!(got, [0, 1, 4, 9, 16, 25]);
    assert_eq!(pool.map(square, 0..3, None).unwrap(), [0, 1, 4]);
}

#[test]
fn one_pool_serves_many_submitting_threads() {
    let pool = Arc::new(Pool::new(Some(2)).unwrap());
    let submitters: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let results: Vec<_> = (0..200)
                    .map(|i| pool.apply_async(square, t * 1000 + i).unwrap())
                    .collect();
                results
                    .into_iter()
                    .enumerate()
                    .all(|(i, r)| r.get(Some(PATIENCE)).unwrap() == square(t * 1000 + i as u64))
            })
        })
        .collect();
    for s in submitters {
        assert!(s.join().unwrap());
    }
}

#[test]
fn the_default_size_is_the_usable_cpus() {
    let pool = Pool::new(None).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.processes(), cpus);
}

#[test]
fn error_debug_prints_the_message_and_its_sources() {
    let e = PoolError::ThreadStart(Arc::new(std::io::Error::other("no more threads")));
    assert_eq!(
        format!("{e:?}"),
        "could not start a pool worker thread: no more threads"
    );
    assert_eq!(
        format!("{:?}", PoolError::NotRunning(PoolState::Closed)),
        "Pool not running: the thread pool is closed and takes no new tasks"
    );
    let e = PoolError::Panicked {
        message: "boom".into(),
        location: Some("src/a.rs:1:2".into()),
    };
    assert_eq!(format!("{e:?}"), "the task panicked at src/a.rs:1:2: boom");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn map_is_the_sequential_map(
        items in proptest::collection::vec(any::<i64>(), 0..300),
        chunksize in proptest::option::of(1usize..50),
        threads in 1usize..5,
    ) {
        let pool = Pool::new(Some(threads)).unwrap();
        let f = |n: i64| n.wrapping_mul(31).wrapping_add(7);
        let expected: Vec<i64> = items.iter().copied().map(f).collect();
        prop_assert_eq!(pool.map(f, items.clone(), chunksize).unwrap(), expected.clone());
        let got: Vec<i64> = pool.imap(f, items.clone(), chunksize.unwrap_or(1)).unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(got, expected.clone());
        let mut unordered: Vec<i64> = pool.imap_unordered(f, items, chunksize.unwrap_or(1)).unwrap().map(Result::unwrap).collect();
        let mut sorted = expected;
        unordered.sort_unstable();
        sorted.sort_unstable();
        prop_assert_eq!(unordered, sorted);
    }
}

#[test]
fn a_value_whose_drop_uses_the_pool_does_not_deadlock_it() {
    // The last reference to a task's result may be the worker's; its Drop
    // runs on that worker, which must not hold the pool's lock then.
    struct Resubmits(Arc<Pool>, mpsc::Sender<bool>);
    impl Drop for Resubmits {
        fn drop(&mut self) {
            let ok = self.0.apply_async(|()| (), ()).is_ok();
            let _ = self.1.send(ok);
        }
    }
    let pool = Arc::new(Pool::new(Some(1)).unwrap());
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    drop(pool.apply_async(move |()| Resubmits(p, tx), ()).unwrap());
    assert!(rx.recv_timeout(PATIENCE).unwrap());
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
}
