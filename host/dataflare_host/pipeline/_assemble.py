"""Turning a checked pipeline config into live plugins and connectors.

Everything that can be wrong with a file, a kind, a parameter or a connector
setting is reported here, before any record moves, with the YAML location.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from dataflare import ConfigurationError, PluginError
from dataflare.runtime import did_you_mean, window_from_mapping
from dataflare_host.connectors import (
    ConnectorRegistry,
    Sink,
    Source,
    resolve_connector_params,
)
from dataflare_host.pipeline._config import (
    ConnectorEntry,
    ProcessorConfig,
    ProcessorEntry,
    plugin_path_of,
)
from dataflare_host.pipeline._design_names import ConnectorRole, processor_kind
from dataflare_host.pipeline._structure import structure_at
from dataflare_host.pipeline._yaml import LocatedYaml
from dataflare_host.plugins import Plugin, load_plugin
from dataflare_host.plugins._chain import Chain
from dataflare_host.plugins._native import plugin_digest

__all__ = [
    "ProcessorStage",
    "build_connector",
    "chain_of",
    "fingerprint",
    "load_processor",
    "prestart_sandbox_for",
    "release_processors",
]


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
    """The content hash hot reload compares (None when the file cannot be read).

    A package folder's hash covers every module in it.
    """
    try:
        if file.is_dir():
            return plugin_digest(file)
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except (OSError, ConfigurationError):
        return None


def _setting_path(setting: str) -> tuple[str, ...]:
    # "params.needle" -> ("params", "needle"): settings name nested keys with dots.
    return tuple(setting.split(".", 1)) if setting.startswith("params.") else (setting,)


_PIN = re.compile(r"(?:sha256:)?([0-9a-f]{64})\Z")


def _check_pin(
    pin: str, file: Path | None, doc: LocatedYaml, where: tuple[str | int, ...]
) -> None:
    """Refuse a plugin file whose bytes are not the ones ``sha256:`` pins."""
    match = _PIN.match(pin.strip().lower())
    if match is None:
        raise doc.error(where, f"{pin!r} is not sha256:<64 hex digits>")
    if file is None:
        raise doc.error(where, "pins plugin_path's content, but this processor has no plugin_path")
    try:
        actual = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as exc:
        raise doc.error(where, f"cannot read {file} to check its pin: {exc.strerror}") from exc
    if actual != match.group(1):
        raise doc.error(
            where,
            f"{file} has sha256:{actual}, not the pinned sha256:{match.group(1)}; the file "
            "changed: if that is intended, update the pin",
        )


def prestart_sandbox_for(processors: Sequence[ProcessorEntry]) -> None:
    """Start a sandbox process now if a processor runs as WASM.

    It boots (Python and wasmtime, slow to start) on another core while this process
    builds the connectors and imports the WASM backend; the first WASM
    processor's instance then runs in it.
    """
    if any(entry.config.plugin_source == "wasm" for entry in processors):
        from dataflare_host.wasm.sandbox.host._process import prestart

        prestart()


def chain_of(processors: Sequence[ProcessorStage]) -> Chain:
    """The processors' plugins as one chain, over the plugins running now.

    ``fail`` stops the chain at a failed record; ``skip`` and ``dead_letter``
    go on past it, and the runner routes what failed.
    """
    return Chain(
        [stage.plugin for stage in processors],
        ["stop" if stage.config.on_error == "fail" else "continue" for stage in processors],
    )


def release_processors(processors: Sequence[ProcessorStage]) -> None:
    """Close the processors' plugins and stop the idle sandbox processes: for a driver
    whose workers load their own. A WASM plugin's instance holds a sandbox process,
    otherwise idle for the whole run."""
    for stage in processors:
        stage.plugin.close()
    sandboxes = sys.modules.get("dataflare_host.wasm.sandbox.host._process")
    if sandboxes is not None:  # imported only once a WASM plugin was loaded
        sandboxes.stop_idle()


def load_processor(entry: ProcessorEntry, doc: LocatedYaml, index: int) -> ProcessorStage:
    """Load a processor's plugin, checking its kind and parameters against the YAML."""
    path: tuple[str | int, ...] = ("processors", index, "config")
    config = entry.config
    base = doc.file.parent
    file = plugin_path_of(base, config.plugin_path) if config.plugin_path is not None else None
    params = dict(config.params)
    if config.window is not None:
        params["dataflare.window"] = window_from_mapping(config.window).to_json()
    reference = file if file is not None else config.plugin_name
    assert reference is not None  # the config check requires one of the two
    if config.sha256 is not None:
        _check_pin(config.sha256, file, doc, (*path, "sha256"))
    try:
        plugin = load_plugin(
            reference,
            params,
            runtime=config.plugin_source,
            sandbox=config.sandbox(),
            base_dir=base,
        )
    except ConfigurationError as exc:
        # The error says which setting is at fault (a parameter, a window...).
        where = (*path, *_setting_path(exc.setting)) if exc.setting else path
        raise doc.error(where, str(exc)) from exc
    except PluginError as exc:
        raise doc.error(path, str(exc)) from exc
    if plugin.kind.value != config.kind:
        plugin.close()
        # Name the type as written (a design name says which kind it stands for).
        written = config.plugin_type
        shown = written if written == config.kind else f"{written} (= {config.kind})"
        raise doc.error(
            (*path, "plugin_type"),
            f"is {shown} but {plugin.origin} holds a {plugin.kind} plugin "
            f"({plugin.name!r}); set plugin_type: {plugin.kind}",
        )
    if config.initial is not None:
        if plugin.kind.value != "aggregate":
            plugin.close()
            raise doc.error((*path, "initial"), "only aggregate processors take an initial")
        plugin.accumulator = config.initial.encode("utf-8")  # a checkpoint restores over it
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


def _unknown_connector(name: str, role: str, registry: ConnectorRegistry) -> str:
    names = registry.source_names() if role == "source" else registry.sink_names()
    message = f"no {role} connector named {name!r}"
    if processor_kind(name) is not None:
        message += f" ({name} is a processor type; this entry is a {role})"
    else:
        message += did_you_mean(name, dict.fromkeys(names))
    return f"{message}; installed: {', '.join(names) or 'none'}"


def build_connector(
    entry: ConnectorEntry,
    doc: LocatedYaml,
    path: tuple[str | int, ...],
    registry: ConnectorRegistry,
    role: ConnectorRole,
    *,
    nested: bool = True,
) -> Source | Sink:
    """Instantiate a source or sink (not yet connected) from its YAML entry.

    Built-ins, entry points and ``plugin_path:`` plugin files take one path:
    the registry finds and checks the class, ``params:`` are checked against
    its ``PARAMS``, ``connection:`` is structured into its ``Config``.
    ``nested`` says the settings sit under ``config:`` at ``path`` (pipelines'
    sources and sinks) rather than directly at ``path`` (a look-back source).
    """
    where: tuple[str | int, ...] = (*path, "config") if nested else path
    config = entry.config
    key = (*where, config.name_key)
    name = config.connector
    cls: Any
    try:
        if config.plugin_path is not None:
            cls = registry.from_file(role, doc.file.parent / config.plugin_path)
        else:
            cls = registry.source(name) if role == "source" else registry.sink(name)
    except PluginError as exc:
        raise doc.error(key, str(exc)) from exc
    if cls is None:
        raise doc.error(key, _unknown_connector(name, role, registry))
    connection = dict(config.connection)
    if "base_dir" in attrs.fields_dict(cls.Config) and "base_dir" not in connection:
        connection["base_dir"] = str(doc.file.parent)
    settings = structure_at(doc, connection, cls.Config, (*where, "connection"))
    try:
        params = resolve_connector_params(cls, config.params, f"{role} {config.connector!r}")
        return cls(settings, params)  # type: ignore[no-any-return]
    except ConfigurationError as exc:
        at = where
        if exc.setting and exc.setting.split(".", 1)[0] == "params":
            at = (*where, *_setting_path(exc.setting))
        elif exc.setting:
            at = (*where, "connection", exc.setting)
        raise doc.error(at, str(exc)) from exc
    except PluginError as exc:
        raise doc.error(where, str(exc)) from exc
