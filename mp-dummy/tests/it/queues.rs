//! The queues: CPython's `_TestQueue` (put/get with and without blocking
//! and timeouts, `qsize`, `full`/`empty`, `task_done`/`join`), ported.

use std::time::Duration;

use mp_dummy::{DummyProcess, Error, JoinableQueue, Queue, SimpleQueue};

use crate::{LONG, SHORT, took_at_least};

#[test]
fn put_and_get_with_every_blocking_mode() {
    let q = Queue::new(6);
    q.put(1, true, None).unwrap();
    q.put(2, true, LONG).unwrap();
    q.put(3, false, None).unwrap();
    q.put(4, false, LONG).unwrap(); // without block, the timeout is ignored
    q.put_nowait(5).unwrap();
    q.put(6, true, Some(Duration::ZERO)).unwrap();
    assert_eq!(q.qsize(), 6);
    assert!(q.full() && !q.empty());
    assert!(matches!(q.put(7, false, None), Err(Error::Full)));
    assert!(matches!(
        took_at_least(SHORT, || q.put(7, true, Some(SHORT))),
        Err(Error::Full)
    ));
    assert_eq!(q.get(true, None).unwrap(), 1);
    assert_eq!(q.get(true, LONG).unwrap(), 2);
    assert_eq!(q.get(false, None).unwrap(), 3);
    assert_eq!(q.get(false, LONG).unwrap(), 4);
    assert_eq!(q.get_nowait().unwrap(), 5);
    assert_eq!(q.get(true, Some(Duration::ZERO)).unwrap(), 6);
    assert!(q.empty() && !q.full());
    assert!(matches!(q.get(false, None), Err(Error::Empty)));
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    assert!(matches!(
        took_at_least(SHORT, || q.get(true, Some(SHORT))),
        Err(Error::Empty)
    ));
}

#[test]
fn put_or_return_hands_the_item_back() {
    let q = Queue::new(1);
    q.put(String::from("in"), true, None).unwrap();
    let (e, item) = q.put_or_return("back".into(), false, None).unwrap_err();
    assert!(matches!(e, Error::Full));
    assert_eq!(item, "back");
}

#[test]
fn a_blocked_get_is_woken_by_a_put_from_a_process() {
    let q = Queue::new(0);
    let producer = {
        let q = q.clone();
        DummyProcess::new(
            move |()| {
                std::thread::sleep(SHORT);
                for i in 0..100 {
                    q.put(i, true, LONG).unwrap();
                }
            },
            (),
        )
    };
    producer.start().unwrap();
    let got: Vec<i32> = (0..100).map(|_| q.get(true, LONG).unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    producer.join(LONG).unwrap();
}

#[test]
fn a_blocked_put_is_woken_by_a_get() {
    let q = Queue::new(1);
    q.put(1, true, None).unwrap();
    let q2 = q.clone();
    let t = std::thread::spawn(move || q2.put(2, true, LONG));
    std::thread::sleep(SHORT);
    assert_eq!(q.get(true, LONG).unwrap(), 1);
    t.join().unwrap().unwrap();
    assert_eq!(q.get(true, LONG).unwrap(), 2);
}

#[test]
fn task_done_and_join() {
    // _TestQueue.test_task_done: workers mark each item done; join
    // returns once all are.
    let q = JoinableQueue::new(0);
    let workers: Vec<DummyProcess> = (0..4)
        .map(|_| {
            let q = q.clone();
            DummyProcess::new(
                move |()| {
                    while let Ok(Some(_)) = q.get(true, LONG) {
                        q.task_done().unwrap();
                    }
                    q.task_done().unwrap(); // the stop sign
                },
                (),
            )
        })
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    for i in 0..10 {
        q.put(Some(i), true, None).unwrap();
    }
    q.join().unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    for _ in &workers {
        q.put(None, true, None).unwrap();
    }
    for w in &workers {
        w.join(LONG).unwrap();
    }
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooManyTimes)));
}

#[test]
fn join_timeout_says_whether_every_task_is_done() {
    let q = JoinableQueue::new(0);
    q.put("job", true, None).unwrap();
    assert!(!took_at_least(SHORT, || q.join_timeout(SHORT).unwrap()));
    q.get(true, None).unwrap();
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::ZERO).unwrap());
}

#[test]
fn shutdown_fails_puts_drains_then_fails_gets() {
    let q = Queue::new(0);
    q.put(1, true, None).unwrap();
    q.shutdown(false);
    assert!(q.is_shutdown());
    assert!(matches!(q.put(2, true, None), Err(Error::ShutDown)));
    assert_eq!(q.get(true, None).unwrap(), 1);
    assert!(matches!(q.get(true, None), Err(Error::ShutDown)));
}

#[test]
fn an_immediate_shutdown_discards_and_wakes_blocked_callers() {
    let q = JoinableQueue::new(0);
    q.put(1, true, None).unwrap();
    let q2 = q.clone();
    let joiner = std::thread::spawn(move || q2.join());
    let empty = Queue::<u8>::new(0);
    let e2 = empty.clone();
    let getter = std::thread::spawn(move || e2.get(true, None));
    std::thread::sleep(SHORT);
    q.shutdown(true);
    empty.shutdown(true);
    joiner.join().unwrap().unwrap();
    assert!(matches!(getter.join().unwrap(), Err(Error::ShutDown)));
    assert!(matches!(q.get(false, None), Err(Error::ShutDown)));
}

#[test]
fn a_simple_queue_puts_and_gets() {
    let q = SimpleQueue::new();
    assert!(q.empty());
    q.put((1, "one")).unwrap();
    assert!(!q.empty());
    assert_eq!(q.get().unwrap(), (1, "one"));
    assert!(matches!(
        took_at_least(SHORT, || q.get_timeout(Some(SHORT))),
        Err(Error::Empty)
    ));
}
