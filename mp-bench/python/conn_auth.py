"""Authenticated connect + handshake: multiprocessing.connection.Client
against a Listener with an authkey (served by a forked child), each
connection closed right after the handshake."""

import os
import tempfile
from multiprocessing.connection import Client, Listener

import benchlib

KEY = b"mp-bench authkey"


def serve(report, listener, args):
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
    child, report_r = benchlib.fork_peer(serve, listener, args, duplex=False)

    def op():
        Client(address, family, authkey=KEY).close()

    blocks = benchlib.timed_blocks(args, op)
    try:
        benchlib.finish_peer(args, blocks, child, report_r, "server")
    finally:
        listener.close()


if __name__ == "__main__":
    main()
