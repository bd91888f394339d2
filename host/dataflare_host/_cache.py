"""Where the host keeps what it can rebuild: built components and compiled artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The cache folder: ``$DATAFLARE_CACHE_DIR``, else the user cache (platformdirs).

    Holds ``builds/`` (components by build inputs) and ``compiled/`` (artifacts
    by component, wasmtime version and engine settings). Safe to delete.
    """
    configured = os.environ.get("DATAFLARE_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("dataflare", appauthor=False))
