"""Files: JSONL, CSV and plain lines; one file, a directory of files, or a glob.

Two guarantees beyond reading and writing:

- A source's checkpointed position names the file it was taken in and a
  fingerprint of that file (see :meth:`FileSource.check_position`), so a
  pipeline pointed at another file refuses to resume instead of skipping it.
- A sink never appends after a torn write: on connect it cuts the file back to
  its last whole line (CSV row, ``records`` frame), see :class:`FileSink`.
- A sink with ``mode: overwrite`` empties its file only when the run starts
  fresh (no checkpoint); a resumed run appends, so output the checkpoint
  already covers is never lost (:meth:`FileSink.run_starts`).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import logging
import os
import stat
import struct
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from itertools import count as count_from
from pathlib import Path
from typing import IO, Any, Literal, Protocol, cast, runtime_checkable

import attrs

from dataflare import ConfigurationError, PluginIOError, Record, SerializationError
from dataflare.runtime import loads_json
from dataflare.runtime._trusted_records import build_trusted_records
from dataflare_host.connectors._base import Backlog, Position, Sink, Source, SourceBatch
from dataflare_host.connectors._deferred import DeferredRecords
from dataflare_host.connectors._records_codec import decode_batch, encode_batch

__all__ = ["FileSink", "FileSource", "JoinedValues", "LineRecords", "LineSpan"]

log = logging.getLogger("dataflare.connectors.file")

Format = Literal["jsonl", "csv", "lines", "records"]
SinkMode = Literal["append", "overwrite"]
_FRAME_HEADER = struct.Struct(">I")
_BOM = b"\xef\xbb\xbf"
_HEAD_BYTES = 4096  # how much of a source file its fingerprint covers
_SCAN_CHUNK = 1 << 20
_READ_CHUNK = 1 << 20  # how much of a JSONL or lines file a source reads at once
_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1


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
    JSON unless ``validate`` is false. Blank lines are skipped. Files are UTF-8;
    a byte-order mark at the start of a CSV or JSONL file is dropped. A CSV row
    with fewer or more fields than the header is an error naming file and line.
    """

    path: str
    format: Format | None = None
    key_field: str | None = None
    timestamp_field: str | None = None
    validate: bool = True
    base_dir: str = "."


@attrs.frozen
class _Fingerprint:
    """What tells one source file from another: its first bytes, by length and hash."""

    head_bytes: int
    head_sha256: str

    @classmethod
    def of(cls, fd: int, length: int = _HEAD_BYTES) -> _Fingerprint:
        head = os.pread(fd, length, 0)
        return cls(len(head), hashlib.sha256(head).hexdigest())


class FileSource(Source):
    """Records from files; resumes at the file and line after the last checkpoint.

    A position is ``{"file", "line", "offset"}`` plus what identifies the file
    it was taken in: ``path`` (the configured path, resolved), ``size`` (the
    file's size then) and ``head_bytes``/``head_sha256`` (a hash of its first
    4 KiB at most). Content rather than device and inode: the identity must
    survive what keeps a file the same (appending, ``mv``, restoring data with
    its checkpoint on another machine) and catch what makes it another one
    (a different file under the name, a file rewritten or truncated).
    """

    Config = FileSourceConfig

    def __init__(self, config: FileSourceConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._files: list[Path] = []
        self._index = 0
        self._line = 0
        self._offset = 0
        self._handle: IO[bytes] | None = None
        self._fingerprint = _Fingerprint(0, hashlib.sha256(b"").hexdigest())
        self._rows: Iterator[tuple[int, bytes | Record]] | None = None
        self._lines: _Lines | None = None  # JSONL and lines: read a chunk at a time
        self._later_bytes = 0  # the size of the files after the current one
        self._exhausted = False
        self._format: Format = config.format or _infer_format(config.path)
        self._defer = False
        self._resolve()  # a path that matches nothing fails validation, not the run

    def defer_records(self) -> None:
        """From now on, leave JSONL and lines batches as :class:`LineRecords`: the lines,
        made records (and checked to be JSON) only where they are used.

        Worker processes ask for this: they make the records, so the pipeline's
        driver does no per-record work for them; an invalid line is reported
        with the same words, once the batch is made records.
        """
        self._defer = True

    def _pattern(self) -> Path:
        raw = Path(self.config.path)
        path = raw if raw.is_absolute() else Path(self.config.base_dir) / raw
        return Path(os.path.abspath(path))

    def _resolve(self) -> list[Path]:
        path = self._pattern()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files = [path]
        else:
            files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
        if not files:
            raise ConfigurationError(f"file source: no file matches {path}", setting="path")
        return files

    def check_position(self, position: Position) -> None:
        """Refuse a position that is not a file source's, or not about these files.

        The file the position names must be the same file now (same first
        bytes, not shorter). A position in a file no longer among ``path``'s
        files is accepted when ``path`` is the directory or glob it was taken
        under (the file was cleaned away: reading goes on with the files after
        it), and refused when ``path`` now points elsewhere.
        """
        if not isinstance(position, Mapping) or not isinstance(position.get("file"), str):
            raise SerializationError(
                f"file source {self.config.path}: the position {_shown(position)} is not a "
                "file source's (no 'file' name)"
            )
        line, offset = position.get("line", 0), position.get("offset", 0)
        if not _count(line) or not _count(offset):
            raise SerializationError(
                f"file source {self.config.path}: the position {_shown(position)} has no "
                "whole 'line' and 'offset' counts"
            )
        files = self._resolve()
        name = position["file"]
        where = f"line {line} of {name}"
        matching = [p for p in files if p.name == name]
        if matching:
            self._check_same_file(matching[0], position, where)
            return
        pattern = self._pattern()
        taken_under = position.get("path")
        single_file = pattern.is_file()
        if single_file or (taken_under is not None and taken_under != str(pattern)):
            raise ConfigurationError(
                f"file source: the checkpoint's position is at {where}"
                + (f" under {taken_under}" if taken_under is not None else "")
                + f", but path is now {pattern}, which does not hold that file"
            )

    def _check_same_file(self, path: Path, position: Mapping[str, Any], where: str) -> None:
        head_bytes, head_sha256 = position.get("head_bytes"), position.get("head_sha256")
        size = position.get("size")
        if head_bytes is None and head_sha256 is None and size is None:
            return  # a checkpoint saved before positions kept an identity
        if (
            not isinstance(head_bytes, int)
            or not isinstance(size, int)
            or not _count(head_bytes)
            or not _count(size)
            or not isinstance(head_sha256, str)
        ):
            raise SerializationError(
                f"file source {path}: the position {_shown(position)} has a malformed file "
                "identity (head_bytes, head_sha256, size)"
            )
        try:
            with path.open("rb") as handle:
                now = _Fingerprint.of(handle.fileno(), head_bytes)
                current_size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise PluginIOError(f"file source: cannot open {path}: {exc.strerror}") from exc
        if current_size < size:
            why = f"it has {current_size} bytes, {size} when the position was saved"
        elif now != _Fingerprint(head_bytes, head_sha256):
            why = f"its first {head_bytes} bytes are not the same as when the position was saved"
        else:
            return
        raise ConfigurationError(
            f"file source: {path} is not the file the checkpoint's position ({where}) was "
            f"taken in: {why}"
        )

    def connect(self, position: Position | None) -> None:
        if position:
            self.check_position(position)
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
            self._fingerprint = _Fingerprint.of(self._handle.fileno())
        except OSError as exc:
            raise PluginIOError(f"file source: cannot open {path}: {exc.strerror}") from exc
        self._line = 0
        # The files after this one, measured once per file rather than per batch.
        later = self._files[self._index + 1 :]
        self._later_bytes = sum(p.stat().st_size for p in later if p.exists())
        if self._format in ("jsonl", "lines"):
            self._lines = _Lines(self._handle, strip_bom=self._format == "jsonl")
            self._lines.skip(skip)
        else:
            self._rows = self._numbered_rows(self._handle)
            for _ in range(skip):
                if next(self._rows, None) is None:
                    break
        self._line = skip

    def _numbered_rows(self, handle: IO[bytes]) -> Iterator[tuple[int, bytes | Record]]:
        if self._format == "records":
            yield from enumerate(self._framed_records(handle), start=1)
            return
        yield from self._csv_rows(handle)  # JSONL and lines: see _Lines

    def _csv_rows(self, handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        path = self._files[self._index]
        reader = csv.DictReader(_utf8_lines(handle, path))
        for number, row in enumerate(reader, start=1):
            if None in row:
                raise SerializationError(
                    f"{path}:{reader.line_num}: row has more fields than the header"
                )
            if None in row.values():
                # DictReader pads a short row with None: a silent null per missing field.
                given = sum(value is not None for value in row.values())
                raise SerializationError(
                    f"{path}:{reader.line_num}: row has {given} field(s), the header has "
                    f"{len(row)}; add the missing fields (an empty one still needs its comma)"
                )
            yield number, json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()

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
            self._lines = None

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        records: list[Record] = []
        columns = _Columns()
        while columns.count + len(records) < max_records and not self._exhausted:
            if self._format != "records":
                if self._read_lines(columns, max_records - len(records)):
                    continue  # the batch is full
            else:
                assert self._rows is not None
                item = next(self._rows, None)
                if item is not None:
                    self._line, value = item
                    assert isinstance(value, Record)  # lossless: keep key, timestamp, metadata
                    records.append(value.evolve(offset=self._offset))
                    self._offset += 1
                    continue
            # This file is done: on to the next one, if any.
            if self._index + 1 >= len(self._files):
                self._exhausted = True
                break
            self._index += 1
            self._open_current(skip=0)
        made: Sequence[Record] = records
        if columns.count:
            made = columns.records()  # one format per source: never both kinds
        if not made and self._exhausted:
            return None
        return SourceBatch(made, self._position())

    def _read_lines(self, columns: _Columns, wanted: int) -> bool:
        """Add up to ``wanted`` records from the current file's lines to ``columns``.

        True when ``wanted`` were added, False when the file ended first. The
        hot loop of every line-based source: the records are built from
        columns in one go (their fields are right by construction, so the
        checked constructor's work would be repeated), JSON is checked with
        the C scanner directly, and the per-file parts of the metadata are
        computed once per file, not per record.

        JSONL and lines files come a slice of lines at a time (:class:`_Lines`),
        exactly as many as records are still wanted, so the last line taken is
        the last record's, as one line at a time would leave it. A slice
        without blank lines or key/timestamp fields takes the bulk path
        (:meth:`_add_slice`); any other, or one holding a line that is not
        JSON, goes line by line (:meth:`_add_rows`), which words the error.
        """
        if self._lines is None:  # CSV rows
            rows = cast("Iterator[tuple[int, bytes]]", self._rows)
            return self._add_rows(columns, rows, columns.count + wanted)
        lines = self._lines
        target = columns.count + wanted
        while columns.count < target:
            first = lines.number + 1
            taken = lines.take(target - columns.count)
            if not taken:
                return False
            if not self._add_slice(columns, taken, first):
                self._add_rows(columns, zip(count_from(first), taken), target)
        return True

    def _add_slice(self, columns: _Columns, taken: list[bytes], first: int) -> bool:
        """Add lines ``first``, ``first + 1``... as records in bulk; False (nothing
        added) when one of them needs :meth:`_add_rows`: a blank line, key or
        timestamp fields, or a line that is not JSON."""
        config = self.config
        if config.key_field or config.timestamp_field:
            return False
        # Blank (skipped) lines: empty, or only ASCII whitespace, as bytes.strip() strips.
        if not all(taken) or any(map(bytes.isspace, taken)):
            return False
        validate = self._format == "jsonl" and config.validate
        size = len(taken)
        if self._defer:
            path = self._files[self._index]
            columns.add_span(
                LineSpan(str(path), path.name, first, self._offset, b"\n".join(taken), validate),
                size,
            )
            self._line = first + size - 1
            self._offset += size
            return True
        if validate:
            try:
                deque(map(loads_json, taken), maxlen=0)
            except Exception:  # noqa: BLE001 - line by line raises it again, worded
                return False
        name = self._files[self._index].name
        columns.values.extend(taken)
        columns.metadata.extend(
            [{"file": name, "line": line} for line in map(str, range(first, first + size))]
        )
        columns.offsets.extend(range(self._offset, self._offset + size))
        columns.count += size
        self._line = first + size - 1
        self._offset += size
        return True

    def _add_rows(self, columns: _Columns, rows: Iterator[tuple[int, bytes]], target: int) -> bool:
        """Add records from numbered lines (CSV rows) until ``columns`` holds ``target``.

        True when it does, False when ``rows`` ended first.
        """
        config = self.config
        parse = self._format in ("jsonl", "csv") and bool(
            config.validate or config.key_field or config.timestamp_field
        )
        fields = bool(config.key_field or config.timestamp_field)
        name = self._files[self._index].name
        values, metadata, offsets = columns.values, columns.metadata, columns.offsets
        line, offset = self._line, self._offset
        try:
            for line, value in rows:
                if not value.strip():
                    continue
                if parse:
                    try:
                        document = loads_json(value)
                    except ValueError as exc:
                        self._line = line
                        raise self._not_json(exc) from exc
                    if fields and isinstance(document, dict):
                        self._line = line
                        key, timestamp = self._key_and_timestamp(document)
                        if key is not None or timestamp is not None:
                            columns.set_fields(key, timestamp)
                values.append(value)
                metadata.append({"file": name, "line": str(line)})
                offsets.append(offset)
                offset += 1
                columns.count += 1
                if columns.count >= target:
                    return True
            return False
        finally:
            self._line, self._offset = line, offset

    def describe_position(self, position: Position) -> str:
        """``skipping 1,054 record(s) already delivered (events.jsonl up to line 1,054)``."""
        records = int(position.get("offset", 0))
        where = f"{position.get('file') or self.config.path} up to line {position.get('line', 0):,}"
        return f"skipping {records:,} record(s) already delivered ({where})"

    def backlog(self) -> Backlog | None:
        """Bytes not read yet: the rest of the current file and every file after it.

        The reader reads ahead (JSONL and lines: up to a megabyte), so this counts
        bytes not yet read from disk, not records not yet handed on.
        """
        if self._exhausted or self._handle is None:
            return Backlog(0, "bytes")
        try:
            current = os.fstat(self._handle.fileno()).st_size - self._handle.tell()
        except OSError:
            return None
        return Backlog(max(current, 0) + self._later_bytes, "bytes")

    def _position(self) -> Position:
        if not self._files:
            return {"file": "", "line": self._line, "offset": self._offset}
        size = os.fstat(self._handle.fileno()).st_size if self._handle is not None else 0
        return {
            "file": self._files[self._index].name,
            "line": self._line,
            "offset": self._offset,
            "path": str(self._pattern()),
            "size": size,
            "head_bytes": self._fingerprint.head_bytes,
            "head_sha256": self._fingerprint.head_sha256,
        }

    def _not_json(self, exc: ValueError) -> SerializationError:
        return _not_json(self._files[self._index], self._line, exc)

    def _key_and_timestamp(self, document: dict[str, Any]) -> tuple[bytes | None, int | None]:
        config = self.config
        key: bytes | None = None
        timestamp: int | None = None
        if config.key_field and document.get(config.key_field) is not None:
            key = str(document[config.key_field]).encode()
        if config.timestamp_field and document.get(config.timestamp_field) is not None:
            try:
                timestamp = int(document[config.timestamp_field])
            except (TypeError, ValueError) as exc:
                path = self._files[self._index]
                raise SerializationError(
                    f"{path}:{self._line}: timestamp field "
                    f"{config.timestamp_field!r} is not an integer (ms)"
                ) from exc
            if not _MIN_I64 <= timestamp <= _MAX_I64:
                # The checked constructor words this refusal: let it.
                Record(b"", None, timestamp)
        return key, timestamp

    def reads_inline(self) -> bool:
        """Always: every file it reads is a regular file (a pipe or a terminal
        never matches ``path``), so a read never waits for data to arrive and
        the pipeline reads this source in its main loop, with no reader thread."""
        return True

    def close(self) -> None:
        self._close_handle()


class _Lines:
    """A JSONL or lines file's lines, read a chunk at a time, without their line ends.

    The same lines as iterating the binary file (split after each ``\\n``, a
    last line without one included) with ``rstrip(b"\\r\\n")`` applied, and a
    byte-order mark dropped from the first line when ``strip_bom``; but split
    by ``bytes.split`` a megabyte at a time rather than one ``readline`` each.
    ``number`` is how many lines were taken (or skipped) so far.
    """

    def __init__(self, handle: IO[bytes], *, strip_bom: bool) -> None:
        self._handle = handle
        self._strip_bom = strip_bom
        self._lines: list[bytes] = []
        self._at = 0  # the next line of ``_lines`` to take
        self._tail: list[bytes] = []  # the start of a line the chunks so far did not end
        self._ended = False
        self.number = 0

    def take(self, count: int) -> list[bytes]:
        """The next ``count`` lines; fewer only when the file ends first."""
        taken: list[bytes] = []
        while len(taken) < count and (self._at < len(self._lines) or self._fill()):
            end = self._at + count - len(taken)
            taken.extend(self._lines[self._at : end])
            self._at = min(end, len(self._lines))
        self.number += len(taken)
        return taken

    def skip(self, count: int) -> None:
        """Pass over the next ``count`` lines (fewer when the file ends first)."""
        while count > 0 and (self._at < len(self._lines) or self._fill()):
            step = min(count, len(self._lines) - self._at)
            self._at += step
            self.number += step
            count -= step

    def _fill(self) -> bool:
        """Read the next lines; False at the end of the file."""
        lines: list[bytes] = []
        while not lines and not self._ended:
            chunk = self._handle.read(_READ_CHUNK)
            if not chunk:
                self._ended = True
                last = b"".join(self._tail)
                self._tail = []
                if last:  # a last line with no newline after it
                    lines = [last]
            elif b"\n" not in chunk:
                self._tail.append(chunk)  # a line longer than a chunk
            else:
                self._tail.append(chunk)
                data = b"".join(self._tail)
                lines = data.split(b"\n")
                self._tail = [lines.pop()]
                if b"\r" in data:  # CRLF line ends (a CR elsewhere costs this check only)
                    lines = [line.rstrip(b"\r") for line in lines]
        if not lines:
            return False
        if self._ended:
            lines = [line.rstrip(b"\r") for line in lines]
        if self._strip_bom:
            # Never part of JSON; json.loads refuses it.
            lines[0] = lines[0].removeprefix(_BOM)
            self._strip_bom = False
        self._lines, self._at = lines, 0
        return True


def _not_json(path: Path | str, line: int, exc: ValueError) -> SerializationError:
    return SerializationError(
        f"{path}:{line}: not valid JSON ({exc}); fix the line or set "
        "validate: false to pass it through as bytes"
    )


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
        if self.validate:
            try:
                deque(map(loads_json, values), maxlen=0)
            except Exception:
                # Line by line: the first line that is not JSON, named as the source names it.
                for line, value in enumerate(values, start=self.first):
                    try:
                        loads_json(value)
                    except ValueError as exc:
                        raise _not_json(self.path, line, exc) from exc
                raise
        first, name, size = self.first, self.name, len(values)
        metadata = [{"file": name, "line": line} for line in map(str, range(first, first + size))]
        offsets = list(range(self.offset, self.offset + size))
        return build_trusted_records(values, None, None, metadata, offsets)


class LineRecords(DeferredRecords):
    """A batch of a file source that defers its records (:meth:`FileSource.defer_records`):
    records already made and :class:`LineSpan` parts, in order, made records on first use
    (raises SerializationError then for a line that is not JSON)."""

    def __init__(self, parts: list[list[Record] | LineSpan], count: int) -> None:
        super().__init__(count)
        self.parts = parts

    def _make(self) -> list[Record]:
        made: list[Record] = []
        for part in self.parts:
            made += part.records() if isinstance(part, LineSpan) else part
        return made


class _Columns:
    """A batch of line records as columns, built into records at the end; with
    deferred spans (:class:`LineSpan`) in between, a :class:`LineRecords`."""

    def __init__(self) -> None:
        self.count = 0
        self.values: list[bytes] = []
        self.keys: list[bytes | None] | None = None
        self.timestamps: list[int | None] | None = None
        self.metadata: list[dict[str, str]] = []
        self.offsets: list[int] = []
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
        made = build_trusted_records(self.values, keys, timestamps, self.metadata, self.offsets)
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


def _count(value: object) -> bool:
    """Whether ``value`` is a whole, non-negative count (bool is not one)."""
    return type(value) is int and value >= 0


def _shown(value: object) -> str:
    """A position as shown in an error: one line, and short."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 120 else text[:117] + "..."


def _utf8_lines(handle: IO[bytes], path: Path) -> Iterator[str]:
    """The file's lines decoded one by one: a bad byte is reported with its line.

    (A text wrapper decodes in chunks, so its error cannot name the line.) The
    line ends stay, so the csv module still sees newlines inside quoted fields.
    """
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise SerializationError(
                f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line, "
                f"{exc.reason}); save the file as UTF-8"
            ) from exc


@attrs.frozen
class FileSinkConfig:
    """``connection:`` of a file sink: writes to ``path`` (created with its directory).

    JSONL and lines write each value on its own line (a value holding a newline
    is an error: it would split the record). CSV writes a JSON-object value as a
    row under ``fields`` (default: the first record's keys). ``records`` writes
    each batch as a length-prefixed msgpack frame
    (``dataflare_host.connectors.encode_batch``): keys,
    timestamps and metadata survive, and a file source reads them back.

    ``mode`` says what happens to a file already there when a run starts
    fresh (no checkpoint: the first run, or ``dataflare run --reset``):
    ``append`` (the default, and the only behaviour before ``mode`` existed)
    keeps it and writes after it; ``overwrite`` empties it first. A run that
    resumes from a checkpoint appends in both modes: what the file holds is
    output the checkpoint covers, and emptying it would lose it for good.
    """

    path: str
    format: Format | None = None
    fields: list[str] | None = None
    fsync: bool = True
    mode: SinkMode = "append"
    base_dir: str = "."


@runtime_checkable
class JoinedValues(Protocol):
    """Records whose values are at hand joined by newlines (the outputs of the pipeline's
    worker processes): a JSONL or lines sink writes those bytes without the records."""

    def newline_joined(self) -> bytes:
        """The values, in order, joined by newlines."""


class FileSink(Sink):
    """Appends records to a file; ``flush`` makes them durable (fsync).

    Every line, CSV row or ``records`` frame in the file stays whole, whatever
    stops a write half-way (SIGKILL, a full disk, a power cut after fsync):

    - ``connect`` cuts the file back to the end of its last whole line (row,
      frame) and logs how many bytes it cut. Each :meth:`write` appends whole
      lines only, so bytes after the last one can only come from a write that
      never finished; and since the pipeline saves positions only after
      ``flush`` returned, no checkpoint covers them: the records in them are
      delivered again after the restart (at least once).
    - A write that fails (ENOSPC...) cuts the file back to where that write
      began at once and raises a one-line :class:`dataflare.PluginIOError`.

    This was chosen over keeping the sink's size in the checkpoint and cutting
    back to it: cutting only what no whole line covers needs nothing from the
    checkpoint, so it also holds after ``--reset``, without a checkpoint, and
    for a file other writers (or another pipeline) append to, whose whole
    lines after our last checkpoint would otherwise be lost.

    With ``mode: overwrite``, ``connect`` empties the file instead, but only
    once :meth:`run_starts` said the run starts fresh. A crash before the
    first checkpoint leaves no checkpoint, so the next run is fresh again and
    empties the file again: the output still ends as if written once.
    """

    Config = FileSinkConfig

    def __init__(self, config: FileSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        raw = Path(config.path)
        self.path = raw if raw.is_absolute() else Path(config.base_dir) / raw
        self._format: Format = config.format or _infer_format(config.path)
        # Unbuffered: each write is whole or cut back, and nothing half-written
        # waits in a buffer for a later flush to append after a failure.
        self._handle: io.FileIO | None = None
        self._size = 0  # where the file's last whole line ends
        self._regular = False
        self._syncable = False
        self._fields = list(config.fields) if config.fields else None
        self._header_written = False
        # Unknown until the pipeline says: appending is the choice that never
        # loses output (validate --connect connects without running).
        self._resuming: bool | None = None

    def run_starts(self, *, resuming: bool) -> None:
        """Say, before :meth:`connect`, whether this run resumes from a checkpoint.

        Only ``mode: overwrite`` cares: a fresh start (``resuming=False``)
        empties the file on connect; a resumed run, or a sink never told,
        appends. ``dataflare run`` tells every file sink
        (:func:`dataflare_host.cli._run_start.RunStart`).
        """
        self._resuming = resuming

    @property
    def overwrites(self) -> bool:
        """Whether :meth:`connect` will empty the file (overwrite mode, fresh start)."""
        return self.config.mode == "overwrite" and self._resuming is False

    def describe_start(self, *, resuming: bool) -> str:
        """What a run starting so does to the file, in one phrase for the operator.

        ``out.jsonl (1,234 lines) will be overwritten``, ``... will be appended
        to``, ``out.jsonl does not exist yet; it will be created``.
        """
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return f"{self.path} does not exist yet; it will be created"
        except OSError as exc:
            return f"{self.path} cannot be examined ({exc.strerror}); it will be opened as is"
        if not stat.S_ISREG(info.st_mode):
            return f"{self.path} is not a regular file; records will be written to it as they come"
        fate = (
            "will be overwritten"
            if self.config.mode == "overwrite" and not resuming
            else "will be appended to"
        )
        return f"{self.path} ({self._measure(info.st_size)}) {fate}"

    def _measure(self, size: int) -> str:
        """How much the file holds: lines for text formats, frames for ``records``."""
        try:
            with self.path.open("rb", buffering=0) as reader:
                if self._format == "records":
                    frames = _whole_frames(reader.fileno(), size)[0]
                    return f"{frames:,} frame(s), {size:,} bytes"
                lines = _newline_count(reader.fileno(), size)
                return f"{lines:,} line{'' if lines == 1 else 's'}"
        except OSError as exc:
            return f"{size:,} bytes; unreadable: {exc.strerror}"

    def connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab", buffering=0)
        except OSError as exc:
            raise self._error("opening it", exc) from exc
        try:
            info = os.fstat(self._handle.fileno())
            self._regular = stat.S_ISREG(info.st_mode)
            self._syncable = self._regular or stat.S_ISBLK(info.st_mode)
            self._size = info.st_size if self._regular else 0
            if self._regular and self.overwrites:
                self._empty()
            elif self._regular:
                self._cut_torn_tail()
        except OSError as exc:
            self._handle.close()
            self._handle = None
            doing = (
                "emptying it (mode: overwrite)"
                if self.overwrites
                else "cutting off its torn last line"
            )
            raise self._error(doing, exc) from exc
        self._header_written = self._size > 0

    def _empty(self) -> None:
        """Overwrite mode on a fresh start: drop what the file held, durably."""
        assert self._handle is not None
        if self._size:
            log.info(
                "file sink %s: mode overwrite, fresh start: emptied %d byte(s)",
                self.path,
                self._size,
            )
            os.ftruncate(self._handle.fileno(), 0)
            os.fsync(self._handle.fileno())
        self._size = 0

    def _cut_torn_tail(self) -> None:
        assert self._handle is not None
        with self.path.open("rb", buffering=0) as reader:  # the append handle cannot read
            fd = reader.fileno()
            if self._format == "records":
                whole = _whole_frames_end(fd, self._size)
            elif self._format == "csv":
                whole = _whole_csv_end(fd, self._size)
            else:
                whole = _whole_lines_end(fd, self._size)
        if whole == self._size:
            return
        log.warning(
            "file sink %s: cut off %d byte(s) after its last whole %s (a write that never "
            "finished: its records are delivered again)",
            self.path,
            self._size - whole,
            "frame" if self._format == "records" else "line",
        )
        os.ftruncate(self._handle.fileno(), whole)
        os.fsync(self._handle.fileno())
        self._size = whole

    def write(self, records: Sequence[Record]) -> None:
        if self._handle is None:
            raise PluginIOError(f"file sink {self.path} is not connected")
        if self._format == "csv":
            data = self._csv_rows(records)
            self._append(data)
            # Only now: a write that failed was cut back, header and all.
            self._header_written = self._header_written or bool(data)
            return
        if self._format == "records":
            frame = encode_batch(records)
            self._append(_FRAME_HEADER.pack(len(frame)) + frame)
            return
        if not records:
            return
        if isinstance(records, JoinedValues):
            data = records.newline_joined()
        else:
            data = b"\n".join([record.value for record in records])
        # One count in C instead of a search per record; the search only when it fails.
        if data.count(b"\n") != len(records) - 1:
            for record in records:
                if b"\n" in record.value:
                    raise PluginIOError(
                        f"file sink {self.path}: record at offset {record.offset} holds a "
                        f"newline, which would split it in {self._format} output"
                    )
        self._append(data + b"\n")

    def _append(self, data: bytes) -> None:
        assert self._handle is not None
        view = memoryview(data)
        try:
            while view:
                written = self._handle.write(view)
                view = view[written:]
        except OSError as exc:
            self._cut_back()
            raise self._error(f"writing {len(data):,} bytes", exc) from exc
        self._size += len(data)

    def _cut_back(self) -> None:
        """Drop what a failed write left half-done, so the file ends on a whole line."""
        if self._handle is None or not self._regular:
            return
        try:
            os.ftruncate(self._handle.fileno(), self._size)
        except OSError as exc:  # connect cuts it next time
            log.warning("file sink %s: could not cut off a failed write: %s", self.path, exc)

    def _csv_rows(self, records: Sequence[Record]) -> bytes:
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
            try:
                writer.writerow(row)
            except ValueError as exc:
                raise PluginIOError(
                    f"file sink {self.path}: record at offset {record.offset}: {exc}"
                ) from exc
        return buffer.getvalue().encode()

    def flush(self) -> None:
        # A pipe or terminal (/dev/stdout) has nothing to make durable: fsync refuses it.
        if self._handle is not None and self.config.fsync and self._syncable:
            try:
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise self._error("making it durable (fsync)", exc) from exc

    def close(self) -> None:
        if self._handle is not None:
            try:
                self.flush()
            finally:
                self._handle.close()
                self._handle = None

    def _error(self, doing: str, exc: OSError) -> PluginIOError:
        """One line: which file, what failed, why, and what to do about it."""
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            advice = (
                "free space on its file system (or set path to one with room) and run again: "
                "the run resumes from its last checkpoint"
            )
        else:
            advice = "fix that and run again: the run resumes from its last checkpoint"
        return PluginIOError(f"file sink {self.path}: {doing} failed: {reason}; {advice}")


def _whole_lines_end(fd: int, size: int) -> int:
    """Where the last newline-terminated line of a file of ``size`` bytes ends."""
    end = size
    while end > 0:
        start = max(0, end - _SCAN_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline != -1:
            return start + newline + 1
        end = start
    return 0


def _whole_csv_end(fd: int, size: int) -> int:
    """Where the last whole CSV row ends: the last newline outside quotes.

    Quotes pair up (an escaped quote is two), so a newline ends a row exactly
    when an even number of quotes precede it in the file. The quotes are
    counted per chunk first (fast), then only the tail is searched. Exact for
    CSV as the csv module writes it (it quotes every field holding a quote); a
    stray quote inside an unquoted field, which it never writes, would misplace
    the cut.
    """
    starts: list[tuple[int, int]] = []  # (chunk start, quotes before it)
    quotes = 0
    for start in range(0, size, _SCAN_CHUNK):
        starts.append((start, quotes))
        quotes += os.pread(fd, _SCAN_CHUNK, start).count(b'"')
    for start, before in reversed(starts):
        chunk = os.pread(fd, _SCAN_CHUNK, start)
        # Piece i of the split lies after ``before + i`` quotes.
        pieces = chunk.split(b'"')
        position = len(chunk)
        for index in range(len(pieces) - 1, -1, -1):
            position -= len(pieces[index])
            if (before + index) % 2 == 0:
                newline = pieces[index].rfind(b"\n")
                if newline != -1:
                    return start + position + newline + 1
            position -= 1  # the quote before this piece
    return 0


def _newline_count(fd: int, size: int) -> int:
    """How many newlines the first ``size`` bytes of a file hold, a chunk at a time."""
    count = 0
    for start in range(0, size, _SCAN_CHUNK):
        count += os.pread(fd, min(_SCAN_CHUNK, size - start), start).count(b"\n")
    return count


def _whole_frames(fd: int, size: int) -> tuple[int, int]:
    """How many whole ``records`` frames a file holds and where the last one ends."""
    frames = end = 0
    while end + _FRAME_HEADER.size <= size:
        length = _FRAME_HEADER.unpack(os.pread(fd, _FRAME_HEADER.size, end))[0]
        if end + _FRAME_HEADER.size + length > size:
            break
        end += _FRAME_HEADER.size + length
        frames += 1
    return frames, end


def _whole_frames_end(fd: int, size: int) -> int:
    """Where the last whole ``records`` frame ends, walking the frame headers."""
    return _whole_frames(fd, size)[1]
