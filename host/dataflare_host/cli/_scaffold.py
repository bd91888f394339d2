"""``dataflare new``: a plugin, its property tests and a README, from packaged templates."""

from __future__ import annotations

import keyword
from pathlib import Path

from dataflare import ConfigurationError, PluginKind

__all__ = ["new_plugin"]

_TEMPLATES = Path(__file__).with_name("_templates")


def new_plugin(name: str, kind: PluginKind | str, directory: Path) -> list[Path]:
    """Write ``NAME.py``, ``test_NAME.py`` and ``README.md`` into ``directory/NAME``.

    Refuses names that are not Python identifiers and never overwrites a file.
    """
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(
            f"plugin name {name!r} must be a Python identifier (letters, digits, _), "
            "since it names the function and the file"
        )
    kind = PluginKind(kind)
    target = directory / name
    files = {
        target / f"{name}.py": _TEMPLATES / f"{kind.value}.py.tmpl",
        target / f"test_{name}.py": _TEMPLATES / f"test_{kind.value}.py.tmpl",
        target / "README.md": _TEMPLATES / "README.md.tmpl",
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise ConfigurationError(f"not overwriting {', '.join(existing)}; choose another name")
    target.mkdir(parents=True, exist_ok=True)
    for path, template in files.items():
        text = template.read_text(encoding="utf-8").format(name=name, kind=kind.value)
        path.write_text(text, encoding="utf-8")
    return list(files)
