"""One-way transfer of SIZE-byte messages over multiprocessing.Pipe(): the
child sends with send_bytes, the parent receives with recv_bytes."""

import multiprocessing as mp

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
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    child = ctx.Process(target=sender, args=(b, args))
    child.start()
    b.close()
    recv = a.recv_bytes
    size = args.size

    def op():
        if len(recv()) != size:
            raise SystemExit("wrong message size")

    blocks = benchlib.timed_blocks(args, op)
    a.send_bytes(b"done")
    peer = a.recv()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"sender exited with {child.exitcode}")
    benchlib.report(args, blocks, peer)


if __name__ == "__main__":
    main()
