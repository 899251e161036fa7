//! # mp-forkserver — not built yet
//!
//! The fork server of CPython's `multiprocessing.forkserver`.
//!
//! Nothing here works yet: this crate is an empty placeholder so that the
//! workspace has its final shape. See the project's issues for its plan.

#![forbid(unsafe_code)]
