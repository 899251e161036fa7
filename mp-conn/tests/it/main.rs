//! Integration tests of mp-conn, one module per concern.

mod connection;
mod fds;
mod pipe;
mod wait;
