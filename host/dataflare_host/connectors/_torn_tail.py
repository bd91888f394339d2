"""Where a file's last whole line, CSV row or ``records`` frame ends: what a file sink
keeps of a file whose last write never finished, and how much a file holds."""

from __future__ import annotations

import os

from dataflare_host.connectors._file_config import FRAME_HEADER

__all__ = ["newline_count", "whole_csv_end", "whole_frames", "whole_frames_end", "whole_lines_end"]

_SCAN_CHUNK = 1 << 20


def whole_lines_end(fd: int, size: int) -> int:
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


def whole_csv_end(fd: int, size: int) -> int:
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


def newline_count(fd: int, size: int) -> int:
    """How many newlines the first ``size`` bytes of a file hold, a chunk at a time."""
    count = 0
    for start in range(0, size, _SCAN_CHUNK):
        count += os.pread(fd, min(_SCAN_CHUNK, size - start), start).count(b"\n")
    return count


def whole_frames(fd: int, size: int) -> tuple[int, int]:
    """How many whole ``records`` frames a file holds and where the last one ends."""
    frames = end = 0
    while end + FRAME_HEADER.size <= size:
        length = FRAME_HEADER.unpack(os.pread(fd, FRAME_HEADER.size, end))[0]
        if end + FRAME_HEADER.size + length > size:
            break
        end += FRAME_HEADER.size + length
        frames += 1
    return frames, end


def whole_frames_end(fd: int, size: int) -> int:
    """Where the last whole ``records`` frame ends, walking the frame headers."""
    return whole_frames(fd, size)[1]
