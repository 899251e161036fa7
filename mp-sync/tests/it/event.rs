//! SH-16 for `Event`.

use std::time::{Duration, Instant};

use mp_sync::Event;

#[test]
fn set_clear_and_wait_as_cpython() {
    let event = Event::new().unwrap();
    assert!(!event.is_set());
    let t0 = Instant::now();
    assert!(!event.wait(Some(Duration::ZERO)));
    assert!(!event.wait(Some(Duration::from_millis(100))));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    event.set();
    assert!(event.is_set());
    let t0 = Instant::now();
    assert!(event.wait(None));
    assert!(event.wait(Some(Duration::from_millis(100))));
    assert!(t0.elapsed() < Duration::from_secs(30), "a set event waited");
    event.clear();
    assert!(!event.is_set());
    // A setter elsewhere ends a wait without timeout.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| event.wait(None));
        std::thread::sleep(Duration::from_millis(20));
        event.set();
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn one_set_wakes_every_waiter() {
    let event = Event::new().unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..6)
            .map(|_| s.spawn(|| event.wait(Some(Duration::from_secs(60)))))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        event.set();
        for w in waiters {
            assert!(w.join().unwrap());
        }
    });
}
