"""How a command ends on a DataFlare error: one line on stderr, the error's exit code."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from dataflare import PluginError
from dataflare_host._text import one_line

__all__ = ["fail"]


def fail(error: PluginError) -> NoReturn:
    """One readable line on stderr and the error's exit code; never a traceback."""
    # One line even when a plugin's exception message spans several.
    click.echo(f"error: {one_line(str(error))}", err=True)
    sys.exit(error.exit_code)
