"""Checkpoints: source positions, aggregate state and plugin state, saved together, atomically.

Saved only after every sink flushed the records before the positions, so a
restart resumes at or before the first record not yet durable in every sink:
delivery is at least once, never lossy.
"""

from __future__ import annotations

import base64
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
    states: dict[str, bytes] = attrs.Factory(dict)
    """Processor id -> the snapshot of a plugin's declared state at those positions
    (``<id>#by_key`` when partitioned by key). Base64 in the file: snapshots are
    binary, and JSON escapes most control bytes as six characters."""


class CheckpointStore:
    """A checkpoint file: written to a temporary file, fsynced, renamed into place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Checkpoint:
        """The saved checkpoint, or an empty one when there is none yet.

        Raises :class:`SerializationError` (one line naming the file and
        ``--reset``) when the file is empty, truncated, binary or not shaped
        like a checkpoint; :class:`PluginIOError` when it cannot be read.
        Whether each position suits its source is checked by the source
        (:meth:`Source.check_position`) when the run connects.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Checkpoint()
        except OSError as exc:
            raise PluginIOError(
                f"cannot read checkpoint {self.path}: {exc.strerror}; make it a readable file, "
                "or run with --reset to start over"
            ) from exc
        try:
            return _parse(raw)
        except _Malformed as exc:
            raise self.unusable(str(exc)) from exc
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            # UnicodeDecodeError (a binary file) and JSONDecodeError are ValueErrors.
            raise self.unusable(f"{type(exc).__name__}: {exc}") from exc

    def unusable(self, why: str) -> SerializationError:
        """The error for a checkpoint this pipeline cannot resume from, and what to do."""
        return SerializationError(
            f"checkpoint {self.path} cannot be used ({why}); run with --reset to start over "
            "(records already delivered are then delivered again)"
        )

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
        if checkpoint.states:  # absent otherwise: a checkpoint older readers still take
            body["states"] = {
                key: base64.b64encode(value).decode("ascii")
                for key, value in checkpoint.states.items()
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


class _Malformed(ValueError):
    """Valid JSON, but not a checkpoint: the message says what is wrong."""


def _parse(raw: bytes) -> Checkpoint:
    """A checkpoint from the file's bytes; raises ValueError saying what is wrong."""
    if not raw.strip():
        raise _Malformed("the file is empty")
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise _Malformed(f"expected a JSON object, found {type(data).__name__}")
    if data.get("version") != _VERSION:
        raise _Malformed(f"version {data.get('version')!r}, expected {_VERSION}")
    positions = data.get("positions")
    accumulators = data.get("accumulators")
    if not isinstance(positions, dict) or not isinstance(accumulators, dict):
        raise _Malformed("'positions' and 'accumulators' must both be JSON objects")
    for key, value in accumulators.items():
        if value is not None and not isinstance(value, str):
            raise _Malformed(f"the state of processor {key!r} is not a string")
    states = data.get("states", {})
    if not isinstance(states, dict):
        raise _Malformed("'states' must be a JSON object")
    decoded: dict[str, bytes] = {}
    for key, value in states.items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (TypeError, ValueError):  # binascii.Error is a ValueError
            raise _Malformed(f"the plugin state of processor {key!r} is not base64") from None
    return Checkpoint(
        dict(positions),
        {
            key: None if value is None else value.encode("latin-1")
            for key, value in accumulators.items()
        },
        decoded,
    )
