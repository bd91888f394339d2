"""The ``dataflare`` command line (click: composable commands, tested with CliRunner)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from sdk import PluginError, Record

from ._build import build_component
from ._loader import load_plugin
from ._pipeline import Pipeline
from ._wasm import Sandbox

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
        with file.open(encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n").rstrip("\r")
    if stdin:
        for line in sys.stdin:
            yield line.rstrip("\n").rstrip("\r")


def _show(record: Record) -> str:
    return record.value.decode("utf-8", errors="backslashreplace")


def _fail(error: PluginError) -> None:
    """One readable line on stderr and the error's exit code; never a traceback."""
    # One line even when a plugin's exception message spans several.
    message = " ".join(str(error).split())
    click.echo(f"error: {message}", err=True)
    sys.exit(error.exit_code)


@click.group()
@click.version_option(package_name="dataflare-plugins")
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
def main(verbose: int) -> None:
    """DataFlare plugins: write, test, build and run data-pipeline plugins."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _sandbox_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--time-limit",
        type=click.FloatRange(min=0, min_open=True),
        default=10.0,
        show_default=True,
        help="WASM only: seconds each batch may run.",
    )(func)
    return click.option(
        "--memory-limit",
        type=click.IntRange(min=32),
        default=512,
        show_default=True,
        help="WASM only: MiB of guest memory.",
    )(func)


@main.command()
@click.argument("plugin", type=click.Path(dir_okay=False, path_type=Path))
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
def test(
    plugin: Path,
    texts: tuple[str, ...],
    file: Path | None,
    stdin: bool,
    params: tuple[str, ...],
    time_limit: float,
    memory_limit: int,
) -> None:
    """Run PLUGIN (.py or .wasm) over lines of input and print its outputs.

    \b
    Example:
        dataflare test guest_examples/contains_filter.py --text 'an error' -e needle=error
    """
    if not texts and file is None and not stdin:
        raise click.UsageError("give input with --text, --file or --stdin")
    parsed = _parse_params(params)
    try:
        records = [
            Record(line.encode(), offset=offset)
            for offset, line in enumerate(_input_lines(texts, file, stdin))
        ]
        sandbox = Sandbox(time_limit_s=time_limit, memory_limit_bytes=memory_limit << 20)
        with load_plugin(plugin, parsed, sandbox=sandbox) as loaded:
            result = loaded.process(records)
    except PluginError as error:
        _fail(error)
        return
    for record in result.outputs:
        click.echo(_show(record))
    if result.error is not None:
        _fail(result.error)


@main.command()
@click.argument("plugin", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the component (default: PLUGIN with .wasm).",
)
def build(plugin: Path, output: Path | None) -> None:
    """Compile PLUGIN (a .py file) into a sandboxed WASM component.

    \b
    Example:
        dataflare build guest_examples/uppercase_map.py -o uppercase.wasm
    """
    try:
        target = build_component(plugin, output)
    except PluginError as error:
        _fail(error)
        return
    click.echo(f"built {target} ({target.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
def validate(pipeline: Path) -> None:
    """Check PIPELINE (YAML): structure, plugins, kinds, parameters, connectors.

    Loads every plugin and connector without reading a record; exits 2 with one
    line naming the file, line and YAML path of the first problem.
    """
    try:
        loaded = Pipeline.from_file(pipeline)
    except PluginError as error:
        _fail(error)
        return
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
    help="Forget the checkpoint and start from the beginning of every source.",
)
@click.option("--quiet", is_flag=True, help="No progress display; the summary only.")
def run(pipeline: Path, reset: bool, quiet: bool) -> None:
    """Run PIPELINE (YAML) until its sources are exhausted or it is interrupted.

    Shows records in/out/filtered/errored and the rate of every stage while it
    runs, and a summary at the end. Ctrl-C (or SIGTERM) stops reading, drains,
    flushes and checkpoints; the next run resumes where this one stopped.
    """
    from ._progress import RichProgress, summary_table

    try:
        loaded = Pipeline.from_file(pipeline)
    except PluginError as error:
        _fail(error)
        return
    try:
        if reset:
            loaded.checkpoints.reset()
        progress = None if quiet else RichProgress(loaded.config.name)
        summary = loaded.run(progress)
    finally:
        loaded.close()
    if quiet:
        from rich.console import Console

        Console(stderr=True).print(
            summary_table(summary.stats, f"{summary.name}: {summary.status}")
        )
        if summary.error:
            click.echo(f"error: {' '.join(summary.error.split())}", err=True)
    sys.exit(summary.exit_code)
