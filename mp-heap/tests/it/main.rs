//! Integration tests of mp-heap: one binary, one module per concern.

mod alloc;
mod arena;
mod common;
mod deferred;
mod heap_test;
mod props;
mod typed;
