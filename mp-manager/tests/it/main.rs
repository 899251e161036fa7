//! mp-manager's integration tests: one binary, one module per concern.
//! Servers run in a thread of the test process and clients connect to
//! them; cross-process cases are in `tests/processes.rs`.

mod python;
mod support;

mod basics;
mod containers;
mod cpython_client;
mod cpython_server;
mod custom;
mod examples;
mod hostile;
mod refcounts;
mod sync_types;
mod wire;
