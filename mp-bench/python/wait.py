"""multiprocessing.connection.wait() over IDLE idle Pipe connections plus
one ready connection (last in the list); the list is built once."""

import multiprocessing as mp
from multiprocessing.connection import wait

import benchlib


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--idle", type=int, required=True)
    args = p.parse_args()
    benchlib.raise_nofile()
    pairs = [mp.Pipe() for _ in range(args.idle)]
    r, w = mp.Pipe()
    w.send_bytes(b"x")
    objects = [a for a, _ in pairs] + [r]

    def op():
        if len(wait(objects)) != 1:
            raise SystemExit("wait() found the wrong number ready")

    benchlib.report(args, benchlib.timed_blocks(args, op))


if __name__ == "__main__":
    main()
