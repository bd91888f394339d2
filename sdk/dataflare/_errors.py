"""The one exception hierarchy of DataFlare plugins.

Every error the SDK or the host raises on purpose is a :class:`PluginError`.
Each kind also inherits the builtin it resembles, so callers can catch either::

    PluginError
     +-- ConfigurationError   (ValueError)  bad params, a bad plugin file, a bad pipeline
     +-- ProcessingError      (RuntimeError) a plugin raised or returned the wrong thing
     |    +-- LimitExceededError            a sandbox time or memory limit stopped it
     +-- PluginIOError        (OSError)     a source, sink or artifact could not be used
     +-- SerializationError   (ValueError)  bytes that are not a valid record batch
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ConfigurationError",
    "LimitExceededError",
    "PluginError",
    "PluginIOError",
    "ProcessingError",
    "SerializationError",
]


MAX_MESSAGE_BYTES = 4096
"""Longest error message kept (UTF-8 bytes); a longer one is cut and says by how much."""


def bounded(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, its head kept and the cut counted.

    >>> bounded("x" * 100, 40)
    'xxxxxxxxxxxxxxx [... 85 more bytes cut]'
    """
    data = b"" if len(text) * 4 <= limit else text.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:  # the first test: fits whatever the characters' widths
        return text
    marker = " [... {:,} more bytes cut]"  # for the whole length: at least the final one's size
    head = data[: max(0, limit - len(marker.format(len(data))))].decode("utf-8", errors="ignore")
    return head + marker.format(len(data) - len(head.encode("utf-8", errors="surrogatepass")))


class PluginError(Exception):
    """Root of every error DataFlare raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 for a problem the user must fix
    before running (configuration), 1 for a failure while running. The message
    is bounded (:data:`MAX_MESSAGE_BYTES`): a plugin's error text can be megabytes.
    """

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(PluginError, ValueError):
    """The plugin, its parameters or a pipeline definition are wrong.

    Raised before any record is processed, including when an ``@init`` hook raises.
    ``setting`` names the configuration key at fault, when one is (a pipeline
    file then points at that key's line).
    """

    exit_code = 2

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class PluginIOError(PluginError, OSError):
    """A file, connector or compiled artifact could not be read or written."""

    def __init__(self, message: str) -> None:
        PluginError.__init__(self, message)


class SerializationError(PluginError, ValueError):
    """Bytes that should hold a record batch (or a checkpoint) do not."""


class ProcessingError(PluginError, RuntimeError):
    """A plugin failed on one record: Fluvio's structured runtime error.

    Carries which plugin failed (``plugin``, ``kind``), on which record
    (``offset`` in the stream, ``index`` in the batch, and a truncated preview
    of its ``record_key`` and ``record_value``) and what it raised
    (``error_type``, ``error_message``; the message ends with the exception's
    cause chain, ``...; caused by KeyError: 'x'``), and where in the plugin's own
    files (``location``, ``file:line``; its traceback frames, ``frames``). Outputs
    produced before the failing record are kept by whoever ran the batch.

    >>> err = ProcessingError(plugin="parse", kind="map", offset=7, index=2,
    ...                       error_type="ValueError", error_message="bad digit")
    >>> str(err)
    "plugin 'parse' (map) failed at record offset 7: ValueError: bad digit"
    """

    def __init__(
        self,
        *,
        plugin: str,
        kind: str,
        offset: int,
        index: int,
        error_type: str,
        error_message: str,
        record_key: str | None = None,
        record_value: str | None = None,
        location: str | None = None,
        frames: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.kind = kind
        self.offset = offset
        self.index = index
        self.error_type = bounded(error_type)
        self.error_message = bounded(error_message)
        self.record_key = record_key
        self.record_value = record_value
        self.location = None if location is None else bounded(location)
        self.frames = None if frames is None else bounded(frames)
        detail = f"{error_type}: {error_message}" if error_message else error_type
        at = f"record offset {offset}" + (f" ({location})" if location else "")
        super().__init__(f"plugin {plugin!r} ({kind}) failed at {at}: {detail}")

    @classmethod
    def from_fields(cls, fields: Mapping[str, str | int | None]) -> Self:
        """The error whose :meth:`fields` are ``fields`` (the inverse of :meth:`fields`)."""
        return cls(**fields)  # type: ignore[arg-type]

    def replace(
        self, cls: type[ProcessingError] | None = None, **changes: str | int | None
    ) -> ProcessingError:
        """A copy with the fields in ``changes`` changed, as a ``cls`` when given.

        Whoever re-frames an error (shifts its index into a larger batch, turns it
        into a :class:`LimitExceededError`) keeps every other field as it was.

        >>> err = ProcessingError(plugin="parse", kind="map", offset=7, index=2,
        ...                       error_type="ValueError", error_message="bad digit")
        >>> err.replace(index=12).fields()["index"]
        12
        >>> limit = err.replace(LimitExceededError, error_message="too big")
        >>> type(limit).__name__, limit.index, limit.error_message
        ('LimitExceededError', 2, 'too big')
        """
        return (cls or type(self)).from_fields({**self.fields(), **changes})

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only __init__ defeats the default pickling used by
        # multiprocessing and by pytest-xdist; rebuild from the fields.
        return (_rebuild_processing_error, (type(self), self.fields()))

    def fields(self) -> dict[str, str | int | None]:
        """The error's structured fields, as a plain dict (for logs and the wire)."""
        return {
            "plugin": self.plugin,
            "kind": self.kind,
            "offset": self.offset,
            "index": self.index,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "record_key": self.record_key,
            "record_value": self.record_value,
            "location": self.location,
            "frames": self.frames,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessingError):
            return NotImplemented
        return type(self) is type(other) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(tuple(self.fields().values()))


class LimitExceededError(ProcessingError):
    """A sandboxed plugin ran past its time limit or its memory cap."""


def _rebuild_processing_error(
    cls: type[ProcessingError], fields: dict[str, str | int | None]
) -> ProcessingError:
    # Module-level, not cls.from_fields: errors pickled by an earlier version unpickle.
    return cls.from_fields(fields)
