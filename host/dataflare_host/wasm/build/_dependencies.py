"""A plugin package's own pure-Python dependencies, bundled from this environment.

A plugin folder declares them the standard way, in ``[project] dependencies``
of a ``pyproject.toml`` beside its ``__init__.py``. ``dataflare build`` copies
each installed distribution's files (as its RECORD lists them, through
:mod:`importlib.metadata`) into the component, with the distributions they
require in turn: nothing is downloaded at build time. The guest is CPython
compiled to WebAssembly and cannot load a C extension, so a distribution with
``.so``/``.pyd`` files is refused with one line naming it.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath

from dataflare import ConfigurationError

__all__ = ["PROJECT_FILE", "bundled_files", "declared_dependencies"]

PROJECT_FILE = "pyproject.toml"
"""Where a plugin folder declares its dependencies (``[project] dependencies``)."""

# Staged for every component already (the SDK needs them), at the host's version.
_ALWAYS_STAGED = {"attrs", "dataflare-plugins"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_COMPILED = (".so", ".pyd", ".dylib", ".dll")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_dependencies(folder: Path) -> list[str]:
    """The requirement strings of ``folder/pyproject.toml`` (none without the file)."""
    project_file = folder / PROJECT_FILE
    if not project_file.is_file():
        return []
    try:
        project = tomllib.loads(project_file.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{project_file} cannot be read as TOML: {exc}") from exc
    requirements = project.get("dependencies", []) if isinstance(project, dict) else []
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        raise ConfigurationError(
            f"{project_file}: [project] dependencies must be a list of requirement strings"
        )
    return list(requirements)


def _split(requirement: str, origin: str) -> tuple[str, str]:
    """The distribution name and the environment marker (after ``;``) of a requirement."""
    match = _NAME.match(requirement)
    if match is None:
        raise ConfigurationError(f"{origin}: {requirement!r} is not a requirement (e.g. 'six')")
    _, _, marker = requirement.partition(";")
    return match.group(1), marker.strip()


def _files(dist: Distribution, name: str, origin: str) -> list[tuple[Path, PurePosixPath]]:
    listed = dist.files
    if listed is None:
        raise ConfigurationError(
            f"{origin}: dependency {name!r} cannot be bundled: its installation lists no "
            "files (no RECORD); reinstall it with pip"
        )
    compiled = [str(f) for f in listed if f.name.endswith(_COMPILED) or ".so." in f.name]
    if compiled:
        raise ConfigurationError(
            f"{origin}: dependency {name!r} cannot go into a WASM component: it has compiled "
            f"C extensions ({', '.join(sorted(compiled)[:2])}) and the guest runs pure Python "
            "only; use a pure-Python package, or run this plugin natively"
        )
    chosen: list[tuple[Path, PurePosixPath]] = []
    for entry in listed:
        relative = PurePosixPath(str(entry))
        # Metadata, byte code and scripts outside site-packages do not run in the guest.
        if (
            relative.parts[0] == ".."
            or relative.parts[0].endswith((".dist-info", ".egg-info"))
            or "__pycache__" in relative.parts
            or relative.suffix not in (".py", ".typed")
        ):
            continue
        chosen.append((Path(str(dist.locate_file(entry))), relative))
    if not chosen:
        raise ConfigurationError(
            f"{origin}: dependency {name!r} has no Python files to bundle (is it an editable "
            "install?); install it normally with pip"
        )
    return chosen


def bundled_files(requirements: list[str], origin: str) -> list[tuple[Path, PurePosixPath]]:
    """Every file the ``requirements`` (and what they require) put on the guest's path.

    Each entry is (installed file, path inside the component). ``origin`` names
    the declaring file in messages. Raises :class:`ConfigurationError` for a
    dependency that is not installed here or that has C extensions.
    """
    files: dict[PurePosixPath, Path] = {}
    seen: set[str] = set()
    pending = [(requirement, origin, True) for requirement in requirements]
    while pending:
        requirement, wanted_by, declared = pending.pop(0)
        name, marker = _split(requirement, wanted_by)
        key = _normalised(name)
        if key in seen or key in _ALWAYS_STAGED or "extra" in marker:
            continue
        seen.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            if marker and not declared:
                continue  # most likely excluded by its marker for this Python
            raise ConfigurationError(
                f"{wanted_by}: dependency {name!r} is not installed in this environment; "
                f"install it (pip install {name}): the build bundles it from here and "
                "never downloads"
            ) from None
        for source, relative in _files(dist, name, wanted_by):
            files[relative] = source
        requirer = f"{origin} (through {name})"
        pending.extend((r, requirer, False) for r in dist.requires or [])
    return sorted(((source, relative) for relative, source in files.items()), key=lambda f: f[1])
