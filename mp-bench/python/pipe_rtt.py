"""64-byte round trips over multiprocessing.Pipe(): send_bytes/recv_bytes,
the child echoing every message back (fork start method)."""

import benchlib


def echo(conn, args, cpu):
    benchlib.pin(cpu)
    recv, send = conn.recv_bytes, conn.send_bytes

    def op():
        send(recv())

    conn.send(benchlib.peer_blocks(args, op))
    conn.close()


def main():
    p = benchlib.parser(__doc__)
    benchlib.add_cpus(p)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    parent_cpu, child_cpu = benchlib.parse_cpus(args.cpus)
    child, a = benchlib.fork_peer(echo, args, child_cpu)
    benchlib.pin(parent_cpu)
    msg = b"x" * args.size
    recv, send = a.recv_bytes, a.send_bytes

    def op():
        send(msg)
        recv()

    blocks = benchlib.timed_blocks(args, op)
    benchlib.finish_peer(args, blocks, child, a, "echo child")


if __name__ == "__main__":
    main()
