"""multiprocessing.pool.ThreadPool on trivial tasks (f(n) = n + 1), as
mp-bench's threadpool rows measure mp-dummy's Pool:

- apply_async: COUNT apply_async calls, then every result collected;
- map1: pool.map(f, range(COUNT), chunksize=1);
- map: pool.map(f, range(COUNT)) with the default chunk size.

Each block starts its own pool (and waits until every thread has run a
task) before the clock starts; CPU time counts the whole block, the pool's
start and stop included.
"""

import time
from multiprocessing.pool import ThreadPool

import benchlib


def inc(n):
    return n + 1


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--op", choices=["apply_async", "map1", "map"], required=True)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    n = args.count
    expected = sum(inc(i) for i in range(n))

    def block():
        c0 = benchlib.cpu_self()
        pool = ThreadPool(args.workers)
        pool.map(inc, range(args.workers), chunksize=1)
        t0 = time.perf_counter()
        if args.op == "apply_async":
            pending = [pool.apply_async(inc, (i,)) for i in range(n)]
            total = sum(r.get() for r in pending)
        elif args.op == "map1":
            total = sum(pool.map(inc, range(n), chunksize=1))
        else:
            total = sum(pool.map(inc, range(n)))
        wall = time.perf_counter() - t0
        pool.close()
        pool.join()
        if total != expected:
            raise SystemExit(f"wrong results: {total} != {expected}")
        return wall, benchlib.cpu_self() - c0

    if args.warmup > 0:
        block()
    benchlib.report(args, [block() for _ in range(args.reps)])


if __name__ == "__main__":
    main()
