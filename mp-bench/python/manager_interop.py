"""One CPython client program, two servers: calls through SyncManager
proxies (dict set/get, queue put + get, each call counting once) of a
server started as its own process, either CPython's (`--server cpython`:
`SyncManager(...).get_server().serve_forever()` in a second interpreter)
or a program (`--server "EXE ARGS"`, run with `--address A --authkey K
--serializer pickle` added: our `manager_server`, or mp-bench's canned-reply
raw limit). The client
connects with `SyncManager(address, authkey).connect()` in both cases, over
an AF_UNIX socket, as a started manager's proxies do.

CPU seconds are the SERVER's alone (every thread of its process, from
/proc/PID/task/*/schedstat, nanoseconds): what a call costs the manager.
--cpus pins this process and the server's threads (its connection
threads start from the pinned accept thread, so they inherit it)."""

import os
import shlex
import subprocess
import sys
import tempfile
from multiprocessing.managers import SyncManager

import benchlib

KEY = b"mp-bench manager interop"

CPYTHON_SERVER = """
import sys
from multiprocessing.managers import SyncManager
server = SyncManager(address=sys.argv[1], authkey=bytes.fromhex(sys.argv[2])).get_server()
print(server.address, flush=True)
server.serve_forever()
"""


def task_cpu(pid):
    """CPU seconds of every live thread of process `pid`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return total / 1e9


def pin_all(pid, cpu):
    if cpu < 0:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def start_server(which, address):
    if which == "cpython":
        cmd = [sys.executable, "-c", CPYTHON_SERVER, address, KEY.hex()]
    else:
        cmd = shlex.split(which) + ["--address", address, "--authkey", KEY.decode(),
                                    "--serializer", "pickle"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    bound = server.stdout.readline().strip()
    if not bound:
        server.kill()
        raise SystemExit(f"the server {cmd[0]} did not report its address")
    return server, bound


def main():
    p = benchlib.parser(__doc__)
    benchlib.add_cpus(p)
    p.add_argument("--server", required=True, help="cpython, or a server's command line")
    p.add_argument("--op", required=True, choices=["dict_set", "dict_get", "queue"])
    args = p.parse_args()
    client_cpu, server_cpu = benchlib.parse_cpus(args.cpus)
    benchlib.pin(client_cpu)
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        server, address = start_server(args.server, os.path.join(tmp, "manager"))
        try:
            pin_all(server.pid, server_cpu)
            m = SyncManager(address=address, authkey=KEY)
            m.connect()
            op, per_run = benchlib.proxy_op(m, args.op)
            count = args.count // per_run
            calls = args.count
            args.count = count
            blocks = benchlib.timed_blocks(args, op, lambda: task_cpu(server.pid))
            args.count = calls
            benchlib.report(args, blocks)
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
