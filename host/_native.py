"""The native backend: import a Python plugin file or module and run it in-process."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from sdk import (
    BatchResult,
    ConfigurationError,
    Dispatcher,
    LookBackResult,
    PluginModule,
    Record,
    find_plugin,
)

from ._plugin import Plugin

__all__ = ["NativePlugin", "import_plugin_module"]

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

    @classmethod
    def load(cls, source: str | Path, params: Mapping[str, str] | None = None) -> NativePlugin:
        """Load from a ``.py`` file path or an importable module name."""
        return cls(import_plugin_module(source), params)

    def _run(self, records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        return self._dispatcher.process(records, accumulator)

    def _look_back(self, records: Sequence[Record]) -> LookBackResult:
        return self._dispatcher.look_back(records)

    @property
    def has_look_back(self) -> bool:
        """Whether the plugin defines a ``@look_back`` hook."""
        return self.module.look_back is not None


def import_plugin_module(source: str | Path) -> PluginModule:
    """Import a plugin file (every call re-reads it) or a module, and find its plugin."""
    text = str(source)
    if text.endswith(".py") or isinstance(source, Path):
        path = Path(source)
        module = _exec_file(path)
        return find_plugin(vars(module), str(path))
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
