//! The Error Debug convention (issue 8): `Debug` is the message and its
//! causes, never the variant's name.

use std::error::Error as _;

use mp_dummy::{Barrier, Error, PoolError};

#[test]
fn debug_is_the_message_then_each_cause() {
    assert_eq!(format!("{:?}", Error::Full), "the queue is full");
    assert_eq!(
        format!("{:?}", Error::KeyError),
        "key not found in the dict"
    );
    let broken = Barrier::with_action(1, || Err("disk full".into()), None)
        .unwrap()
        .wait(None)
        .unwrap_err();
    assert_eq!(
        format!("{broken:?}"),
        "the barrier's action failed, so the barrier is broken: disk full"
    );
    // Display does not repeat the cause.
    assert_eq!(
        broken.to_string(),
        "the barrier's action failed, so the barrier is broken"
    );
    assert_eq!(broken.source().unwrap().to_string(), "disk full");
    let wrong = Error::WrongThread {
        parent: "<Thread(MainThread, started)>".into(),
        current: "<Thread(other, started)>".into(),
    };
    assert!(!format!("{wrong:?}").contains("WrongThread"));
    assert!(format!("{wrong:?}").starts_with(
        "Parent is <Thread(MainThread, started)> but current_process is <Thread(other, started)>"
    ));
    let pool = PoolError::NotRunning(mp_dummy::PoolState::Closed);
    assert!(!format!("{pool:?}").contains("NotRunning"), "{pool:?}");
}
