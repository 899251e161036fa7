//! Entry points for the fuzz targets in `mp-fuzz`: the parsers of what a
//! worker sends the pool (batches of results) and what the pool sends a
//! worker (batches of tasks, and the frames they come in).
//!
//! **Not part of the API**: hidden from the docs, exempt from semver, and
//! only what the fuzz targets need.

use std::os::fd::AsFd;

use crate::job::decode_item;
use crate::sys::FrameReader;
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

/// Reads `stream` (at most a pipe's default 64 KiB of it) from a pipe as
/// a worker reads its task pipe, parsing each frame as [`to_worker`]
/// does. Returns how many frames were read, or the first error.
pub fn task_frames(stream: &[u8]) -> Result<usize, String> {
    let stream = &stream[..stream.len().min(64 * 1024)];
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| e.to_string())?;
    let mut written = 0;
    while written < stream.len() {
        written += rustix::io::write(w.as_fd(), &stream[written..]).map_err(|e| e.to_string())?;
    }
    drop(w);
    let mut reader = FrameReader::new(r);
    let mut frame = Vec::new();
    let mut frames = 0;
    while reader.recv(&mut frame).map_err(|e| e.to_string())? {
        frames += 1;
        let _ = to_worker(&frame);
    }
    Ok(frames)
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
