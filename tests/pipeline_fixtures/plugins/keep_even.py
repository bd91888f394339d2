"""Keep JSON records whose ``id`` is even."""

import dataflare


@dataflare.filter
def keep_even(record: dataflare.Record) -> bool:
    return record.json()["id"] % 2 == 0
