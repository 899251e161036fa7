//! CPython's `_TestQueue` basics in one process (SH-01, SH-02, SH-04,
//! SH-05), in our own words.

use std::time::{Duration, Instant};

use mp_queue::{JoinableQueue, Queue, QueueBuilder, QueueError, SimpleQueue};

/// A short timeout, and how much earlier than it a wait may not end.
const SHORT: Duration = Duration::from_millis(100);

fn took_about(t0: Instant, at_least: Duration) {
    let took = t0.elapsed();
    assert!(
        took >= at_least,
        "returned after {took:?}, before {at_least:?}"
    );
}

#[test]
fn put_until_full_then_full_with_and_without_timeouts() {
    let q = Queue::new(6).unwrap();
    assert!(q.empty() && !q.full());
    q.put(&1, true, None).unwrap();
    q.put(&2, true, Some(Duration::from_secs(1))).unwrap();
    q.put(&3, false, None).unwrap();
    q.put(&4, false, Some(Duration::from_secs(1))).unwrap();
    q.put_nowait(&5).unwrap();
    q.put(&6, true, None).unwrap();
    assert!(!q.empty() && q.full());
    assert_eq!(q.qsize(), 6);
    let full = |r: Result<(), QueueError>| matches!(r, Err(QueueError::Full));
    assert!(full(q.put(&7, false, None)));
    assert!(full(q.put_nowait(&7)));
    // Without block the timeout is ignored: at once.
    let t0 = Instant::now();
    assert!(full(q.put(&7, false, Some(Duration::from_secs(30)))));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t0 = Instant::now();
    assert!(full(q.put(&7, true, Some(SHORT))));
    took_about(t0, SHORT);
    for want in 1..=6 {
        assert_eq!(q.get(true, None).unwrap(), want);
    }
    assert!(q.empty() && !q.full());
}

#[test]
fn get_empty_with_and_without_timeouts() {
    let q: Queue<u8> = Queue::new(0).unwrap();
    assert!(matches!(q.get(false, None), Err(QueueError::Empty)));
    assert!(matches!(q.get_nowait(), Err(QueueError::Empty)));
    let t0 = Instant::now();
    assert!(matches!(
        q.get(false, Some(Duration::from_secs(30))),
        Err(QueueError::Empty)
    ));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t0 = Instant::now();
    assert!(matches!(q.get(true, Some(SHORT)), Err(QueueError::Empty)));
    took_about(t0, SHORT);
    q.put(&9, true, None).unwrap();
    assert_eq!(q.get(true, Some(Duration::from_secs(1))).unwrap(), 9);
}

#[test]
fn qsize_counts_up_and_down() {
    let q = Queue::new(0).unwrap();
    assert_eq!(q.qsize(), 0);
    q.put(&1u8, true, None).unwrap();
    assert_eq!(q.qsize(), 1);
    q.put(&2, true, None).unwrap();
    assert_eq!(q.qsize(), 2);
    q.get(true, None).unwrap();
    assert_eq!(q.qsize(), 1);
    q.get(true, None).unwrap();
    assert_eq!(q.qsize(), 0);
    assert_eq!(q.maxsize(), mp_queue::SEM_VALUE_MAX);
}

#[test]
fn a_threaded_producer_and_consumer_keep_order() {
    let q = Queue::new(8).unwrap();
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..20_000u32 {
                q.put(&i, true, None).unwrap();
            }
        })
    };
    for want in 0..20_000u32 {
        assert_eq!(q.get(true, Some(Duration::from_secs(60))).unwrap(), want);
    }
    producer.join().unwrap();
}

#[test]
fn more_than_the_ring_holds_goes_through_the_feeder_in_order() {
    // A 4 KiB ring holds a few dozen of these: the rest wait in the feeder.
    let q = QueueBuilder::new()
        .ring_bytes(4096)
        .queue::<(u32, Vec<u8>)>()
        .unwrap();
    for i in 0..2000u32 {
        q.put(&(i, vec![i as u8; 100]), false, None).unwrap();
    }
    assert_eq!(q.qsize(), 2000);
    for want in 0..2000u32 {
        let (i, body) = q.get(true, Some(Duration::from_secs(60))).unwrap();
        assert_eq!((i, body[99]), (want, want as u8));
    }
    assert!(q.empty());
    q.close();
    q.join_thread().unwrap();
}

#[test]
fn task_done_and_join() {
    let q = JoinableQueue::new(0).unwrap();
    for i in 0..10u32 {
        q.put(&Some(i), true, None).unwrap();
    }
    for _ in 0..4 {
        q.put(&None, true, None).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), 14);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                loop {
                    let job: Option<u32> = q.get(true, Some(Duration::from_secs(60))).unwrap();
                    q.task_done().unwrap();
                    if job.is_none() {
                        return;
                    }
                }
            })
        })
        .collect();
    assert!(q.join_timeout(Duration::from_secs(60)).unwrap());
    q.join().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    assert!(matches!(
        q.task_done(),
        Err(QueueError::TaskDoneTooManyTimes)
    ));
}

#[test]
fn close_refuses_here_and_join_thread_wants_it() {
    let q = Queue::new(0).unwrap();
    assert!(matches!(q.join_thread(), Err(QueueError::NotClosed)));
    q.put(&1u8, true, None).unwrap();
    q.close();
    assert!(matches!(q.put(&2, true, None), Err(QueueError::Closed)));
    assert!(matches!(q.get(true, None), Err(QueueError::Closed)));
    q.join_thread().unwrap();
    let s: SimpleQueue<u8> = SimpleQueue::new().unwrap();
    s.close();
    s.close(); // idempotent
    assert!(matches!(s.get(), Err(QueueError::Closed)));
}

#[test]
fn bad_arguments_are_refused() {
    for ring in [0, 1000, 2048, 1 << 31] {
        let e = QueueBuilder::new()
            .ring_bytes(ring)
            .queue::<u8>()
            .unwrap_err();
        assert!(matches!(e, QueueError::InvalidArgument(_)), "{ring}: {e:?}");
    }
    let e = Queue::<u8>::new(1 << 31).unwrap_err();
    assert!(e.to_string().contains("SEM_VALUE_MAX"), "{e}");
}
