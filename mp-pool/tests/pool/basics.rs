//! CPython's basic pool tests in our words (SH-22..24, ADJ-04): results in
//! order, every result once, chunk sizes, empty inputs, callbacks,
//! `AsyncResult`, initializers, errors that stay with their task, and the
//! states of a pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mp_pool::{Callbacks, Error, Pool, PoolState};

use crate::{LONG, METHODS, pool};

pub(crate) const TESTS: &[(&str, fn())] = &[
    ("results_in_order", results_in_order),
    (
        "imap_unordered_gives_every_result_once",
        imap_unordered_gives_every_result_once,
    ),
    ("empty_inputs", empty_inputs),
    (
        "callbacks_and_error_callbacks",
        callbacks_and_error_callbacks,
    ),
    (
        "async_result_get_wait_ready_successful",
        async_result_get_wait_ready_successful,
    ),
    (
        "task_errors_stay_with_their_task",
        task_errors_stay_with_their_task,
    ),
    (
        "initializer_effects_are_visible_in_tasks",
        initializer_effects_are_visible_in_tasks,
    ),
    (
        "close_join_and_the_states_of_a_pool",
        close_join_and_the_states_of_a_pool,
    ),
    ("many_threads_share_one_pool", many_threads_share_one_pool),
];

fn square(n: u64) -> u64 {
    n * n
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn shout(s: String) -> String {
    s.to_uppercase()
}

/// The worker's start method and name, as it sees them.
fn whoami(_: ()) -> (String, String) {
    let method = mp_context::get_start_method(false).map_or("none", |m| m.name());
    (
        method.to_string(),
        mp_context::current_process().name().to_string(),
    )
}

fn results_in_order() {
    for m in METHODS {
        let p = pool(m, 2);
        let (method, name) = p.apply(whoami, ()).unwrap();
        assert_eq!(method, m);
        let prefix = match m {
            "fork" => "ForkPoolWorker-",
            "spawn" => "SpawnPoolWorker-",
            _ => "ForkServerPoolWorker-",
        };
        assert!(name.starts_with(prefix), "{m}: {name}");
        let expected: Vec<u64> = (0..200).map(|n| n * n).collect();
        assert_eq!(p.map(square, 0..200, None).unwrap(), expected, "{m}: map");
        for chunksize in [1, 3, 20, 1000] {
            assert_eq!(
                p.map(square, 0..200, Some(chunksize)).unwrap(),
                expected,
                "{m}: map chunksize {chunksize}"
            );
            let got: Vec<u64> = p
                .imap(square, 0..200, chunksize)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, expected, "{m}: imap chunksize {chunksize}");
        }
        let pairs: Vec<(u64, u64)> = (0..50).map(|i| (i, 2 * i)).collect();
        let sums: Vec<u64> = (0..50).map(|i| 3 * i).collect();
        assert_eq!(
            p.starmap(add, pairs.clone(), None).unwrap(),
            sums,
            "{m}: starmap"
        );
        assert_eq!(
            p.starmap_async(add, pairs, Some(7))
                .unwrap()
                .get(LONG)
                .unwrap(),
            sums,
            "{m}: starmap_async"
        );
        assert_eq!(
            p.map_async(shout, ["a".to_string(), "bc".into()], None)
                .unwrap()
                .get(LONG)
                .unwrap(),
            ["A", "BC"],
            "{m}: map_async"
        );
        assert_eq!(p.apply(square, 12).unwrap(), 144, "{m}: apply");
        assert_eq!(p.apply_async(add, (2, 3)).unwrap().get(LONG).unwrap(), 5);
        // The iterator ends, and stays ended (CPython's StopIteration).
        let mut it = p.imap(square, [3, 4], 100).unwrap();
        assert_eq!(it.next().map(Result::unwrap), Some(9));
        assert_eq!(it.next().map(Result::unwrap), Some(16));
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }
}

fn imap_unordered_gives_every_result_once() {
    for m in METHODS {
        let p = pool(m, 3);
        for chunksize in [1, 8] {
            let mut got: Vec<u64> = p
                .imap_unordered(square, 0..300, chunksize)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            got.sort_unstable();
            let expected: Vec<u64> = (0..300).map(|n| n * n).collect();
            assert_eq!(got, expected, "{m}: chunksize {chunksize}");
        }
    }
}

fn empty_inputs() {
    for m in METHODS {
        let p = pool(m, 2);
        let none: Vec<u64> = Vec::new();
        assert!(p.map(square, none.clone(), None).unwrap().is_empty(), "{m}");
        // CPython's test_map_chunksize: an empty input with chunksize 1
        // does not stall.
        assert!(p.map(square, none.clone(), Some(1)).unwrap().is_empty());
        assert!(p.starmap(add, Vec::new(), None).unwrap().is_empty());
        assert!(p.imap(square, none.clone(), 1).unwrap().next().is_none());
        assert!(
            p.imap_unordered(square, none.clone(), 4)
                .unwrap()
                .next()
                .is_none()
        );
        let (tx, rx) = mpsc::channel();
        let r = p
            .map_async_with(
                square,
                none,
                None,
                Callbacks::new().on_success(move |v: Vec<u64>| tx.send(v.len()).unwrap()),
            )
            .unwrap();
        assert!(r.ready());
        assert_eq!(rx.recv_timeout(LONG.unwrap()).unwrap(), 0);
        assert!(matches!(
            p.map(square, [1], Some(0)),
            Err(Error::InvalidArgument(_))
        ));
    }
}

fn fails_on_seven(n: u64) -> u64 {
    if n == 7 {
        panic!("seven is not allowed");
    }
    n
}

fn callbacks_and_error_callbacks() {
    for m in METHODS {
        let p = pool(m, 2);
        let (tx, rx) = mpsc::channel::<Result<u64, String>>();
        let ok = tx.clone();
        let err = tx.clone();
        let r = p
            .apply_async_with(
                square,
                9,
                Callbacks::new()
                    .on_success(move |v| ok.send(Ok(v)).unwrap())
                    .on_error(move |e| err.send(Err(format!("{e}"))).unwrap()),
            )
            .unwrap();
        assert_eq!(rx.recv_timeout(LONG.unwrap()).unwrap(), Ok(81), "{m}");
        assert_eq!(r.get(LONG).unwrap(), 81);
        let ok = tx.clone();
        let err = tx.clone();
        p.apply_async_with(
            fails_on_seven,
            7,
            Callbacks::new()
                .on_success(move |v| ok.send(Ok(v)).unwrap())
                .on_error(move |e| err.send(Err(format!("{e}"))).unwrap()),
        )
        .unwrap();
        let got = rx.recv_timeout(LONG.unwrap()).unwrap().unwrap_err();
        assert!(got.contains("seven is not allowed"), "{m}: {got}");
        // map_async: the callback gets the whole list, the error callback
        // the error.
        let (tx, rx) = mpsc::channel();
        let t2 = tx.clone();
        p.map_async_with(
            square,
            0..10,
            Some(3),
            Callbacks::new().on_success(move |v: Vec<u64>| t2.send(Ok(v)).unwrap()),
        )
        .unwrap();
        let list = rx.recv_timeout(LONG.unwrap()).unwrap().unwrap();
        assert_eq!(list, (0..10).map(|n| n * n).collect::<Vec<_>>(), "{m}");
        p.map_async_with(
            fails_on_seven,
            0..10,
            Some(3),
            Callbacks::new().on_error(move |e| tx.send(Err(e)).unwrap()),
        )
        .unwrap();
        let e = rx.recv_timeout(LONG.unwrap()).unwrap().unwrap_err();
        assert!(matches!(e, Error::Panicked { .. }), "{m}: {e:?}");
        // A callback that panics is reported and the pool goes on.
        p.apply_async_with(
            square,
            1,
            Callbacks::new().on_success(|_| panic!("this callback panic is expected by the test")),
        )
        .unwrap()
        .get(LONG)
        .unwrap();
        assert_eq!(p.apply(square, 3).unwrap(), 9, "{m}");
    }
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn async_result_get_wait_ready_successful() {
    for m in METHODS {
        let p = pool(m, 1);
        let r = p.apply_async(sleep_ms, 1500).unwrap();
        assert!(matches!(r.successful(), Err(Error::NotReady)), "{m}");
        // CPython's test_async_timeout: get(timeout) raises TimeoutError.
        let t0 = Instant::now();
        assert!(matches!(
            r.get(Some(Duration::from_millis(50))),
            Err(Error::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(!r.ready());
        assert!(r.wait(LONG));
        assert!(r.ready());
        assert!(r.successful().unwrap());
        // The value stays: get() as often as you like.
        assert_eq!(r.get(None).unwrap(), 1500);
        assert_eq!(r.get(Some(Duration::ZERO)).unwrap(), 1500);
        let bad = p.apply_async(fails_on_seven, 7).unwrap();
        assert!(bad.wait(LONG));
        assert!(!bad.successful().unwrap(), "{m}");
    }
}

/// A result whose `Serialize` fails (CPython's MaybeEncodingError case).
#[derive(Debug, serde::Deserialize)]
struct Unsendable;

impl serde::Serialize for Unsendable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value never serializes"))
    }
}

fn unsendable(_: ()) -> Unsendable {
    Unsendable
}

fn task_errors_stay_with_their_task() {
    for m in METHODS {
        let p = pool(m, 2);
        match p.apply(fails_on_seven, 7) {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "seven is not allowed", "{m}");
                let at = location.unwrap_or_default();
                assert!(at.contains("basics.rs"), "{m}: location {at}");
            }
            other => panic!("{m}: {other:?}"),
        }
        let e = p.apply(unsendable, ()).unwrap_err();
        assert!(
            matches!(e, Error::ResultNotSerializable { .. }),
            "{m}: {e:?}"
        );
        assert!(format!("{e:?}").contains("Unsendable"), "{m}: {e:?}");
        // A map fails with the first failing item's error, after all of it ran.
        assert!(matches!(
            p.map(fails_on_seven, 0..20, Some(1)),
            Err(Error::Panicked { .. })
        ));
        // imap: the failing item alone, the others go on, in order.
        let got: Vec<_> = p.imap(fails_on_seven, 5..10, 1).unwrap().collect();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].as_ref().unwrap(), &5);
        assert!(matches!(got[2], Err(Error::Panicked { .. })), "{m}");
        assert_eq!(got[4].as_ref().unwrap(), &9);
        // In a chunk too: every other item of the chunk still has its value.
        let got: Vec<_> = p.imap(fails_on_seven, 5..10, 5).unwrap().collect();
        assert!(got[2].is_err() && got.iter().filter(|r| r.is_ok()).count() == 4);
        assert_eq!(p.apply(square, 5).unwrap(), 25, "{m}: the pool goes on");
        assert_eq!(p.state(), PoolState::Running);
    }
}

static BASE: AtomicU64 = AtomicU64::new(0);

fn set_base(base: u64) {
    BASE.store(base, Ordering::SeqCst);
}

fn plus_base(n: u64) -> u64 {
    n + BASE.load(Ordering::SeqCst)
}

fn initializer_effects_are_visible_in_tasks() {
    for m in METHODS {
        let p = Pool::builder()
            .processes(2)
            .start_method(m)
            .initializer(set_base, 1000)
            .build()
            .unwrap();
        assert_eq!(
            p.map(plus_base, [1, 2, 3], Some(1)).unwrap(),
            [1001, 1002, 1003],
            "{m}"
        );
        assert_eq!(BASE.load(Ordering::SeqCst), 0, "the initializer ran here");
    }
}

fn close_join_and_the_states_of_a_pool() {
    for m in METHODS {
        let p = pool(m, 2);
        assert!(matches!(p.join(), Err(Error::StillRunning)), "{m}");
        let workers = p.worker_pids();
        assert_eq!(workers.len(), 2);
        let results: Vec<_> = (0..20)
            .map(|i| p.apply_async(sleep_ms, i % 5).unwrap())
            .collect();
        p.close();
        assert_eq!(p.state(), PoolState::Closed);
        let e = p.apply_async(square, 1).unwrap_err();
        assert!(
            matches!(e, Error::NotRunning(PoolState::Closed)),
            "{m}: {e:?}"
        );
        assert!(format!("{e}").contains("closed"), "{e}");
        assert!(p.map(square, [1], None).is_err());
        assert!(p.imap(square, [1], 1).is_err());
        p.join().unwrap();
        // close + join: every task finished, every worker gone.
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.get(Some(Duration::ZERO)).unwrap(), i as u64 % 5, "{m}");
        }
        for w in workers {
            crate::eventually("the workers to exit", || !crate::alive(w));
        }
        p.terminate();
        assert_eq!(p.state(), PoolState::Terminated);
        let e = p.apply_async(square, 1).unwrap_err();
        assert!(format!("{e}").contains("terminated"), "{m}: {e}");
        p.join().unwrap();
    }
}

fn many_threads_share_one_pool() {
    let p = Arc::new(pool("forkserver", 2));
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (p, seen) = (p.clone(), seen.clone());
            std::thread::spawn(move || {
                for i in 0..50 {
                    let n = t * 1000 + i;
                    let v = p.apply_async(square, n).unwrap().get(LONG).unwrap();
                    seen.lock().unwrap().insert(n, v);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 200);
    assert!(seen.iter().all(|(n, v)| n * n == *v));
}
