"""multiprocessing's Lock and Semaphore: --op lock times an uncontended
acquire() + release() in one process; --op semaphore times a ping-pong
between two processes (fork start method), one round trip being ping
released and pong acquired by the parent, the reverse by the child."""

import multiprocessing as mp

import benchlib


def ponger(conn, args, cpu, ping, pong):
    benchlib.pin(cpu)
    acquire, release = ping.acquire, pong.release

    def op():
        acquire()
        release()

    conn.send(benchlib.peer_blocks(args, op))
    conn.close()


def lock(args):
    lk = mp.get_context("fork").Lock()
    acquire, release = lk.acquire, lk.release

    def op():
        acquire()
        release()

    benchlib.report(args, benchlib.timed_blocks(args, op))


def semaphore(args):
    parent_cpu, child_cpu = benchlib.parse_cpus(args.cpus)
    ctx = mp.get_context("fork")
    ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
    child, conn = benchlib.fork_peer(ponger, args, child_cpu, ping, pong)
    benchlib.pin(parent_cpu)
    release, acquire = ping.release, pong.acquire

    def op():
        release()
        acquire()

    blocks = benchlib.timed_blocks(args, op)
    benchlib.finish_peer(args, blocks, child, conn, "ponger child")


def main():
    p = benchlib.parser(__doc__)
    benchlib.add_cpus(p)
    p.add_argument("--op", choices=["lock", "semaphore"], required=True)
    args = p.parse_args()
    if args.op == "lock":
        lock(args)
    else:
        semaphore(args)


if __name__ == "__main__":
    main()
