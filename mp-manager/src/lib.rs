//! # mp-manager — not built yet
//!
//! Managers and proxies, after CPython's `multiprocessing.managers`: a server process that holds objects by id, serves `(id, method, args, kwds)` requests over authenticated connections, and answers `#RETURN`, `#ERROR`, `#TRACEBACK`, `#PROXY` or `#UNSERIALIZABLE`.
//!
//! It will hold `Server`, `BaseManager`, `SyncManager`, proxies, `Token`,
//! reference counting across processes, and the registered shared types
//! (queues, locks, events, conditions, barriers, pools, lists, dicts,
//! values, arrays, namespaces).
//!
//! Nothing here works yet: this crate is an empty placeholder so that the
//! workspace has its final shape. See the project's issues for its plan.

#![forbid(unsafe_code)]
