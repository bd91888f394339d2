"""``dataflare validate``, ``dataflare run``, ``dataflare graph`` and ``dataflare schema``:
check a pipeline file, run it, draw it, print the JSON Schema of pipeline files."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dataflare import ConfigurationError, PluginError, PluginIOError
from dataflare_host._text import one_line
from dataflare_host.cli._failure import fail
from dataflare_host.cli._logging import json_lines
from dataflare_host.cli._run_output import JsonProgress, say, say_error
from dataflare_host.cli._run_start import RunStart
from dataflare_host.pipeline import Pipeline, ProgressReporter, RunSummary, StageStats

__all__ = ["graph", "run", "schema", "validate"]


@click.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--connect",
    is_flag=True,
    help="Also open every source and sink (servers, tables, streams), moving no record.",
)
def validate(pipeline: Path, connect: bool) -> None:
    """Check PIPELINE (YAML): structure, plugins, kinds, parameters, connectors.

    Loads every plugin and connector without reading a record. Reports every
    problem it finds, one line each naming the file, line and YAML path, and
    exits 2 (a problem that is not the file's, such as an unreadable file, exits
    with its own code). With --connect, also opens every source and sink (exit 1
    when one cannot).
    """
    from dataflare_host.pipeline._validate import validate_pipeline

    checked = validate_pipeline(pipeline)
    if checked.pipeline is None:
        if len(checked.problems) == 1:
            fail(checked.problems[0])
        say_error(f"{pipeline}: {len(checked.problems)} problem(s)")
        for problem in checked.problems:
            say(one_line(str(problem)), "problem", logging.ERROR)
        sys.exit(max(problem.exit_code for problem in checked.problems))
    loaded = checked.pipeline
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
    help="Serve Prometheus metrics (counters, latencies, checkpoint age, backlog) on "
    "127.0.0.1:PORT/metrics.",
)
@click.option(
    "--status-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve a live status page (rates and lag over the last minutes) on "
    "http://127.0.0.1:PORT/ (0: any free port, printed at the start).",
)
def run(
    pipeline: Path,
    reset: bool,
    quiet: bool,
    workers: str | None,
    engine: str | None,
    ray_address: str | None,
    metrics_port: int | None,
    status_port: int | None,
) -> None:
    """Run PIPELINE (YAML) until its sources are exhausted or it is interrupted.

    Shows records in/out/filtered/errored and the rate of every stage while it
    runs (a line every 2 s when piped), and a summary at the end whose time counts
    loading. Ctrl-C (or SIGTERM) stops reading, finishes the batch in flight, flushes
    and checkpoints; the next run resumes where this one stopped, and says so on its
    first line (exit 130 after Ctrl-C). With --log-format json, every line on stderr is
    a JSON object (start, progress, summary, error).
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
        if console.is_terminal and not quiet and not json_lines()
        else contextlib.nullcontext()
    )
    loading_started = time.monotonic()
    try:
        with waiting:
            loaded = _load_scaled(pipeline, workers, engine, ray_address)
    except PluginError as error:
        fail(error)
        return
    servers: list[Any] = []  # the metrics server and the status page, closed at the end
    try:
        start = RunStart.of(loaded, reset=reset)
        refusal = start.refusal()
        if refusal is not None:
            fail(refusal)  # before anything is discarded
        for line in start.lines():  # before --reset discards anything
            say(line, "start")
        start.apply()
        loading_s = time.monotonic() - loading_started
        reporters: list[ProgressReporter] = []
        if json_lines():
            # Even --quiet: the summary (and error) are the lines a collector needs.
            reporters.append(JsonProgress(loaded.config.name, loading_s=loading_s))
        elif not quiet:
            reporters.append(RichProgress(loaded.config.name, loading_s=loading_s))
        if metrics_port is not None:
            from dataflare_host.pipeline._metrics import MetricsServer

            try:
                metrics = MetricsServer(
                    metrics_port, pipeline=loaded.config.name, health=loaded.health
                )
            except OSError as exc:
                fail(PluginIOError(f"--metrics-port {metrics_port}: cannot listen: {exc}"))
            servers.append(metrics)
            reporters.append(metrics)
            loaded.measure_record_latency = True
        if status_port is not None:
            from dataflare_host.pipeline._status_page import StatusPage

            try:
                page = StatusPage(status_port, pipeline=loaded.config.name)
            except OSError as exc:
                fail(PluginIOError(f"--status-port {status_port}: cannot listen: {exc}"))
            servers.append(page)
            reporters.append(page)
            say(f"status page: http://127.0.0.1:{page.port}/", "status_page", port=page.port)
        summary = loaded.run(_Fanout(reporters) if reporters else None)
    finally:
        loaded.close()
        for server in servers:
            server.close()
    if json_lines():
        sys.exit(summary.exit_code)  # the summary and error are JsonProgress's events
    if quiet:
        console.print(summary_table(summary.stats, summary_title(summary, loading_s)))
    if summary.engine:  # which engine ran the chain, and on how many workers (if one started)
        click.echo(summary.engine, err=True)
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
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "picture",
    type=click.Choice(["mermaid", "svg"]),
    default="mermaid",
    show_default=True,
    help="mermaid: a flowchart for Markdown; svg: a standalone drawing.",
)
def graph(pipeline: Path, picture: str) -> None:
    """Draw PIPELINE (YAML): sources, processors with their runtime, sinks, workers.

    Reads the YAML only (no plugin is loaded, no connector opened) and prints the
    picture on stdout.

    \b
    Example:
        dataflare graph pipeline.yaml --format svg > pipeline.svg
    """
    from dataflare_host.pipeline._config import load_pipeline_config
    from dataflare_host.pipeline._graph import graph_of, mermaid
    from dataflare_host.pipeline._graph_svg import svg

    try:
        config, _ = load_pipeline_config(pipeline)
    except PluginError as error:
        fail(error)
    drawn = graph_of(config)
    click.echo(svg(drawn) if picture == "svg" else mermaid(drawn))


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
