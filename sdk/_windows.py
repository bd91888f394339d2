"""Windowed aggregates: tumbling and sliding windows over record timestamps.

A window ``[start, start + size)`` collects the records whose timestamp falls in
it and closes once the watermark (the highest timestamp seen, minus the allowed
lateness) reaches its end; it then emits one record whose value is the window's
accumulator. A record whose window already closed is *late*: with
``late="error"`` (the default) it fails like any plugin error, so the pipeline's
``on_error`` policy decides (``dead_letter`` keeps it); with ``late="drop"`` it
still counts in its open windows, and the next emitted window reports how many
were dropped in its ``late_dropped`` metadata, so nothing vanishes unnoticed.

The open windows and the watermark are the aggregate's accumulator (encoded as
bytes), so the host carries and checkpoints them like any accumulator.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from ._errors import ConfigurationError

__all__ = ["LateRecordError", "Window", "WindowState", "sliding", "tumbling", "window_from_json"]

LatePolicy = Literal["error", "drop"]


class LateRecordError(Exception):
    """A record arrived after its window closed (raised inside the dispatcher)."""


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"window {attribute.name} must be a positive int of ms, got {value!r}")


def _not_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"window {attribute.name} must be an int of ms >= 0, got {value!r}")


@attrs.frozen
class Window:
    """A window specification; build one with :func:`tumbling` or :func:`sliding`."""

    size_ms: int = attrs.field(validator=_positive)
    step_ms: int = attrs.field(validator=_positive)
    lateness_ms: int = attrs.field(default=0, validator=_not_negative)
    late: LatePolicy = attrs.field(
        default="error", validator=attrs.validators.in_(("error", "drop"))
    )

    def __attrs_post_init__(self) -> None:
        if self.step_ms > self.size_ms:
            raise ValueError(
                f"window step_ms ({self.step_ms}) must not exceed size_ms ({self.size_ms}): "
                "records between windows would belong to none"
            )

    @property
    def kind(self) -> str:
        """``tumbling`` when windows do not overlap, else ``sliding``."""
        return "tumbling" if self.step_ms == self.size_ms else "sliding"

    def starts(self, timestamp: int) -> list[int]:
        """Starts of the windows holding ``timestamp``, oldest first."""
        last = (timestamp // self.step_ms) * self.step_ms
        first = last - ((self.size_ms - 1) // self.step_ms) * self.step_ms
        return [
            s for s in range(first, last + 1, self.step_ms) if s <= timestamp < s + self.size_ms
        ]

    def to_json(self) -> str:
        """The specification as JSON (how a pipeline's ``window:`` reaches the plugin)."""
        return json.dumps(attrs.asdict(self), sort_keys=True)


def tumbling(size_ms: int, *, lateness_ms: int = 0, late: LatePolicy = "error") -> Window:
    """Back-to-back windows of ``size_ms``: every record is in exactly one.

    >>> tumbling(60_000).starts(125_000)
    [120000]
    """
    return Window(size_ms, size_ms, lateness_ms, late)


def sliding(
    size_ms: int, step_ms: int, *, lateness_ms: int = 0, late: LatePolicy = "error"
) -> Window:
    """Windows of ``size_ms`` starting every ``step_ms``: a record is in several.

    >>> sliding(60_000, 30_000).starts(125_000)
    [90000, 120000]
    """
    return Window(size_ms, step_ms, lateness_ms, late)


def window_from_json(text: str) -> Window:
    """Parse :meth:`Window.to_json` (or a pipeline's ``window:``) into a Window."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("expected a mapping")
        kind = raw.pop("type", None)
        if kind == "tumbling":
            raw.setdefault("step_ms", raw.get("size_ms"))
        return Window(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bad window specification {text!r}: {exc}") from exc


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
