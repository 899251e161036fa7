//! fds tests.
