"""Writing up a record a sink's target refused: for the dead-letter sink and error messages."""

from __future__ import annotations

import json

from dataflare import Record
from dataflare_host.connectors import Rejected

__all__ = ["rejected_record"]


def rejected_record(stage: str, rejected: Rejected) -> Record:
    """The dead-letter record for ``rejected`` by sink ``stage``: a JSON body naming both.

    Shaped like a processor's dead letter (``stage``, ``error``, ``record``) so
    one consumer reads both; ``error.reason`` is the target's own reason.
    Key, timestamp, metadata and offset stay those of the refused record.
    """
    record = rejected.record
    body = {
        "stage": stage,
        "error": {"sink": stage, "reason": rejected.reason},
        "record": {
            "offset": record.offset,
            "key": None if record.key is None else record.key.decode("utf-8", "backslashreplace"),
            "value": record.value.decode("utf-8", "backslashreplace"),
            "timestamp": record.timestamp,
            "metadata": dict(record.metadata),
        },
    }
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Record(text.encode(), record.key, record.timestamp, record.metadata, record.offset)
