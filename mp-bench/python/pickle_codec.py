"""pickle.dumps(obj, 4) or pickle.loads(data) of one manager message, the
pickle given in hex (--hex): what CPython's manager does per request and
per reply, the C pickler and unpickler at work."""

import pickle

import benchlib


def main():
    p = benchlib.parser(__doc__)
    p.add_argument("--op", choices=("dumps", "loads"), required=True)
    p.add_argument("--hex", required=True)
    args = p.parse_args()
    data = bytes.fromhex(args.hex)
    obj = pickle.loads(data)
    dumps, loads = pickle.dumps, pickle.loads

    if args.op == "dumps":
        if dumps(obj, 4) != data:
            raise SystemExit("the message does not pickle back to its bytes")

        def op():
            dumps(obj, 4)
    else:

        def op():
            loads(data)

    benchlib.report(args, benchlib.timed_blocks(args, op))


if __name__ == "__main__":
    main()
