"""The running state of a windowed aggregate: open windows, watermark, late drops.

The state is the aggregate's accumulator (encoded as bytes), so the host carries
and checkpoints it like any accumulator.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from dataflare._errors import ConfigurationError
from dataflare._windows import Window

__all__ = ["LateRecordError", "WindowState", "window_from_json", "window_from_mapping"]


class LateRecordError(Exception):
    """A record arrived after its window closed (raised inside the dispatcher)."""


def window_from_mapping(raw: Mapping[str, Any]) -> Window:
    """The window a mapping describes: a pipeline's ``window:`` or :meth:`Window.to_json`.

    ``type: tumbling`` steps by its size (and refuses a different ``step_ms``);
    ``type: sliding`` needs ``step_ms``. Raises :class:`ConfigurationError` saying
    what is wrong, with ``setting`` naming the key at fault when one is.

    >>> window_from_mapping({"type": "tumbling", "size_ms": 1000}).step_ms
    1000
    """
    fields = dict(raw)
    kind = fields.pop("type", None)
    if kind not in (None, "tumbling", "sliding"):
        raise ConfigurationError(
            f"window type must be tumbling or sliding, got {kind!r}", setting="type"
        )
    if kind == "tumbling":
        size = fields.get("size_ms")
        if fields.setdefault("step_ms", size) not in (None, size):
            raise ConfigurationError(
                "a tumbling window has no step_ms (it steps by its size)", setting="step_ms"
            )
    elif kind == "sliding" and fields.get("step_ms") is None:
        raise ConfigurationError("a sliding window needs step_ms", setting="step_ms")
    known = set(attrs.fields_dict(Window))
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown window setting {unknown[0]!r} (known: type, {', '.join(sorted(known))})",
            setting=unknown[0],
        )
    try:
        return Window(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bad window: {exc}") from exc


def window_from_json(text: str) -> Window:
    """Parse :meth:`Window.to_json` (how the host passes a ``window:``) into a Window."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"bad window specification {text!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigurationError(f"bad window specification {text!r}: expected a mapping")
    return window_from_mapping(raw)


@attrs.define
class WindowState:
    """Open windows (start -> accumulator), the watermark and the late-drop count."""

    open: dict[int, bytes] = attrs.Factory(dict)
    watermark: int | None = None
    late_dropped: int = 0

    @classmethod
    def decode(cls, data: bytes | None) -> WindowState:
        """State from accumulator bytes (None or empty: no window open yet)."""
        if not data:
            return cls()
        raw = json.loads(data)
        return cls(
            {int(start): acc.encode("latin-1") for start, acc in raw["open"]},
            raw["watermark"],
            raw["late_dropped"],
        )

    def encode(self) -> bytes:
        """State as accumulator bytes (deterministic: sorted windows)."""
        body = {
            "open": [[start, self.open[start].decode("latin-1")] for start in sorted(self.open)],
            "watermark": self.watermark,
            "late_dropped": self.late_dropped,
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("latin-1")

    def add(
        self,
        window: Window,
        timestamp: int,
        initial: bytes,
        fold: Callable[[bytes], bytes],
    ) -> list[tuple[int, bytes, Mapping[str, str]]]:
        """Fold one record into its windows; return the windows it closed.

        Atomic: if ``fold`` raises (or the record is late under ``late="error"``)
        the state is unchanged.
        """
        starts = window.starts(timestamp)
        closed = [
            s for s in starts if self.watermark is not None and s + window.size_ms <= self.watermark
        ]
        if closed and window.late == "error":
            raise LateRecordError(
                f"timestamp {timestamp} is late: its window [{closed[0]}, "
                f"{closed[0] + window.size_ms}) closed at watermark {self.watermark} "
                f"(allowed lateness {window.lateness_ms} ms)"
            )
        updates: dict[int, bytes] = {}
        for start in starts:
            if start in closed:
                continue
            result = fold(self.open.get(start, initial))
            if type(result) is not bytes:
                raise TypeError(
                    f"an aggregate plugin must return bytes (the new accumulator), but it "
                    f"returned {result!r:.80} (a {type(result).__name__})"
                )
            updates[start] = result
        self.open.update(updates)
        if closed:
            self.late_dropped += 1
        candidate = timestamp - window.lateness_ms
        if self.watermark is None or candidate > self.watermark:
            self.watermark = candidate
        return self._close(window)

    def _close(self, window: Window) -> list[tuple[int, bytes, Mapping[str, str]]]:
        assert self.watermark is not None
        ready = sorted(s for s in self.open if s + window.size_ms <= self.watermark)
        emitted: list[tuple[int, bytes, Mapping[str, str]]] = []
        for start in ready:
            metadata: dict[str, Any] = {
                "window_start": str(start),
                "window_end": str(start + window.size_ms),
            }
            if self.late_dropped:
                metadata["late_dropped"] = str(self.late_dropped)
                self.late_dropped = 0
            emitted.append((start, self.open.pop(start), metadata))
        return emitted
