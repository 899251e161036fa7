"""Calls through a SyncManager proxy (fork start method by default):
dict set/get, queue put + get, lock acquire + release (each call counts
once), proxy create + drop, or manager start + shutdown. --cpus pins this
process and every thread of the manager process. CPU time counts this
process and the manager process (its /proc stat), or, for start, the
managers waited for."""

import multiprocessing as mp
import os
import time
from multiprocessing.managers import SyncManager

import benchlib

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pin_all(pid, cpu):
    if cpu < 0:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def main():
    p = benchlib.parser(__doc__)
    benchlib.add_cpus(p)
    p.add_argument("--op", required=True,
                   choices=["dict_set", "dict_get", "queue", "lock", "proxy", "start"])
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    parent_cpu, server_cpu = benchlib.parse_cpus(args.cpus)
    benchlib.pin(parent_cpu)
    ctx = mp.get_context(args.method)

    if args.op == "start":
        def op():
            m = SyncManager(ctx=ctx)
            m.start()
            m.shutdown()
        benchlib.report(args, benchlib.timed_blocks(args, op, benchlib.cpu_with_children))
        return

    m = SyncManager(ctx=ctx)
    m.start()
    pid = m._process.pid
    pin_all(pid, server_cpu)

    def cpu():
        return benchlib.cpu_self() + proc_cpu(pid)

    if args.op in ("dict_set", "dict_get", "queue"):
        op, per_run = benchlib.proxy_op(m, args.op)
        count = args.count // per_run
    elif args.op == "lock":
        lock = m.Lock()
        acquire, release = lock.acquire, lock.release

        def op():
            acquire()
            release()
        count = args.count // 2
    else:
        d0 = m.dict()  # opens this thread's connection first

        def op():
            d = m.dict()
            del d
        count = args.count
    # The timed loop counts calls: pairs run count // 2 times.
    calls = args.count
    args.count = count
    blocks = benchlib.timed_blocks(args, op, cpu)
    args.count = calls if args.op in ("queue", "lock") else count
    benchlib.report(args, blocks)
    m.shutdown()


if __name__ == "__main__":
    main()
