"""Hatch build hook: the wheel carries the shared WASM runtime, built once here.

Every Python plugin's component is the shared runtime (CPython and the SDK) plus the
plugin's own files (docs/wasm.md, "Building"). Built with the wheel, the runtime saves
an installed host its componentize-py run: the first plugin on a new machine waits only
for the compile for this host. An editable install keeps it in the checkout, beside the
code that finds it (``dataflare_host/wasm/build/_runtime/``, ignored by git).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).parent

# In a process of its own: the project's modules import from the checkout, and the build
# environment has only what [build-system] requires (hatchling, componentize-py, attrs).
_BUILD = """
import sys
sys.path[:0] = [sys.argv[1] + "/sdk", sys.argv[1] + "/host"]
from dataflare_host.wasm.build._componentize import build_runtime, bundled_runtime
target = bundled_runtime()
for stale in target.parent.glob("dataflare-runtime-*.wasm"):
    if stale != target:
        stale.unlink()
if not target.is_file():
    build_runtime(target)
print(target)
"""


class SharedRuntimeHook(BuildHookInterface):  # type: ignore[type-arg]
    """Builds the shared runtime into the checkout and puts it in the wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("DATAFLARE_NO_BUNDLED_RUNTIME"):
            return  # a build that only checks the wheel's layout (tests/unit/test_layout.py)
        done = subprocess.run(
            [sys.executable, "-c", _BUILD, str(ROOT)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"building the shared WASM runtime for the wheel failed: {last}")
        target = Path(done.stdout.strip().splitlines()[-1])
        if version != "editable":
            relative = target.relative_to(ROOT / "host")
            build_data["force_include"][str(target)] = relative.as_posix()
