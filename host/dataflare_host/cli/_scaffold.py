"""``dataflare new``: a plugin, its property tests and a README, from packaged templates.

Processor kinds (filter, map, ...) get a decorated function with declared
parameters and an ``@init`` hook, in one of two shapes: ``json`` (the values are
JSON objects shaped like the ``generator`` source's, and the generated tests feed
such objects, so native == WASM is compared on records the plugin really
processes, not on bytes both runtimes refuse alike) or ``bytes``. ``source`` and
``sink`` get a :class:`dataflare_host.connectors.Source` / ``Sink`` subclass
with declared ``PARAMS`` (connectors are host-side classes: they run natively).
"""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Literal

from dataflare import ConfigurationError, PluginKind

__all__ = ["CONNECTOR_KINDS", "SHAPES", "Shape", "new_plugin"]

_TEMPLATES = Path(__file__).with_name("_templates")

CONNECTOR_KINDS = ("source", "sink")
"""The ``--kind`` values that make a connector plugin rather than a processor."""

Shape = Literal["json", "bytes"]
SHAPES: tuple[Shape, ...] = ("json", "bytes")
"""What a processor template's record values are (``--shape``); the first is the default."""

# What the generated README tries the plugin on: an input and its -e parameters.
_JSON_SAMPLE = '{"id":1,"status":"active","name":"user-000001","amount":42,"tags":["a","b"]}'
_TRY: dict[tuple[Shape, str], tuple[str, str]] = {
    ("json", "filter"): (_JSON_SAMPLE, " -e min=10"),
    ("json", "map"): (_JSON_SAMPLE, " -e threshold=40"),
    ("json", "filter_map"): (_JSON_SAMPLE, " -e fields=id,name"),
    ("json", "array_map"): (_JSON_SAMPLE, " -e field=tags"),
    ("json", "aggregate"): (_JSON_SAMPLE, " -e field=amount"),
    ("bytes", "filter"): ("an error", " -e needle=error"),
    ("bytes", "map"): ("some input", " -e 'prefix=> '"),
    ("bytes", "filter_map"): ("21", " -e factor=3"),
    ("bytes", "array_map"): ("a,b,c", " -e separator=,"),
    ("bytes", "aggregate"): ("an error", " -e needle=error"),
}
_SHAPE_NOTES: dict[Shape, str] = {
    "json": (
        "JSON objects, shaped like the `generator`\nsource's (`id`, `status`, `name`, "
        "`amount`, `tags`). Its tests generate such objects,\nso native == WASM is "
        "compared on records it really processes."
    ),
    "bytes": "raw byte values.",
}


def new_plugin(
    name: str,
    kind: PluginKind | str,
    directory: Path,
    shape: Shape | None = None,
    *,
    partitioned: bool = False,
) -> list[Path]:
    """Write ``NAME.py``, ``test_NAME.py`` and ``README.md`` into ``directory/NAME``.

    ``kind`` is a plugin kind or ``source`` / ``sink``; ``shape`` (processor
    kinds only; default ``json``) what the plugin's values are; ``partitioned``
    (sources only) a source whose partitions workers can read. Refuses names
    that are not Python identifiers and never overwrites a file.
    """
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(
            f"plugin name {name!r} must be a Python identifier (letters, digits, _), "
            "since it names the function and the file"
        )
    connector = str(kind) in CONNECTOR_KINDS
    kind_name = str(kind) if connector else PluginKind(kind).value
    if connector and shape is not None:
        raise ConfigurationError(
            f"--shape applies to processor kinds; a {kind_name} makes or takes records "
            "itself: leave --shape out"
        )
    if partitioned and kind_name != "source":
        raise ConfigurationError(
            f"--partitioned applies to --kind source; a {kind_name} has no partitions to read"
        )
    if shape is not None and shape not in SHAPES:
        raise ConfigurationError(f"--shape {shape!r}: choose one of {', '.join(SHAPES)}")
    shape = shape or SHAPES[0]
    stem = kind_name if connector or shape == "bytes" else f"{kind_name}_json"
    if partitioned:
        stem = "source_partitioned"
    target = directory / name
    readme = "README_connector.md.tmpl" if connector else "README.md.tmpl"
    files = {
        target / f"{name}.py": _TEMPLATES / f"{stem}.py.tmpl",
        target / f"test_{name}.py": _TEMPLATES / f"test_{stem}.py.tmpl",
        target / "README.md": _TEMPLATES / readme,
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise ConfigurationError(f"not overwriting {', '.join(existing)}; choose another name")
    sample, params = _TRY.get((shape, kind_name), ("", ""))
    fields = {
        "name": name,
        "kind": kind_name,
        "title": _class_name(name),
        "sample": sample,
        "params": params,
        "shape_note": _SHAPE_NOTES[shape],
    }
    target.mkdir(parents=True, exist_ok=True)
    for path, template in files.items():
        path.write_text(template.read_text(encoding="utf-8").format(**fields), encoding="utf-8")
    return list(files)


def _class_name(name: str) -> str:
    """``my_source`` -> ``MySource``: the class a connector template defines."""
    title = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return title if title.isidentifier() and not keyword.iskeyword(title) else f"Plugin{title}"
