"""Where the host keeps what it can rebuild: built components and compiled artifacts.

Every folder of the cache is this user's alone (:func:`trusted_folder`): a
folder another user owns or can write, or a symbolic link, is refused with one
line and the run stops, since whoever can write ``compiled/`` can plant native
code, and ``builds/`` or ``keys/`` another plugin than the one named. The files
in them are checked again (owner, mode, no link) where they are read.

``compiled/`` is bounded: when a new artifact takes it past its size cap
(:func:`cache_max_bytes`), the least recently used artifacts go first
(:func:`evict`). "Used" is the
file's modification time, which the engine refreshes on every cache hit
(:func:`touch`): access times are not kept on most mounts (``noatime``,
``relatime``), so they cannot say what was used last.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import attrs
import platformdirs

from dataflare import ConfigurationError
from dataflare_host._ownership import FIX, untrusted

__all__ = [
    "CACHE_FOLDERS",
    "DEFAULT_MAX_MB",
    "CacheFolder",
    "cache_info",
    "cache_max_bytes",
    "cache_root",
    "clear_cache",
    "evict",
    "touch",
    "trusted_file",
    "trusted_folder",
]

CACHE_FOLDERS = ("builds", "compiled", "keys")
"""The folders under :func:`cache_root`: components by build inputs, compiled artifacts,
and each component file's artifact key remembered by file identity (so a cached start
maps its artifact without reading and hashing the component)."""

DEFAULT_MAX_MB = 1024
"""Size cap of ``compiled/`` unless ``$DATAFLARE_CACHE_MAX_MB`` says otherwise:
about 28 compiled components of ~36 MB."""


def cache_root() -> Path:
    """The cache folder: ``$DATAFLARE_CACHE_DIR``, else the user cache (platformdirs).

    Holds ``builds/`` (components by build inputs), ``compiled/`` (artifacts
    by component, wasmtime version and engine settings) and ``keys/`` (artifact
    keys by component file identity). Safe to delete.
    """
    configured = os.environ.get("DATAFLARE_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("dataflare", appauthor=False))


def trusted_folder(name: str) -> Path:
    """``name`` under :func:`cache_root`, created private (mode 0700) if missing, and checked.

    The root and the folder must be this user's, writable by no one else and not
    symbolic links (as ``servers/`` always had to be); otherwise a
    ConfigurationError names the path, what is wrong and what to do.
    """
    root = cache_root()
    for path in (root, root / name):
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:
            pass  # a file or a dangling link where the folder should be: said below
        except OSError as exc:
            raise ConfigurationError(
                f"cache folder {path} cannot be created ({exc.strerror}); {FIX}"
            ) from exc
        problem = untrusted(path, folder=True)
        if problem is not None:
            raise ConfigurationError(
                f"cache folder {path} {problem}, so another user could plant code in it; "
                f"refusing to use it: {FIX}"
            )
    return root / name


def trusted_file(path: Path) -> bool:
    """True when the cached file at ``path`` exists and can be trusted; False when missing.

    Raises ConfigurationError naming the file when another user owns or can write
    it, or it is a link: it was planted, or the folder was open when it was written.
    """
    problem = untrusted(path, folder=False)
    if problem is not None:
        raise ConfigurationError(f"cached file {path} {problem}; refusing to use it: {FIX}")
    return path.exists()


def cache_max_bytes() -> int:
    """The compile cache's size cap: ``$DATAFLARE_CACHE_MAX_MB`` (MB of 2**20 bytes), else 1024."""
    configured = os.environ.get("DATAFLARE_CACHE_MAX_MB")
    if configured is None or not configured.strip():
        return DEFAULT_MAX_MB * 1024 * 1024
    try:
        megabytes = float(configured)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:  # also refuses NaN
        raise ConfigurationError(
            f"DATAFLARE_CACHE_MAX_MB must be a size in MB, 0 or more (got {configured!r})",
            setting="DATAFLARE_CACHE_MAX_MB",
        )
    return int(megabytes * 1024 * 1024)


@attrs.frozen
class CacheFolder:
    """One cache folder's path, how many files it holds and their total size."""

    name: str
    path: Path
    files: int
    bytes: int


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as listing:
            return [entry for entry in listing if entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:  # another process evicted it meanwhile
        return 0


def cache_info() -> list[CacheFolder]:
    """Every cache folder with its file count and size (missing folders count as empty)."""
    root = cache_root()
    folders = []
    for name in CACHE_FOLDERS:
        entries = _entries(root / name)
        folders.append(CacheFolder(name, root / name, len(entries), sum(map(_size, entries))))
    return folders


def clear_cache(names: Sequence[str] = CACHE_FOLDERS) -> CacheFolder:
    """Delete every file in the named cache folders; what was deleted (as one total).

    A process using a compiled artifact keeps its mapping (the file is unlinked,
    not overwritten); the next start builds or compiles again.
    """
    files = size = 0
    for name in names:
        folder = cache_root() / name
        if folder.is_symlink():
            # Not followed: the files it points at are not the cache's. Removing the
            # link lets the next run create a private folder in its place.
            with contextlib.suppress(OSError):
                folder.unlink()
            continue
        for entry in _entries(folder):
            entry_size = _size(entry)
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            files += 1
            size += entry_size
    return CacheFolder(",".join(names), cache_root(), files, size)


def touch(path: Path) -> None:
    """Mark a cached file as just used (its modification time), for :func:`evict`."""
    # A read-only cache still works; its order of use is just not kept.
    with contextlib.suppress(OSError):
        os.utime(path)


def evict(folder: Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used files of ``folder`` until it holds ``max_bytes`` or less.

    ``keep`` (the file just written) is never deleted, even alone over the cap.
    Returns the deleted paths. Safe against other processes doing the same: a
    file already gone is skipped.
    """
    dated = []
    total = 0
    for entry in _entries(folder):
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        total += info.st_size
        dated.append((info.st_mtime_ns, entry.path, info.st_size))
    deleted: list[Path] = []
    if total <= max_bytes:
        return deleted
    dated.sort()
    for _, path, size in dated:
        if total <= max_bytes:
            break
        if keep is not None and Path(path) == keep:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        total -= size
        deleted.append(Path(path))
    return deleted
