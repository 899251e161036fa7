"""malloc + free pairs on multiprocessing's shared heap:
multiprocessing.heap.BufferWrapper(SIZE), with a working set of 8 live
blocks (each step drops the oldest, which frees it, and allocates anew)."""

from multiprocessing.heap import BufferWrapper

import benchlib

RING = 8


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--size", type=int, required=True)
    args = p.parse_args()
    ring = [None] * RING
    state = {"i": 0}
    size = args.size

    def op():
        i = state["i"]
        ring[i] = None
        ring[i] = BufferWrapper(size)
        state["i"] = (i + 1) % RING

    benchlib.report(args, benchlib.timed_blocks(args, op))


if __name__ == "__main__":
    main()
