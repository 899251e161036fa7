//! `heap_bench --size BYTES --count N [--allocator heap|system] [--window W]`
//!
//! Times N malloc+free pairs of SIZE bytes with a small working set: W
//! blocks (16 by default) live in a ring, and each step frees the oldest
//! and allocates a new one in its place, like `benches/cpython_heap.py`
//! does with `BufferWrapper`. `--allocator system` times the system
//! allocator (`malloc`/`free` through Rust's `System` allocator) on the
//! same pattern, without touching the memory.
//!
//! The output contract, relied on by other tools: the LAST line of stdout
//! is the rate in pairs per second, as a plain number.

use std::{hint::black_box, process::ExitCode, time::Instant};

use mp_heap::{Heap, SharedBuffer};

struct Args {
    size: usize,
    count: u64,
    window: usize,
    system: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        size: 64,
        count: 1_000_000,
        window: 16,
        system: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size" => args.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--count" => args.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--window" => args.window = value()?.parse().map_err(|e| format!("--window: {e}"))?,
            "--allocator" => match value()?.as_str() {
                "heap" => args.system = false,
                "system" => args.system = true,
                other => return Err(format!("--allocator: unknown {other:?} (heap or system)")),
            },
            "-h" | "--help" => {
                return Err("usage: heap_bench --size BYTES --count N [--allocator heap|system] [--window W]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.window == 0 {
        return Err("--window must be at least 1".into());
    }
    Ok(args)
}

/// Runs `count` steps of the ring with `alloc`, returning pairs per second.
fn ring<T>(count: u64, window: usize, mut alloc: impl FnMut() -> T) -> f64 {
    let mut slots: Vec<T> = (0..window).map(|_| alloc()).collect();
    let start = Instant::now();
    let mut i = 0;
    for _ in 0..count {
        // Dropping the old occupant is the free; `alloc` is the malloc.
        slots[i] = black_box(alloc());
        i += 1;
        if i == window {
            i = 0;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(slots);
    count as f64 / secs.max(1e-9)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("heap_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let rate = if args.system {
        let size = args.size;
        ring(args.count, args.window, || Vec::<u8>::with_capacity(size))
    } else {
        let heap = Heap::global();
        if let Err(e) = heap.malloc(args.size) {
            eprintln!("heap_bench: cannot allocate {} bytes: {e}", args.size);
            return ExitCode::FAILURE;
        }
        let size = args.size;
        let rate = ring(args.count, args.window, || {
            SharedBuffer::new(size).unwrap_or_else(|e| panic!("malloc({size}) failed: {e}"))
        });
        let st = heap.stats();
        println!(
            "heap: {} arenas, {} bytes mapped, {} mallocs, {} frees",
            st.arenas, st.arena_bytes, st.mallocs, st.frees
        );
        rate
    };
    println!(
        "{} malloc+free pairs of {} bytes, window {}, allocator {}",
        args.count,
        args.size,
        args.window,
        if args.system { "system" } else { "mp-heap" }
    );
    println!("{rate:.0}");
    ExitCode::SUCCESS
}
