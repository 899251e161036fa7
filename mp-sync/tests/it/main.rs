//! Integration tests of mp-sync within one process (threads as the other
//! parties), after CPython's `_TestLock`, `_TestSemaphore`,
//! `_TestCondition`, `_TestEvent` and `_TestBarrier` (SH-06..21 in the
//! project's behaviour list), in our own words. The cross-process suite is
//! `tests/processes.rs`.

mod barrier;
mod common;
mod condition;
mod event;
mod lock;
mod props;
mod semaphore;
mod serde_args;
