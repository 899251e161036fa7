//! Fuzz targets for every parser that reads bytes from a peer.
//!
//! Each target is a plain function of `&[u8]` that must never panic, hang or
//! allocate without bound, whatever the bytes. Two drivers run them:
//!
//! - `cargo xtask fuzz --seconds N` (stable Rust, bounded, run by CI): the
//!   `mp-fuzz` binary mutates each target's seed corpus at random;
//! - `cargo fuzz run <name>` in `fuzz/` (nightly and cargo-fuzz): libFuzzer
//!   with coverage guidance, calling the same functions.

#![forbid(unsafe_code)]

pub mod targets;

pub use targets::{TARGETS, Target};
