"""A file source's batches of lines: built as columns, and deferred (made records where
they are used, in a pipeline worker for instance) as :class:`LineRecords`."""

from __future__ import annotations

from typing import Any

import attrs

from dataflare import Record
from dataflare.runtime._trusted_records import build_trusted_records
from dataflare_host._json import parse_json, parse_json_lines
from dataflare_host.connectors._deferred import DeferredRecords
from dataflare_host.connectors._file_readers import not_json

__all__ = ["LineColumns", "LineRecords", "LineSpan"]


@attrs.frozen
class LineSpan:
    """Lines ``first``, ``first + 1``... of one file, not yet records: ``lines`` holds
    them joined by newlines (none of them is blank or holds one)."""

    path: str
    """The file, as an error names it."""
    name: str
    """The file's name, as the records' ``file`` metadata holds it."""
    first: int
    offset: int
    """The first record's offset."""
    lines: bytes
    validate: bool
    """Whether each line must be JSON (a JSONL source with ``validate``)."""

    def records(self) -> list[Record]:
        """The records the source would have read: values, ``file`` and ``line``
        metadata, offsets; a line that is not JSON fails with the source's words."""
        values = self.lines.split(b"\n")
        parsed = None
        if self.validate:
            try:
                parsed = parse_json_lines(values)  # kept for each record's json()
            except Exception:
                # Line by line: the first line that is not JSON, named as the source names it.
                for line, value in enumerate(values, start=self.first):
                    try:
                        parse_json(value)
                    except ValueError as exc:
                        raise not_json(self.path, line, exc) from exc
                raise
        first, size = self.first, len(values)
        offsets = list(range(self.offset, self.offset + size))
        lines = list(range(first, first + size))
        return build_trusted_records(
            values, None, None, None, offsets, parsed, ([self.name] * size, lines)
        )


class LineRecords(DeferredRecords):
    """A batch of a file source that defers its records (see
    :meth:`~dataflare_host.connectors.FileSource.defer_records`): records already made and
    :class:`LineSpan` parts, in order, made records on first use (raises SerializationError
    then for a line that is not JSON)."""

    def __init__(self, parts: list[list[Record] | LineSpan], count: int) -> None:
        super().__init__(count)
        self.parts = parts

    def _make(self) -> list[Record]:
        made: list[Record] = []
        for part in self.parts:
            made += part.records() if isinstance(part, LineSpan) else part
        return made


class LineColumns:
    """A batch of line records as columns, built into records at the end; with
    deferred spans (:class:`LineSpan`) in between, a :class:`LineRecords`."""

    def __init__(self) -> None:
        self.count = 0
        self.values: list[bytes] = []
        self.keys: list[bytes | None] | None = None
        self.timestamps: list[int | None] | None = None
        self.files: list[str] = []  # each record's file name and line: its metadata
        self.lines: list[int] = []
        self.offsets: list[int] = []
        self.parsed: list[Any] = []  # each value's parse, used when every value has one
        self.spans: list[tuple[int, LineSpan]] = []  # each after this many column records

    def add_span(self, span: LineSpan, size: int) -> None:
        """Add ``size`` lines as a span, after the records in the columns so far."""
        self.spans.append((len(self.values), span))
        self.count += size

    def set_fields(self, key: bytes | None, timestamp: int | None) -> None:
        """Key and timestamp of the record about to be added (columns made on first use)."""
        count = len(self.values)
        if self.keys is None:
            self.keys = [None] * count
            self.timestamps = [None] * count
        assert self.timestamps is not None
        # Pad: records added since the last one with fields had neither.
        self.keys.extend([None] * (count - len(self.keys)))
        self.timestamps.extend([None] * (count - len(self.timestamps)))
        self.keys.append(key)
        self.timestamps.append(timestamp)

    def records(self) -> list[Record] | LineRecords:
        keys, timestamps = self.keys, self.timestamps
        count = len(self.values)
        if keys is not None and timestamps is not None:
            keys.extend([None] * (count - len(keys)))
            timestamps.extend([None] * (count - len(timestamps)))
        parsed = self.parsed if len(self.parsed) == count else None
        made = build_trusted_records(
            self.values, keys, timestamps, None, self.offsets, parsed, (self.files, self.lines)
        )
        if not self.spans:
            return made
        parts: list[list[Record] | LineSpan] = []
        start = 0
        for end, span in self.spans:
            if end > start:
                parts.append(made[start:end])
            parts.append(span)
            start = end
        if start < count:
            parts.append(made[start:])
        return LineRecords(parts, self.count)
