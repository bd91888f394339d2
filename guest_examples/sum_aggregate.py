"""Running sum of a numeric JSON field (parameter ``field``, default ``amount``).

Its look_back hook resumes from the last running total it emitted.
"""

import json

import dataflare


@dataflare.aggregate(initial=b"0", params={"field": "amount"})
def sum_field(total: bytes, record: dataflare.Record, params: dict[str, str]) -> bytes:
    amount = record.json().get(params["field"], 0)
    return json.dumps(json.loads(total) + amount).encode()


@dataflare.look_back
def resume_total(record: dataflare.Record) -> bytes:
    float(json.loads(record.value))  # refuse anything that is not a running total
    return record.value
