"""``dataflare new`` and ``dataflare build``: start a plugin from a template, compile one
into a sandboxed WASM component."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import click

from dataflare import PluginError, PluginIOError, PluginKind
from dataflare_host.cli._failure import fail
from dataflare_host.cli._scaffold import CONNECTOR_KINDS, SHAPES, Shape, new_plugin

__all__ = ["build", "new"]


@click.command()
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
@click.option(
    "--partitioned",
    is_flag=True,
    help="Sources: a source split into partitions, which the pipeline's workers can read "
    "themselves (workers: N, engine: ray).",
)
def new(name: str, kind: str, directory: Path, shape: Shape | None, partitioned: bool) -> None:
    """Create NAME/ with a KIND plugin, its property tests and a README.

    The plugin declares its parameters and prepares them in an @init hook.

    \b
    Then:
        dataflare build NAME/NAME.py && pytest NAME/
        (source, sink: plugin_path: NAME/NAME.py in a pipeline && pytest NAME/)
    """
    try:
        written = new_plugin(name, kind, directory, shape, partitioned=partitioned)
    except PluginError as error:
        fail(error)
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


@click.command()
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
    # Here, not at the top: the build modules (and filelock) load only for a build.
    from dataflare_host.wasm import component_for
    from dataflare_host.wasm.build._precompile import compile_for_this_host

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
        fail(error)
        return
    except OSError as exc:
        fail(PluginIOError(f"cannot write {target}: {exc.strerror}"))
        return
    click.echo(
        f"built {target} ({target.stat().st_size / 1e6:.1f} MB), compiled for this host"
    )
