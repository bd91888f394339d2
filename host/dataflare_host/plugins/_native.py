"""The native backend: import a Python plugin file or module and run it in-process."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from dataflare import ConfigurationError, Record
from dataflare.runtime import BatchResult, Dispatcher, LookBackResult, PluginModule, find_plugin
from dataflare_host.plugins._interface import Plugin

__all__ = ["ModuleCache", "NativePlugin", "import_plugin_module"]

_unique = itertools.count()


class NativePlugin(Plugin):
    """A plugin whose decorated function runs in this Python process."""

    def __init__(self, module: PluginModule, params: Mapping[str, str] | None = None) -> None:
        self._dispatcher = Dispatcher(module, params or {})
        super().__init__(
            name=module.name,
            kind=module.kind,
            origin=module.origin,
            initial=module.definition.initial,
        )
        self.module = module

    def _run(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        return self._dispatcher.process(records, accumulator)

    def _look_back(self, records: Sequence[Record]) -> LookBackResult:
        return self._dispatcher.look_back(records)

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
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ConfigurationError(f"plugin file {path} cannot be read: {exc.strerror}") from exc
        key = (str(path.resolve()), digest)
        with self._lock:
            cached = self._modules.get(key)
        if cached is None:
            cached = find_plugin(vars(_exec_file(path)), str(path))
            with self._lock:
                self._modules[key] = cached
        return cached


def import_plugin_module(source: str | Path, modules: ModuleCache | None = None) -> PluginModule:
    """Import a plugin file (every call re-reads it, unless ``modules`` has this content)
    or a module, and find its plugin."""
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
    if not path.is_file():
        raise ConfigurationError(f"plugin file {path} does not exist")
    # A fresh module name per load: reloading a changed file (hot reload) must
    # not see the previous version's module, and two plugins named alike must
    # not collide in sys.modules.
    name = f"dataflare_plugin_{path.stem}_{next(_unique)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"plugin file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ConfigurationError(
            f"plugin file {path} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from exc
    except Exception as exc:  # any failure while importing the author's file is reported
        raise ConfigurationError(
            f"plugin file {path} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.modules.pop(name, None)
    return module
