"""Writing up a record a processor failed on: for error messages and the dead-letter sink."""

from __future__ import annotations

import json

from dataflare import ProcessingError, Record
from dataflare_host.connectors import Rejected
from dataflare_host.pipeline._assemble import ProcessorStage

__all__ = ["dead_letter_record", "describe", "rejected_record"]

_PREVIEW_BYTES = 60


def describe(record: Record | None) -> str:
    """Where a record came from, for error messages ("" when there is no record)."""
    if record is None:
        return ""
    where = []
    if "file" in record.metadata:
        where.append(f"{record.metadata['file']} line {record.metadata.get('line', '?')}")
    if record.key is not None:
        where.append(f"key {record.key.decode('utf-8', 'backslashreplace')!r}")
    # A preview, not the value: a message must stay readable whatever the record holds.
    preview = record.value[:_PREVIEW_BYTES].decode("utf-8", "backslashreplace")
    where.append(f"value {preview!r}{'...' if len(record.value) > _PREVIEW_BYTES else ''}")
    return f" (record {', '.join(where)})"


def dead_letter_record(stage: ProcessorStage, error: ProcessingError, record: Record) -> Record:
    """The record for the dead-letter sink: a JSON body naming the stage, error and record.

    Key, timestamp, metadata and offset stay those of the failed record, so the
    dead-letter sink partitions and orders it like the original.
    """
    return _letter(stage.id, dict(error.fields()), record)


def rejected_record(stage: str, rejected: Rejected) -> Record:
    """The dead-letter record for a record sink ``stage``'s target refused.

    Shaped like a processor's dead letter (``stage``, ``error``, ``record``) so
    one consumer reads both; ``error.reason`` is the target's own reason.
    """
    return _letter(stage, {"sink": stage, "reason": rejected.reason}, rejected.record)


def _letter(stage: str, error: dict[str, object], record: Record) -> Record:
    body = {
        "stage": stage,
        "error": error,
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
