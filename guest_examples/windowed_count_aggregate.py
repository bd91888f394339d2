"""Count records per 60-second tumbling window, allowing 10 s of lateness."""

import sdk


@sdk.aggregate(initial=b"0", window=sdk.tumbling(60_000, lateness_ms=10_000))
def count_per_minute(count: bytes, record: sdk.Record) -> bytes:
    return str(int(count) + 1).encode()
