"""Text helpers shared by the CLI and the progress display."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(message: str) -> str:
    """``message`` on one line: every error the CLI prints is exactly one line.

    >>> one_line("bad\\n  value")
    'bad value'
    """
    return " ".join(message.split())
