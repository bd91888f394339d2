"""The file source: records from JSONL, CSV, lines or ``records`` files; one file, a
directory of files, or a glob.

A source's checkpointed position names the file it was taken in and a
fingerprint of that file (see :meth:`FileSource.check_position`), so a
pipeline pointed at another file refuses to resume instead of skipping it.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from itertools import count as count_from
from pathlib import Path
from typing import IO, Any, cast

from dataflare import ConfigurationError, PluginIOError, Record, SerializationError
from dataflare_host._json import parse_json, parse_json_lines
from dataflare_host.connectors._base import Backlog, Position, Source, SourceBatch
from dataflare_host.connectors._file_config import FileSourceConfig, Format, infer_format
from dataflare_host.connectors._file_partitions import join_file_positions, split_file_position
from dataflare_host.connectors._file_position import (
    Fingerprint,
    check_position_shape,
    check_same_file,
)
from dataflare_host.connectors._file_readers import ChunkedLines, csv_rows, framed_records, not_json
from dataflare_host.connectors._line_batches import LineColumns, LineSpan
from dataflare_host.connectors._partitions import PartitionPositions

__all__ = ["FileSource"]

_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1


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
        self._fingerprint = Fingerprint(0, hashlib.sha256(b"").hexdigest())
        self._rows: Iterator[tuple[int, bytes | Record]] | None = None
        self._lines: ChunkedLines | None = None  # JSONL and lines: read a chunk at a time
        self._later_bytes = 0  # the size of the files after the current one
        self._exhausted = False
        self._format: Format = config.format or infer_format(config.path)
        self._defer = False
        self._only: frozenset[str] | None = None  # restrict(): the files a worker reads
        self._resolve()  # a path that matches nothing fails validation, not the run

    def defer_records(self) -> None:
        """From now on, leave JSONL and lines batches as
        :class:`~dataflare_host.connectors.LineRecords`: the lines,
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
        if not files and not path.parent.is_dir() and any(c in str(path.parent) for c in "*?["):
            # A file's partition is its name: folders matched by a wildcard could hold
            # two files of one name, so only the file's name is a pattern.
            raise ConfigurationError(
                f"file source: {path}: only the file's name may hold wildcards (*, ?, [...]), "
                "not a folder's; name the folder, or use a source per folder",
                setting="path",
            )
        if not files:
            raise ConfigurationError(f"file source: no file matches {path}", setting="path")
        if self._only is not None:
            files = [p for p in files if p.name in self._only]
            missing = self._only - {p.name for p in files}
            if missing:
                # A worker's file gone since the driver listed it: reading in one process
                # fails so when it opens the file; a worker must not skip it in silence.
                gone = path.parent / min(missing) if not path.is_dir() else path / min(missing)
                raise PluginIOError(
                    f"file source: cannot open {gone}: {os.strerror(errno.ENOENT)}"
                )
        return files

    # -- partitions: one per file (see _partitions and _file_partitions) --

    def partitions(self) -> list[str]:
        """Every file's name, in the order one process reads them."""
        return [p.name for p in self._resolve()]

    def partitions_end(self) -> bool:
        """Always: every file has an end."""
        return True

    def partition_sizes(self) -> dict[str, int]:
        """Each file's size in bytes, by partition name: what a file no worker reads yet
        has left (the driver adds it to the backlog the workers report)."""
        return {p.name: p.stat().st_size for p in self._resolve()}

    def restrict(self, names: Sequence[str]) -> None:
        """Read only the files named (by name, as :meth:`partitions` gives them)."""
        self._only = frozenset(names)

    def split_position(self, position: Position | None) -> PartitionPositions:
        """A one-process position as each file's: the files before it ended."""
        if position:
            self.check_position(position)
        return split_file_position(self._resolve(), position)

    def join_positions(self, positions: PartitionPositions) -> Position:
        """Each file's position as one, when the files read form a prefix."""
        return join_file_positions(self._resolve(), positions)

    def check_position(self, position: Position) -> None:
        """Refuse a position that is not a file source's, or not about these files.

        The file the position names must be the same file now (same first
        bytes, not shorter). A position in a file no longer among ``path``'s
        files is accepted when ``path`` is the directory or glob it was taken
        under (the file was cleaned away: reading goes on with the files after
        it), and refused when ``path`` now points elsewhere.
        """
        check_position_shape(position, self.config.path)
        line = position.get("line", 0)
        files = self._resolve()
        name = position["file"]
        where = f"line {line} of {name}"
        matching = [p for p in files if p.name == name]
        if matching:
            check_same_file(matching[0], position, where)
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

    def connect(self, position: Position | None) -> None:
        if position:
            self.check_position(position)
        self._files = self._resolve()
        self._exhausted = not self._files  # restricted to a file gone since: nothing to read
        if self._exhausted:
            return
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
            self._fingerprint = Fingerprint.of(self._handle.fileno())
        except OSError as exc:
            raise PluginIOError(f"file source: cannot open {path}: {exc.strerror}") from exc
        self._line = 0
        # The files after this one, measured once per file rather than per batch.
        later = self._files[self._index + 1 :]
        self._later_bytes = sum(p.stat().st_size for p in later if p.exists())
        if self._format in ("jsonl", "lines"):
            self._lines = ChunkedLines(self._handle, strip_bom=self._format == "jsonl")
            self._lines.skip(skip)
        else:
            self._rows = self._numbered_rows(self._handle)
            for _ in range(skip):
                if next(self._rows, None) is None:
                    break
        self._line = skip

    def _numbered_rows(self, handle: IO[bytes]) -> Iterator[tuple[int, bytes | Record]]:
        path = self._files[self._index]
        if self._format == "records":
            yield from enumerate(framed_records(handle, path), start=1)
            return
        yield from csv_rows(handle, path)  # JSONL and lines: see ChunkedLines

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
        columns = LineColumns()
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

    def _read_lines(self, columns: LineColumns, wanted: int) -> bool:
        """Add up to ``wanted`` records from the current file's lines to ``columns``.

        True when ``wanted`` were added, False when the file ended first. The
        hot loop of every line-based source: the records are built from
        columns in one go (their fields are right by construction, so the
        checked constructor's work would be repeated), JSON is checked with
        the C scanner directly, and the per-file parts of the metadata are
        computed once per file, not per record.

        JSONL and lines files come a slice of lines at a time
        (:class:`~dataflare_host.connectors._file_readers.ChunkedLines`), exactly
        as many as records are still wanted, so the last line taken is the last
        record's, as one line at a time would leave it. A slice
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

    def _add_slice(self, columns: LineColumns, taken: list[bytes], first: int) -> bool:
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
                # Kept: each record's first json() returns its line's parse (parsed once).
                parsed = parse_json_lines(taken)
            except Exception:  # noqa: BLE001 - line by line raises it again, worded
                return False
            columns.parsed.extend(parsed)
        name = self._files[self._index].name
        columns.values.extend(taken)
        columns.files.extend([name] * size)
        columns.lines.extend(range(first, first + size))
        columns.offsets.extend(range(self._offset, self._offset + size))
        columns.count += size
        self._line = first + size - 1
        self._offset += size
        return True

    def _add_rows(
        self, columns: LineColumns, rows: Iterator[tuple[int, bytes]], target: int
    ) -> bool:
        """Add records from numbered lines (CSV rows) until ``columns`` holds ``target``.

        True when it does, False when ``rows`` ended first.
        """
        config = self.config
        parse = self._format in ("jsonl", "csv") and bool(
            config.validate or config.key_field or config.timestamp_field
        )
        fields = bool(config.key_field or config.timestamp_field)
        name = self._files[self._index].name
        values, offsets = columns.values, columns.offsets
        files, lines = columns.files, columns.lines
        line, offset = self._line, self._offset
        try:
            for line, value in rows:
                if not value.strip():
                    continue
                if parse:
                    try:
                        document = parse_json(value)
                    except ValueError as exc:
                        self._line = line
                        raise self._not_json(exc) from exc
                    columns.parsed.append(document)
                    if fields and isinstance(document, dict):
                        self._line = line
                        key, timestamp = self._key_and_timestamp(document)
                        if key is not None or timestamp is not None:
                            columns.set_fields(key, timestamp)
                values.append(value)
                files.append(name)
                lines.append(line)
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
        return not_json(self._files[self._index], self._line, exc)

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
