"""An unchanged plugin is neither rebuilt nor recompiled.

componentize-py's output is not byte-reproducible, so reproducibility comes
from the build cache: it is keyed by the build's inputs, so building the same
plugin again gives the very same component, and the compile cache (keyed by
the component) then has its artifact already.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from dataflare_host.cli import main
from dataflare_host.wasm import component_for


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_building_the_same_plugin_twice_gives_the_same_component(
    tmp_path: Path, examples_dir: Path
) -> None:
    """Same source (even copied elsewhere and touched): one component, byte for byte."""
    original = examples_dir / "json_field_filter.py"
    copy = tmp_path / "json_field_filter.py"
    shutil.copyfile(original, copy)
    first = component_for(original)
    os.utime(copy, (1_000_000, 1_000_000))  # a touched file is not a changed one
    second = component_for(copy)
    assert second == first
    runner = CliRunner()
    outputs = [tmp_path / "a.wasm", tmp_path / "b.wasm"]
    for output in outputs:
        result = runner.invoke(main, ["build", str(copy), "-o", str(output)])
        assert result.exit_code == 0, result.output
    assert _sha256(outputs[0]) == _sha256(outputs[1]) == _sha256(first)


def test_the_second_pipeline_start_compiles_nothing(
    tmp_path: Path, examples_dir: Path, dataflare_exe: Path
) -> None:
    """Two runs of a pipeline with a WASM filter on an empty compile cache: the first
    compiles the component once (one artifact), the second loads that artifact and
    writes none (a compile would replace the file: a new inode)."""
    plugin = examples_dir / "json_field_filter.py"
    built = component_for(plugin)  # the session's build: no new componentize-py run
    cache = tmp_path / "cache"
    (cache / "builds").mkdir(parents=True)
    shutil.copyfile(built, cache / "builds" / built.name)
    (tmp_path / "in.jsonl").write_text(
        '{"status": "active", "n": 1}\n{"status": "paused", "n": 2}\n', encoding="utf-8"
    )
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""
name: compile-once
sources:
  - id: in
    type: plugin
    config: {{plugin_type: file, connection: {{path: in.jsonl}}}}
processors:
  - id: active
    type: plugin
    config:
      plugin_type: filter
      plugin_source: wasm
      plugin_path: {plugin}
sinks:
  - id: out
    type: plugin
    config: {{plugin_type: file, connection: {{path: out.jsonl, fsync: false}}}}
""",
        encoding="utf-8",
    )
    env = {**os.environ, "DATAFLARE_CACHE_DIR": str(cache)}

    def run() -> dict[str, int]:
        (tmp_path / "out.jsonl").unlink(missing_ok=True)
        completed = subprocess.run(
            [str(dataflare_exe), "run", "--quiet", "--reset", str(pipeline)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        assert (tmp_path / "out.jsonl").read_text() == '{"status": "active", "n": 1}\n'
        return {p.name: p.stat().st_ino for p in (cache / "compiled").iterdir()}

    first = run()
    assert len(first) == 1, first  # compiled once, on first use
    assert sorted((cache / "builds").iterdir()) == [cache / "builds" / built.name]  # no build
    second = run()
    assert second == first
