"""Windowed aggregates: tumbling and sliding windows over record timestamps.

A window ``[start, start + size)`` collects the records whose timestamp falls in
it and closes once the watermark (the highest timestamp seen, minus the allowed
lateness) reaches its end; it then emits one record whose value is the window's
accumulator. A record whose window already closed is *late*: with
``late="error"`` (the default) it fails like any plugin error, so the pipeline's
``on_error`` policy decides (``dead_letter`` keeps it); with ``late="drop"`` it
still counts in its open windows, and the next emitted window reports how many
were dropped in its ``late_dropped`` metadata, so nothing vanishes unnoticed.

A pipeline can override a plugin's window with ``window:`` in its YAML.
"""

from __future__ import annotations

import json
from typing import Literal

import attrs

__all__ = ["LatePolicy", "Window", "sliding", "tumbling"]

LatePolicy = Literal["error", "drop"]


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
