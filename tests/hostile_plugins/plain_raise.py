"""Hostile: raises a ValueError on a record whose value is b"attack"."""

import sdk


@sdk.filter
def refuse(record: sdk.Record) -> bool:
    if record.value == b"attack":
        raise ValueError("attack refused at the gate")
    return True
