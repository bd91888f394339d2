"""Building a plugin never runs it on the host, and a build that hangs stops with one line.

A ``.py`` destined for the sandbox is never imported natively (its top-level code
would run as the host user), neither by ``dataflare build`` nor by pipelines with
``plugin_source: wasm``; a plugin looping at import cannot hang the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from support.output import without_progress
from support.paths import TEST_CACHE
from support.pipeline_files import write_one_processor_pipeline

MARKER_PLUGIN = """
import dataflare

try:  # inside the sandbox this fails (no directory is mounted); natively it writes
    with open({marker!r}, "w") as handle:
        handle.write("ran on the host")
except OSError:
    pass


@dataflare.filter
def keep(record):
    return True
"""


def dataflare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataflare", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_build_and_validate_never_run_the_plugin_on_the_host(tmp_path: Path) -> None:
    """Top-level plugin code does not run in the host process when it is built for WASM.

    The build is real every run: it gets an empty cache of its own. The marker the
    plugin would write sits at one path per checkout (under the test cache, taken in
    turns by two sessions), so the plugin's text is the same in every run and
    validate finds its component built and compiled by an earlier run: a marker in
    a fresh temporary folder made the text, so the component, new each run, and
    validate compiled 38 MB every time.
    """
    folder = TEST_CACHE / "build-trust"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(TEST_CACHE / "build-trust.lock"):
        marker = folder / "host-was-touched"
        marker.unlink(missing_ok=True)  # a failed earlier run's
        plugin = tmp_path / "sneaky.py"
        plugin.write_text(MARKER_PLUGIN.format(marker=str(marker)), encoding="utf-8")

        built = dataflare(
            "build",
            str(plugin),
            "-o",
            str(tmp_path / "sneaky.wasm"),
            env={"DATAFLARE_CACHE_DIR": str(tmp_path / "empty-cache")},
        )
        assert built.returncode == 0, built.stderr
        # Built here, not found in a cache (the empty cache's first plugin readies the
        # shared runtime, then the plugin's component is loaded in the sandbox to check it).
        assert "the shared runtime" in built.stderr
        assert not marker.exists(), "dataflare build ran the plugin's code on the host"

        pipeline = write_one_processor_pipeline(
            tmp_path / "pipeline.yaml",
            {"plugin_type": "filter", "plugin_source": "wasm", "plugin_path": "sneaky.py"},
        )
        validated = dataflare("validate", str(pipeline))
        assert validated.returncode == 0, validated.stderr
        assert not marker.exists(), "dataflare validate ran the plugin's code on the host"


@pytest.mark.slow
def test_a_plugin_that_loops_at_import_fails_the_build_with_one_line(
    tmp_path: Path,
) -> None:
    """The build runs under a time limit; hanging there is one error line, exit 2."""
    plugin = tmp_path / "spin.py"
    plugin.write_text(
        "import dataflare\n\nwhile True:\n    pass\n\n\n@dataflare.map\ndef m(r):\n    return r\n",
        encoding="utf-8",
    )
    done = dataflare(
        "build",
        str(plugin),
        "-o",
        str(tmp_path / "spin.wasm"),
        env={"DATAFLARE_BUILD_TIMEOUT_S": "6"},
    )
    assert done.returncode == 2, done
    lines = without_progress(done.stderr).strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: building ")
    # Charged time (wall minus waits for a CPU), and what the build got, in the message.
    assert "of its 6 s build time limit (" in lines[0]
    assert "s of CPU in " in lines[0]
    # Which question it asks depends on the machine: starved most of the time, it says
    # so instead of blaming the plugin; otherwise it asks.
    assert lines[0].endswith(
        (
            "does the plugin loop or block when imported? (module-level code runs at build "
            "time; DATAFLARE_BUILD_TIMEOUT_S sets the limit)",
            "the machine is heavily loaded; if the plugin does not loop or block when "
            "imported, retry, or raise DATAFLARE_BUILD_TIMEOUT_S",
        )
    ), lines[0]
    assert "Traceback" not in done.stderr
