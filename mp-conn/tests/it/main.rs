//! Integration tests of mp-conn, one module per concern.

mod connection;
mod core_support;
mod fds;
mod interop_client;
mod interop_examples;
mod interop_listener;
mod listener;
mod pipe;
mod pipe_pair;
mod python;
mod shared;
mod typed_fds;
mod wait;
