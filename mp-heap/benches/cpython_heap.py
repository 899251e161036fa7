"""Rate of CPython's multiprocessing.heap.BufferWrapper malloc+free pairs.

usage: python3 cpython_heap.py --size BYTES --count N [--window W]

The same pattern as `cargo run --release -p mp-heap --example heap_bench`:
W blocks (16 by default) live in a ring; each step frees the oldest (by
dropping its BufferWrapper, whose finalizer calls Heap.free) and allocates
a new one of SIZE bytes in its place. The memory is not touched.

Output contract, as heap_bench: the LAST line of stdout is the rate in
pairs per second, as a plain number.
"""

import argparse
import sys
import time
from multiprocessing.heap import BufferWrapper


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--window", type=int, default=16)
    a = p.parse_args()
    if a.window < 1:
        p.error("--window must be at least 1")
    slots = [BufferWrapper(a.size) for _ in range(a.window)]
    i = 0
    start = time.perf_counter()
    for _ in range(a.count):
        slots[i] = BufferWrapper(a.size)
        i += 1
        if i == a.window:
            i = 0
    secs = time.perf_counter() - start
    del slots
    heap = BufferWrapper._heap
    print(f"CPython {sys.version.split()[0]}: {a.count} malloc+free pairs of "
          f"{a.size} bytes, window {a.window}, "
          f"{heap._n_mallocs} mallocs, {heap._n_frees} frees")
    print(f"{a.count / max(secs, 1e-9):.0f}")


if __name__ == "__main__":
    main()
