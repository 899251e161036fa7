//! # mp-heap — not built yet
//!
//! Shared-memory arenas and the best-fit allocator of CPython's `multiprocessing.heap`.
//!
//! Nothing here works yet: this crate is an empty placeholder so that the
//! workspace has its final shape. See the project's issues for its plan.

#![forbid(unsafe_code)]
