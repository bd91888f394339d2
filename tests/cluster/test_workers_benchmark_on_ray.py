"""``benchmarks/workers.py`` with its Ray configurations still runs (a few thousand
records on a two-node cluster of its own): Ray's outputs equal the local ones and the
Ray-against-local lines are printed. It asserts no speed (see tests/benchmarks)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.paths import REPO

pytestmark = pytest.mark.slow


def test_workers_benchmark_runs_ray_beside_local() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "workers.py"), "--records", "2000"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "outputs identical across configurations: True" in out
    assert "ray (2 nodes) / local workers 2, 4 files read in the workers" in out
    assert "each round's pair" in out
    assert "once started" in out
