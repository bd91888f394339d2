"""From `dataflare new` to the first WASM output of `dataflare test --wasm`, as a new author
meets it (issue 25, acceptance 1): an empty folder, an empty cache, the README's own commands.

The path's times are printed (wall and CPU, per step), never asserted: the machine may be
loaded. What is asserted are events. The install carries the shared runtime (CPython and the
SDK, built with the wheel, or into the checkout by an editable install): the first build on
an empty cache only compiles it for this host, saying so at least every two seconds even
piped, and componentizes nothing; the first `dataflare test --wasm` adds no compiled
artifact; the second new plugin neither componentizes nor compiles anything.
"""

from __future__ import annotations

import itertools
import os
import re
import resource
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock
from support.paths import TEST_CACHE

pytestmark = [pytest.mark.wasm, pytest.mark.slow]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def readme_test_command(folder: Path, name: str) -> list[str]:
    """The README's `dataflare test NAME.py ...` line, as argv."""
    readme = (folder / "README.md").read_text()
    line = next(
        text for text in readme.splitlines() if text.startswith(f"dataflare test {name}.py")
    )
    return shlex.split(line)[1:]


def new_plugin_to_first_wasm_output(
    exe: Path, root: Path, name: str, kind: str, env: dict[str, str], *, first: bool
) -> dict[str, tuple[float, float]]:
    """Run the author's path for one new plugin; each step's (wall s, CPU s)."""
    steps: dict[str, tuple[float, float]] = {}

    def step(label: str, argv: list[str], cwd: Path) -> tuple[str, list[tuple[float, str]]]:
        """Run one command piped, as `| cat` would: its stdout, and each stderr line with
        the seconds after the start at which it arrived."""
        wall, cpu = time.perf_counter(), children_cpu_s()
        arrivals: list[tuple[float, str]] = []
        with (
            tempfile.TemporaryFile("w+") as stdout,
            subprocess.Popen(
                [str(exe), *argv],
                cwd=cwd,
                env=env,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            ) as proc,
        ):
            assert proc.stderr is not None
            for line in proc.stderr:
                arrivals.append((time.perf_counter() - wall, line.rstrip("\n")))
            proc.wait()
            stdout.seek(0)
            printed = stdout.read()
        steps[label] = (time.perf_counter() - wall, children_cpu_s() - cpu)
        # As it happens: a later failure still shows how long the steps before it took.
        print(f"{name}: {label} {steps[label][0]:.1f} s ({steps[label][1]:.1f} s CPU)", flush=True)
        assert proc.returncode == 0, f"{label}: {printed}\n{arrivals}"
        return printed, arrivals

    step("new", ["new", name, "--kind", kind], root)
    folder = root / name
    compiled = root / "cache" / "compiled"
    earlier = sorted(compiled.iterdir()) if compiled.is_dir() else []
    built, building = step("build", ["build", f"{name}.py"], folder)
    assert "compiled for this host" in built
    componentized = [text for _, text in building if "componentize" in text]
    assert componentized == [], building  # the install's runtime, then the plugin's files
    if first:
        # The runtime's compile takes seconds and is never silent, even piped: announced,
        # then a line at least every 2 s (plus scheduling slack), then how long it took.
        progress = [t for t, text in building if "compile the shared runtime" in text]
        assert len(progress) >= 2, building
        gaps = [later - earlier for earlier, later in itertools.pairwise([0.0, *progress])]
        assert max(gaps) < 3.5, building
    else:
        # The runtime is compiled: the plugin's component is it plus the plugin's files.
        assert sorted(compiled.iterdir()) == earlier, "a second new plugin compiled again"
    before = sorted(compiled.iterdir())
    assert before, "the build left no compiled artifact"
    _, tested = step("test --wasm", [*readme_test_command(folder, name), "--wasm"], folder)
    assert any(re.search(r"native and WASM agree on \d+ record", text) for _, text in tested)
    assert sorted(compiled.iterdir()) == before, "the first test --wasm compiled again"
    return steps


@pytest.fixture(scope="module")
def installed_runtime() -> Path:
    """The shared runtime the install carries, as an install of this checkout leaves it
    (built here when the SDK changed since the last ``pip install -e``)."""
    from dataflare_host.wasm.build._componentize import build_runtime, bundled_runtime

    target = bundled_runtime()
    with FileLock(TEST_CACHE / "bundled-runtime.lock"):
        if not target.is_file():
            build_runtime(target)
    return target


def test_new_to_first_wasm_output_for_a_first_and_a_second_new_plugin(
    dataflare_exe: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    installed_runtime: Path,
) -> None:
    env = {**os.environ, "DATAFLARE_CACHE_DIR": str(tmp_path / "cache")}
    first = new_plugin_to_first_wasm_output(
        dataflare_exe, tmp_path, "first", "map", env, first=True
    )
    second = new_plugin_to_first_wasm_output(
        dataflare_exe, tmp_path, "second", "filter", env, first=False
    )
    with capsys.disabled():
        print(f"\nnew -> first WASM output (load average {os.getloadavg()[0]:.1f}):")
        for label, steps in (("first new plugin", first), ("second new plugin", second)):
            wall = sum(w for w, _ in steps.values())
            cpu = sum(c for _, c in steps.values())
            detail = ", ".join(
                f"{step} {w:.1f} s ({c:.1f} s CPU)" for step, (w, c) in steps.items()
            )
            print(f"  {label}: {wall:.1f} s wall, {cpu:.1f} s CPU: {detail}")
