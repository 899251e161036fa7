"""CPython's side of mp-manager's interop tests: an unmodified CPython
manager server (3.11 to 3.15) for Rust clients (run by
tests/it/cpython_server.rs).

    cpython_server.py ADDRESS KEYHEX TASKS

Serves, with `get_server().serve_forever()` as the documentation's remote
manager does, a SyncManager subclass that also registers:

- `get_queue`: one shared queue (the documentation's `QueueManager`);
- `get_task_queue`, `get_result_queue`: the distributed-worker pattern,
  the task queue holding the integers 0..TASKS-1 and then None;
- `Maker`: `make_queue()` returns a new Queue as a proxy
  (method_to_typeid, a `#PROXY` reply), `fail(kind)` raises the
  exception named, `echo(x)` returns its argument.

ADDRESS is HOST:PORT (port 0 picks one) or a filesystem path. The first
line of stdout is the address it serves at (HOST:PORT or the path); it
exits 0 when a client calls `shutdown`.
"""

import multiprocessing
import queue
import sys
from multiprocessing.managers import SyncManager


class CustomError(Exception):
    pass


class Maker:
    def make_queue(self):
        return queue.Queue()

    def fail(self, kind):
        if kind == "KeyError":
            raise KeyError("no such key")
        if kind == "ValueError":
            raise ValueError("bad value", 3)
        if kind == "custom":
            raise CustomError("custom failure")
        if kind == "empty":
            raise queue.Empty()
        raise RuntimeError(kind)

    def echo(self, x):
        return x


class Manager(SyncManager):
    pass


shared_queue = queue.Queue()
tasks = queue.Queue()
results = queue.Queue()

Manager.register("get_queue", callable=lambda: shared_queue)
Manager.register("get_task_queue", callable=lambda: tasks)
Manager.register("get_result_queue", callable=lambda: results)
# The result of make_queue is served as it is: a type id without a callable
# (with one, CPython's server would apply the callable to the result).
Manager.register("MadeQueue", create_method=False)
Manager.register("Maker", Maker, method_to_typeid={"make_queue": "MadeQueue"})


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return (host, int(port))
    return text


def main():
    address = parse_address(sys.argv[1])
    key = bytes.fromhex(sys.argv[2])
    for i in range(int(sys.argv[3])):
        tasks.put(i)
    tasks.put(None)
    # Proxies the server rebuilds from arguments (a Queue proxy stored in
    # a dict) connect with the process's key.
    multiprocessing.current_process().authkey = key
    server = Manager(address=address, authkey=key).get_server()
    bound = server.address
    print("%s:%d" % bound if isinstance(bound, tuple) else bound, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
