//! Every primitive as a serde value whose arena fd travels beside the bytes
//! (mp-reduction), as process arguments do: the receiver shares the
//! primitive itself; a value of the wrong kind or size is an error.

use mp_reduction::{collect_fds, provide_fds};
use mp_sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, NoAction, RLock, Semaphore};
use serde::{Serialize, de::DeserializeOwned};

/// Serializes `value` as a process starter does, and rebuilds it.
fn round_trip<T: Serialize, U: DeserializeOwned>(value: &T) -> Result<U, postcard::Error> {
    let (bytes, fds) = collect_fds(|| postcard::to_allocvec(value));
    let bytes = bytes.unwrap();
    let (back, unclaimed) = provide_fds(fds, || postcard::from_bytes::<U>(&bytes));
    assert!(unclaimed.is_empty());
    back
}

#[test]
fn a_received_primitive_is_the_same_primitive() {
    let lock = Lock::new().unwrap();
    let theirs: Lock = round_trip(&lock).unwrap();
    let _g = lock.lock().unwrap();
    assert!(theirs.is_locked());
    assert!(!theirs.acquire(false, None).unwrap());

    let sem = Semaphore::new(3).unwrap();
    let theirs: Semaphore = round_trip(&sem).unwrap();
    assert!(theirs.acquire(false, None));
    assert_eq!(sem.get_value(), 2);

    let event = Event::new().unwrap();
    let theirs: Event = round_trip(&event).unwrap();
    theirs.set();
    assert!(event.is_set());

    let barrier = Barrier::new(4, None).unwrap();
    let theirs: Barrier<NoAction> = round_trip(&barrier).unwrap();
    assert_eq!(theirs.parties(), 4);
    theirs.abort();
    assert!(barrier.broken());

    let cond = Condition::new().unwrap();
    let theirs: Condition = round_trip(&cond).unwrap();
    let _g = cond.lock().unwrap();
    assert!(theirs.get_lock().is_locked());
}

#[test]
fn the_wrong_kind_is_refused() {
    let rlock = RLock::new().unwrap();
    // (postcard keeps no custom message: the kind of error is all we see.)
    assert!(round_trip::<_, Lock>(&rlock).is_err());
    assert!(round_trip::<_, RLock>(&Lock::new().unwrap()).is_err());
    assert!(round_trip::<_, BoundedSemaphore>(&Semaphore::new(1).unwrap()).is_err());
    assert!(round_trip::<_, Semaphore>(&BoundedSemaphore::new(1).unwrap()).is_err());
    // A semaphore's 16 bytes are no event (8) and no lock (32).
    assert!(round_trip::<_, Event>(&Semaphore::new(1).unwrap()).is_err());
    assert!(round_trip::<_, Lock>(&Semaphore::new(1).unwrap()).is_err());
}
