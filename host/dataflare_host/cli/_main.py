"""The ``dataflare`` command line (click: composable commands, tested with CliRunner)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from dataflare import (
    ConfigurationError,
    PluginError,
    PluginIOError,
    PluginKind,
    Record,
)
from dataflare.runtime import BatchResult
from dataflare_host._plugin_frames import log_plugin_frames
from dataflare_host._text import one_line
from dataflare_host.cli._run_start import RunStart
from dataflare_host.cli._scaffold import CONNECTOR_KINDS, SHAPES, Shape, new_plugin
from dataflare_host.pipeline import Pipeline, ProgressReporter, RunSummary, StageStats
from dataflare_host.plugins import Runtime, load_plugin
from dataflare_host.wasm import Sandbox, component_for
from dataflare_host.wasm.build._precompile import compile_for_this_host

__all__ = ["main"]


def _parse_params(values: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. -e needle=error)", param_hint="'-e'"
            )
        params[name] = value
    return params


def _input_lines(texts: Sequence[str], file: Path | None, stdin: bool) -> Iterator[str]:
    for text in texts:
        yield from text.splitlines() or [""]
    if file is not None:
        with file.open(encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                yield line.rstrip("\n").rstrip("\r")
    if stdin:
        for raw in sys.stdin.buffer:
            yield raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")


def _show(record: Record) -> str:
    return record.value.decode("utf-8", errors="backslashreplace")


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


def _show_json(record: Record) -> str:
    """One JSON object per output: every field of the record, bytes as UTF-8 text."""

    def text(data: bytes | None) -> str | None:
        return None if data is None else data.decode("utf-8", errors="backslashreplace")

    fields = {
        "value": text(record.value),
        "key": text(record.key),
        "timestamp": record.timestamp,
        "metadata": dict(record.metadata),
        "offset": record.offset,
    }
    return json.dumps(fields, ensure_ascii=False)


def _fail(error: PluginError) -> NoReturn:
    """One readable line on stderr and the error's exit code; never a traceback.

    With ``-v``, a plugin's own frames are logged first (never the host's or the SDK's).
    """
    log_plugin_frames(error)
    # One line even when a plugin's exception message spans several.
    click.echo(f"error: {one_line(str(error))}", err=True)
    sys.exit(error.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dataflare-plugins")
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line (time, level, logger, message) for collectors.",
)
def main(verbose: int, log_format: str) -> None:
    """DataFlare plugins: write, test, build and run data-pipeline plugins."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    formatter: logging.Formatter
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    if not any(isinstance(h, _StderrLines) for h in root.handlers):
        root.addHandler(_StderrLines())
    for handler in root.handlers:
        if isinstance(handler, _StderrLines):
            handler.setFormatter(formatter)
    _show_progress_lines(formatter if log_format == "json" else None)


class _StderrLines(logging.Handler):
    """Plain lines on whatever ``sys.stderr`` is when a record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or broken stderr: nothing to tell
            pass


def _show_progress_lines(formatter: logging.Formatter | None) -> None:
    # Long waits (a first build, a first compile) announce themselves on this
    # logger; they are shown at any verbosity, as plain lines even when piped.
    progress = logging.getLogger("dataflare.progress")
    progress.setLevel(logging.INFO)
    progress.propagate = False
    handlers = [h for h in progress.handlers if isinstance(h, _StderrLines)]
    if not handlers:
        handlers = [_StderrLines()]
        progress.addHandler(handlers[0])
    for handler in handlers:
        handler.setFormatter(formatter or logging.Formatter("%(message)s"))


def _sandbox_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--time-limit",
        type=float,
        default=10.0,
        show_default=True,
        help="WASM only: seconds each batch may run.",
    )(func)
    return click.option(
        "--memory-limit",
        type=int,
        default=512,
        show_default=True,
        help="WASM only: MiB of guest memory.",
    )(func)


@main.command()
@click.argument("plugin", type=click.Path(path_type=Path))
@click.option(
    "--text", "texts", multiple=True, help="Input text; each line is a record. Repeatable."
)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read records from this file, one per line.",
)
@click.option("--stdin", is_flag=True, help="Read records from standard input, one per line.")
@click.option(
    "-e",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plugin parameter. Repeatable.",
)
@_sandbox_options
@click.option(
    "--timestamp-field",
    metavar="FIELD",
    help="Input lines are JSON; FIELD holds each record's timestamp (ms).",
)
@click.option(
    "--wasm", is_flag=True, help="Also run PLUGIN.py as a WASM component and show any difference."
)
@click.option(
    "--aggregate-initial",
    metavar="TEXT",
    help="An aggregate's starting accumulator (UTF-8), instead of its decorator's initial=.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["value", "json"]),
    default="value",
    show_default=True,
    help="value: each output's value; json: one object per output with value, key, "
    "timestamp, metadata and offset.",
)
@click.option(
    "--lookback-last",
    type=click.IntRange(min=1),
    metavar="N",
    help="Warm the plugin up with the last N look-back lines first.",
)
@click.option(
    "--lookback-text",
    "lookback_texts",
    multiple=True,
    help="Look-back input text; each line is a record. Repeatable.",
)
@click.option(
    "--lookback-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read look-back records from this file, one per line.",
)
def test(
    plugin: Path,
    texts: tuple[str, ...],
    file: Path | None,
    stdin: bool,
    params: tuple[str, ...],
    time_limit: float,
    memory_limit: int,
    timestamp_field: str | None,
    wasm: bool,
    lookback_last: int | None,
    lookback_texts: tuple[str, ...],
    lookback_file: Path | None,
    aggregate_initial: str | None,
    output_format: str,
) -> None:
    """Run PLUGIN (.py, a package folder or .wasm) over lines of input and print its outputs.

    With --wasm, PLUGIN.py also runs as a WASM component (built and cached) on
    the same input, and any difference between the two is shown. With
    --lookback-last N, the plugin's @look_back hook first sees the last N lines
    of --lookback-file / --lookback-text.

    \b
    Example:
        dataflare test guest_examples/contains_filter.py --text 'an error' -e needle=error
    """
    if not texts and file is None and not stdin:
        raise click.UsageError("give input with --text, --file or --stdin")
    if wasm and plugin.suffix != ".py" and not plugin.is_dir():
        raise click.UsageError(
            "--wasm compares a .py plugin (or a package folder) with its component: give one"
        )
    warm_lines = list(_input_lines(lookback_texts, lookback_file, False))
    if (lookback_texts or lookback_file) and lookback_last is None:
        raise click.UsageError("--lookback-text/--lookback-file need --lookback-last N")
    if lookback_last is not None and not warm_lines:
        raise click.UsageError("--lookback-last needs --lookback-text or --lookback-file")
    warm_up = [
        Record(line.encode("utf-8", "surrogateescape"), offset=i)
        for i, line in enumerate(warm_lines)
    ]
    warm_up = warm_up[-lookback_last:] if lookback_last else []
    parsed = _parse_params(params)
    initial = None if aggregate_initial is None else aggregate_initial.encode("utf-8")
    try:
        sandbox = Sandbox(time_limit_s=time_limit, memory_limit_mb=memory_limit)
        records = [
            _input_record(line, offset, timestamp_field)
            for offset, line in enumerate(_input_lines(texts, file, stdin))
        ]
        result = _run_once(plugin, None, parsed, sandbox, warm_up, records, initial)
        if wasm:
            other = _run_once(plugin, "wasm", parsed, sandbox, warm_up, records, initial)
    except PluginError as error:
        _fail(error)
        return
    show = _show_json if output_format == "json" else _show
    for record in result.outputs:
        click.echo(show(record))
    if wasm:
        from dataflare_host.testing import describe_difference

        difference = describe_difference(result, other)
        if difference is not None:
            click.echo(f"error: native and WASM results differ:\n{difference}", err=True)
            sys.exit(1)
        click.echo(f"native and WASM agree on {len(records)} record(s)", err=True)
    if result.error is not None:
        _fail(result.error)


def _input_record(line: str, offset: int, timestamp_field: str | None) -> Record:
    value = line.encode("utf-8", "surrogateescape")
    if timestamp_field is None:
        return Record(value, offset=offset)
    try:
        timestamp = json.loads(value)[timestamp_field]
        if type(timestamp) is not int:
            raise TypeError(f"{timestamp!r} is not an integer")
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ConfigurationError(
            f"input line {offset + 1}: no integer timestamp in field {timestamp_field!r} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return Record(value, timestamp=timestamp, offset=offset)


def _run_once(
    plugin: Path,
    runtime: Runtime | None,
    params: dict[str, str],
    sandbox: Sandbox,
    warm_up: list[Record],
    records: list[Record],
    initial: bytes | None = None,
) -> BatchResult:
    with load_plugin(plugin, params, runtime=runtime, sandbox=sandbox) as loaded:
        if initial is not None:
            if loaded.kind is not PluginKind.AGGREGATE:
                raise ConfigurationError(
                    f"{plugin} is a {loaded.kind} plugin: --aggregate-initial is for "
                    "aggregate plugins only"
                )
            loaded.accumulator = initial  # before look-back, which may resume from its own
        if warm_up:
            if not loaded.has_look_back:
                raise ConfigurationError(
                    f"{plugin} has no @look_back hook, so --lookback-last has nothing to warm up"
                )
            warmed = loaded.look_back(warm_up)
            if warmed.error is not None:
                raise warmed.error
        return loaded.process(records)


@main.command()
@click.argument("plugin", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the component (default: PLUGIN with .wasm).",
)
def build(plugin: Path, output: Path | None) -> None:
    """Compile PLUGIN (a .py file or a package folder) into a sandboxed WASM component.

    \b
    Example:
        dataflare build guest_examples/uppercase_map.py -o uppercase.wasm
    """
    target = output if output is not None else plugin.with_suffix(".wasm")
    try:
        # Through the shared build cache: pipelines, test --wasm and the test
        # kit then reuse this build instead of making their own.
        built = component_for(plugin)
        # Built earlier without its compile (or its artifact was evicted): compile it
        # now, so the first run does not. A cached artifact costs a mapped load.
        compile_for_this_host(built)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(built, partial)
        partial.replace(target)
    except PluginError as error:
        _fail(error)
        return
    except OSError as exc:
        _fail(PluginIOError(f"cannot write {target}: {exc.strerror}"))
        return
    click.echo(
        f"built {target} ({target.stat().st_size / 1e6:.1f} MB), compiled for this host"
    )


@main.command()
def schema() -> None:
    """Print the JSON Schema of pipeline files (for editors' completion and checks).

    \b
    Example:
        dataflare schema > pipeline.schema.json
        # then in pipeline.yaml: # yaml-language-server: $schema=pipeline.schema.json
    """
    from dataflare_host.pipeline._schema import pipeline_schema

    click.echo(json.dumps(pipeline_schema(), indent=2))


@main.command()
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
        _fail(error)
    try:
        if connect:
            loaded.check_connections()
    except PluginError as error:
        _fail(error)
    finally:
        loaded.close()
    click.echo(
        f"{pipeline}: ok ({len(loaded.sources)} source(s), {len(loaded.processors)} "
        f"processor(s), {len(loaded.sinks)} sink(s))"
    )


@main.command()
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
        _fail(error)
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
                _fail(PluginIOError(f"--metrics-port {metrics_port}: cannot listen: {exc}"))
            reporters.append(metrics)
        summary = loaded.run(_Fanout(reporters) if reporters else None)
    finally:
        loaded.close()
        if metrics is not None:
            metrics.close()
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


_MB = 1 << 20  # the unit of DATAFLARE_CACHE_MAX_MB


@main.group()
def cache() -> None:
    """Show or clear the cache of built and compiled WASM components."""


@cache.command("info")
def cache_info_command() -> None:
    """Where the cache is, what each folder holds, and the size cap.

    builds/ holds components by their build's inputs, compiled/ their compiled
    artifacts, keys/ which artifact a component file maps to; when compiled/
    passes its cap (DATAFLARE_CACHE_MAX_MB) the least recently used artifacts
    are deleted.
    """
    from dataflare_host import _cache

    try:
        cap = _cache.cache_max_bytes()
    except ConfigurationError as error:
        _fail(error)
        return
    click.echo(f"cache: {_cache.cache_root()}")
    for folder in _cache.cache_info():
        click.echo(
            f"  {folder.name + '/':<10} {folder.files:>4} file(s) {folder.bytes / _MB:>10.1f} MB"
        )
    click.echo(f"  compiled/ cap: {cap / _MB:.1f} MB (DATAFLARE_CACHE_MAX_MB)")
    from dataflare_host.wasm.sandbox.host._spawn import answering_servers, idle_seconds

    idle = idle_seconds()
    setting = f"exit after {idle:g} s idle" if idle > 0 else "off"
    click.echo(
        f"  sandbox servers: {len(answering_servers())} running "
        f"({setting}, DATAFLARE_SANDBOX_SERVER_IDLE_S)"
    )


@cache.command("clear")
def cache_clear_command() -> None:
    """Delete every built and compiled component (the next use builds and compiles again),
    and stop the sandbox servers (the next WASM plugin starts one again)."""
    from dataflare_host import _cache
    from dataflare_host.wasm.sandbox.host._spawn import stop_servers

    cleared = _cache.clear_cache()
    click.echo(
        f"cleared {_cache.cache_root()}: {cleared.files} file(s), {cleared.bytes / _MB:.1f} MB"
    )
    stopped = stop_servers()
    if stopped:
        click.echo(f"stopped {stopped} sandbox server(s)")


@main.command()
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice([*(k.value for k in PluginKind), *CONNECTOR_KINDS]),
    required=True,
    help="The plugin kind to start from (source and sink: a connector plugin).",
)
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the NAME/ folder.",
)
@click.option(
    "--shape",
    type=click.Choice(SHAPES),
    help="Processor kinds: what the values are, JSON objects (the default; the generated "
    "tests feed JSON objects) or raw bytes.",
)
def new(name: str, kind: str, directory: Path, shape: Shape | None) -> None:
    """Create NAME/ with a KIND plugin, its property tests and a README.

    The plugin declares its parameters and prepares them in an @init hook.

    \b
    Then:
        dataflare build NAME/NAME.py && pytest NAME/
        (source, sink: plugin_path: NAME/NAME.py in a pipeline && pytest NAME/)
    """
    try:
        written = new_plugin(name, kind, directory, shape)
    except PluginError as error:
        _fail(error)
        return
    for path in written:
        click.echo(f"created {path}")
    plugin = written[0]
    if kind in CONNECTOR_KINDS:
        click.echo(f"next: pytest {plugin.parent}, then plugin_path: {plugin} under {kind}s:")
    else:
        click.echo(f"next: dataflare build {plugin} && pytest {plugin.parent}")
    if importlib.util.find_spec("pytest") is None:
        click.echo(
            "pytest is not installed here: install DataFlare with its test extra "
            "(pip install 'dataflare-plugins[test]', or CHECKOUT[test] / WHEEL[test])"
        )
