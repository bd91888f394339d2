"""Pipeline files written by tests that are about something else than the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_one_processor_pipeline(path: Path, processor: dict[str, Any]) -> Path:
    """A pipeline file at ``path``: one generated record -> ``processor`` (its ``config:``)
    -> stdout. For tests about loading one plugin, not about moving records."""
    doc = {
        "sources": [
            {
                "id": "in",
                "type": "plugin",
                "config": {"plugin_type": "generator", "connection": {"count": 1}},
            }
        ],
        "processors": [{"id": "p", "type": "plugin", "config": processor}],
        "sinks": [{"id": "out", "type": "plugin", "config": {"plugin_type": "stdout"}}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
