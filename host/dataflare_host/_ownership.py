"""Whether a cache file or folder can be trusted: this user's, writable by no one else, no link;
and writing a cache file so that it can be.

Standard library only: a sandbox process checks the artifacts it maps with it,
and the host checks every cache folder before it uses one. A file another user
can write is code that user can plant (a compiled artifact is native code).
"""

from __future__ import annotations

import os
import stat

__all__ = ["FIX", "untrusted", "write_private"]

FIX = "remove it, or set DATAFLARE_CACHE_DIR to a folder of your own"
"""What to do about a refused cache path, for the end of its message."""


def write_private(path: str | os.PathLike[str], data: bytes | bytearray) -> None:
    """Write a cache file that only this user can write (mode 0644 whatever the umask),
    never through a symbolic link planted at ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, 0o644)  # the umask may have left group write on
        handle.write(data)


def untrusted(path: str | os.PathLike[str], *, folder: bool) -> str | None:
    """What is wrong with ``path`` (a sentence starting with a verb), or None.

    Missing is not wrong here: a missing file is a cache miss, and folders are
    created (private) before they are checked.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if folder and not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if not folder and not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.getuid():
        return f"belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by its group or by anyone (mode {stat.S_IMODE(info.st_mode):04o})"
    return None
