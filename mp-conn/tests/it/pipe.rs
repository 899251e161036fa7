//! pipe tests.
