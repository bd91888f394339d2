"""Files: JSONL, CSV and plain lines; one file, a directory of files, or a glob."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import attrs
from dataflare import ConfigurationError, PluginIOError, Record, SerializationError

from ._base import Position, Sink, Source, SourceBatch
from ._records_codec import decode_batch, encode_batch

__all__ = ["FileSink", "FileSource"]

Format = Literal["jsonl", "csv", "lines", "records"]
_FRAME_HEADER = struct.Struct(">I")


def _infer_format(path: str) -> Format:
    lowered = path.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".records", ".msgpack")):
        return "records"
    return "lines"


@attrs.frozen
class FileSourceConfig:
    """``connection:`` of a file source.

    ``path`` is a file, a directory (its files are read in name order) or a glob.
    ``format`` defaults from the suffix (.jsonl/.ndjson/.json, .csv,
    .records/.msgpack, else lines). ``records`` is the lossless format a file sink
    writes: length-prefixed msgpack batches keeping keys, timestamps and metadata.
    For JSONL and CSV, ``key_field`` and ``timestamp_field`` name the fields that
    become the record's key and timestamp (ms). JSONL lines are checked to be
    JSON unless ``validate`` is false. Blank lines are skipped.
    """

    path: str
    format: Format | None = None
    key_field: str | None = None
    timestamp_field: str | None = None
    validate: bool = True
    base_dir: str = "."


class FileSource(Source):
    """Records from files; resumes at the file and line after the last checkpoint."""

    Config = FileSourceConfig

    def __init__(self, config: FileSourceConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._files: list[Path] = []
        self._index = 0
        self._line = 0
        self._offset = 0
        self._handle: IO[bytes] | None = None
        self._rows: Iterator[tuple[int, bytes | Record]] | None = None
        self._exhausted = False
        self._format: Format = config.format or _infer_format(config.path)
        self._resolve()  # a path that matches nothing fails validation, not the run

    def _resolve(self) -> list[Path]:
        base = Path(self.config.base_dir)
        raw = Path(self.config.path)
        path = raw if raw.is_absolute() else base / raw
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files = [path]
        else:
            files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
        if not files:
            raise ConfigurationError(f"file source: no file matches {path}", setting="path")
        return files

    def connect(self, position: Position | None) -> None:
        self._files = self._resolve()
        self._exhausted = False
        skip = 0
        if position:
            names = [p.name for p in self._files]
            name = str(position.get("file"))
            self._offset = int(position.get("offset", 0))
            if name in names:
                self._index = names.index(name)
                skip = int(position.get("line", 0))
            else:
                # The file we stopped in is gone: go on with the ones after it.
                later = [i for i, n in enumerate(names) if n > name]
                if not later:
                    self._exhausted = True
                    return
                self._index = later[0]
        self._open_current(skip=skip)

    def _open_current(self, skip: int) -> None:
        self._close_handle()
        path = self._files[self._index]
        try:
            self._handle = path.open("rb")
        except OSError as exc:
            raise PluginIOError(f"file source: cannot open {path}: {exc.strerror}") from exc
        self._rows = self._numbered_rows(self._handle)
        self._line = 0
        for _ in range(skip):
            if next(self._rows, None) is None:
                break
        self._line = skip

    def _numbered_rows(self, handle: IO[bytes]) -> Iterator[tuple[int, bytes | Record]]:
        if self._format == "records":
            yield from enumerate(self._framed_records(handle), start=1)
            return
        if self._format == "csv":
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            try:
                reader = csv.DictReader(text)
                for number, row in enumerate(reader, start=1):
                    if None in row:
                        raise SerializationError(
                            f"{self._files[self._index]}:{reader.line_num}: row has more "
                            "fields than the header"
                        )
                    yield (
                        number,
                        json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode(),
                    )
            finally:
                text.detach()  # the binary handle is closed by _close_handle
            return
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip(b"\r\n")

    def _framed_records(self, handle: IO[bytes]) -> Iterator[Record]:
        path = self._files[self._index]
        while header := handle.read(_FRAME_HEADER.size):
            start = handle.tell() - len(header)
            size = _FRAME_HEADER.unpack(header)[0] if len(header) == _FRAME_HEADER.size else -1
            frame = handle.read(size) if size >= 0 else b""
            if size < 0 or len(frame) != size:
                raise SerializationError(
                    f"{path}: truncated record frame at byte {start} (was its writer killed "
                    "before flushing?); cut the file there to go on"
                )
            try:
                yield from decode_batch(frame)
            except SerializationError as exc:
                raise SerializationError(f"{path}: frame at byte {start}: {exc}") from exc

    def _close_handle(self) -> None:
        if self._rows is not None:
            self._rows.close()  # type: ignore[attr-defined]  # a generator
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._rows = None

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        records: list[Record] = []
        while len(records) < max_records and not self._exhausted:
            assert self._rows is not None
            item = next(self._rows, None)
            if item is None:
                if self._index + 1 >= len(self._files):
                    self._exhausted = True
                    break
                self._index += 1
                self._open_current(skip=0)
                continue
            self._line, value = item
            if isinstance(value, Record):  # lossless format: keep key, timestamp, metadata
                records.append(value.evolve(offset=self._offset))
                self._offset += 1
                continue
            if not value.strip():
                continue
            records.append(self._record(value))
        if not records and self._exhausted:
            return None
        return SourceBatch(records, self._position())

    def _position(self) -> Position:
        name = self._files[self._index].name if self._files else ""
        return {"file": name, "line": self._line, "offset": self._offset}

    def _record(self, value: bytes) -> Record:
        path = self._files[self._index]
        key: bytes | None = None
        timestamp: int | None = None
        config = self.config
        if self._format in ("jsonl", "csv") and (
            config.validate or config.key_field or config.timestamp_field
        ):
            try:
                document = json.loads(value)
            except ValueError as exc:
                raise SerializationError(
                    f"{path}:{self._line}: not valid JSON ({exc}); fix the line or set "
                    "validate: false to pass it through as bytes"
                ) from exc
            if isinstance(document, dict):
                if config.key_field and document.get(config.key_field) is not None:
                    key = str(document[config.key_field]).encode()
                if config.timestamp_field and document.get(config.timestamp_field) is not None:
                    try:
                        timestamp = int(document[config.timestamp_field])
                    except (TypeError, ValueError) as exc:
                        raise SerializationError(
                            f"{path}:{self._line}: timestamp field "
                            f"{config.timestamp_field!r} is not an integer (ms)"
                        ) from exc
        record = Record(
            value, key, timestamp, {"file": path.name, "line": str(self._line)}, self._offset
        )
        self._offset += 1
        return record

    def close(self) -> None:
        self._close_handle()


@attrs.frozen
class FileSinkConfig:
    """``connection:`` of a file sink: appends to ``path`` (created with its directory).

    JSONL and lines write each value on its own line (a value holding a newline
    is an error: it would split the record). CSV writes a JSON-object value as a
    row under ``fields`` (default: the first record's keys). ``records`` writes
    each batch as a length-prefixed msgpack frame
    (``dataflare_host.connectors.encode_batch``): keys,
    timestamps and metadata survive, and a file source reads them back.
    """

    path: str
    format: Format | None = None
    fields: list[str] | None = None
    fsync: bool = True
    base_dir: str = "."


class FileSink(Sink):
    """Appends records to a file; ``flush`` makes them durable (fsync)."""

    Config = FileSinkConfig

    def __init__(self, config: FileSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        raw = Path(config.path)
        self.path = raw if raw.is_absolute() else Path(config.base_dir) / raw
        self._format: Format = config.format or _infer_format(config.path)
        self._handle: IO[bytes] | None = None
        self._fields = list(config.fields) if config.fields else None

    def connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists() and self.path.stat().st_size > 0
            self._handle = self.path.open("ab")
        except OSError as exc:
            raise PluginIOError(f"file sink: cannot open {self.path}: {exc.strerror}") from exc
        self._header_written = existed

    def write(self, records: Sequence[Record]) -> None:
        if self._handle is None:
            raise PluginIOError(f"file sink {self.path} is not connected")
        if self._format == "csv":
            self._write_csv(records)
            return
        if self._format == "records":
            frame = encode_batch(records)
            self._handle.write(_FRAME_HEADER.pack(len(frame)) + frame)
            return
        lines = []
        for record in records:
            if b"\n" in record.value:
                raise PluginIOError(
                    f"file sink {self.path}: record at offset {record.offset} holds a newline, "
                    f"which would split it in {self._format} output"
                )
            lines.append(record.value)
        if lines:
            self._handle.write(b"\n".join(lines) + b"\n")

    def _write_csv(self, records: Sequence[Record]) -> None:
        assert self._handle is not None
        buffer = io.StringIO()
        writer: csv.DictWriter[str] | None = None
        for record in records:
            try:
                row: Any = json.loads(record.value)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                raise PluginIOError(
                    f"file sink {self.path}: record at offset {record.offset} is not a JSON "
                    "object, so it cannot become a CSV row"
                )
            if self._fields is None:
                self._fields = list(row)
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=self._fields, extrasaction="raise")
                if not self._header_written:
                    writer.writeheader()
                    self._header_written = True
            try:
                writer.writerow(row)
            except ValueError as exc:
                raise PluginIOError(
                    f"file sink {self.path}: record at offset {record.offset}: {exc}"
                ) from exc
        self._handle.write(buffer.getvalue().encode())

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            if self.config.fsync:
                os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self.flush()
            self._handle.close()
            self._handle = None
