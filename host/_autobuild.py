"""Components built on demand from ``.py`` files, cached by content.

A pipeline may name a ``.py`` file with ``plugin_source: wasm``: it is built
once (seconds) and the component reused until the file, the SDK or the WIT
contract changes.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import sdk

from ._build import build_component
from ._engine import cache_dir
from ._wit_path import wit_dir

__all__ = ["component_for"]

_lock = threading.Lock()


def _build_key(source: Path) -> str:
    digest = hashlib.sha256(source.read_bytes())
    digest.update(sdk.__version__.encode())
    digest.update((wit_dir() / "plugin.wit").read_bytes())
    for module in sorted(Path(sdk.__file__).parent.glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:20]


def component_for(source: Path) -> Path:
    """The component built from ``source``, building it if this content has none yet."""
    target = cache_dir().parent / "builds" / f"{source.stem}-{_build_key(source)}.wasm"
    with _lock:
        if not target.is_file():
            build_component(source, target)
    return target
