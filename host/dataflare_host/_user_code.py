"""Importing an author's Python file (a plugin, a source, a sink) as a fresh module."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

from dataflare import ConfigurationError

__all__ = ["import_user_file", "sibling_module_hint"]

_unique = itertools.count()


def import_user_file(
    entry: Path, *, prefix: str, label: str, keep: bool, package: Path | None = None
) -> ModuleType:
    """Run ``entry`` as a module under a name never used before; errors name ``label entry``.

    A fresh name per load: reloading a changed file (hot reload) must not see the
    previous version's module, and two files named alike must not collide in
    ``sys.modules``. ``package`` makes ``entry`` (its ``__init__.py``) a package
    whose helper modules import relatively. ``keep`` leaves the module in
    ``sys.modules`` after a successful import (attrs and cattrs resolve string
    annotations through it); otherwise it and its submodules are removed (the
    functions keep their modules alive, ``sys.modules`` need not). Whatever the
    file raises while importing becomes one :class:`ConfigurationError`.
    """
    name = f"{prefix}_{(package or entry).stem}_{next(_unique)}"
    spec = importlib.util.spec_from_file_location(
        name, entry, submodule_search_locations=[str(package)] if package else None
    )
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{label} {entry} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    imported = False
    try:
        spec.loader.exec_module(module)
        imported = True
    except SyntaxError as exc:
        raise ConfigurationError(
            f"{label} {exc.filename or entry} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from exc
    except Exception as exc:  # whatever the author's file raises on import is reported
        hint = ""
        if package is None and isinstance(exc, ModuleNotFoundError) and exc.name:
            hint = sibling_module_hint(entry, exc.name)
        raise ConfigurationError(
            f"{label} {entry} failed to import: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    finally:
        if not (keep and imported):
            for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
                sys.modules.pop(loaded, None)
    return module


def sibling_module_hint(plugin: Path, missing: str) -> str:
    """What to do when the flat plugin file ``plugin`` imports ``missing``, a module beside it.

    A flat file is imported alone, natively and in a component alike: a
    plugin with modules of its own is a package folder. "" when no such
    module is beside it (a dependency that is simply not installed).
    """
    top = missing.partition(".")[0]
    folder = plugin.parent
    if not ((folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()):
        return ""
    name = plugin.stem
    return (
        f"; {top!r} is a module beside {plugin.name}, which a plugin file cannot import: "
        f"make the plugin a package folder ({name}/__init__.py holding the plugin, "
        f"{name}/{top}.py beside it) and import it relatively (from . import {top})"
    )
