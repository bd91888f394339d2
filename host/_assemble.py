"""Turning a checked pipeline config into live plugins and connectors.

Everything that can be wrong with a file, a kind, a parameter or a connector
setting is reported here, before any record moves, with the YAML location.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs

from sdk import ConfigurationError, PluginError, find_plugin

from ._autobuild import component_for
from ._config import ConnectorEntry, ProcessorConfig, ProcessorEntry, window_spec
from ._loader import load_plugin
from ._native import NativePlugin, import_plugin_module
from ._plugin import Plugin
from ._structure import structure_at
from ._wasm import Sandbox
from ._yaml import LocatedYaml
from .connectors import ConnectorRegistry, Sink, Source

__all__ = ["PLUGIN_GROUP", "ProcessorStage", "build_connector", "load_processor"]

PLUGIN_GROUP = "dataflare.plugins"
"""Entry point group where packages register native plugins by name."""


@attrs.define
class ProcessorStage:
    """A processor of a running pipeline: its plugin and what hot reload watches."""

    id: str
    config: ProcessorConfig
    plugin: Plugin
    path: tuple[str | int, ...]
    file: Path | None = None
    fingerprint: str | None = None


def fingerprint(file: Path) -> str | None:
    """The content hash hot reload compares (None when the file cannot be read)."""
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        return None


def _sandbox(config: ProcessorConfig) -> Sandbox:
    return Sandbox(
        time_limit_s=config.time_limit_s,
        memory_limit_bytes=config.memory_limit_mb << 20,
        instances=config.instances,
    )


def _load_by_name(name: str, params: dict[str, str], base: Path) -> Plugin:
    for point in entry_points(group=PLUGIN_GROUP):
        if point.name == name:
            target: Any = point.load()
            namespace = (
                vars(target)
                if hasattr(target, "__dict__") and not callable(target)
                else {name: target}
            )
            return NativePlugin(find_plugin(namespace, f"entry point {point.value}"), params)
    for candidate in (base / f"{name}.py", base / "plugins" / f"{name}.py"):
        if candidate.is_file():
            return NativePlugin(import_plugin_module(candidate), params)
    try:
        return NativePlugin(import_plugin_module(name), params)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"no native plugin named {name!r}: not an entry point in {PLUGIN_GROUP}, "
            f"no {name}.py beside the pipeline file or in its plugins/ directory, "
            "and not an importable module"
        ) from exc


def load_processor(entry: ProcessorEntry, doc: LocatedYaml, index: int) -> ProcessorStage:
    """Load a processor's plugin, checking its kind and parameters against the YAML."""
    path: tuple[str | int, ...] = ("processors", index, "config")
    config = entry.config
    base = doc.file.parent
    file = base / config.plugin_path if config.plugin_path is not None else None
    params = dict(config.params)
    if config.window is not None:
        params["dataflare.window"] = window_spec(config.window).to_json()
    try:
        if file is not None and config.plugin_source == "wasm" and file.suffix == ".py":
            plugin = load_plugin(component_for(file), params, sandbox=_sandbox(config))
        elif file is not None:
            plugin = load_plugin(file, params, sandbox=_sandbox(config))
        else:
            assert config.plugin_name is not None
            plugin = _load_by_name(config.plugin_name, params, base)
    except ConfigurationError as exc:
        where = (*path, "params") if "parameter" in str(exc) else path
        raise doc.error(where, str(exc)) from exc
    except PluginError as exc:
        raise doc.error(path, str(exc)) from exc
    if plugin.kind.value != config.plugin_type:
        plugin.close()
        raise doc.error(
            (*path, "plugin_type"),
            f"is {config.plugin_type} but {plugin.origin} holds a {plugin.kind} plugin "
            f"({plugin.name!r}); set plugin_type: {plugin.kind}",
        )
    if config.look_back is not None and not plugin.has_look_back:
        plugin.close()
        raise doc.error(
            (*path, "look_back"),
            f"{plugin.origin} has no @look_back hook, so look_back: would do nothing",
        )
    return ProcessorStage(
        entry.id,
        config,
        plugin,
        path,
        file,
        fingerprint(file) if file is not None else None,
    )


def build_connector(
    entry: ConnectorEntry,
    doc: LocatedYaml,
    path: tuple[str | int, ...],
    registry: ConnectorRegistry,
    role: str,
    *,
    nested: bool = True,
) -> Source | Sink:
    """Instantiate a source or sink (not yet connected) from its YAML entry.

    ``nested`` says the settings sit under ``config:`` at ``path`` (pipelines'
    sources and sinks) rather than directly at ``path`` (a look-back source).
    """
    where: tuple[str | int, ...] = (*path, "config") if nested else path
    name = entry.config.plugin_type
    try:
        cls: Any = registry.source(name) if role == "source" else registry.sink(name)
    except ConfigurationError as exc:
        raise doc.error((*where, "plugin_type"), str(exc)) from exc
    if cls is None:
        names = registry.source_names() if role == "source" else registry.sink_names()
        raise doc.error(
            (*where, "plugin_type"),
            f"no {role} connector named {name!r}; installed: {', '.join(names) or 'none'}",
        )
    connection = dict(entry.config.connection)
    if "base_dir" in attrs.fields_dict(cls.Config) and "base_dir" not in connection:
        connection["base_dir"] = str(doc.file.parent)
    settings = structure_at(doc, connection, cls.Config, (*where, "connection"))
    try:
        return cls(settings, entry.config.params)  # type: ignore[no-any-return]
    except ConfigurationError as exc:
        at = (*where, "connection", exc.setting) if exc.setting else where
        raise doc.error(at, str(exc)) from exc
    except PluginError as exc:
        raise doc.error(where, str(exc)) from exc
