"""What a ProcessingError says about its record and its exception, the same in both runtimes."""

from __future__ import annotations

from dataflare._errors import bounded

__all__ = ["PREVIEW_CHARS", "exception_text", "preview"]

PREVIEW_CHARS = 120
"""How much of a failing record's key and value an error carries."""

_MAX_CAUSES = 8
_MAX_PART = 500


def preview(data: bytes | None) -> str | None:
    """``data`` as text for an error: UTF-8 (bytes that are not shown escaped), truncated.

    >>> preview(b"caf\\xc3\\xa9 \\xff" + b"x" * 200)[:12]
    'café \\\\xffxxx'
    >>> preview(None) is None
    True
    """
    if data is None:
        return None
    text = data[: PREVIEW_CHARS * 4].decode("utf-8", "backslashreplace")
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


def exception_text(exc: BaseException) -> str:
    """``str(exc)`` followed by its cause chain, as Fluvio prints it.

    >>> try:
    ...     try:
    ...         {}["x"]
    ...     except KeyError as inner:
    ...         raise ValueError("bad record") from inner
    ... except ValueError as outer:
    ...     exception_text(outer)
    "bad record; caused by KeyError: 'x'"
    """
    # Bounded, the head kept and the cut counted: a plugin's message can be megabytes.
    parts = [bounded(str(exc), _MAX_PART)]
    seen = {id(exc)}
    current: BaseException = exc
    for _ in range(_MAX_CAUSES):
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        if cause is None or id(cause) in seen:
            break
        seen.add(id(cause))
        detail = bounded(str(cause), _MAX_PART)
        parts.append(f"caused by {type(cause).__name__}" + (f": {detail}" if detail else ""))
        current = cause
    return "; ".join(parts)
