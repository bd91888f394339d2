"""When a file's identity (its ``stat``) may stand for its content.

Shared by the host (which memoises the component a sandbox process loaded) and
the sandbox process (which memoises a component's hash); standard library only,
so the host reads it without importing wasmtime.
"""

from __future__ import annotations

__all__ = ["RACY_WINDOW_NS"]

RACY_WINDOW_NS = 2_000_000_000
"""How old a file's last change must be before its key is memoised by its identity.

A file changed again within its own timestamp granularity (a jiffy, or 2 s on
FAT) can keep every ``stat`` field; one older than this when it was hashed
cannot change without its ctime moving (git's "racily clean" rule)."""
