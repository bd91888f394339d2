"""Keep JSON records whose ``id`` is even."""

import sdk


@sdk.filter
def keep_even(record: sdk.Record) -> bool:
    return record.json()["id"] % 2 == 0
