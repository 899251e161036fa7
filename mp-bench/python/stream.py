"""One-way transfer of SIZE-byte messages over multiprocessing.Pipe(): the
child sends with send_bytes, the parent receives with recv_bytes."""

import benchlib


def sender(conn, args):
    buf = b"\x01" * args.size
    send = conn.send_bytes

    def op():
        send(buf)

    cpus = benchlib.peer_blocks(args, op)
    # Wait until the parent has had everything before reporting.
    conn.recv_bytes()
    conn.send(cpus)
    conn.close()


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--size", type=int, required=True)
    args = p.parse_args()
    child, a = benchlib.fork_peer(sender, args)
    recv = a.recv_bytes
    size = args.size

    def op():
        if len(recv()) != size:
            raise SystemExit("wrong message size")

    blocks = benchlib.timed_blocks(args, op)
    a.send_bytes(b"done")
    benchlib.finish_peer(args, blocks, child, a, "sender")


if __name__ == "__main__":
    main()
