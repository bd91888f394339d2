"""How a file source reads each format: JSONL and lines a chunk at a time, CSV rows as
JSON objects, ``records`` frames; and the error for a line that is not JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dataflare import Record, SerializationError
from dataflare_host.connectors._file_config import FRAME_HEADER
from dataflare_host.connectors._records_codec import decode_batch

__all__ = ["ChunkedLines", "csv_rows", "framed_records", "not_json"]

_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20  # how much of a JSONL or lines file a source reads at once


class ChunkedLines:
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


def csv_rows(handle: IO[bytes], path: Path) -> Iterator[tuple[int, bytes]]:
    """The rows of the CSV file ``path``, numbered from 1, each as a JSON object's bytes."""
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


def framed_records(handle: IO[bytes], path: Path) -> Iterator[Record]:
    """The records of the ``records`` file ``path``, frame after frame."""
    while header := handle.read(FRAME_HEADER.size):
        start = handle.tell() - len(header)
        size = FRAME_HEADER.unpack(header)[0] if len(header) == FRAME_HEADER.size else -1
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


def not_json(path: Path | str, line: int, exc: ValueError) -> SerializationError:
    """The error for line ``line`` of ``path``, which is not JSON (``exc`` says why)."""
    return SerializationError(
        f"{path}:{line}: not valid JSON ({exc}); fix the line or set "
        "validate: false to pass it through as bytes"
    )


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
