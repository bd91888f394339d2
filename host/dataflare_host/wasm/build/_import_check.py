"""An import the guest cannot satisfy, found in the plugin's source before componentize-py runs.

componentize-py finds such an import too, but only once it has compiled the
interpreter to pre-initialise the app: many seconds of CPU for an error the
source shows. This reads the plugin's files without running them (``ast``) and
names the first module-level import that neither the guest's standard library
nor the staged files (the SDK, attrs, the plugin's package, its bundled
dependencies) can provide. Only unconditional imports count: one inside
``try``, ``if`` or a function may be guarded or never run, and is left to the
build itself.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import attrs

__all__ = ["MissingImport", "missing_import"]

# Top-level standard-library modules the guest's CPython (3.14) has and this host's
# may not list: sys.stdlib_module_names is the running interpreter's list.
_NEWER_STDLIB = frozenset({"annotationlib", "compression"})
# What componentize-py itself puts beside the app (its runtime and the WIT bindings).
_BUILD_PROVIDED_PREFIXES = ("componentize_py", "wit_world", "poll_loop")


@attrs.frozen
class MissingImport:
    """A module-level import of ``module`` at ``file``:``line`` that the guest lacks."""

    module: str
    file: Path
    line: int


def missing_import(files: list[Path], stage: Path) -> MissingImport | None:
    """The first unconditional module-level import in ``files`` that ``stage`` and the
    guest's standard library cannot provide, or None."""
    provided = _staged_names(stage)
    for file in files:
        tree = ast.parse(file.read_bytes(), str(file))
        for statement in tree.body:
            for module, line in _imported(statement):
                top = module.partition(".")[0]
                if not _available(top, provided):
                    return MissingImport(module=top, file=file, line=line)
    return None


def _imported(statement: ast.stmt) -> list[tuple[str, int]]:
    if isinstance(statement, ast.Import):
        return [(alias.name, statement.lineno) for alias in statement.names]
    if isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
        return [(statement.module, statement.lineno)]
    return []  # a relative import stays inside the plugin's package


def _staged_names(stage: Path) -> frozenset[str]:
    names = set()
    for entry in stage.iterdir():
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return frozenset(names)


def _available(top: str, provided: frozenset[str]) -> bool:
    return (
        top in provided
        or top in sys.stdlib_module_names
        or top in _NEWER_STDLIB
        or top.startswith(_BUILD_PROVIDED_PREFIXES)
    )
