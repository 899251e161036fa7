//! Platform layer: shared mappings (`mmap`/`munmap`), fork detection
//! (`MADV_WIPEONFORK`), the fork-replaceable cell the heap lives in, and
//! the process and thread ids that lock owners are known by (`/proc`).
//!
//! # Safety
//!
//! This is one of the few places where mp-heap uses `unsafe`:
//!
//! - [`Mapping`] owns an `mmap` region and unmaps it exactly once, on drop.
//!   Pointers it hands out are valid for as long as the `Mapping` lives.
//! - [`current_pid`] and [`current_stamp`] read a private anonymous page
//!   marked `MADV_WIPEONFORK`, which the kernel zeroes in a forked child;
//!   the page is mapped once and never unmapped.
//! - [`ForkCell`] keeps a chain of boxed values behind an `AtomicPtr`; a value
//!   is freed only when the cell itself is dropped, so every `&T` handed out
//!   for `&self` stays valid.

#![allow(unsafe_code)]

mod fork;
mod mapping;
mod process;

pub use fork::ForkCell;
#[cfg(test)]
pub(crate) use fork::make_stamp;
pub(crate) use fork::{STAMP_START_BITS, current_pid, current_stamp};
pub(crate) use mapping::Mapping;
pub(crate) use process::{Me, me, proc_stat, process_exists};

/// The system page size, in bytes.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}
