"""Authenticated connect + handshake: multiprocessing.connection.Client
against a Listener with an authkey (served by a forked child), each
connection closed right after the handshake."""

import multiprocessing as mp
import os
import tempfile
from multiprocessing.connection import Client, Listener

import benchlib

KEY = b"mp-bench authkey"


def serve(listener, args, report):
    def op():
        listener.accept().close()

    report.send(benchlib.peer_blocks(args, op))
    report.close()


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--family", choices=["unix", "inet"], required=True)
    args = p.parse_args()
    if args.family == "unix":
        tmp = tempfile.mkdtemp(prefix="mp-bench-")
        address, family = os.path.join(tmp, "sock"), "AF_UNIX"
    else:
        address, family = ("127.0.0.1", 0), "AF_INET"
    listener = Listener(address, family, backlog=64, authkey=KEY)
    address = listener.address
    ctx = mp.get_context("fork")
    report_r, report_w = ctx.Pipe(duplex=False)
    child = ctx.Process(target=serve, args=(listener, args, report_w))
    child.start()
    report_w.close()

    def op():
        Client(address, family, authkey=KEY).close()

    blocks = benchlib.timed_blocks(args, op)
    peer = report_r.recv()
    child.join()
    listener.close()
    if child.exitcode != 0:
        raise SystemExit(f"server exited with {child.exitcode}")
    benchlib.report(args, blocks, peer)


if __name__ == "__main__":
    main()
