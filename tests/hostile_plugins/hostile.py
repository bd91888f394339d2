"""Hostile plugin: on a record whose value is b"attack" it does the harm named by
its ``attack`` parameter; every other record passes through, stamped with
``calls``, how many records this copy of the plugin has seen (a fresh instance
starts again from 1).

One file, so the hostile suite builds and compiles one component, not eight.
"""

import os
import sys
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


ATTACKS = {
    "loop": spin,
    "memory": hoard,
    "passwd": read_passwd,
    "env": read_env,
    "socket": phone_home,
    "raise": refuse,
    "print": shout,
    "exit": bail,
}


@dataflare.init(params={"attack": None})
def choose(params: dict[str, str]) -> Callable[[dataflare.Record], dataflare.Record]:
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
