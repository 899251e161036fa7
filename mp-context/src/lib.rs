//! # mp-context — not built yet
//!
//! Processes and the fork, spawn and forkserver start methods of CPython's `multiprocessing.context`.
//!
//! Nothing here works yet: this crate is an empty placeholder so that the
//! workspace has its final shape. See the project's issues for its plan.

#![forbid(unsafe_code)]
