"""CPython's side of mp-pickle's interop tests (run by tests/it/cpython.rs).

    pickle_peer.py corpus        one line per value and protocol:
                                 NAME PROTO HEX (pickle.dumps(value, PROTO))
    pickle_peer.py echo          for each hex pickle on stdin: pickle.loads it,
                                 and print "ok" and its pickle.dumps with
                                 protocols 2, 3, 4 and 5 in hex, or "error
                                 Type: message"
    pickle_peer.py client ADDRESS KEYHEX
                                 a multiprocessing.connection Client: sends
                                 each value of SENT with conn.send, then
                                 conn.recv()s replies until None and prints
                                 their repr, one a line
"""

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import pickle
import queue
import sys
import uuid
from multiprocessing import managers


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __eq__(self, other):
        return type(other) is Slotted and (self.a, self.b) == (other.a, other.b)


class Plain:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __eq__(self, other):
        return type(other) is Plain and self.__dict__ == other.__dict__


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Items(list):
    pass


class Entries(dict):
    pass


Pair = collections.namedtuple("Pair", "left right")


def corpus():
    shared = [1, 2]
    inner = {"k": shared}
    big_list = list(range(2500))
    note = ValueError("bad value", 3)
    note.add_note("a note")
    token = managers.Token("Queue", ("127.0.0.1", 50000), "7ff4abe09210")
    values = {
        "request_dummy": (None, "dummy", (), {}),
        "request_create": (None, "create", ("get_queue",), {}),
        "request_put": ("7fded830de50", "put", (1,), {}),
        "request_kwds": ("7f00", "get", (), {"block": True, "timeout": 1.5}),
        "reply_return": ("#RETURN", None),
        "reply_methods": ("#RETURN", ("7fded830de50", ("empty", "full", "get"))),
        "reply_proxy": ("#PROXY", (("get", "put"), token)),
        "reply_empty": ("#ERROR", queue.Empty()),
        "reply_full": ("#ERROR", queue.Full()),
        "reply_keyerror": ("#ERROR", KeyError("missing")),
        "reply_valueerror": ("#ERROR", ValueError("bad", 2)),
        "reply_stopiteration": ("#ERROR", StopIteration(7)),
        "reply_runtimeerror": ("#ERROR", RuntimeError("cannot release un-acquired lock")),
        "reply_noted": ("#ERROR", note),
        "reply_oserror": ("#ERROR", FileNotFoundError(2, "No such file", "/x")),
        "reply_traceback": ("#TRACEBACK", "Traceback (most recent call last):\n  ...\nAttributeError: x\n"),
        "scalars": (None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**31, -2**31 - 1, 2**63, -2**63, 2**64, 10**100, -(10**300)),
        "floats": (0.0, -0.0, 1.5, -2.25e-300, 1e308, float("inf"), float("-inf")),
        "texts": ("", "a", "é€😀", "x" * 300, b"", b"\x00\xff", b"y" * 300, bytearray(), bytearray(b"ab")),
        "containers": ([], [1], [1, 2], (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), {}, {1: 2}, {1: 2, 3: 4}, set(), {5}, {5, 6}, frozenset(), frozenset({7, 8})),
        "python_keys": {1: "int", 2.5: "float", (1, "t"): "tuple", frozenset({1}): "fs", None: "none", b"b": "bytes"},
        "shared": [shared, shared, (shared, inner), inner],
        "shared_str": ["same" * 3] * 3,
        "big_list": big_list,
        "big_dict": {i: str(i) for i in range(1200)},
        "big_set": set(range(1100)),
        "big_str": "z" * 70000,
        "big_bytes": [b"a", b"w" * 70000, b"c"],
        "many_strs": ["%05d" % i + "q" * 100 for i in range(1500)],
        "deep": deep(400),
        "objects": (
            collections.OrderedDict([(1, 2), (3, 4)]),
            collections.defaultdict(list, {1: [2]}),
            datetime.datetime(2020, 1, 2, 3, 4, 5, 6),
            datetime.date(1999, 12, 31),
            decimal.Decimal("1.50"),
            fractions.Fraction(1, 3),
            uuid.UUID(int=5),
            complex(1, 2),
            range(1, 10, 2),
            slice(1, None, 2),
            Color.GREEN,
            Pair(1, "r"),
        ),
        "user_objects": (Point(1, 2.5), Slotted(1, [2]), Plain(a=1, b="x"), Items([1, 2]), Entries(k=1)),
        "globals": (len, collections.OrderedDict, queue.Empty, managers.RebuildProxy),
        "token": token,
    }
    if len(sys.argv) > 2 and sys.argv[2] == "with-proxy":
        # A real pickled proxy (RebuildProxy, a Token, the exposed names).
        m = managers.SyncManager()
        m.start()
        try:
            values["proxy"] = m.dict({"a": 1})
            values["proxy_list"] = m.list([1])
            for name in ("proxy", "proxy_list"):
                emit(name, values.pop(name))
        finally:
            m.shutdown()
    for name, value in values.items():
        emit(name, value)


def emit(name, value):
    for proto in (2, 3, 4, 5):
        print(name, proto, pickle.dumps(value, proto).hex())


def deep(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


def echo():
    for line in sys.stdin:
        try:
            obj = pickle.loads(bytes.fromhex(line.strip()))
            outs = [pickle.dumps(obj, p).hex() for p in (2, 3, 4, 5)]
            print("ok", *outs)
        except Exception as e:
            print("error", "%s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
        sys.stdout.flush()


SENT = [
    (1, "a"),
    {"id": 7, "name": "job", "weights": [0.5, 1.5], "tags": {"x", "y"}, "blob": b"\x00\x01"},
    Point(3, 4.5),
    KeyError("k"),
    [10**30, -1, None, True],
]


def client(address, key):
    from multiprocessing.connection import Client

    conn = Client(address, authkey=bytes.fromhex(key))
    for value in SENT:
        conn.send(value)
    while True:
        reply = conn.recv()
        if reply is None:
            break
        print(repr(reply))
        sys.stdout.flush()
    conn.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "corpus":
        corpus()
    elif mode == "echo":
        print("ready", flush=True)
        echo()
    elif mode == "client":
        client(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)
