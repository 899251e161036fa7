"""A CPython peer for mp-conn's interop tests, built on multiprocessing's own
connection module (Listener, Client, deliver_challenge, answer_challenge,
reduction.sendfds/recvfds, send_handle/recv_handle): nothing here
re-implements the protocol.

One command per line on stdin, as space-separated key=value words:

    op=serve   family=AF_UNIX|AF_INET authkey=HEX|- digest=NAME|- action=A ...
    op=connect address=ADDR           authkey=HEX|- digest=NAME|- action=A ...

`serve` prints "address ADDR" once its Listener is bound, then accepts one
client; `connect` connects to ADDR (HOST:PORT or a path). With digest=-,
Listener/Client authenticate themselves; with a digest, the peer runs
deliver_challenge(..., digest_name=NAME) and answer_challenge on the raw
connection in the order Listener/Client use (CPython >= 3.12 only);
digest=default does the same without digest_name (any version; needed for
an empty key, which Listener before 3.13 takes as "no authentication",
bpo-43952).
Each command ends with one line: "ok DETAIL" or "error TYPE: MESSAGE".

Actions on the authenticated connection:
    echo             echo messages until EOF            -> ok COUNT
    sizes=N,N,...    send messages of those sizes, check each echo -> ok COUNT
    pickle           send pickles, check that the echo unpickles equal
    sendfds=N        send N pipe read ends (reduction.sendfds), each holding
                     b"python pipe I", then wait for one message
    recvfds=N        receive N fds (reduction.recvfds), write b"python wrote I"
                     to each, then send b"done"
    send_handle      reduction.send_handle of a pipe read end holding
                     b"python handle"; wait for one message
    recv_handle      reduction.recv_handle; write b"python handle" to it;
                     send b"done"
"""

import os
import pickle
import socket
import sys
import traceback
from multiprocessing import connection, reduction


def parse(line):
    return dict(word.split("=", 1) for word in line.split())


def key_of(cmd):
    k = cmd.get("authkey", "-")
    return None if k == "-" else bytes.fromhex(k)


def address_text(address):
    if isinstance(address, tuple):
        return "%s:%d" % address
    return address


def parse_address(text):
    if text.startswith("/"):
        return text
    host, port = text.rsplit(":", 1)
    return (host, int(port))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run_action(conn, cmd):
    if cmd.get("action") == "echo":
        count = 0
        while True:
            try:
                msg = conn.recv_bytes()
            except EOFError:
                return "%d" % count
            conn.send_bytes(msg)
            count += 1
    if "sizes" in cmd:
        sizes = [int(s) for s in cmd["sizes"].split(",")]
        for size in sizes:
            data = os.urandom(size)
            conn.send_bytes(data)
            back = conn.recv_bytes()
            check(back == data, "echo of %d bytes differs (got %d)" % (size, len(back)))
        return "%d" % len(sizes)
    if cmd.get("action") == "pickle":
        objects = [(1, "a"), {"k": [2.5, None, b"v"]}, "x" * 70000]
        for obj in objects:
            conn.send(obj)  # pickled by CPython, opaque bytes to the peer
            check(conn.recv() == obj, "pickle echo of %r differs" % (obj,))
            conn.send_bytes(pickle.dumps(obj, protocol=5))
            check(pickle.loads(conn.recv_bytes()) == obj, "pickle bytes echo differs")
        return "%d" % (2 * len(objects))
    if "sendfds" in cmd:
        n = int(cmd["sendfds"])
        ends = []
        for i in range(n):
            r, w = os.pipe()
            os.write(w, b"python pipe %d" % i)
            os.close(w)
            ends.append(r)
        with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
            reduction.sendfds(s, ends)
        for r in ends:
            os.close(r)
        return conn.recv_bytes().decode()
    if "recvfds" in cmd:
        n = int(cmd["recvfds"])
        with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
            fds = reduction.recvfds(s, n)
        check(len(fds) == n, "received %d fds, expected %d" % (len(fds), n))
        for i, fd in enumerate(fds):
            os.write(fd, b"python wrote %d" % i)
            os.close(fd)
        conn.send_bytes(b"done")
        return "%d" % len(fds)
    if cmd.get("action") == "send_handle":
        r, w = os.pipe()
        os.write(w, b"python handle")
        os.close(w)
        reduction.send_handle(conn, r, os.getpid())
        os.close(r)
        return conn.recv_bytes().decode()
    if cmd.get("action") == "recv_handle":
        fd = reduction.recv_handle(conn)
        os.write(fd, b"python handle")
        os.close(fd)
        conn.send_bytes(b"done")
        return "1"
    raise ValueError("unknown action in %r" % (cmd,))


def serve(cmd):
    key = key_of(cmd)
    digest = cmd.get("digest", "-")
    family = cmd["family"]
    address = ("127.0.0.1", 0) if family == "AF_INET" else None
    if digest == "-":
        listener = connection.Listener(address, family=family, authkey=key)
    else:
        listener = connection.Listener(address, family=family)
    with listener:
        print("address", address_text(listener.address), flush=True)
        conn = listener.accept()
        with conn:
            if digest == "default":
                # What Listener.accept does (CPython < 3.13 skips it for an
                # empty key, bpo-43952).
                connection.deliver_challenge(conn, key)
                connection.answer_challenge(conn, key)
            elif digest != "-":
                # What Listener.accept does, with a chosen digest.
                connection.deliver_challenge(conn, key, digest_name=digest)
                connection.answer_challenge(conn, key)
            return run_action(conn, cmd)


def connect(cmd):
    key = key_of(cmd)
    digest = cmd.get("digest", "-")
    address = parse_address(cmd["address"])
    if digest == "-":
        conn = connection.Client(address, authkey=key)
    else:
        conn = connection.Client(address)
    with conn:
        if digest == "default":
            connection.answer_challenge(conn, key)
            connection.deliver_challenge(conn, key)
        elif digest != "-":
            # What Client does, with a chosen digest.
            connection.answer_challenge(conn, key)
            connection.deliver_challenge(conn, key, digest_name=digest)
        return run_action(conn, cmd)


def main():
    print("ready %d.%d" % sys.version_info[:2], flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = parse(line)
        try:
            result = {"serve": serve, "connect": connect}[cmd["op"]](cmd)
            print("ok", result, flush=True)
        except Exception as e:  # reported to the Rust side, which decides
            print("error %s: %s" % (type(e).__name__, str(e).replace("\n", " ")), flush=True)
            traceback.print_exc(file=sys.stderr)


if __name__ == "__main__":
    main()
