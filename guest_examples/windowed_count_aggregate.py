"""Count records per 60-second tumbling window, allowing 10 s of lateness."""

import dataflare


@dataflare.aggregate(initial=b"0", window=dataflare.tumbling(60_000, lateness_ms=10_000))
def count_per_minute(count: bytes, record: dataflare.Record) -> bytes:
    return str(int(count) + 1).encode()
