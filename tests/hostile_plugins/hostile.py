"""Hostile plugin: on a record whose value is b"attack" it does the harm named by
its ``attack`` parameter; every other record passes through, stamped with
``calls``, how many records this copy of the plugin has seen (a fresh instance
starts again from 1).

One file, so the hostile suite builds and compiles one component, not eight.
"""

import os
import sys
import time
from collections.abc import Callable

import dataflare

_calls = 0


def spin(record: dataflare.Record) -> dataflare.Record:
    while True:
        pass


def hoard(record: dataflare.Record) -> dataflare.Record:
    chunks = []
    while True:
        chunks.append(bytearray(1 << 20))


def read_passwd(record: dataflare.Record) -> dataflare.Record:
    with open("/etc/passwd", "rb") as handle:
        return record.evolve(value=handle.read())


def read_env(record: dataflare.Record) -> dataflare.Record:
    return record.evolve(value=os.environ["DATAFLARE_SECRET"])


def phone_home(record: dataflare.Record) -> dataflare.Record:
    import socket

    with socket.create_connection(("127.0.0.1", 9), timeout=1) as conn:
        conn.sendall(b"stolen")
    return record.evolve(value=b"sent")


def refuse(record: dataflare.Record) -> dataflare.Record:
    raise ValueError("attack refused at the gate")


def shout(record: dataflare.Record) -> dataflare.Record:
    print("guest says hello on stdout")
    print("guest says hello on stderr", file=sys.stderr)
    return record


def bail(record: dataflare.Record) -> dataflare.Record:
    raise SystemExit(3)  # not an Exception: nothing in the guest catches it, it traps


def nap(record: dataflare.Record) -> dataflare.Record:
    time.sleep(30)  # a blocking WASI call: the epoch deadline cannot interrupt it
    return record


def flood(record: dataflare.Record) -> dataflare.Record:
    line = "x" * 1023 + "\n"
    for _ in range(20 * 1024):  # 20 MB on stdout in one call
        sys.stdout.write(line)
    return record


def bloat(record: dataflare.Record) -> dataflare.Record:
    # Fits the cap as bytes; the shim's text encoding of it does not.
    return record.evolve(value=b"\xff" * (24 << 20))


def escape(record: dataflare.Record) -> dataflare.Record:
    raise ValueError("\x1b]0;pwned\x07\x1b[2Jscreen cleared")


def chained(record: dataflare.Record) -> dataflare.Record:
    try:
        {}[record.value]
    except KeyError as missing:
        raise ValueError("no rule for this record") from missing
    return record


def far_future(record: dataflare.Record) -> dataflare.Record:
    return record.evolve(timestamp=10**30)


def forge_outputs() -> None:
    """Inside the guest only: make the shim's dispatcher return 100,000 forged records."""
    from dataflare.runtime import _dispatch

    def forged(self: object, records: list[dataflare.Record], accumulator: object = None) -> object:
        outputs = [dataflare.Record(b"forged", offset=0)] * 100_000
        return _dispatch.BatchResult(outputs, [0] * len(outputs), len(records))

    _dispatch.Dispatcher.process = forged  # type: ignore[method-assign,assignment]


ATTACKS = {
    "loop": spin,
    "memory": hoard,
    "passwd": read_passwd,
    "env": read_env,
    "socket": phone_home,
    "raise": refuse,
    "print": shout,
    "exit": bail,
    "sleep": nap,
    "flood": flood,
    "bloat": bloat,
    "escape": escape,
    "far_future": far_future,
    "chain": chained,
    "init_loop": refuse,  # never reached: choose() loops
    "forge": refuse,  # the forgery happens in the shim, see choose()
}


@dataflare.init(params={"attack": None})
def choose(params: dict[str, str]) -> Callable[[dataflare.Record], dataflare.Record]:
    if params["attack"] == "forge" and sys.platform == "wasi":
        forge_outputs()
    if params["attack"] == "init_loop":
        while True:  # the guest's init runs under the time limit too
            pass
    return ATTACKS[params["attack"]]


@dataflare.map
def hostile(
    record: dataflare.Record, attack: Callable[[dataflare.Record], dataflare.Record]
) -> dataflare.Record:
    global _calls
    _calls += 1
    if record.value == b"attack":
        return attack(record)
    return record.evolve(metadata={**record.metadata, "calls": str(_calls)})
