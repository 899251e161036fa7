"""multiprocessing.Pool on trivial tasks (f(n) = n + 1), as mp-pool's
pool_bench example measures itself (with --threads,
multiprocessing.pool.ThreadPool, as mp-bench's threadpool rows measure
mp-dummy's Pool):

- apply_async: COUNT apply_async calls, then every result collected;
- map1: pool.map(f, range(COUNT), chunksize=1);
- map: pool.map(f, range(COUNT)) with the default chunk size;
- start: COUNT times Pool(WORKERS) + apply + close + join.

Each block of the first three starts its own pool (and waits until every
worker has answered once) before the clock starts; CPU time counts the
whole block, the pool's start and its workers (waited for at join) included.
Under forkserver the workers belong to the server and are not counted.
Pinned rows pin this process before it starts (the workers inherit it).
"""

import multiprocessing as mp
import time
from multiprocessing.pool import ThreadPool

import benchlib


def inc(n):
    return n + 1


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--op", choices=["apply_async", "map1", "map", "start"], required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--method", choices=["fork", "spawn", "forkserver"], default="fork")
    p.add_argument("--threads", action="store_true", help="a ThreadPool (not with --op start)")
    args = p.parse_args()
    if args.threads and args.op == "start":
        p.error("--threads measures tasks, not a pool's start")
    ctx = mp.get_context(args.method)
    n = args.count
    expected = sum(inc(i) for i in range(n))

    if args.op == "start":
        if args.method == "forkserver":
            # The server starts once per program, outside the timing.
            with ctx.Pool(args.workers) as pool:
                pool.apply(inc, (0,))

        def op():
            pool = ctx.Pool(args.workers)
            if pool.apply(inc, (1,)) != 2:
                raise SystemExit("wrong result")
            pool.close()
            pool.join()

        benchlib.report(args, benchlib.timed_blocks(args, op, benchlib.cpu_with_children))
        return

    # A thread pool's CPU is this process's; a process pool's includes its
    # waited-for workers.
    cpu = benchlib.cpu_self if args.threads else benchlib.cpu_with_children

    def block():
        c0 = cpu()
        pool = ThreadPool(args.workers) if args.threads else ctx.Pool(args.workers)
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
        return wall, cpu() - c0

    if args.warmup > 0:
        block()
    benchlib.report(args, [block() for _ in range(args.reps)])


if __name__ == "__main__":
    main()
