"""Plugins that raise at known lines, flat and as package folders, and a pipeline naming one.

Shared by the native tests (tests/unit/test_located_errors.py) and their WASM
parity (tests/wasm/test_located_errors_wasm.py). Each ``write_*`` returns the
plugin's path and the line of the raising statement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FLAT = '''\
import dataflare


def _amount(text):
    return int(text)  # raises for "x"


@dataflare.map
def parse_amount(record):
    value = _amount(record.value.decode())
    return record.evolve(value=str(value * 2).encode())
'''
FLAT_LINE = 5

INIT = '''\
import dataflare

from . import rules


@dataflare.map
def myplugin(record):
    return record.evolve(value=rules.doubled(record.value))
'''

RULES = '''\
def doubled(value):
    number = int(value.decode())
    if number < 0:
        raise ValueError(f"negative amount {number}")
    return str(number * 2).encode()
'''
RULES_LINE = 4


def write_flat(folder: Path) -> tuple[Path, int]:
    """``parse_amount.py``: raises ValueError in a helper function for a non-number."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "parse_amount.py"
    path.write_text(FLAT)
    return path, FLAT_LINE


def write_package(folder: Path) -> tuple[Path, int]:
    """``myplugin/``: ``__init__.py`` imports ``rules`` relatively; rules raises for a
    negative number."""
    package = folder / "myplugin"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(INIT)
    (package / "rules.py").write_text(RULES)
    return package, RULES_LINE


def write_pipeline(folder: Path, plugin_path: str, lines: list[str], *, wasm: bool) -> Path:
    """``pipeline.yaml`` in ``folder``: ``in.txt`` (``lines``) through the plugin to
    ``out.jsonl``."""
    (folder / "in.txt").write_text("".join(f"{line}\n" for line in lines))
    config: dict[str, Any] = {"plugin_type": "map", "plugin_path": plugin_path}
    if wasm:
        config["plugin_source"] = "wasm"
    document = {
        "name": "authoring",
        "sources": [{"id": "in", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": "in.txt"}}}],
        "processors": [{"id": "proc", "type": "plugin", "config": config}],
        "sinks": [{"id": "out", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": "out.jsonl"}}}],
    }
    file = folder / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file
