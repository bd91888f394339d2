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


def file_pipeline(
    name: str,
    processor_id: str,
    processor: dict[str, Any],
    *,
    source_id: str = "in",
    source: str = "in.jsonl",
    timestamp_field: str | None = None,
    dead_letter_file: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A pipeline document: the file ``source`` -> ``processor`` (its ``config:``) ->
    out.jsonl; with ``dead_letter_file``, failed records go to that file (stage id ``failed``).
    ``top`` adds top-level keys (``batch``, ``checkpoint`` ...)."""
    connection: dict[str, Any] = {"path": source}
    if timestamp_field is not None:
        connection["timestamp_field"] = timestamp_field
    document: dict[str, Any] = {
        "name": name,
        **top,
        "sources": [
            {
                "id": source_id,
                "type": "plugin",
                "config": {"plugin_type": "file", "connection": connection},
            }
        ],
        "processors": [{"id": processor_id, "type": "plugin", "config": processor}],
        "sinks": [
            {
                "id": "out",
                "type": "plugin",
                "config": {"plugin_type": "file", "connection": {"path": "out.jsonl"}},
            }
        ],
    }
    if dead_letter_file is not None:
        document["dead_letter"] = {
            "id": "failed",
            "type": "plugin",
            "config": {"plugin_type": "file", "connection": {"path": dead_letter_file}},
        }
    return document
