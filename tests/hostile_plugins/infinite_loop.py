"""Hostile: spins forever on a record whose value is b"attack"; passes others through."""

import sdk


@sdk.filter
def spin(record: sdk.Record) -> bool:
    if record.value == b"attack":
        while True:
            pass
    return True
