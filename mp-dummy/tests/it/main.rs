//! mp-dummy's integration tests, a module per concern.

mod pool;
