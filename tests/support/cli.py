"""The ``dataflare`` command run in-process, through click's CliRunner."""

from __future__ import annotations

from collections.abc import Sequence

from click.testing import CliRunner, Result

from dataflare_host.cli import main


def invoke_main(args: Sequence[str], stdin: str | None = None) -> Result:
    """``dataflare <args>``'s result; an exception other than the command's exit is raised,
    not kept in the result, so a traceback fails the test where it happened."""
    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cli_outcome(*args: str) -> tuple[int, str, str]:
    """``dataflare <args>``'s exit code, stdout and stderr (see :func:`invoke_main`)."""
    result = invoke_main(args)
    return result.exit_code, result.stdout, result.stderr
