//! # mp-conn — not built yet
//!
//! Connections, pipes, listeners, `wait()` and fd passing of CPython's `multiprocessing.connection`, wire-compatible with CPython.
//!
//! Nothing here works yet: this crate is an empty placeholder so that the
//! workspace has its final shape. See the project's issues for its plan.

#![forbid(unsafe_code)]
