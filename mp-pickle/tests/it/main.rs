//! mp-pickle's integration tests: one binary, one module per concern.

mod conn;
mod cpython;
mod hostile;
mod peer;
mod roundtrip;
