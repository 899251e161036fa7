//! connection tests.
