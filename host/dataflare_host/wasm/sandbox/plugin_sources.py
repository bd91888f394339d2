"""A plugin's Python sources carried in a component beside the shared runtime.

Shared by the host (``dataflare build`` appends them) and the sandbox process
(which hands them to the guest as a read-only folder): standard library only.

A Python plugin's component is the shared runtime component (CPython, the SDK
and the contract's bindings, the same bytes for every plugin on this host)
followed by one custom section holding the plugin's own files. A custom
section changes nothing wasmtime compiles, so the compile cache keys only the
runtime's bytes and every plugin maps the one compiled artifact: a new
plugin's first run costs a load, not a compile.

The section ends with a fixed trailer so a reader finds it from the end of
the file without parsing the component: ``magic``, then the whole section's
length (u32, big-endian). The payload before the trailer is the origin (the
name messages show for the plugin) and the files, each a relative POSIX path
and its bytes, all length-prefixed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path, PurePosixPath
from typing import NamedTuple

__all__ = [
    "ORIGIN_FILE",
    "SECTION_NAME",
    "GUEST_FOLDER",
    "PluginSources",
    "SourcesError",
    "append_sources",
    "read_sources",
    "split_sources",
    "write_sources",
]

SECTION_NAME = "dataflare:plugin-sources"
GUEST_FOLDER = "/plugin"
"""Where the guest finds the plugin's files (read-only)."""
ORIGIN_FILE = ".dataflare-origin"
"""The file in :data:`GUEST_FOLDER` naming the plugin as messages show it."""

_MAGIC = b"\0dataflare-sources1"
_TRAILER = struct.Struct(">I")
_TAIL = len(_MAGIC) + _TRAILER.size
_MAX_SECTION = 64 << 20  # a plugin's sources, not data: far below this


class SourcesError(Exception):
    """The sources section of a component is malformed."""


class PluginSources(NamedTuple):
    """The plugin's origin and its files (relative POSIX path, content)."""

    origin: str
    files: tuple[tuple[str, bytes], ...]


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _chunk(data: bytes) -> bytes:
    return _TRAILER.pack(len(data)) + data


def append_sources(runtime: bytes, sources: PluginSources) -> bytes:
    """``runtime`` (a component's bytes) with ``sources`` appended as its last section."""
    body = bytearray(_chunk(sources.origin.encode()))
    body += _TRAILER.pack(len(sources.files))
    for name, data in sources.files:
        _check_name(name)
        body += _chunk(name.encode()) + _chunk(data)
    label = SECTION_NAME.encode()
    content = _leb128(len(label)) + label + bytes(body)
    # The trailer's length covers the whole section, header included; the header's
    # size field covers the content and the trailer.
    inner = len(content) + _TAIL
    header = b"\0" + _leb128(inner)
    section = header + content
    total = len(section) + _TAIL
    return runtime + section + _MAGIC + _TRAILER.pack(total)


def _check_name(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\0" in name:
        raise SourcesError(f"the sources section names a file outside its folder: {name!r}")


def _section_length(tail: bytes, size: int) -> int | None:
    """The sources section's length (trailer included) from the last bytes of a file of
    ``size`` bytes; None when the file has no such section."""
    if size < _TAIL or tail[-_TAIL : -_TRAILER.size] != _MAGIC:
        return None
    (total,) = _TRAILER.unpack(tail[-_TRAILER.size :])
    if total > min(size, _MAX_SECTION) or total < _TAIL:
        raise SourcesError("the sources section's length is past the file")
    return int(total)


def split_sources(data: bytes) -> tuple[int, PluginSources | None]:
    """How many leading bytes of ``data`` are the runtime, and the sources after them.

    A component without the section (a Rust plugin, or a plugin built whole) is all
    runtime: ``(len(data), None)``. Raises :class:`SourcesError` for a section whose
    trailer is there but whose content is not.
    """
    total = _section_length(data[-_TAIL:], len(data))
    if total is None:
        return len(data), None
    start = len(data) - total
    return start, _decode(data[start:-_TAIL])


def read_sources(path: Path) -> tuple[int, PluginSources | None]:
    """:func:`split_sources` of the file at ``path``, reading only its tail."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(size - _TAIL, 0))
        total = _section_length(handle.read(_TAIL), size)
        if total is None:
            return size, None
        handle.seek(size - total)
        section = handle.read(total - _TAIL)
    return size - total, _decode(section)


def _decode(section: bytes) -> PluginSources:
    view = memoryview(section)
    try:
        if view[0] != 0:
            raise SourcesError("the sources trailer follows no custom section")
        at = 1
        at, _inner = _read_leb(view, at)
        at, name_length = _read_leb(view, at)
        if bytes(view[at : at + name_length]).decode() != SECTION_NAME:
            raise SourcesError("the section before the sources trailer is not the sources")
        at += name_length
        at, origin = _read_chunk(view, at)
        (count,) = _TRAILER.unpack_from(view, at)
        at += _TRAILER.size
        files = []
        for _ in range(count):
            at, name = _read_chunk(view, at)
            at, data = _read_chunk(view, at)
            text = name.decode()
            _check_name(text)
            files.append((text, data))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise SourcesError(f"the sources section is truncated or garbled ({exc})") from None
    if at != len(section):
        raise SourcesError("the sources section has bytes after its last file")
    return PluginSources(origin.decode(), tuple(files))


def _read_leb(view: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return at, value
        if shift > 35:
            raise SourcesError("the sources section's header is garbled")


def _read_chunk(view: memoryview, at: int) -> tuple[int, bytes]:
    (length,) = _TRAILER.unpack_from(view, at)
    at += _TRAILER.size
    if at + length > len(view):
        raise IndexError("chunk past the section")
    return at + length, bytes(view[at : at + length])


def write_sources(sources: PluginSources, folder: Path) -> None:
    """Write ``sources`` into the new folder ``folder`` (private to this user), origin too."""
    folder.mkdir(mode=0o700)
    (folder / ORIGIN_FILE).write_text(sources.origin, encoding="utf-8")
    for name, data in sources.files:
        _check_name(name)
        target = folder.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
