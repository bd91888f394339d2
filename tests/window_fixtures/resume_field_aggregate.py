"""Running sum of ``amount``; look-back resumes from the ``total`` field of a JSON record."""

import json

import dataflare


@dataflare.aggregate(initial=b"0")
def running_total(total: bytes, record: dataflare.Record) -> bytes:
    return json.dumps(json.loads(total) + record.json()["amount"]).encode()


@dataflare.look_back
def resume(record: dataflare.Record) -> bytes:
    return json.dumps(record.json()["total"]).encode()
