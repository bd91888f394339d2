"""Batches and chain results as bytes, to cross a process (or Ray) boundary.

A batch travels as the SDK's ``record-batch`` framing
(:func:`~dataflare.runtime.frame_batch`): columns built and cut in C, so the
driver, which every batch passes through, spends a few C calls per batch
rather than Python work per record. A file source's deferred lines
(:class:`~dataflare_host.connectors.LineRecords`) travel as the lines
themselves: the worker makes them records, and checks them, not the driver.

The few rare parts (a :class:`~dataflare.ProcessingError` takes keyword-only
arguments that pickle cannot replay, a failed record) travel as tuples of
builtins and are rebuilt here; the whole message is then pickled.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import attrs

from dataflare import ProcessingError, Record
from dataflare.runtime import decode_batch, encode_request, records_of
from dataflare_host.connectors import DeferredRecords, LineRecords, LineSpan
from dataflare_host.plugins._chain import ChainResult, StepReport

__all__ = [
    "WorkerRecords",
    "decode",
    "encode",
    "frame_records",
    "from_result",
    "land_batch",
    "ship_batch",
    "to_result",
    "unframe_records",
]

_ERROR_FIELDS = (
    "plugin",
    "kind",
    "offset",
    "index",
    "error_type",
    "error_message",
    "record_key",
    "record_value",
    "location",
    "frames",
)

_WHAT = "a worker's records"


def frame_records(records: Sequence[Record]) -> bytes:
    """Records as ``record-batch`` bytes (each record's offset in the positions column)."""
    if isinstance(records, WorkerRecords):
        return records.frame  # as a worker framed them: on to the next worker unmade
    return encode_request(records)


def unframe_records(frame: bytes) -> list[Record]:
    """The records :func:`frame_records` framed (only ever our own processes' bytes, and
    checked by the decoder all the same)."""
    batch = decode_batch(frame, _WHAT)
    return records_of(batch, batch.positions)


class WorkerRecords(DeferredRecords):
    """A worker's output records as they came over: the frame, made records only when
    first used, and the values joined by newlines, which a JSONL or lines file sink
    writes as they are (:class:`~dataflare_host.connectors.JoinedValues`), so
    the driver makes no record of a batch it only writes to such sinks."""

    def __init__(self, frame: bytes, joined: bytes, count: int) -> None:
        super().__init__(count)
        self.frame = frame
        self._joined = joined

    def newline_joined(self) -> bytes:
        """The values joined by newlines (a value holding one is the writer's to refuse)."""
        return self._joined

    def _make(self) -> list[Record]:
        return unframe_records(self.frame)


def _outputs(records: Sequence[Record]) -> tuple[bytes, bytes, int]:
    return (frame_records(records), b"\n".join([r.value for r in records]), len(records))


Shipped = tuple[str, Any]
"""A batch on its way to a worker: ``("frame", bytes)`` or ``("lines", parts)``."""


def ship_batch(records: Sequence[Record]) -> Shipped:
    """A batch as the worker receives it: deferred file lines as they are, records framed."""
    if isinstance(records, LineRecords):
        parts = [
            ("span", attrs.astuple(part, recurse=False)) if isinstance(part, LineSpan)
            else ("frame", frame_records(part))
            for part in records.parts
        ]
        return ("lines", parts)
    return ("frame", frame_records(records))


def land_batch(shipped: Shipped) -> list[Record]:
    """The records of a shipped batch (raises SerializationError, worded as the source
    words it, for a deferred line that is not JSON)."""
    form, body = shipped
    if form == "frame":
        return unframe_records(body)
    records: list[Record] = []
    for kind, part in body:
        records += LineSpan(*part).records() if kind == "span" else unframe_records(part)
    return records


def _error(error: ProcessingError) -> dict[str, Any]:
    return {name: getattr(error, name, None) for name in _ERROR_FIELDS}


def _error_back(fields: dict[str, Any]) -> ProcessingError:
    return ProcessingError(**fields)


def from_result(result: ChainResult) -> tuple[Any, ...]:
    """A chain result as builtins: the outputs framed, failed records each framed."""
    steps = [
        (
            step.records_in,
            step.records_out,
            [(_error(error), frame_records([record])) for error, record in step.failures],
            step.unprocessed,
            step.seconds,
        )
        for step in result.steps
    ]
    error = _error(result.error) if result.error is not None else None
    return (_outputs(result.outputs), error, result.step, steps)


def to_result(wire: tuple[Any, ...]) -> ChainResult:
    """The chain result :func:`from_result` encoded."""
    outputs, error, step, steps = wire
    reports = [
        StepReport(
            records_in,
            records_out,
            [(_error_back(e), unframe_records(r)[0]) for e, r in failures],
            unprocessed,
            seconds,
        )
        for records_in, records_out, failures, unprocessed, seconds in steps
    ]
    return ChainResult(
        WorkerRecords(*outputs), _error_back(error) if error is not None else None, step, reports
    )


def encode(message: Any) -> bytes:
    """One message (builtins only) as bytes."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    """The message :func:`encode` made (only ever from this pipeline's own workers)."""
    return pickle.loads(data)  # our own child processes only, never the network
