"""multiprocessing's queues between two processes (fork start method):

--op oneway: the child puts SIZE-byte items (one bytes object, pickled per
put), the parent gets them; an operation is one item.
--op rtt: a round trip; the parent puts on one queue and gets from a
second, the child gets from the first and puts on the second.
--kind queue (Queue) or simple (SimpleQueue)."""

import multiprocessing as mp

import benchlib


def producer(conn, args, cpu, q):
    benchlib.pin(cpu)
    data = b"\x01" * args.size
    put = q.put

    def op():
        put(data)

    cpus = benchlib.peer_blocks(args, op)
    # Everything is consumed before the report (and the feeder flushed).
    conn.recv_bytes()
    conn.send(cpus)
    conn.close()


def echo(conn, args, cpu, there, back):
    benchlib.pin(cpu)
    get, put = there.get, back.put

    def op():
        put(get())

    conn.send(benchlib.peer_blocks(args, op))
    conn.close()


def make(ctx, kind):
    return ctx.SimpleQueue() if kind == "simple" else ctx.Queue()


def main():
    p = benchlib.parser(__doc__)
    benchlib.add_cpus(p)
    p.add_argument("--op", choices=["oneway", "rtt"], required=True)
    p.add_argument("--kind", choices=["queue", "simple"], default="queue")
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    parent_cpu, child_cpu = benchlib.parse_cpus(args.cpus)
    ctx = mp.get_context("fork")
    if args.op == "oneway":
        q = make(ctx, args.kind)
        child, conn = benchlib.fork_peer(producer, args, child_cpu, q)
        benchlib.pin(parent_cpu)
        get = q.get
        size = args.size

        def op():
            if len(get()) != size:
                raise SystemExit("wrong item size")

        blocks = benchlib.timed_blocks(args, op)
        conn.send_bytes(b"done")
        benchlib.finish_peer(args, blocks, child, conn, "producer child")
    else:
        there, back = make(ctx, args.kind), make(ctx, args.kind)
        child, conn = benchlib.fork_peer(echo, args, child_cpu, there, back)
        benchlib.pin(parent_cpu)
        msg = b"x" * args.size
        put, get = there.put, back.get

        def op():
            put(msg)
            get()

        blocks = benchlib.timed_blocks(args, op)
        benchlib.finish_peer(args, blocks, child, conn, "echo child")


if __name__ == "__main__":
    main()
