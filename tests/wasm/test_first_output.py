"""From `dataflare new` to the first WASM output of `dataflare test --wasm`, as a new author
meets it (issue 25, acceptance 1): an empty folder, an empty cache, the README's own commands.

The path's times are printed (wall and CPU, per step), never asserted: the machine may be
loaded. What is asserted are events: the build leaves the component compiled for this host,
so the first `dataflare test --wasm` adds no compiled artifact.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import subprocess
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

    def step(label: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        wall, cpu = time.perf_counter(), children_cpu_s()
        done = subprocess.run(
            [str(exe), *argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        steps[label] = (time.perf_counter() - wall, children_cpu_s() - cpu)
        # As it happens: a later failure still shows how long the steps before it took.
        print(f"{name}: {label} {steps[label][0]:.1f} s ({steps[label][1]:.1f} s CPU)", flush=True)
        assert done.returncode == 0, f"{label}: {done.stdout}\n{done.stderr}"
        return done

    step("new", ["new", name, "--kind", kind], root)
    folder = root / name
    built = step("build", ["build", f"{name}.py"], folder)
    assert "compiled for this host" in built.stdout
    compiled = root / "cache" / "compiled"
    before = sorted(compiled.iterdir())
    assert before, "the build left no compiled artifact"
    tested = step("test --wasm", [*readme_test_command(folder, name), "--wasm"], folder)
    assert re.search(r"native and WASM agree on \d+ record", tested.stderr)
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
