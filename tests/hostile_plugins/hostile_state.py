"""Hostile stateful plugin: what its ``attack`` parameter names comes back from the
component's ``snapshot-state`` export, so the host's checks of an untrusted guest's
state can be tested. A filter that keeps every record and remembers its key; on a
record whose value is b"trap" it traps (SystemExit), taking its state with it.

The attacks patch the SDK inside the guest only (``sys.platform == "wasi"``): loaded
natively, the plugin is harmless and every attack does nothing.
"""

import sys
from typing import Any

import dataflare
from dataflare.runtime import encode_batch
from dataflare.runtime._dispatch import Dispatcher


class Wide(bytes):
    """Bytes whose Latin-1 text holds a character no byte can be."""

    def decode(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return "DFR1\u0100"


def frame(keys: list[bytes], values: list[bytes]) -> bytes:
    return encode_batch(range(len(keys)), values, keys).encode("latin-1")


SNAPSHOTS = {
    "garbage": b"this is not a record-batch",
    "over_entries": frame([b"a", b"b", b"c"], [b"", b"", b""]),  # declared: 2
    "over_bytes": frame([b"a"], [b"x" * 70]),  # declared: 64 bytes
    "duplicate": frame([b"a", b"a"], [b"1", b"2"]),
    "no_key": encode_batch([0], [b"v"]).encode("latin-1"),
    "wide": Wide(b""),
    "long": b"DFR1" + b"\x00" * 100_000,  # far past what 2 entries of 64 bytes can take
}


@dataflare.init(params={"attack": "none"})
def arm(params: dict[str, str]) -> str:
    attack = params["attack"]
    if attack in SNAPSHOTS and sys.platform == "wasi":
        snapshot = SNAPSHOTS[attack]
        Dispatcher.snapshot_state = lambda self: snapshot  # type: ignore[method-assign]
    return attack


@dataflare.filter(state=dataflare.KeyedState(max_entries=2, max_bytes=64))
def remember(record: dataflare.Record, state: dataflare.KeyedState, attack: str) -> bool:
    if record.value == b"trap":
        raise SystemExit(3)  # not an Exception: nothing in the guest catches it, it traps
    state[record.key or b""] = b""
    return True
