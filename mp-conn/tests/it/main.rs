//! Integration tests of mp-conn, one module per concern.

mod connection;
mod core_support;
mod fds;
mod pipe;
mod wait;
mod interop_client;
mod interop_examples;
mod interop_listener;
mod listener;
mod python;
