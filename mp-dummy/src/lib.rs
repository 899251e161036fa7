//! # mp-dummy — not built yet
//!
//! The API of `multiprocessing` backed by threads, after CPython's `multiprocessing.dummy`.
//!
//! It will hold a thread-backed `Process`, an in-process `Pipe` and
//! `Listener`/`Client` made of queues, and a thread `Pool`, so that code
//! written against the process API can run in one process.
//!
//! Nothing here works yet: this crate is an empty placeholder so that the
//! workspace has its final shape. See the project's issues for its plan.

#![forbid(unsafe_code)]
