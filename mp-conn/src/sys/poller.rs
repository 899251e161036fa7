//! Registration with the `polling` crate's `Poller` (epoll on Linux).
//!
//! # Safety
//!
//! `Poller::add` is `unsafe` because on some platforms a source must be
//! deleted from the poller before its fd is closed. On Linux (epoll), the
//! kernel removes a closed file description from every epoll set by
//! itself, and this crate only targets Unix platforms where `polling` uses
//! epoll or kqueue, both of which drop closed fds. The only consequence of
//! a forgotten `remove` is that a duplicate of the fd keeps reporting
//! events under the old key, which `Waiter` documents.

#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;

use polling::{Event, PollMode, Poller};

/// Registers `fd` for level-triggered readability under `key`.
pub(crate) fn add_level_readable(
    poller: &Poller,
    fd: BorrowedFd<'_>,
    key: usize,
) -> std::io::Result<()> {
    // SAFETY: see the module docs: epoll and kqueue forget closed fds on
    // their own, so a source dropped while registered is no memory hazard.
    unsafe { poller.add_with_mode(&fd, Event::readable(key), PollMode::Level) }
}
