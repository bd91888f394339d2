"""The pipeline YAML: attrs classes, structured by cattrs, validated before anything runs.

.. code-block:: yaml

    name: demo
    batch: {size: 500, linger_ms: 200}
    checkpoint: {path: .dataflare/demo.checkpoint.json}
    sources:
      - id: events
        type: plugin
        config:
          plugin_type: source          # the design's form: family + connector name
          plugin_name: file            # a registered source connector
          connection: {path: data/events.jsonl}
    processors:
      - id: active
        type: plugin
        config:
          plugin_type: filter          # the kind the plugin must be (transform = map)
          plugin_source: wasm
          plugin_path: build/json_field_filter.wasm
          params: {field: status, value: active}
          on_error: skip               # fail | skip | dead_letter
    sinks:
      - id: out
        type: plugin
        config:
          plugin_type: file            # the short form: the connector name alone
          connection: {path: out/active.jsonl}

The design's names and the engine's are translated in one place,
:mod:`dataflare_host.pipeline._design_names`. Every error names the file, the
line and the YAML path of what is wrong, with the key the user wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs

from dataflare import ConfigurationError
from dataflare.runtime import window_from_mapping
from dataflare_host.pipeline._design_names import (
    CONNECTOR_FAMILIES,
    ConnectorRole,
    PluginKindName,
    processor_kind,
    unknown_processor_type,
)
from dataflare_host.pipeline._structure import structure_at
from dataflare_host.pipeline._workers_setting import parse_workers
from dataflare_host.pipeline._yaml import LocatedYaml, load_located
from dataflare_host.wasm.sandbox.host._limits import SandboxLimits

__all__ = [
    "BatchSettings",
    "CheckpointSettings",
    "ConnectorConfig",
    "ConnectorEntry",
    "ErrorPolicy",
    "LookBackConfig",
    "PipelineConfig",
    "ProcessorConfig",
    "ProcessorEntry",
    "check_connector_form",
    "check_processor",
    "config_problems",
    "pipeline_problems",
    "load_pipeline_config",
    "plugin_path_of",
]

MAX_BATCH_SIZE = 1_000_000
"""Largest ``batch.size`` a pipeline accepts."""

ErrorPolicy = Literal["fail", "skip", "dead_letter"]


@attrs.frozen
class BatchSettings:
    """How records are grouped: at most ``size`` per batch, waiting at most ``linger_ms``.

    ``queue_batches`` bounds how many read batches wait for processing: the
    backpressure that keeps memory flat when a sink is slow.
    """

    size: int = 500
    linger_ms: int = 200
    queue_batches: int = 4


@attrs.frozen
class CheckpointSettings:
    """Where source positions and aggregate state are saved, and how often.

    ``path`` is relative to the pipeline file (default
    ``.dataflare/<name>.checkpoint.json`` beside it).
    """

    path: str | None = None
    interval_ms: int = 1000


@attrs.frozen
class ConnectorConfig:
    """``config:`` of a source or sink: the connector's name and its settings.

    The design's form is ``plugin_type: source`` (or ``sink``) with
    ``plugin_name: <connector>`` or ``plugin_path: <file.py>`` (a source or
    sink plugin); the short forms ``plugin_type: <connector>`` and
    ``plugin_path:`` alone mean the same. :attr:`connector` names the connector
    either way, and :attr:`name_key` the key that named it (so errors point at
    what was written).
    """

    plugin_type: str | None = None
    plugin_name: str | None = None
    plugin_path: str | None = None
    connection: dict[str, Any] = attrs.Factory(dict)
    params: dict[str, str] = attrs.Factory(dict)

    @property
    def design_form(self) -> bool:
        """True when written as ``plugin_type: source|sink`` + ``plugin_name:``/``plugin_path:``."""
        return self.plugin_type in CONNECTOR_FAMILIES

    @property
    def connector(self) -> str:
        """The connector name: ``plugin_name``, the short form's ``plugin_type``, or the file."""
        if self.plugin_path is not None:
            return self.plugin_path
        if self.design_form and self.plugin_name is not None:
            return self.plugin_name
        return self.plugin_type or ""

    @property
    def name_key(self) -> str:
        """The YAML key that names the connector in this entry."""
        if self.plugin_path is not None:
            return "plugin_path"
        return "plugin_name" if self.design_form else "plugin_type"


@attrs.frozen
class LookBackConfig:
    """``look_back:`` of a processor: warm its ``@look_back`` hook up before the run.

    Reads ``source`` from its beginning up to where it is caught up, and gives
    the hook the ``last`` N records, or those whose timestamp is at most
    ``age_ms`` old. Runs only when the checkpoint holds no state for the
    processor (checkpointed state is exact; look-back rebuilds it).
    """

    source: ConnectorConfig
    """A source connector, as under ``sources:`` (``plugin_type``, ``connection``)."""
    last: int | None = None
    age_ms: int | None = None


@attrs.frozen
class ProcessorConfig:
    """``config:`` of a processor: which plugin, its parameters, its error policy.

    Give either ``plugin_name`` (a native plugin: an entry point in
    ``dataflare.plugins``, a ``NAME.py`` beside the pipeline file or in its
    ``plugins/`` directory, or an importable module) or ``plugin_path`` (a ``.py`` file or a
    package folder, its ``__init__.py`` standing for it; with ``plugin_source: wasm`` also a
    ``.wasm`` component: a ``.py`` file or a folder is built into one on first use and
    cached by content).
    """

    plugin_type: str
    """A plugin kind, or its design name (``transform`` = ``map``); see :attr:`kind`."""
    plugin_name: str | None = None
    plugin_source: Literal["native", "wasm"] = "native"
    plugin_path: str | None = None
    sha256: str | None = None
    """Pins ``plugin_path``'s content (``sha256:<64 hex digits>``): any other bytes are
    refused, at load and at hot reload (like Extism's manifest hash)."""
    params: dict[str, str] = attrs.Factory(dict)
    on_error: ErrorPolicy = "fail"
    time_limit_s: float = 10.0
    memory_limit_mb: int = 512
    instances: int = 1
    hot_reload: bool = True
    window: dict[str, Any] | None = None
    """Overrides an aggregate's window: ``type`` tumbling or sliding, ``size_ms``,
    ``step_ms`` (sliding), ``lateness_ms``, ``late`` (error or drop); see
    :func:`dataflare.runtime.window_from_mapping`."""
    initial: str | None = None
    """Overrides an aggregate's starting accumulator (UTF-8 text), like Fluvio's
    ``--aggregate-initial``; a checkpointed state still wins."""
    look_back: LookBackConfig | None = None
    # -- scaling out (see dataflare_host.pipeline.engines) --
    workers: str | None = None
    """This processor's worker count: ``1`` keeps it in one worker; more raises the pool."""
    partition_by: Literal["key"] | None = None
    """``key``: spread a stateful processor by record key (one accumulator per key)."""
    stateful: bool | None = None
    """True: the plugin keeps state across records, so it never spreads unless partitioned."""

    @property
    def kind(self) -> PluginKindName:
        """The plugin kind ``plugin_type`` means (checked when the file is loaded)."""
        kind = processor_kind(self.plugin_type)
        if kind is None:
            raise ConfigurationError(unknown_processor_type(self.plugin_type))
        return kind

    def sandbox(self) -> SandboxLimits:
        """The processor's WASM limits (raises ConfigurationError naming the setting)."""
        return SandboxLimits(
            time_limit_s=self.time_limit_s,
            memory_limit_mb=self.memory_limit_mb,
            instances=self.instances,
        )


@attrs.frozen
class ConnectorEntry:
    """One entry of ``sources:``, ``sinks:`` or ``dead_letter:``."""

    id: str
    type: Literal["plugin"]
    config: ConnectorConfig


@attrs.frozen
class ProcessorEntry:
    """One entry of ``processors:``."""

    id: str
    type: Literal["plugin"]
    config: ProcessorConfig


@attrs.frozen
class PipelineConfig:
    """A whole pipeline file."""

    sources: list[ConnectorEntry]
    sinks: list[ConnectorEntry]
    processors: list[ProcessorEntry] = attrs.Factory(list)
    name: str = "pipeline"
    batch: BatchSettings = BatchSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    dead_letter: ConnectorEntry | None = None
    # -- scaling out (see dataflare_host.pipeline.engines) --
    workers: str = "1"
    """Worker processes running the processor chain: a count, or ``auto`` (the cores)."""
    engine: Literal["local", "ray"] = "local"
    """Where the workers run: processes on this machine, or Ray actors."""
    address: str | None = None
    """The Ray cluster to join (``engine: ray``); none starts a local one."""
    delivery: Literal["at_least_once", "exactly_once"] = "at_least_once"
    """``exactly_once``: the sink commits its output and the source's positions in one
    transaction (Kafka to Kafka); see :mod:`dataflare_host.pipeline._delivery`."""


def load_pipeline_config(path: str | Path) -> tuple[PipelineConfig, LocatedYaml]:
    """Parse and check the shape of a pipeline file (plugins are checked when loaded)."""
    doc = load_located(Path(path))
    if not isinstance(doc.data, dict):
        raise doc.error((), "a pipeline file must be a mapping with sources:, processors:, sinks:")
    for required in ("sources", "sinks"):
        if required not in doc.data:
            raise doc.error((), f"missing {required}: (at least one entry)")
    config = structure_at(doc, doc.data, PipelineConfig, ())
    _check(config, doc)
    return config, doc


def _check(config: PipelineConfig, doc: LocatedYaml) -> None:
    problems = config_problems(config, doc)
    if problems:
        raise problems[0]


def config_problems(config: PipelineConfig, doc: LocatedYaml) -> list[ConfigurationError]:
    """Every problem of a structured config, in file order of the checks (``validate``
    lists them all; a run stops at the first)."""
    problems: list[ConfigurationError] = []
    attempt = _collecting(problems)
    attempt(_check_ids, config, doc)
    attempt(_check_bounds, config, doc)
    attempt(_check_address, config, doc)
    for index, processor in enumerate(config.processors):
        attempt(check_processor, processor.config, doc, ("processors", index, "config"))
    roles: list[tuple[tuple[str | int, ...], ConnectorConfig, ConnectorRole]] = [
        *((("sources", i, "config"), e.config, "source") for i, e in enumerate(config.sources)),
        *((("sinks", i, "config"), e.config, "sink") for i, e in enumerate(config.sinks)),
    ]
    if config.dead_letter is not None:
        roles.append((("dead_letter", "config"), config.dead_letter.config, "sink"))
    for where, connector, role in roles:
        attempt(check_connector_form, connector, role, doc, where)
    problems.extend(_across_entries(config, doc))
    return problems


def pipeline_problems(config: PipelineConfig, doc: LocatedYaml) -> list[ConfigurationError]:
    """The problems no single entry has alone: ids used twice, bounds, look-back sources,
    worker counts, a dead-letter policy without a dead-letter sink."""
    problems: list[ConfigurationError] = []
    attempt = _collecting(problems)
    attempt(_check_ids, config, doc)
    attempt(_check_bounds, config, doc)
    attempt(_check_address, config, doc)
    return problems + _across_entries(config, doc)


def _collecting(problems: list[ConfigurationError]) -> Callable[..., None]:
    """A runner of checks that adds each one's ConfigurationError to ``problems``."""

    def attempt(check: Callable[..., object], *args: Any) -> None:
        try:
            check(*args)
        except ConfigurationError as exc:
            problems.append(exc)

    return attempt


def _across_entries(config: PipelineConfig, doc: LocatedYaml) -> list[ConfigurationError]:
    problems: list[ConfigurationError] = []

    def attempt(check: Any, *args: Any) -> None:
        try:
            check(*args)
        except ConfigurationError as exc:
            problems.append(exc)

    roles: list[tuple[tuple[str | int, ...], ConnectorConfig, ConnectorRole]] = []
    for index, processor in enumerate(config.processors):
        if processor.config.look_back is not None:
            at: tuple[str | int, ...] = ("processors", index, "config", "look_back", "source")
            roles.append((at, processor.config.look_back.source, "source"))
    for where, connector, role in roles:
        attempt(check_connector_form, connector, role, doc, where)
    attempt(_check_scaling, config, doc)
    attempt(_check_dead_letter, config, doc)
    return problems


def _check_ids(config: PipelineConfig, doc: LocatedYaml) -> None:
    seen: dict[str, tuple[str | int, ...]] = {}
    groups: list[tuple[str, list[Any]]] = [
        ("sources", config.sources),
        ("processors", config.processors),
        ("sinks", config.sinks),
    ]
    if not config.sources:
        raise doc.error(("sources",), "needs at least one source")
    if not config.sinks:
        raise doc.error(("sinks",), "needs at least one sink")
    for group, entries in groups:
        for index, entry in enumerate(entries):
            path = (group, index, "id")
            if entry.id in seen:
                raise doc.error(
                    path,
                    f"id {entry.id!r} is already used at line "
                    f"{doc.line_of(seen[entry.id])}; ids must be unique",
                )
            seen[entry.id] = path
    if config.dead_letter is not None and config.dead_letter.id in seen:
        raise doc.error(
            ("dead_letter", "id"),
            f"id {config.dead_letter.id!r} is already used at line "
            f"{doc.line_of(seen[config.dead_letter.id])}; ids must be unique",
        )


def _check_bounds(config: PipelineConfig, doc: LocatedYaml) -> None:
    # Bounds, not just signs: a batch of a billion records is a memory bomb that
    # fails minutes later; say so before anything runs.
    for where, value, low, high in (
        (("batch", "size"), config.batch.size, 1, MAX_BATCH_SIZE),
        (("batch", "queue_batches"), config.batch.queue_batches, 1, 1_000),
        (("batch", "linger_ms"), config.batch.linger_ms, 0, 3_600_000),
        (("checkpoint", "interval_ms"), config.checkpoint.interval_ms, 1, 86_400_000),
    ):
        if not low <= value <= high:
            raise doc.error(where, f"must be from {low:,} to {high:,}, got {value:,}")


def _check_address(config: PipelineConfig, doc: LocatedYaml) -> None:
    # Only Ray joins a cluster: with local workers an address would be ignored in
    # silence, and the run would not be where its author thinks.
    if config.address is not None and config.engine != "ray":
        raise doc.error(
            ("address",),
            f"is the Ray cluster to join, but engine: is {config.engine}; set engine: ray "
            "or remove address:",
        )


def _check_dead_letter(config: PipelineConfig, doc: LocatedYaml) -> None:
    needs = [i for i, p in enumerate(config.processors) if p.config.on_error == "dead_letter"]
    if needs and config.dead_letter is None:
        raise doc.error(
            ("processors", needs[0], "config", "on_error"),
            "is dead_letter but the pipeline has no dead_letter: sink; add one",
        )


def check_connector_form(
    config: ConnectorConfig, role: ConnectorRole, doc: LocatedYaml, path: tuple[str | int, ...]
) -> None:
    """Check ``plugin_type``/``plugin_name``/``plugin_path`` of a source or sink entry."""
    family = CONNECTOR_FAMILIES.get(config.plugin_type or "")
    group = "sources:" if role == "source" else "sinks: (or dead_letter:)"
    if config.plugin_type is None:
        if config.plugin_path is None:
            raise doc.error(
                (*path, "plugin_type"),
                f"required key missing: plugin_type: {role} with plugin_name: <connector> "
                f"or plugin_path: <{role} plugin .py>",
            )
        if config.plugin_name is not None:
            raise doc.error(path, "give exactly one of plugin_name or plugin_path (got both)")
    elif family is not None and family != role:
        raise doc.error(
            (*path, "plugin_type"),
            f"is {config.plugin_type}, but this entry is a {role} (under {group}); "
            f"set plugin_type: {role}",
        )
    elif family is not None:
        if config.plugin_name is not None and config.plugin_path is not None:
            raise doc.error(path, "give exactly one of plugin_name or plugin_path (got both)")
        if config.plugin_name is None and config.plugin_path is None:
            raise doc.error(
                (*path, "plugin_type"),
                f"is {role}, so plugin_name: must name the {role} connector (e.g. file, "
                f"postgres), or plugin_path: a {role} plugin file",
            )
    elif config.plugin_name is not None or config.plugin_path is not None:
        key = "plugin_name" if config.plugin_name is not None else "plugin_path"
        if processor_kind(config.plugin_type) is not None:
            raise doc.error(
                (*path, "plugin_type"),
                f"is {config.plugin_type}, a processor type, but this entry is a {role} "
                f"(under {group}); set plugin_type: {role}",
            )
        raise doc.error(
            (*path, "plugin_type"),
            f"with {key}: {getattr(config, key)}, plugin_type must be {role} (the design's "
            f"form); or drop {key} and write plugin_type: <connector> alone",
        )
    if config.plugin_path is not None:
        resolved = doc.file.parent / config.plugin_path
        if not config.plugin_path.endswith(".py"):
            raise doc.error(
                (*path, "plugin_path"),
                f"{config.plugin_path!r} is not a .py file; a {role} plugin is Python "
                "and runs natively",
            )
        if not resolved.is_file():
            raise doc.error((*path, "plugin_path"), f"file {resolved} does not exist")


def check_processor(
    config: ProcessorConfig, doc: LocatedYaml, path: tuple[str | int, ...]
) -> None:
    if processor_kind(config.plugin_type) is None:
        raise doc.error((*path, "plugin_type"), unknown_processor_type(config.plugin_type))
    given = [k for k in ("plugin_name", "plugin_path") if getattr(config, k) is not None]
    if len(given) != 1:
        raise doc.error(
            path,
            "give exactly one of plugin_name or plugin_path"
            + (" (got both)" if len(given) == 2 else ""),
        )
    if config.plugin_source == "wasm" and config.plugin_path is None:
        raise doc.error(
            (*path, "plugin_path"),
            "plugin_source: wasm needs plugin_path: a .wasm component, or a .py plugin or "
            "a package folder to build into one",
        )
    if config.plugin_path is not None:
        resolved = plugin_path_of(doc.file.parent, config.plugin_path)
        if config.plugin_source == "wasm":
            if resolved.suffix not in (".py", ".wasm") and not resolved.is_dir():
                raise doc.error(
                    (*path, "plugin_path"),
                    "plugin_source: wasm needs plugin_path: a .wasm component, or a .py plugin "
                    "or a package folder to build into one",
                )
        elif resolved.suffix != ".py" and not resolved.is_dir():
            raise doc.error(
                (*path, "plugin_path"),
                f"{config.plugin_path!r} is not a .py file or a package folder; for a component "
                "set plugin_source: wasm",
            )
        if resolved.is_dir():
            if not (resolved / "__init__.py").is_file():
                raise doc.error(
                    (*path, "plugin_path"),
                    f"folder {resolved} has no __init__.py: a package-folder plugin keeps "
                    "the decorated plugin there",
                )
        elif not resolved.is_file():
            raise doc.error((*path, "plugin_path"), f"file {resolved} does not exist")
    try:
        config.sandbox()
    except ConfigurationError as exc:
        raise doc.error((*path, exc.setting or "time_limit_s"), str(exc)) from exc
    if config.window is not None:
        if config.kind != "aggregate":
            raise doc.error((*path, "window"), "only aggregate processors take a window")
        try:
            window_from_mapping(config.window)
        except ConfigurationError as exc:
            # Point at the key at fault when the file has it, else at window: itself.
            where: tuple[str | int, ...] = (*path, "window")
            if exc.setting is not None and exc.setting in config.window:
                where = (*where, exc.setting)
            raise doc.error(where, str(exc)) from exc
    if config.look_back is not None:
        given = [k for k in ("last", "age_ms") if getattr(config.look_back, k) is not None]
        if len(given) != 1:
            raise doc.error((*path, "look_back"), "give exactly one of last: N or age_ms: MS")
        value = getattr(config.look_back, given[0])
        if value < 1:
            raise doc.error((*path, "look_back", given[0]), "must be at least 1")


def plugin_path_of(base: Path, plugin_path: str) -> Path:
    """Where ``plugin_path`` (relative to the pipeline file's folder ``base``) points.

    A package's ``__init__.py`` stands for its folder: imported alone, as a flat
    file, its relative imports would fail.
    """
    resolved = base / plugin_path
    if resolved.name == "__init__.py":
        return resolved.parent
    return resolved


def _check_scaling(config: PipelineConfig, doc: LocatedYaml) -> None:
    """``workers:`` must be a count from 1 or ``auto``; ``partition_by`` needs a stateful step."""
    where: list[tuple[tuple[str | int, ...], str | None]] = [(("workers",), config.workers)]
    where += [
        (("processors", i, "config", "workers"), p.config.workers)
        for i, p in enumerate(config.processors)
    ]
    for at, value in where:
        if value is None:
            continue
        try:
            parse_workers(value)
        except ConfigurationError as exc:
            raise doc.error(at, str(exc)) from exc
