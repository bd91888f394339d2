"""``dataflare test``: run a plugin over lines of input and print its outputs (natively,
and with --wasm as a WASM component too, showing any difference)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from dataflare import ConfigurationError, PluginError, PluginKind, Record
from dataflare.runtime import BatchResult
from dataflare_host.cli._failure import fail
from dataflare_host.plugins import Runtime, load_plugin
from dataflare_host.wasm import Sandbox

__all__ = ["test"]


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


@click.command()
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
        fail(error)
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
        fail(result.error)


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
