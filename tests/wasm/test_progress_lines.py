"""Long waits are never silent, even piped: a progress line at least every two seconds.

A first build's lines are checked on the author's path (tests/wasm/test_first_output.py),
which builds on an empty cache anyway.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from support.paths import EXAMPLES


def test_a_first_compile_prints_progress_lines_at_least_every_two_seconds(
    component_builder, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """`dataflare test x.wasm | cat` on an empty compile cache: a line at least every 2 s,
    then how long loading took; nothing when the artifact is cached."""
    wasm = tmp_path / "upper.wasm"
    shutil.copyfile(component_builder(EXAMPLES / "uppercase_map.py"), wasm)
    env = {**os.environ, "DATAFLARE_CACHE_DIR": str(tmp_path / "empty-cache")}
    command = [sys.executable, "-m", "dataflare", "test", str(wasm), "--text", "hi"]
    started = time.monotonic()
    out = tmp_path / "stdout.txt"
    with (
        out.open("w") as stdout,
        subprocess.Popen(
            command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env
        ) as proc,
    ):
        assert proc.stderr is not None
        arrivals: list[tuple[float, str]] = []
        for line in proc.stderr:
            arrivals.append((time.monotonic() - started, line.rstrip("\n")))
    assert proc.returncode == 0, arrivals
    assert out.read_text() == "HI\n"
    progress = [(t, text) for t, text in arrivals if text.startswith("loading upper.wasm")]
    assert progress, arrivals
    assert progress[-1][1].startswith("loading upper.wasm (its first use compiles it): ")
    times = [0.0] + [t for t, _ in progress]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The first notice comes after 1 s; each further one 2 s later (plus scheduling slack).
    assert max(gaps) < 3.5, arrivals

    cached = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert cached.returncode == 0
    assert "loading upper.wasm" not in cached.stderr
