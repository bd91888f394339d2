"""Running sum of a numeric JSON field (parameter ``field``, default ``amount``)."""

import json

import sdk


@sdk.aggregate(initial=b"0", params={"field": "amount"})
def sum_field(total: bytes, record: sdk.Record, params: dict[str, str]) -> bytes:
    amount = record.json().get(params["field"], 0)
    return json.dumps(json.loads(total) + amount).encode()
