"""Running sum of a numeric JSON field (parameter ``field``, default ``amount``).

Its look_back hook resumes from the last running total it emitted.
"""

import json

import sdk


@sdk.aggregate(initial=b"0", params={"field": "amount"})
def sum_field(total: bytes, record: sdk.Record, params: dict[str, str]) -> bytes:
    amount = record.json().get(params["field"], 0)
    return json.dumps(json.loads(total) + amount).encode()


@sdk.look_back
def resume_total(record: sdk.Record) -> bytes:
    float(json.loads(record.value))  # refuse anything that is not a running total
    return record.value
