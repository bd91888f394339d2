"""Text helpers shared by the CLI and the progress display."""

from __future__ import annotations

__all__ = ["escape_controls", "one_line"]


def one_line(message: str) -> str:
    """``message`` on one line: every error the CLI prints is exactly one line.

    Control characters (a guest's error text may carry terminal escape
    sequences) are shown escaped, never sent to the terminal.

    >>> one_line("bad\\n  value")
    'bad value'
    >>> one_line("red\\x1b[31m")
    'red\\\\x1b[31m'
    """
    return escape_controls(" ".join(message.split()))


def escape_controls(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` (safe for a terminal or a log).

    >>> escape_controls("a\\tb\\x07")
    'a\\\\x09b\\\\x07'
    """
    return text.translate(_ESCAPES)


# Every C0/C1 control character but the whitespace split() already folded.
_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
}
