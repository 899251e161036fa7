"""Process start + join of a trivial target under one start method
(multiprocessing.get_context(METHOD).Process), one after another. CPU time
counts this process and the children it waited for (under forkserver the
children belong to the server and are not counted)."""

import multiprocessing as mp

import benchlib


def noop():
    pass


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--method", choices=["fork", "spawn", "forkserver"], required=True)
    args = p.parse_args()
    ctx = mp.get_context(args.method)

    def op():
        proc = ctx.Process(target=noop)
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"child exited with {proc.exitcode}")

    benchlib.report(args, benchlib.timed_blocks(args, op, benchlib.cpu_with_children))


if __name__ == "__main__":
    main()
