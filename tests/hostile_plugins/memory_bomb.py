"""Hostile: allocates without bound on a record whose value is b"attack"."""

import sdk


@sdk.filter
def hoard(record: sdk.Record) -> bool:
    if record.value == b"attack":
        chunks = []
        while True:
            chunks.append(bytearray(1 << 20))
    return True
