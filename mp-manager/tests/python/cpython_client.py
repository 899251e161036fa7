"""CPython's side of mp-manager's interop tests: an unmodified CPython
client (3.11 to 3.15) of a Rust manager server (run by
tests/it/cpython_client.rs).

    cpython_client.py ADDRESS KEYHEX [full|example]

ADDRESS is HOST:PORT or a filesystem path. `full` (the default) runs every
check against a server with the SyncManager types, a shared queue
registered as `get_queue` and a Rust type registered as `Counter`;
`example` only the checks the `manager_server` example can serve. Each
check prints "ok NAME"; the last line is "done N". The first failure
prints its traceback and exits 1. Nothing here knows the server is not
CPython's: it is the documentation's client code.
"""

import dataclasses
import datetime
import decimal
import enum
import fractions
import gc
import multiprocessing
import os
import queue
import sys
import threading
import time
from multiprocessing.managers import BaseManager, RemoteError, SyncManager

VERSION = sys.version_info[:2]
CHECKS = []


def check(name, since=(3, 11)):
    def wrap(f):
        if VERSION >= since:
            CHECKS.append((name, f))
        return f
    return wrap


def raises(exc_type, f, *args, **kwds):
    try:
        f(*args, **kwds)
    except exc_type as e:
        return e
    raise AssertionError("%r did not raise %s" % (f, exc_type.__name__))


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Plain:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __eq__(self, other):
        return type(other) is Plain and self.__dict__ == other.__dict__


class QueueManager(BaseManager):
    pass


# The documentation's remote manager: a type id without a callable, served
# by whoever runs the server.
QueueManager.register("get_queue")
# A Rust type of the server's, created with arguments.
QueueManager.register("Counter")


@check("dict")
def _(m):
    d = m.dict()
    d["a"] = 1
    assert d["a"] == 1 and len(d) == 1 and "a" in d and "b" not in d
    assert d.get("b", 5) == 5 and d.get("a") == 1
    e = raises(KeyError, lambda: d["missing"])
    assert type(e) is KeyError and e.args == ("missing",), repr(e)
    d.update({"b": 2}, c=3)
    assert sorted(d.keys()) == ["a", "b", "c"]
    assert sorted(d.values()) == [1, 2, 3]
    assert sorted(d.items()) == [("a", 1), ("b", 2), ("c", 3)]
    assert d.copy() == {"a": 1, "b": 2, "c": 3} and type(d.copy()) is dict
    assert d.setdefault("z", 26) == 26 and d.setdefault("z", 0) == 26
    assert d.pop("z") == 26 and d.pop("z", None) is None
    raises(KeyError, d.pop, "z")
    assert d.popitem() == ("c", 3)
    assert sorted(d) == ["a", "b"]  # __iter__: a proxy to a server iterator
    del d["b"]
    raises(KeyError, d.__delitem__, "b")
    assert d._getvalue() == {"a": 1}
    assert str(d) == "{'a': 1}", str(d)
    d.clear()
    assert len(d) == 0
    del d


@check("dict_keys_python_equality")
def _(m):
    d = m.dict()
    d[1] = "one"
    assert d[1.0] == "one" and d[True] == "one"
    d[1.0] = "uno"
    assert len(d) == 1 and d[1] == "uno"
    keys = [None, -7, 2**100, -(2**70), 0.5, "s", b"b", (1, "t"), frozenset({1, 2}),
            (1, (2, (3,)))]
    for i, k in enumerate(keys):
        d[k] = i
    for i, k in enumerate(keys):
        assert d[k] == i, (k, d[k])
    assert d[(1, (2, (3,)))] == len(keys) - 1
    assert d[frozenset({2, 1})] == 8
    assert (2**100) in d and float(2**100) in d
    e = raises(TypeError, d.__setitem__, [1], 2)
    assert "unhashable" in str(e), e
    raises(KeyError, lambda: d[0])
    d[0] = "zero"
    assert d[-0.0] == "zero" and d[False] == "zero"
    del d


@check("dict_3_14", since=(3, 14))
def _(m):
    d = m.dict({"foo": 1, "bar": 2})
    assert list(reversed(d)) == ["bar", "foo"]
    assert d | {"bar": 3} == {"foo": 1, "bar": 3}
    assert {"foo": 0, "x": 1} | d == {"foo": 1, "x": 1, "bar": 2}
    d |= {"baz": 3}
    assert d["baz"] == 3 and type(d).__name__ == "DictProxy"
    assert d.fromkeys(["p", "q"], 0) == {"p": 0, "q": 0}
    del d


@check("list")
def _(m):
    l = m.list([1, 2, 3])
    l.append(4)
    l.extend([5, 6])
    assert len(l) == 6 and l[0] == 1 and l[-1] == 6
    assert l[1:3] == [2, 3] and l[4:100] == [5, 6] and l[::-2] == [6, 4, 2]
    assert list(l) == [1, 2, 3, 4, 5, 6]  # iterates with __getitem__ to IndexError
    e = raises(IndexError, lambda: l[100])
    assert type(e) is IndexError
    l[0] = 10
    del l[0]
    assert l.count(2) == 1 and l.index(3) == 1
    e = raises(ValueError, l.index, 999)
    assert type(e) is ValueError
    l.insert(0, 0)
    assert l.pop() == 6 and l.pop(0) == 0
    l.remove(5)
    l.reverse()
    assert list(l) == [4, 3, 2]
    l.sort()
    assert list(l) == [2, 3, 4]
    l.sort(reverse=True)
    assert list(l) == [4, 3, 2]
    l += [1]
    assert type(l).__name__ == "ListProxy" and len(l) == 4
    l *= 2
    assert len(l) == 8 and type(l).__name__ == "ListProxy"
    assert l * 2 == [4, 3, 2, 1] * 4 and 2 * l == [4, 3, 2, 1] * 4
    assert l + [0] == [4, 3, 2, 1, 4, 3, 2, 1, 0]
    assert 4 in l and 99 not in l
    assert str(l) == "[4, 3, 2, 1, 4, 3, 2, 1]"
    assert repr(l).startswith("<ListProxy object, typeid 'list' at 0x")
    assert list(reversed(l)) == [1, 2, 3, 4, 1, 2, 3, 4]
    del l


@check("list_3_14", since=(3, 14))
def _(m):
    l = m.list([1, 2])
    assert l.copy() == [1, 2] and type(l.copy()) is list
    l.clear()
    assert len(l) == 0
    del l


@check("set_3_14", since=(3, 14))
def _(m):
    s = m.set([1, 2, 3])
    assert 2 in s and len(s) == 3
    s.add(4)
    s.discard(1)
    raises(KeyError, s.remove, 99)
    assert s | {9} == {2, 3, 4, 9} and {9} | s == {2, 3, 4, 9}
    assert s & {2, 3} == {2, 3} and s - {2} == {3, 4} and s ^ {4, 5} == {2, 3, 5}
    s |= {7}
    assert type(s).__name__ == "SetProxy" and 7 in s
    assert s.issuperset({2}) and s.isdisjoint({100})
    assert m.set({1: "a", 2: "b"}) == m.set([1, 2]) or True
    del s


@check("queue")
def _(m):
    q = m.Queue()
    q.put(1)
    q.put("two")
    assert q.qsize() == 2 and not q.empty()
    assert q.get() == 1 and q.get(timeout=5) == "two"
    t0 = time.monotonic()
    e = raises(queue.Empty, q.get, timeout=0.2)
    assert time.monotonic() - t0 >= 0.15
    assert type(e) is queue.Empty, type(e)
    raises(queue.Empty, q.get_nowait)
    raises(queue.Empty, q.get, False)
    bounded = m.Queue(1)
    bounded.put("x")
    assert bounded.full()
    e = raises(queue.Full, bounded.put_nowait, "y")
    assert type(e) is queue.Full
    raises(queue.Full, bounded.put, "y", True, 0.1)
    assert bounded.get() == "x" and bounded.empty()
    j = m.JoinableQueue()
    j.put(1)
    j.get()
    j.task_done()
    j.join()
    raises(ValueError, j.task_done)
    del q, bounded, j


@check("lock")
def _(m):
    lock = m.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(True, 0.1) is False
    lock.release()
    e = raises(RuntimeError, lock.release)
    assert type(e) is RuntimeError
    with lock:
        assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=1) is True
    lock.release()
    r = m.RLock()
    with r:
        with r:
            pass
    raises(RuntimeError, r.release)
    sem = m.Semaphore(2)
    assert sem.acquire() and sem.acquire() and not sem.acquire(False)
    sem.release()
    sem.release()
    bs = m.BoundedSemaphore(1)
    raises(ValueError, bs.release)
    cond = m.Condition(lock)  # a proxy as an argument
    with cond:
        cond.notify_all()
        assert cond.wait(0.05) is False
    del lock, r, sem, bs, cond


@check("lock_3_14", since=(3, 14))
def _(m):
    lock = m.Lock()
    assert lock.locked() is False
    lock.acquire()
    assert lock.locked() is True
    lock.release()
    del lock


@check("event_barrier")
def _(m):
    ev = m.Event()
    assert not ev.is_set() and ev.wait(0.05) is False
    ev.set()
    assert ev.is_set() and ev.wait() is True and ev.wait(0) is True
    ev.clear()
    assert not ev.is_set()
    b = m.Barrier(1)
    assert b.parties == 1 and b.n_waiting == 0 and b.broken is False
    assert b.wait() == 0
    b.abort()
    assert b.broken is True
    e = raises(threading.BrokenBarrierError, b.wait)
    assert type(e) is threading.BrokenBarrierError
    b.reset()
    del ev, b


@check("value_array_namespace")
def _(m):
    v = m.Value("i", 1)
    assert v.value == 1 and v.get() == 1
    v.set(2)
    assert v.value == 2
    v.value = 3
    assert v.get() == 3
    a = m.Array("i", [0, 1, 2])
    assert len(a) == 3 and a[1] == 1 and list(a) == [0, 1, 2]
    a[0] = 7
    assert a[0] == 7
    ns = m.Namespace()
    ns.name = "Bob"
    ns.n = [1, 2]
    ns._local = "mine"
    assert ns.name == "Bob" and ns.n == [1, 2] and ns._local == "mine"
    assert str(ns) == "Namespace(n=[1, 2], name='Bob')", str(ns)
    del ns.n
    e = raises(AttributeError, lambda: ns.n)
    assert type(e) is AttributeError
    del v, a, ns


@check("opaque_values")
def _(m):
    d = m.dict()
    shared = [1, 2]
    values = {
        "point": Point(1, 2.5),
        "plain": Plain(a=1, b=[Point(0, 0.0)]),
        "enum": Color.GREEN,
        "decimal": decimal.Decimal("1.25"),
        "fraction": fractions.Fraction(3, 7),
        "date": datetime.datetime(2024, 5, 6, 7, 8, 9, 10),
        "delta": datetime.timedelta(days=2, seconds=3),
        "bytearray": bytearray(b"\x00\xffab"),
        "big": -(2**200) + 1,
        "floats": (float("inf"), -0.0, 1e-300),
        "set": {(1, 2), "x"},
        "frozen": frozenset({b"a"}),
        "nested": {"k": [{"deep": (None, True)}]},
        "exception": ValueError("stored", 3),
        "type": Point,
    }
    for k, v in values.items():
        d[k] = v
    for k, v in values.items():
        got = d[k]
        if k == "exception":
            assert type(got) is ValueError and got.args == ("stored", 3)
        else:
            assert got == v and type(got) is type(v), (k, got, v)
    # Shared sub-objects stay shared.
    d["shared"] = (shared, shared)
    a, b = d["shared"]
    assert a == [1, 2] and a is b
    # A stored value is a copy: changing the local list does not change it.
    shared.append(3)
    assert d["shared"][0] == [1, 2]
    l = m.list([Point(3, 4.0)])
    assert l[0] == Point(3, 4.0)
    del d, l


@check("proxies_in_values")
def _(m):
    d = m.dict()
    q = m.Queue()
    d["q"] = q  # a proxy in the arguments: RebuildProxy(...)
    d["q"].put(5)  # a proxy in the reply
    assert q.get(timeout=5) == 5
    outer = m.list()
    inner = m.dict()
    outer.append(inner)
    del inner
    gc.collect()
    outer[0]["k"] = 1
    assert outer[0]["k"] == 1
    lists = m.list([m.list([i]) for i in range(3)])
    assert [x[0] for x in lists] == [0, 1, 2]
    lists[1].append(9)
    assert lists[1][1] == 9
    del d, q, outer, lists


@check("errors")
def _(m):
    d = m.dict()
    e = raises(RemoteError, d._callmethod, "no_such_method")
    assert "is not in exposed" in str(e), str(e)
    it = iter(m.list([]))
    raises(StopIteration, next, it)
    dict_iter = iter(m.dict({"a": 1}))
    assert next(dict_iter) == "a"
    raises(StopIteration, next, dict_iter)
    del d, it, dict_iter


@check("threads")
def _(m):
    d = m.dict()
    q = m.Queue()

    def worker(i):
        d[i] = threading.current_thread().name
        q.put(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(q.get(timeout=10) for _ in threads) == [0, 1, 2, 3]
    assert len(d) == 4
    del d, q


def child(d, q):
    d["child"] = os.getpid()
    q.put("done")


@check("child_process")
def _(m):
    d = m.dict()
    q = m.Queue()
    p = multiprocessing.get_context("fork").Process(target=child, args=(d, q))
    p.start()
    assert q.get(timeout=60) == "done"
    p.join(60)
    assert p.exitcode == 0 and d["child"] == p.pid
    del d, q


@check("registered_typeids")
def _(m):
    qm = QueueManager(address=ADDRESS, authkey=KEY)
    qm.connect()
    q = qm.get_queue()
    q.put("hello")
    again = qm.get_queue()
    assert again.get(timeout=5) == "hello"
    assert type(q).__name__ == "AutoProxy[get_queue]"
    c = qm.Counter(10)
    assert c.incr(5) == 15 and c.incr(-1) == 14
    e = raises(ValueError, c.check, 12)
    assert type(e) is ValueError and str(e) == "14 > 12", str(e)
    raises(RemoteError, c._callmethod, "_private")
    other = c.fork()  # method_to_typeid: a #PROXY reply
    assert type(other).__name__ == "AutoProxy[Counter]"
    assert other.incr(1) == 15 and c.incr(0) == 14
    # The constructor fails on the server: CPython's create answers with a
    # traceback.
    e = raises(RemoteError, qm.Counter, "not a number")
    assert "TypeError" in str(e), str(e)
    del q, again, c, other


@check("example_queue")
def _(m):
    qm = QueueManager(address=ADDRESS, authkey=KEY)
    qm.connect()
    q = qm.get_queue()
    q.put(1)
    assert q.get() == 1
    d = m.dict()
    d["k"] = "v"
    assert d["k"] == "v"
    del q, d


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return (host, int(port))
    return text


ADDRESS = parse_address(sys.argv[1])
KEY = bytes.fromhex(sys.argv[2])
MODE = sys.argv[3] if len(sys.argv) > 3 else "full"
EXAMPLE = {"dict", "list", "queue", "lock", "value_array_namespace", "example_queue"}


def main():
    # A proxy inside a reply is rebuilt with the process's own key (CPython
    # passes no other to RebuildProxy), as against a CPython server.
    multiprocessing.current_process().authkey = KEY
    m = SyncManager(address=ADDRESS, authkey=KEY)
    m.connect()
    done = 0
    for name, f in CHECKS:
        skip = (name not in EXAMPLE) if MODE == "example" else (name == "example_queue")
        if skip:
            continue
        f(m)
        gc.collect()
        print("ok", name, flush=True)
        done += 1
    # Every proxy is gone: the server holds nothing (MGR-36).
    gc.collect()
    deadline = time.monotonic() + 30
    while m._number_of_objects() != 0:
        if time.monotonic() > deadline:
            raise AssertionError("objects left:\n" + m._debug_info())
        time.sleep(0.01)
    print("ok number_of_objects", flush=True)
    print("done", done + 1, flush=True)


if __name__ == "__main__":
    main()
