"""How a command ends on a DataFlare error: one line on stderr, the error's exit code."""

from __future__ import annotations

import sys
from typing import NoReturn

from dataflare import PluginError
from dataflare_host._plugin_frames import log_plugin_frames
from dataflare_host.cli._run_output import say_error

__all__ = ["fail"]


def fail(error: PluginError) -> NoReturn:
    """One readable line on stderr and the error's exit code; never a traceback.

    With ``-v``, a plugin's own frames are logged first (never the host's or the SDK's).
    """
    log_plugin_frames(error)
    say_error(str(error))  # one line even when a plugin's message spans several
    sys.exit(error.exit_code)
