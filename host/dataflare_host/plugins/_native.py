"""The native backend: import a Python plugin file, package folder or module and run it
in-process.

A package folder's ``__init__.py`` holds the decorated plugin; its helper
modules are imported relatively (``from . import helpers``), which works the
same inside a WASM component, where the folder becomes a package too.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from dataflare import ConfigurationError, Record
from dataflare.runtime import BatchResult, Dispatcher, LookBackResult, PluginModule, find_plugin
from dataflare_host._user_code import import_user_file
from dataflare_host.plugins._interface import Plugin

__all__ = ["ModuleCache", "NativePlugin", "import_plugin_module", "plugin_digest"]



class NativePlugin(Plugin):
    """A plugin whose decorated function runs in this Python process."""

    def __init__(self, module: PluginModule, params: Mapping[str, str] | None = None) -> None:
        self._dispatcher = Dispatcher(module, params or {})
        super().__init__(
            name=module.name,
            kind=module.kind,
            origin=module.origin,
            initial=module.definition.initial,
            state=module.definition.state,
        )
        self.module = module

    def _run(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        return self._dispatcher.process(records, accumulator)

    def _look_back(self, records: Sequence[Record]) -> LookBackResult:
        return self._dispatcher.look_back(records)

    def _snapshot_state(self) -> bytes:
        return self._dispatcher.snapshot_state()

    def _restore_state(self, snapshot: bytes) -> None:
        self._dispatcher.restore_state(snapshot)

    @property
    def has_look_back(self) -> bool:
        """Whether the plugin defines a ``@look_back`` hook."""
        return self.module.look_back is not None


class ModuleCache:
    """Plugin files imported once per content: a changed file is imported afresh.

    The key is the file's path and a hash of its bytes, the one staleness rule
    the host uses everywhere (never file times).
    """

    def __init__(self) -> None:
        self._modules: dict[tuple[str, str], PluginModule] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> PluginModule:
        """The plugin ``path`` defines, imported at most once per content."""
        key = (str(path.resolve()), plugin_digest(path))
        with self._lock:
            cached = self._modules.get(key)
        if cached is None:
            cached = find_plugin(vars(_exec_file(path)), str(path))
            with self._lock:
                self._modules[key] = cached
        return cached


def plugin_digest(path: Path) -> str:
    """A hash of a plugin file's bytes, or of every module of a package folder."""
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"plugin file {file} cannot be read: {exc.strerror}") from exc
        name = file.relative_to(path) if path.is_dir() else ""
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def import_plugin_module(source: str | Path, modules: ModuleCache | None = None) -> PluginModule:
    """Import a plugin file or package folder (every call re-reads it, unless ``modules``
    has this content) or a module, and find its plugin."""
    text = str(source)
    if text.endswith(".py") or isinstance(source, Path):
        path = Path(source)
        if modules is not None:
            return modules.get(path)
        return find_plugin(vars(_exec_file(path)), str(path))
    try:
        imported = importlib.import_module(text)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import plugin module {text!r}: {exc}; give a .py file path, a "
            ".wasm component, or a module name importable from this environment"
        ) from exc
    return find_plugin(vars(imported), text)


def _exec_file(path: Path) -> ModuleType:
    package = path.is_dir()
    entry = path / "__init__.py" if package else path
    if not entry.is_file():
        if package:
            raise ConfigurationError(
                f"plugin folder {path} has no __init__.py: put the decorated plugin there"
            )
        raise ConfigurationError(f"plugin file {path} does not exist")
    return import_user_file(
        entry,
        prefix="dataflare_plugin",
        label="plugin file",
        keep=False,
        package=path if package else None,
    )
