"""A file source's position names the file it was taken in: the checks that it still does."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from dataflare import ConfigurationError, PluginIOError, SerializationError

__all__ = ["HEAD_BYTES", "Fingerprint", "check_position_shape", "check_same_file"]

HEAD_BYTES = 4096
"""How much of a source file its fingerprint covers."""


@attrs.frozen
class Fingerprint:
    """What tells one source file from another: its first bytes, by length and hash."""

    head_bytes: int
    head_sha256: str

    @classmethod
    def of(cls, fd: int, length: int = HEAD_BYTES) -> Fingerprint:
        """The fingerprint of the open file ``fd`` (its first ``length`` bytes at most)."""
        head = os.pread(fd, length, 0)
        return cls(len(head), hashlib.sha256(head).hexdigest())


def check_position_shape(position: object, source: str) -> None:
    """Refuse a position that is not a file source's: no ``file`` name, or ``line`` and
    ``offset`` that are not whole counts (``source`` names the source in the error)."""
    if not isinstance(position, Mapping) or not isinstance(position.get("file"), str):
        raise SerializationError(
            f"file source {source}: the position {_shown(position)} is not a "
            "file source's (no 'file' name)"
        )
    line, offset = position.get("line", 0), position.get("offset", 0)
    if not _count(line) or not _count(offset):
        raise SerializationError(
            f"file source {source}: the position {_shown(position)} has no "
            "whole 'line' and 'offset' counts"
        )


def check_same_file(path: Path, position: Mapping[str, Any], where: str) -> None:
    """Refuse ``path`` when it is not the file ``position`` was taken in (other first
    bytes, or shorter); ``where`` names the position in the error."""
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
            now = Fingerprint.of(handle.fileno(), head_bytes)
            current_size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise PluginIOError(f"file source: cannot open {path}: {exc.strerror}") from exc
    if current_size < size:
        why = f"it has {current_size} bytes, {size} when the position was saved"
    elif now != Fingerprint(head_bytes, head_sha256):
        why = f"its first {head_bytes} bytes are not the same as when the position was saved"
    else:
        return
    raise ConfigurationError(
        f"file source: {path} is not the file the checkpoint's position ({where}) was "
        f"taken in: {why}"
    )


def _count(value: object) -> bool:
    """Whether ``value`` is a whole, non-negative count (bool is not one)."""
    return type(value) is int and value >= 0


def _shown(value: object) -> str:
    """A position as shown in an error: one line, and short."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 120 else text[:117] + "..."
