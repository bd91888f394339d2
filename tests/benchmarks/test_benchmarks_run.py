"""The benchmarks still run: each on a few thousand records, its output checks on.

A benchmark measures and never asserts a speed, so nothing else would notice one that
an API change broke until someone needs its figures. Each run here is tiny; what is
asserted is that it ends well, that its own checks (every system's output the same)
passed, and that it prints every target line the docs quote.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

pytestmark = pytest.mark.slow

BENCHMARKS = REPO / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float = 300) -> str:
    """Run ``benchmarks/<script>`` with ``args``; its standard output (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def test_peers_runs_every_system_and_prints_each_target(tmp_path: Path) -> None:
    out = run_benchmark("peers.py", "--records", "3000", "--rounds", "1", "--work", str(tmp_path))
    # It exits non-zero when an output differs; this line says they were compared.
    assert "every output the same 1,000 lines once sorted" in out
    for system in ("floor", "bytewax", "native", "wasm", "wasm-i2", "workers2"):
        assert f"\n  {system} " in out, system
    for target in (
        "native / Bytewax (one worker)",
        "native / the one-parse floor",
        "WASM filter / Bytewax",
        "workers: 2 / Bytewax one worker",
        "native peak RSS",
    ):
        assert target in out, target


def test_pipeline_vs_python_prints_each_target() -> None:
    out = run_benchmark("pipeline_vs_python.py", "--records", "3000")
    # Both pipelines wrote what the plain-Python reference wrote.
    assert "DIFFERS" not in out
    assert out.count("same as reference") == 3  # the reference, native, wasm
    for target in (
        "native pipeline / plain Python",
        "native pipeline peak RSS",
        "pipeline with WASM filter / native pipeline",
        "WASM filter / native backend",
        "first WASM use: pipeline process peak RSS",
        "second pipeline start: compiles",
        "cached cold start to first record",
    ):
        assert target in out, target


def test_workers_checks_every_configuration_writes_the_same() -> None:
    out = run_benchmark("workers.py", "--records", "2000", "--no-ray")
    assert "outputs identical across configurations: True" in out
    assert "read in the workers" in out
    assert "ray: skipped" in out


def test_workers_partitions_only_runs_just_the_partitioned_configurations() -> None:
    out = run_benchmark("workers.py", "--records", "2000", "--no-ray", "--partitions-only")
    assert "... out/{partition}" in out
    assert "native workers=1" not in out
    assert "4 files read in the workers" in out
    assert "outputs identical across configurations: True" in out
