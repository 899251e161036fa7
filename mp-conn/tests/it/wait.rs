//! wait tests.
