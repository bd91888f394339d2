"""The ``dataflare`` command line (click: composable commands, tested with CliRunner).

The group and its options live here; each command group in its own module.
"""

from __future__ import annotations

import click

from dataflare_host.cli._authoring_commands import build, new
from dataflare_host.cli._cache_commands import cache
from dataflare_host.cli._logging import configure_logging
from dataflare_host.cli._pipeline_commands import graph, run, schema, validate
from dataflare_host.cli._test_command import test

__all__ = ["main"]


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
    configure_logging(verbose, log_format)


main.add_command(new)
main.add_command(test)
main.add_command(build)
main.add_command(validate)
main.add_command(run)
main.add_command(graph)
main.add_command(schema)
main.add_command(cache)
