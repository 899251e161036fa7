//! The workspace README's examples, compiled and run as doc tests.
//!
//! They live here, in the unpublished `xtask` package, because the README
//! sits outside every published crate's folder: a crate that included it
//! would not build its doc tests from its own `.crate`. This package's
//! dev-dependencies reach every crate the examples use; a crate whose
//! example joins the README joins them.

#![forbid(unsafe_code)]

/// The README's examples.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadmeDoctests;
