"""Checkpoints: source positions and aggregate state, saved together, atomically.

Saved only after every sink flushed the records before the positions, so a
restart resumes at or before the first record not yet durable in every sink:
delivery is at least once, never lossy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import attrs
from dataflare import PluginIOError, SerializationError

__all__ = ["Checkpoint", "CheckpointStore"]

_VERSION = 1


@attrs.frozen
class Checkpoint:
    """What a restarted pipeline resumes from."""

    positions: dict[str, Any] = attrs.Factory(dict)
    """Source id -> the position after its last durable record."""
    accumulators: dict[str, bytes | None] = attrs.Factory(dict)
    """Processor id -> an aggregate's state at those positions."""


class CheckpointStore:
    """A checkpoint file: written to a temporary file, fsynced, renamed into place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Checkpoint:
        """The saved checkpoint, or an empty one when there is none yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Checkpoint()
        except OSError as exc:
            raise PluginIOError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            if data.get("version") != _VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {_VERSION}")
            accumulators = {
                key: None if value is None else value.encode("latin-1")
                for key, value in data["accumulators"].items()
            }
            return Checkpoint(dict(data["positions"]), accumulators)
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise SerializationError(
                f"checkpoint {self.path} is unreadable ({exc}); move it away to start over "
                "(records already delivered would then be delivered again)"
            ) from exc

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically (a crash leaves the old or the new one)."""
        body = {
            "version": _VERSION,
            "saved_at": time.time(),
            "positions": checkpoint.positions,
            "accumulators": {
                key: None if value is None else value.decode("latin-1")
                for key, value in checkpoint.accumulators.items()
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.partial")
            with partial.open("w", encoding="utf-8") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise PluginIOError(f"cannot write checkpoint {self.path}: {exc.strerror}") from exc

    def reset(self) -> None:
        """Forget the checkpoint: the next run starts from the beginning."""
        self.path.unlink(missing_ok=True)
