"""Hostile: raises SystemExit (not an Exception) on b"attack", so nothing catches it: a trap."""

import sdk


@sdk.filter
def bail(record: sdk.Record) -> bool:
    if record.value == b"attack":
        raise SystemExit(3)
    return True
