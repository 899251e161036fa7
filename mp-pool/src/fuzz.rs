//! Entry points for the fuzz targets in `mp-fuzz`: the parsers of what a
//! worker sends the pool (batches of results) and what the pool sends a
//! worker (batches of tasks).
//!
//! **Not part of the API**: hidden from the docs, exempt from semver, and
//! only what the fuzz targets need.

use crate::job::decode_item;
use crate::wire::{self, FromWorker, ToWorker};

/// Parses a batch from a worker as the supervisor does, and decodes every
/// item it holds as the results' reader would (as a `u64` and as a
/// `String`). Returns how many records were parsed, or the format error.
pub fn from_worker(payload: &[u8]) -> Result<usize, String> {
    let mut records = 0;
    wire::parse_from_worker(payload, |record| {
        records += 1;
        if let FromWorker::Results { results, .. } = record {
            let range = results.range_in(payload);
            let mut n = 0;
            for (status, bytes) in wire::results(results.count(), &payload[range]) {
                let _ = decode_item::<u64>(status, bytes);
                let _ = decode_item::<String>(status, bytes);
                n += 1;
            }
            assert_eq!(
                n,
                results.count(),
                "a checked results list yields every item"
            );
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(records)
}

/// Parses a batch sent to a worker as the worker does, walking every
/// unit's arguments. Returns how many records were parsed, or the format
/// error.
pub fn to_worker(payload: &[u8]) -> Result<usize, String> {
    let mut records = 0;
    wire::parse_to_worker(payload, |record| {
        records += 1;
        if let ToWorker::Unit { args, .. } = record {
            assert_eq!(args.iter().count(), args.count() as usize);
        }
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(records)
}

/// A well-formed batch from a worker (a seed for the fuzzer): ready, two
/// results (one failed), an initializer failure.
pub fn sample_from_worker() -> Vec<u8> {
    let mut out = Vec::new();
    wire::ready(&mut out);
    wire::begin_results(&mut out, 7, 2);
    wire::push_result(&mut out, |o| {
        o.push(42);
        Ok(())
    });
    wire::push_failure(&mut out, wire::PANICKED, "src/lib.rs:1:1\0boom");
    wire::init_failed(&mut out, "init");
    out
}

/// A well-formed batch to a worker (a seed for the fuzzer): a function
/// definition, a unit of two items, the request to exit.
pub fn sample_to_worker() -> Vec<u8> {
    let mut out = Vec::new();
    wire::define(&mut out, 0, b"not a real FnRef");
    let mut unit = wire::UnitRecord::new();
    let _ = unit.push(&1u64);
    let _ = unit.push(&"two");
    out.extend(unit.finish(3, 0));
    wire::quit(&mut out);
    out
}
