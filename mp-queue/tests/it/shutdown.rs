//! CPython 3.13's `shutdown(immediate)` in one process (threads).

use std::time::Duration;

use mp_queue::{JoinableQueue, Queue, QueueError};

#[test]
fn after_shutdown_puts_fail_and_gets_drain() {
    let q = Queue::new(0).unwrap();
    q.put(&1u8, true, None).unwrap();
    q.put(&2, true, None).unwrap();
    q.shutdown(false);
    assert!(q.is_shutdown());
    assert!(matches!(q.put(&3, true, None), Err(QueueError::ShutDown)));
    assert_eq!(q.get(true, None).unwrap(), 1);
    assert_eq!(q.get(false, None).unwrap(), 2);
    assert!(matches!(q.get(true, None), Err(QueueError::ShutDown)));
}

#[test]
fn immediate_shutdown_discards_and_counts_tasks_done() {
    let q = JoinableQueue::new(0).unwrap();
    for i in 0..5u8 {
        q.put(&i, true, None).unwrap();
    }
    q.get(true, None).unwrap(); // one in progress
    q.shutdown(true);
    assert!(matches!(q.get(true, None), Err(QueueError::ShutDown)));
    assert_eq!(q.unfinished_tasks(), 1);
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::from_secs(10)).unwrap());
}

#[test]
fn shutdown_wakes_blocked_getters_and_putters() {
    let empty: Queue<u8> = Queue::new(1).unwrap();
    let full: Queue<u8> = Queue::new(1).unwrap();
    full.put(&0, true, None).unwrap();
    let getter = {
        let q = empty.clone();
        std::thread::spawn(move || q.get(true, None))
    };
    let putter = {
        let q = full.clone();
        std::thread::spawn(move || q.put(&1, true, None))
    };
    std::thread::sleep(Duration::from_millis(100));
    empty.shutdown(false);
    full.shutdown(false);
    assert!(matches!(getter.join().unwrap(), Err(QueueError::ShutDown)));
    assert!(matches!(putter.join().unwrap(), Err(QueueError::ShutDown)));
}
