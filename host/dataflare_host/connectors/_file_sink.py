"""The file sink: appends records to a file, every line (CSV row, ``records`` frame) whole.

A sink never appends after a torn write: on connect it cuts the file back to its
last whole line (:mod:`._torn_tail`). With ``mode: overwrite`` it empties its file
only when the run starts fresh (no checkpoint); a resumed run appends, so output
the checkpoint already covers is never lost (:meth:`FileSink.run_starts`).
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from dataflare import PluginIOError, Record
from dataflare_host.connectors._base import Sink
from dataflare_host.connectors._file_config import (
    FRAME_HEADER,
    FileSinkConfig,
    Format,
    infer_format,
)
from dataflare_host.connectors._partitions import PARTITION_FIELD
from dataflare_host.connectors._records_codec import encode_batch
from dataflare_host.connectors._torn_tail import (
    newline_count,
    whole_csv_end,
    whole_frames,
    whole_frames_end,
    whole_lines_end,
)

__all__ = ["FileSink", "JoinedValues"]

log = logging.getLogger("dataflare.connectors.file")


@runtime_checkable
class JoinedValues(Protocol):
    """Records whose values are at hand joined by newlines (the outputs of the pipeline's
    worker processes): a JSONL or lines sink writes those bytes without the records."""

    def newline_joined(self) -> bytes:
        """The values, in order, joined by newlines."""


class FileSink(Sink):
    """Appends records to a file; ``flush`` makes them durable (fsync).

    Every line, CSV row or ``records`` frame in the file stays whole, whatever
    stops a write half-way: ``connect`` cuts the file back to the end of its
    last whole one (bytes after it come from a write that never finished, which
    no checkpoint covers: their records are delivered again), and a write that
    fails cuts the file back to where it began and raises a one-line
    :class:`dataflare.PluginIOError`. With ``mode: overwrite``, ``connect``
    empties the file instead, once :meth:`run_starts` said the run starts fresh.
    """

    Config = FileSinkConfig

    def __init__(self, config: FileSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        raw = Path(config.path)
        self.path = raw if raw.is_absolute() else Path(config.base_dir) / raw
        self._format: Format = config.format or infer_format(config.path)
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

    def splits(self) -> bool:
        """True when ``path`` holds ``{partition}``: one file per partition of a
        partitioned source, each written by the worker reading that partition."""
        return PARTITION_FIELD in self.config.path

    def for_partition(self, name: str) -> None:
        """Write partition ``name``'s file: ``{partition}`` in ``path`` becomes ``name``
        (a file source's partition is a file's name, so ``out/{partition}`` mirrors the
        input's files; the format follows the file's suffix unless set)."""
        self.path = Path(str(self.path).replace(PARTITION_FIELD, name))
        self._format = self.config.format or infer_format(self.path.name)

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

    def _unsplit(self) -> bool:
        """Whether ``path`` still holds ``{partition}`` (no partition's file chosen yet:
        the driver's sink, and ``validate --connect``'s)."""
        return PARTITION_FIELD in str(self.path)

    def _partition_files(self) -> list[Path]:
        """The files an unsplit ``path`` names for some partition: ``out/{partition}``
        matches every file in ``out/``; sorted."""
        before, _, after = str(self.path).partition(PARTITION_FIELD)
        pattern = glob.escape(before) + "*" + glob.escape(after).replace(PARTITION_FIELD, "*")
        return sorted(Path(found) for found in glob.glob(pattern) if os.path.isfile(found))

    def describe_start(self, *, resuming: bool) -> str:
        """What a run starting so does to the file, in one phrase for the operator.

        ``out.jsonl (1,234 lines) will be overwritten``, ``... will be appended
        to``, ``out.jsonl does not exist yet; it will be created``; for
        ``out/{partition}``, the same about the partitions' files already there.
        """
        overwrites = self.config.mode == "overwrite" and not resuming
        fate = "will be overwritten" if overwrites else "will be appended to"
        if self._unsplit():
            files = self._partition_files()
            if not files:
                return f"{self.path}: no partition's file yet; each will be created"
            return f"{self.path}: {self._listing(files)} {fate}"
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return f"{self.path} does not exist yet; it will be created"
        except OSError as exc:
            return f"{self.path} cannot be examined ({exc.strerror}); it will be opened as is"
        if not stat.S_ISREG(info.st_mode):
            return f"{self.path} is not a regular file; records will be written to it as they come"
        return f"{self.path} ({self._measure(info.st_size)}) {fate}"

    def held_output(self) -> str | None:
        """What a fresh start would append a second copy of every record after:
        ``out.jsonl (6 lines)``; None when it would not (``mode: overwrite`` empties the
        file first; a missing, empty or not regular file holds nothing to duplicate)."""
        if self.config.mode == "overwrite":
            return None
        if self._unsplit():
            held = [file for file in self._partition_files() if file.stat().st_size]
            return f"{self.path}: {self._listing(held)}" if held else None
        try:
            info = self.path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return None
        return f"{self.path} ({self._measure(info.st_size)})"

    def _listing(self, files: list[Path]) -> str:
        """``2 partition files (out/a.jsonl: 3 lines, out/b.jsonl: 5 lines)``, the first
        three named."""
        named = ", ".join(
            f"{file}: {self._measure(file.stat().st_size, file)}" for file in files[:3]
        )
        more = f", {len(files) - 3} more" if len(files) > 3 else ""
        return f"{len(files)} partition file{'' if len(files) == 1 else 's'} ({named}{more})"

    def _measure(self, size: int, path: Path | None = None) -> str:
        """How much the file (``path``, else the sink's) holds: lines for text formats,
        frames for ``records``."""
        try:
            with (path or self.path).open("rb", buffering=0) as reader:
                if self._format == "records":
                    frames = whole_frames(reader.fileno(), size)[0]
                    return f"{frames:,} frame(s), {size:,} bytes"
                lines = newline_count(reader.fileno(), size)
                return f"{lines:,} line{'' if lines == 1 else 's'}"
        except OSError as exc:
            return f"{size:,} bytes; unreadable: {exc.strerror}"

    def connect(self) -> None:
        if self._unsplit():
            self._check_partition_folder()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab", buffering=0)
        except (FileExistsError, NotADirectoryError) as exc:
            raise self._error("opening it", _file_in_the_way(self.path, exc)) from exc
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

    def _check_partition_folder(self) -> None:
        """``validate --connect`` of ``out/{partition}``: the folder the partitions' files
        go to can be made and written to; no file is created (one named ``{partition}``
        would later be read as a partition by a glob over the folder)."""
        folder = Path(str(self.path).partition(PARTITION_FIELD)[0] + "x").parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise self._error(f"making its folder {folder}", _file_in_the_way(folder, exc)) from exc
        except OSError as exc:
            raise self._error(f"making its folder {folder}", exc) from exc
        if not os.access(folder, os.W_OK | os.X_OK):
            denied = OSError(errno.EACCES, f"cannot create files in {folder}")
            raise self._error("opening it", denied)

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
                whole = whole_frames_end(fd, self._size)
            elif self._format == "csv":
                whole = whole_csv_end(fd, self._size)
            else:
                whole = whole_lines_end(fd, self._size)
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
            self._append(FRAME_HEADER.pack(len(frame)) + frame)
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


def _file_in_the_way(path: Path, exc: OSError) -> OSError:
    """``exc`` said as the file standing where a folder of ``path`` should be (mkdir's
    "File exists" names no file)."""
    for folder in (*reversed(path.parents), path):
        if folder.exists() and not folder.is_dir():
            return OSError(exc.errno, f"{folder} is a file, where a folder is needed")
    return exc
