"""Marks each record ``old`` when look-back saw its value, else ``new``.

A non-aggregate with a ``@look_back`` hook: what the hook learns lives in the
context its ``@init`` hook returned, inside the instance. Each output is
``VERDICT:CALLS`` where CALLS counts the records this copy of the plugin has
mapped (a fresh instance starts again from 1). On ``boom`` it raises; on
``trap`` it raises SystemExit, which nothing in the guest catches, so the
instance traps.
"""

import dataflare

_calls = 0


@dataflare.init
def remember(params: dict[str, str]) -> set[bytes]:
    return set()


@dataflare.look_back
def learn(record: dataflare.Record, seen: set[bytes]) -> None:
    seen.add(record.value)


@dataflare.map
def mark(record: dataflare.Record, seen: set[bytes]) -> dataflare.Record:
    global _calls
    if record.value == b"boom":
        raise ValueError("boom refused")
    if record.value == b"trap":
        raise SystemExit(3)
    _calls += 1
    verdict = "old" if record.value in seen else "new"
    return record.evolve(value=f"{verdict}:{_calls}".encode())
