"""From `dataflare new` to the first WASM output of `dataflare test --wasm`, as a new author
meets it (issue 25, acceptance 1): an empty folder, an empty cache, the README's own commands.

The path's times are printed (wall and CPU, per step), never asserted: the machine may be
loaded. What is asserted are events: the build says what it is doing at least every two
seconds even piped, leaves the component compiled for this host, so the first
`dataflare test --wasm` adds no compiled artifact.
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
    exe: Path, root: Path, name: str, kind: str, env: dict[str, str]
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
    built, building = step("build", ["build", f"{name}.py"], folder)
    assert "compiled for this host" in built
    # A build takes seconds and is never silent, even piped: announced, then a line at
    # least every 2 s (plus scheduling slack), then how long each phase took.
    progress = [t for t, text in building if text.startswith(f"building {name}.py")]
    assert len(progress) >= 2, building
    gaps = [later - earlier for earlier, later in itertools.pairwise([0.0, *progress])]
    assert max(gaps) < 3.5, building
    compiled = root / "cache" / "compiled"
    before = sorted(compiled.iterdir())
    assert before, "the build left no compiled artifact"
    _, tested = step("test --wasm", [*readme_test_command(folder, name), "--wasm"], folder)
    assert any(re.search(r"native and WASM agree on \d+ record", text) for _, text in tested)
    assert sorted(compiled.iterdir()) == before, "the first test --wasm compiled again"
    return steps


def test_new_to_first_wasm_output_for_a_first_and_a_second_new_plugin(
    dataflare_exe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "DATAFLARE_CACHE_DIR": str(tmp_path / "cache")}
    first = new_plugin_to_first_wasm_output(dataflare_exe, tmp_path, "first", "map", env)
    second = new_plugin_to_first_wasm_output(dataflare_exe, tmp_path, "second", "filter", env)
    with capsys.disabled():
        print(f"\nnew -> first WASM output (load average {os.getloadavg()[0]:.1f}):")
        for label, steps in (("first new plugin", first), ("second new plugin", second)):
            wall = sum(w for w, _ in steps.values())
            cpu = sum(c for _, c in steps.values())
            detail = ", ".join(
                f"{step} {w:.1f} s ({c:.1f} s CPU)" for step, (w, c) in steps.items()
            )
            print(f"  {label}: {wall:.1f} s wall, {cpu:.1f} s CPU: {detail}")
