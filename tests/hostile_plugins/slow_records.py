"""Each record costs ``ms`` milliseconds of CPU; a record b"stuck" costs ``stuck_ms``.

For the time-limit narrowing test: a batch of fast-enough records may exceed the
limit together, and only a record that exceeds it alone may be blamed.
"""

import time

import dataflare


@dataflare.init(params={"ms": "300", "stuck_ms": "5000"})
def costs(params: dict[str, str]) -> tuple[float, float]:
    return int(params["ms"]) / 1000, int(params["stuck_ms"]) / 1000


@dataflare.map
def slow(record: dataflare.Record, cost: tuple[float, float]) -> dataflare.Record:
    seconds = cost[1] if record.value == b"stuck" else cost[0]
    until = time.monotonic() + seconds
    while time.monotonic() < until:  # busy, not sleeping: a CPU loop the limit ends
        pass
    return record
