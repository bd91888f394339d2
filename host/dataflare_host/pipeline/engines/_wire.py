"""Records and chain results as plain tuples, to cross a process (or Ray) boundary.

Records hold their metadata in a read-only mapping that pickle refuses, and a
:class:`~dataflare.ProcessingError` takes keyword-only arguments that pickle
cannot replay; so both travel as tuples of builtins and are rebuilt here.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from dataflare import ProcessingError, Record
from dataflare_host.plugins._chain import ChainResult, StepReport

__all__ = ["decode", "encode", "from_records", "from_result", "to_records", "to_result"]

_ERROR_FIELDS = (
    "plugin",
    "kind",
    "offset",
    "index",
    "error_type",
    "error_message",
    "record_key",
    "record_value",
)

WireRecord = tuple[bytes, bytes | None, int | None, dict[str, str] | None, int]


def to_records(records: Sequence[Record]) -> list[WireRecord]:
    """Records as tuples (value, key, timestamp, metadata or None, offset)."""
    return [
        (r.value, r.key, r.timestamp, dict(r.metadata) if r.metadata else None, r.offset)
        for r in records
    ]


def from_records(wire: Sequence[WireRecord]) -> list[Record]:
    """The records :func:`to_records` encoded."""
    return [
        Record(value, key, timestamp, metadata or {}, offset)
        for value, key, timestamp, metadata, offset in wire
    ]


def _error(error: ProcessingError) -> dict[str, Any]:
    return {name: getattr(error, name, None) for name in _ERROR_FIELDS}


def _error_back(fields: dict[str, Any]) -> ProcessingError:
    return ProcessingError(**fields)


def from_result(result: ChainResult) -> tuple[Any, ...]:
    """A chain result as builtins."""
    steps = [
        (
            step.records_in,
            step.records_out,
            [(_error(error), to_records([record])[0]) for error, record in step.failures],
            step.unprocessed,
        )
        for step in result.steps
    ]
    error = _error(result.error) if result.error is not None else None
    return (to_records(result.outputs), error, result.step, steps)


def to_result(wire: tuple[Any, ...]) -> ChainResult:
    """The chain result :func:`from_result` encoded."""
    outputs, error, step, steps = wire
    reports = [
        StepReport(
            records_in,
            records_out,
            [(_error_back(e), from_records([r])[0]) for e, r in failures],
            unprocessed,
        )
        for records_in, records_out, failures, unprocessed in steps
    ]
    return ChainResult(
        from_records(outputs), _error_back(error) if error is not None else None, step, reports
    )


def encode(message: Any) -> bytes:
    """One message (builtins only) as bytes."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    """The message :func:`encode` made (only ever from this pipeline's own workers)."""
    return pickle.loads(data)  # our own child processes only, never the network
