//! The structures of this crate that live in shared memory, declared safe
//! to place there.
//!
//! # Safety
//!
//! The only `unsafe` of this crate: each type below is `#[repr(C)]` (with
//! its layout asserted at compile time beside it), made only of atomics
//! and of other [`SharedState`] types, so every bit pattern is valid, it
//! holds no pointers, has no `Drop`, and is only used through `&Self`:
//! exactly what [`SharedState`] asks.

#![allow(unsafe_code)]

use mp_heap::SharedState;

use crate::{BarrierState, CondState, EventState, RawSemaphore};

// SAFETY: see the module docs; value, sleepers, max: atomics.
unsafe impl SharedState for RawSemaphore {}
// SAFETY: see the module docs; epoch, waiting, signals: atomics.
unsafe impl SharedState for CondState {}
// SAFETY: see the module docs; the word and the sleepers: atomics.
unsafe impl SharedState for EventState {}
// SAFETY: see the module docs; a ProcessLock and a CondState (both
// SharedState) and atomics.
unsafe impl SharedState for BarrierState {}
