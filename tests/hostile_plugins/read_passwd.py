"""Hostile: reads /etc/passwd on a record whose value is b"attack"."""

import sdk


@sdk.map
def steal(record: sdk.Record) -> sdk.Record:
    if record.value == b"attack":
        with open("/etc/passwd", "rb") as handle:
            return record.evolve(value=handle.read())
    return record
