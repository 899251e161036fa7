"""Shared helpers of the CPython benchmark scripts run by `cargo xtask bench`.

Every script measures one operation of `multiprocessing` itself: it runs
WARMUP untimed operations, then REPS timed blocks of COUNT operations, and
prints one line per block:

    rep OPS WALL_SECONDS CPU_SECONDS

CPU seconds are user + system time of every process taking part in the
block (a peer process reports its own share back to the parent).
"""

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--reps", type=int, default=5)
    return p


def add_cpus(p):
    """--cpus PARENT,CHILD: CPUs to pin the two peers to (-1: not pinned)."""
    p.add_argument("--cpus", default="-1,-1")


def parse_cpus(text):
    parent, child = (int(x) for x in text.split(","))
    return parent, child


def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def cpu_self():
    """User + system CPU seconds of this process (ns resolution)."""
    return time.process_time()


def cpu_with_children():
    """User + system CPU seconds of this process and its waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def peer_blocks(args, op, cpu=cpu_self):
    """The serving peer: run `op` for the warm-up and every block; return
    the CPU seconds of each block."""
    for _ in range(args.warmup):
        op()
    cpus = []
    for _ in range(args.reps):
        c0 = cpu()
        for _ in range(args.count):
            op()
        cpus.append(cpu() - c0)
    return cpus


def timed_blocks(args, op, cpu=cpu_self):
    """The timing side: run `op` for the warm-up and every block; return
    (wall, cpu) per block."""
    for _ in range(args.warmup):
        op()
    out = []
    for _ in range(args.reps):
        c0 = cpu()
        t0 = time.perf_counter()
        for _ in range(args.count):
            op()
        wall = time.perf_counter() - t0
        out.append((wall, cpu() - c0))
    return out


def report(args, blocks, peer_cpus=None):
    for i, (wall, cpu) in enumerate(blocks):
        if peer_cpus is not None:
            cpu += peer_cpus[i]
        print(f"rep {args.count} {wall:.9f} {cpu:.9f}")
    sys.stdout.flush()


def fork_peer(target, *target_args, duplex=True):
    """Start `target(conn, *target_args)` in a forked child, `conn` being
    its end of a new Pipe(duplex); return (child, our end)."""
    ctx = mp.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=duplex)
    child = ctx.Process(target=target, args=(theirs, *target_args))
    child.start()
    theirs.close()
    return child, ours


def finish_peer(args, blocks, child, conn, role):
    """Receive the peer's CPU seconds per block over `conn`, wait for the
    child (exit naming it `role` if it failed) and report the blocks."""
    peer = conn.recv()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"{role} exited with {child.exitcode}")
    report(args, blocks, peer)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proxy_op(m, name):
    """The call of a manager benchmark through proxies of manager `m`:
    dict_set, dict_get (one call each) or queue (put + get, two calls).
    Returns the function and how many calls one run of it makes."""
    if name in ("dict_set", "dict_get"):
        d = m.dict()
        d["key"] = 0
        if name == "dict_set":
            def op():
                d["key"] = 1
        else:
            def op():
                d["key"]
        return op, 1
    if name == "queue":
        q = m.Queue()
        put, get = q.put, q.get

        def op():
            put(1)
            get()
        return op, 2
    raise ValueError(f"no proxy op {name!r}")
