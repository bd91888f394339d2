"""``dataflare new``: a plugin, its property tests and a README, from packaged templates.

Processor kinds (filter, map, ...) get a decorated function; ``source`` and
``sink`` get a :class:`dataflare_host.connectors.Source` / ``Sink`` subclass
with declared ``PARAMS`` (connectors are host-side classes: they run natively).
"""

from __future__ import annotations

import keyword
from pathlib import Path

from dataflare import ConfigurationError, PluginKind

__all__ = ["CONNECTOR_KINDS", "new_plugin"]

_TEMPLATES = Path(__file__).with_name("_templates")

CONNECTOR_KINDS = ("source", "sink")
"""The ``--kind`` values that make a connector plugin rather than a processor."""


def new_plugin(name: str, kind: PluginKind | str, directory: Path) -> list[Path]:
    """Write ``NAME.py``, ``test_NAME.py`` and ``README.md`` into ``directory/NAME``.

    ``kind`` is a plugin kind or ``source`` / ``sink``. Refuses names that are
    not Python identifiers and never overwrites a file.
    """
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(
            f"plugin name {name!r} must be a Python identifier (letters, digits, _), "
            "since it names the function and the file"
        )
    connector = str(kind) in CONNECTOR_KINDS
    kind_name = str(kind) if connector else PluginKind(kind).value
    target = directory / name
    files = {
        target / f"{name}.py": _TEMPLATES / f"{kind_name}.py.tmpl",
        target / f"test_{name}.py": _TEMPLATES / f"test_{kind_name}.py.tmpl",
        target / "README.md": _TEMPLATES / ("README_connector.md.tmpl" if connector
                                            else "README.md.tmpl"),
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise ConfigurationError(f"not overwriting {', '.join(existing)}; choose another name")
    target.mkdir(parents=True, exist_ok=True)
    for path, template in files.items():
        text = template.read_text(encoding="utf-8").format(
            name=name, kind=kind_name, title=_class_name(name)
        )
        path.write_text(text, encoding="utf-8")
    return list(files)


def _class_name(name: str) -> str:
    """``my_source`` -> ``MySource``: the class a connector template defines."""
    title = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return title if title.isidentifier() and not keyword.iskeyword(title) else f"Plugin{title}"
