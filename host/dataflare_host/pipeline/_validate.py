"""Every problem of a pipeline file, not only the first (``dataflare validate``).

A run stops at the first problem; ``validate`` goes on and lists them all, in
three rounds, each needing the one before to pass: the YAML's shape (each entry
structured on its own, so a bad key in one does not hide a bad key in another),
the config checks (ids, bounds, plugin paths, connector forms...), then loading
every plugin and connector (each on its own, closed again at once).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from dataflare import ConfigurationError, PluginError
from dataflare_host.connectors import ConnectorRegistry
from dataflare_host.pipeline._assemble import build_connector, load_processor
from dataflare_host.pipeline._config import (
    ConnectorEntry,
    PipelineConfig,
    ProcessorEntry,
    check_connector_form,
    check_processor,
    load_pipeline_config,
    pipeline_problems,
)
from dataflare_host.pipeline._design_names import ConnectorRole
from dataflare_host.pipeline._runner import Pipeline
from dataflare_host.pipeline._structure import structure_at
from dataflare_host.pipeline._yaml import LocatedYaml, load_located

__all__ = ["Validation", "validate_pipeline"]


@attrs.frozen
class Validation:
    """A loaded pipeline (when there is no problem) or every problem found."""

    pipeline: Pipeline | None
    problems: list[PluginError]


def validate_pipeline(path: Path, registry: ConnectorRegistry | None = None) -> Validation:
    """Load the pipeline in ``path``; on failure, find every problem it has."""
    try:
        config, doc = load_pipeline_config(path)
    except ConfigurationError as first:
        found = _config_problems(path, registry)
        # One problem: the run's own message for it (the whole-file check words some
        # problems better than the entry-by-entry one).
        return Validation(None, found if len(found) > 1 else [first])
    try:
        return Validation(Pipeline(config, doc, registry), [])
    except PluginError as first:
        return Validation(None, _load_problems(config, doc, registry) or [first])


def _config_problems(path: Path, registry: ConnectorRegistry | None) -> list[PluginError]:
    """The shape's problems, entry by entry, with what the entries that have the right
    shape get wrong on their own; when the whole shape is right, the config checks'."""
    try:
        doc = load_located(path)
    except ConfigurationError as exc:
        return [exc]
    if not isinstance(doc.data, dict):
        return []  # load_pipeline_config's own error says it
    problems: list[PluginError] = []
    lists: dict[str, type] = {
        "sources": ConnectorEntry,
        "processors": ProcessorEntry,
        "sinks": ConnectorEntry,
    }
    rest: dict[str, Any] = {k: v for k, v in doc.data.items() if k not in lists}
    for group, entry_type in lists.items():
        if group not in doc.data:
            continue  # processors: may be left out; sources: and sinks: were checked
        entries = doc.data[group]
        if not isinstance(entries, list):
            rest[group] = entries  # the whole-file structuring says what is wrong
            continue
        rest[group] = []
        for index, entry in enumerate(entries):
            try:
                shaped: ConnectorEntry | ProcessorEntry = structure_at(
                    doc, entry, entry_type, (group, index)
                )
            except ConfigurationError as exc:
                problems.append(exc)
                continue
            problems.extend(_entry_problems(shaped, doc, (group, index), registry))
    try:
        structure_at(doc, rest, PipelineConfig, ())
    except ConfigurationError as exc:
        problems.append(exc)
    else:
        if all(isinstance(doc.data.get(group), list) for group in lists if group in doc.data):
            try:  # every entry has its shape: the checks across entries can run too
                config = structure_at(doc, doc.data, PipelineConfig, ())
            except ConfigurationError:
                pass
            else:
                problems.extend(pipeline_problems(config, doc))
    return sorted(problems, key=_line)


def _line(problem: PluginError) -> int:
    """The file line a problem names (``file:LINE: ...``), to list them in file order."""
    match = re.match(r"[^:]*:(\d+): ", str(problem))
    return int(match.group(1)) if match else 0


def _entry_problems(
    entry: ConnectorEntry | ProcessorEntry,
    doc: LocatedYaml,
    where: tuple[str | int, ...],
    registry: ConnectorRegistry | None,
) -> list[PluginError]:
    """What one well-shaped entry gets wrong on its own: a processor's settings, or a
    connector's form and settings (built, not connected)."""
    try:
        if isinstance(entry, ProcessorEntry):
            check_processor(entry.config, doc, (*where, "config"))
            return []
        role: ConnectorRole = "source" if where[0] == "sources" else "sink"
        check_connector_form(entry.config, role, doc, (*where, "config"))
        registry = registry or ConnectorRegistry.from_entry_points()
        build_connector(entry, doc, where, registry, role).close()
    except PluginError as exc:
        return [exc]
    return []


def _load_problems(
    config: PipelineConfig, doc: LocatedYaml, registry: ConnectorRegistry | None
) -> list[PluginError]:
    """Each plugin and connector loaded on its own (and closed): every one that fails."""
    registry = registry or ConnectorRegistry.from_entry_points()
    problems: list[PluginError] = []
    connectors: list[tuple[ConnectorEntry, tuple[str | int, ...], ConnectorRole]] = [
        *((e, ("sources", i), "source") for i, e in enumerate(config.sources)),
        *((e, ("sinks", i), "sink") for i, e in enumerate(config.sinks)),
    ]
    if config.dead_letter is not None:
        connectors.append((config.dead_letter, ("dead_letter",), "sink"))
    for entry, where, role in connectors:
        try:
            build_connector(entry, doc, where, registry, role).close()
        except PluginError as exc:
            problems.append(exc)
    for index, processor in enumerate(config.processors):
        try:
            load_processor(processor, doc, index).plugin.close()
        except PluginError as exc:
            problems.append(exc)
    return problems
