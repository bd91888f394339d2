"""The one build cache: components by the inputs of their build.

``dataflare build``, pipelines (``plugin_source: wasm`` with a ``.py``),
``dataflare test --wasm`` and the test kit all get their component here, so a
plugin is built once per content. The key is a hash of everything that goes
into the component: the plugin's files (a file, or a package folder's modules),
the files of the dependencies bundled with it, the generated app module, the
guest SDK's sources, the WIT contract and the componentize-py version.
Content, never file times: a touched but unchanged file is not rebuilt, and a
changed one always is (componentize-py output is not reproducible, so rebuilding
the same inputs would also force a new compile).
"""

from __future__ import annotations

import hashlib
import os
import threading
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from dataflare import ConfigurationError
from dataflare_host._cache import cache_root
from dataflare_host._waiting import waiting
from dataflare_host.wasm.build._componentize import (
    app_module_source,
    build_component,
    build_inputs,
    guest_sources,
)
from dataflare_host.wasm.build._wit import wit_dir

__all__ = ["build_key", "component_for"]

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def build_key(source: Path) -> str:
    """The hash of every input of ``source``'s build (its cache key): the plugin's
    files, the bundled dependencies' files, the generated app module, the SDK,
    the WIT contract and the componentize-py version."""
    digest = hashlib.sha256(f"componentize-py={version('componentize-py')}".encode())
    if not source.exists():
        raise ConfigurationError(f"plugin file {source} does not exist")
    for path, relative in build_inputs(source.resolve()):
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"plugin file {path} cannot be read: {exc.strerror}") from exc
        # Name and length first: moving bytes between files changes the key.
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    digest.update(app_module_source(source.resolve().name).encode())
    digest.update((wit_dir() / "plugin.wit").read_bytes())
    for module in guest_sources():
        digest.update(module.name.encode())
        digest.update(module.read_bytes())
    return digest.hexdigest()[:24]


def component_for(source: str | os.PathLike[str]) -> Path:
    """The component built from the plugin file or folder ``source``, building it on a miss.

    >>> component_for("guest_examples/uppercase_map.py")  # doctest: +SKIP
    PosixPath('/root/.cache/dataflare/builds/uppercase_map-3f2a....wasm')
    """
    path = Path(source)
    key = build_key(path)
    target = cache_root() / "builds" / f"{path.stem}-{key}.wasm"
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    # Two threads, or two processes (pipelines, test workers), asking for one
    # build wait for one componentize-py run instead of each running their own.
    with lock:
        if target.is_file():
            return target
        # One lock per plugin name, outside builds/ so the cache's size and
        # eviction only ever see components.
        locks = cache_root() / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(locks / f"{path.stem}.lock"):
            if not target.is_file():
                with waiting(f"building {path.name} into a WASM component"):
                    build_component(path, target)
    return target
