"""pytest run in a subprocess on generated plugin projects, as their author would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_pytest(*args: str, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``python -m pytest -q -p no:cacheprovider <args>`` in ``cwd``, output captured, writing
    no bytecode into the projects."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
