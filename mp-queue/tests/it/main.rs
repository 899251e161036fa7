//! mp-queue's integration tests that run in one process (the ones that
//! start processes are in `tests/processes.rs`, a `harness = false`
//! target).

mod basics;
mod bench_example;
mod items;
mod shutdown;
