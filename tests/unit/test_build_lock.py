"""Two processes asking the build cache for one plugin at once run one build, not two.

The build itself (and its compile) is replaced by a slow fake that logs each call, so
the test checks the locking alone (a real componentize-py build takes seconds).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ASK = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from dataflare_host.wasm.build import _cache as _build_cache

    def slow_build(path, target):
        with open(sys.argv[2], "a") as log:
            log.write(f"built {target.name}\\n")
        time.sleep(1.0)  # long enough for the other process to ask meanwhile
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        partial.write_bytes(b"component")
        partial.replace(target)
        return target

    _build_cache.build_component = slow_build
    # Built whole: the shared runtime's path is tests/wasm/test_shared_runtime.py's.
    _build_cache.shared_runtime = lambda: Path("runtime.wasm")
    _build_cache.assemble = lambda runtime, source, target: False
    _build_cache.compile_for_this_host = lambda component: None  # the bytes are a fake
    print(_build_cache.component_for(sys.argv[1]))
    """
)


def test_two_processes_wait_for_one_build(tmp_path: Path) -> None:
    """The second process finds the first one's component once the lock is free."""
    plugin = tmp_path / "shout.py"
    plugin.write_text("import dataflare\n\n@dataflare.map\ndef shout(r):\n    return r\n")
    log = tmp_path / "builds.log"
    env = {"DATAFLARE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    asks = [
        subprocess.Popen(
            [sys.executable, "-c", ASK, str(plugin), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    answers = [ask.communicate(timeout=60) for ask in asks]
    assert [ask.returncode for ask in asks] == [0, 0], answers
    targets = {stdout.strip() for stdout, _ in answers}
    assert len(targets) == 1, targets
    assert Path(targets.pop()).read_bytes() == b"component"
    assert log.read_text().count("built ") == 1, log.read_text()
