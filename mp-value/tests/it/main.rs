//! mp-value's integration tests: one binary, one module per concern.

mod laws;
mod serde_map;
mod strategy;
mod tagged;
