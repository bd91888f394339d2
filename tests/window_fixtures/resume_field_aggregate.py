"""Running sum of ``amount``; look-back resumes from the ``total`` field of a JSON record."""

import json

import sdk


@sdk.aggregate(initial=b"0")
def running_total(total: bytes, record: sdk.Record) -> bytes:
    return json.dumps(json.loads(total) + record.json()["amount"]).encode()


@sdk.look_back
def resume(record: sdk.Record) -> bytes:
    return json.dumps(record.json()["total"]).encode()
