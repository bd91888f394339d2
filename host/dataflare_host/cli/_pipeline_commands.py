"""``dataflare validate``, ``dataflare run`` and ``dataflare schema``: check a pipeline
file, run it, print the JSON Schema of pipeline files."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from dataflare import ConfigurationError, PluginError, PluginIOError
from dataflare_host._text import one_line
from dataflare_host.cli._failure import fail
from dataflare_host.cli._run_start import RunStart
from dataflare_host.pipeline import Pipeline, ProgressReporter, RunSummary, StageStats

__all__ = ["run", "schema", "validate"]


@click.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--connect",
    is_flag=True,
    help="Also open every source and sink (servers, tables, streams), moving no record.",
)
def validate(pipeline: Path, connect: bool) -> None:
    """Check PIPELINE (YAML): structure, plugins, kinds, parameters, connectors.

    Loads every plugin and connector without reading a record; exits 2 with one
    line naming the file, line and YAML path of the first problem. With
    --connect, also opens every source and sink (exit 1 when one cannot).
    """
    try:
        loaded = Pipeline.from_file(pipeline)
    except PluginError as error:
        fail(error)
    try:
        if connect:
            loaded.check_connections()
    except PluginError as error:
        fail(error)
    finally:
        loaded.close()
    click.echo(
        f"{pipeline}: ok ({len(loaded.sources)} source(s), {len(loaded.processors)} "
        f"processor(s), {len(loaded.sinks)} sink(s))"
    )


@click.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--reset",
    is_flag=True,
    help="Forget the checkpoint and start from the beginning of every source "
    "(says first what that does to each sink's output).",
)
@click.option("--quiet", is_flag=True, help="No progress display; the summary only.")
@click.option(
    "--workers",
    callback=lambda _ctx, _param, value: _check_workers(value),
    help="Processes running the processor chain: a number or auto (overrides workers:).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    help="Where the workers run (overrides engine:); ray needs dataflare-plugins[ray].",
)
@click.option("--ray-address", help="The Ray cluster to join (overrides address:).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics (per-stage counters and rates) on 127.0.0.1:PORT/metrics.",
)
def run(
    pipeline: Path,
    reset: bool,
    quiet: bool,
    workers: str | None,
    engine: str | None,
    ray_address: str | None,
    metrics_port: int | None,
) -> None:
    """Run PIPELINE (YAML) until its sources are exhausted or it is interrupted.

    Shows records in/out/filtered/errored and the rate of every stage while it
    runs (a line every 2 s when piped), and a summary at the end whose time counts
    loading. Ctrl-C (or SIGTERM) stops reading, finishes the batch in flight, flushes
    and checkpoints; the next run resumes where this one stopped (exit 130 after Ctrl-C).
    """
    from rich.console import Console

    # rich loads only for runs
    from dataflare_host.cli._progress import RichProgress, summary_table, summary_title

    console = Console(stderr=True)
    if not console.is_terminal:
        console.width = max(console.width, 110)  # a log file: keep stage names whole
    # Loading can take seconds the first time a WASM plugin is used (build and
    # compile, then cached): say so on a terminal instead of sitting silent.
    waiting = (
        console.status(f"loading {pipeline} (a WASM plugin's first use builds and compiles it)")
        if console.is_terminal and not quiet
        else contextlib.nullcontext()
    )
    loading_started = time.monotonic()
    try:
        with waiting:
            loaded = _load_scaled(pipeline, workers, engine, ray_address)
    except PluginError as error:
        fail(error)
        return
    try:
        start = RunStart.of(loaded, reset=reset)
        for line in start.lines():  # before --reset discards anything
            click.echo(line, err=True)
        start.apply()
        loading_s = time.monotonic() - loading_started
        reporters: list[ProgressReporter] = []
        if not quiet:
            reporters.append(RichProgress(loaded.config.name, loading_s=loading_s))
        metrics = None
        if metrics_port is not None:
            from dataflare_host.pipeline._metrics import MetricsServer

            try:
                metrics = MetricsServer(metrics_port, pipeline=loaded.config.name)
            except OSError as exc:
                fail(PluginIOError(f"--metrics-port {metrics_port}: cannot listen: {exc}"))
            reporters.append(metrics)
        summary = loaded.run(_Fanout(reporters) if reporters else None)
    finally:
        loaded.close()
        if metrics is not None:
            metrics.close()
    if quiet:
        console.print(summary_table(summary.stats, summary_title(summary, loading_s)))
    click.echo(summary.engine, err=True)  # which engine ran the chain, and on how many workers
    if quiet and summary.error:
        click.echo(f"error: {one_line(summary.error)}", err=True)
    sys.exit(summary.exit_code)


def _check_workers(value: str | None) -> str | None:
    from dataflare_host.pipeline.engines import parse_workers

    if value is not None:
        try:
            parse_workers(value)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="'--workers'") from None
    return value


def _load_scaled(
    path: Path, workers: str | None, engine: str | None, address: str | None
) -> Pipeline:
    """The pipeline in ``path`` with the command line's scaling options over its own."""
    import attrs

    from dataflare_host.pipeline._config import load_pipeline_config

    config, doc = load_pipeline_config(path)
    config = attrs.evolve(
        config,
        workers=workers or config.workers,
        engine="ray" if engine == "ray" else "local" if engine == "local" else config.engine,
        address=address or config.address,
    )
    return Pipeline(config, doc)


@click.command()
def schema() -> None:
    """Print the JSON Schema of pipeline files (for editors' completion and checks).

    \b
    Example:
        dataflare schema > pipeline.schema.json
        # then in pipeline.yaml: # yaml-language-server: $schema=pipeline.schema.json
    """
    from dataflare_host.pipeline._schema import pipeline_schema

    click.echo(json.dumps(pipeline_schema(), indent=2))


class _Fanout:
    """Hands the stage counters to several progress reporters (display, metrics)."""

    def __init__(self, reporters: list[ProgressReporter]) -> None:
        self._reporters = reporters

    def update(self, stats: Sequence[StageStats]) -> None:
        for reporter in self._reporters:
            reporter.update(stats)

    def finish(self, summary: RunSummary) -> None:
        for reporter in self._reporters:
            reporter.finish(summary)
