"""File pipelines killed with SIGKILL at random points, and run on a full disk.

Both run ``python -m dataflare run`` in subprocesses (a SIGKILL must hit a real
process) on file source -> file sink pipelines (JSONL), and check what every
restart must keep: each source record reaches the sink at least once, and every
sink line parses (no torn or fused lines).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.kills import kill_mid_run

SLOW_COPY = '''"""Pass a record through after a pause (so that a run lasts long enough to kill)."""
import time

import dataflare


@dataflare.map(params={"delay_ms": "0"})
def slow_copy(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    time.sleep(float(params["delay_ms"]) / 1000)
    return record
'''

COMMAND = [sys.executable, "-m", "dataflare", "run", "--quiet", "pipeline.yaml"]


def write_pipeline(directory: Path, sink: str, *, batch: int, delay_ms: int = 0) -> None:
    processors = []
    if delay_ms:
        (directory / "slow_copy.py").write_text(SLOW_COPY)
        processors.append(
            {
                "id": "slow",
                "type": "plugin",
                "config": {
                    "plugin_type": "map",
                    "plugin_path": "slow_copy.py",
                    "params": {"delay_ms": str(delay_ms)},
                },
            }
        )
    document = {
        "name": "file-copy",
        "batch": {"size": batch, "linger_ms": 0},
        "checkpoint": {"path": "copy.checkpoint.json", "interval_ms": 50},
        "sources": [
            {"id": "in", "type": "plugin",
             "config": {"plugin_type": "file", "connection": {"path": "in.jsonl"}}}
        ],
        "processors": processors,
        "sinks": [
            {"id": "out", "type": "plugin",
             "config": {"plugin_type": "file", "connection": {"path": sink}}}
        ],
    }
    (directory / "pipeline.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def append_records(path: Path, start: int, count: int, size: int) -> int:
    """Append ``count`` JSON records of about ``size`` bytes each; return the next id."""
    pad = "x" * max(0, size - 30)
    with path.open("a") as handle:
        for number in range(start, start + count):
            handle.write(json.dumps({"id": number, "pad": pad}, separators=(",", ":")) + "\n")
    return start + count


def sink_ids(path: Path) -> list[int]:
    """The ids in a JSONL sink; fails on any line that does not parse (torn or fused)."""
    ids = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            assert line.endswith(b"\n"), f"{path}:{number}: torn last line"
            try:
                ids.append(json.loads(line)["id"])
            except ValueError as exc:
                raise AssertionError(f"{path}:{number}: not one JSON record: {exc}") from exc
    return ids


def mid_line(path: Path) -> bool:
    """Whether the file's last byte is not a newline: a write is under way."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            return size > 0 and os.pread(handle.fileno(), 1, size - 1) != b"\n"
    except FileNotFoundError:
        return False


def kill_runs(
    directory: Path, *, kills: int, record_size: int, count: int, rng: random.Random
) -> None:
    """Start the pipeline, SIGKILL it at a random moment, restart: ``kills`` times.

    Every other kill is aimed at a moment the sink is half-way through a line
    (the tail is polled), where a torn write is most likely; the others fall at
    a random time. A run that finishes before its kill gets more records appended.
    """
    source, sink = directory / "in.jsonl", directory / "out.jsonl"
    next_id = append_records(source, 0, count, record_size)

    def aim_mid_line(kill: int, child: subprocess.Popen[bytes]) -> None:
        if kill % 2:
            aim = time.monotonic() + 0.3
            while time.monotonic() < aim and child.poll() is None and not mid_line(sink):
                pass

    def more_input() -> None:
        nonlocal next_id
        next_id = append_records(source, next_id, count // 4, record_size)

    kill_mid_run(
        COMMAND, directory, sink, kills=kills, rng=rng, pause_s=0.15, more_input=more_input,
        budget_s=45, aim=aim_mid_line,
    )
    delivered = sink_ids(sink)
    assert set(delivered) == set(range(next_id))  # at least once: nothing lost
    assert len(delivered) >= next_id


@pytest.mark.slow
@pytest.mark.parametrize(
    ("record_size", "count", "batch", "delay_ms", "kills"),
    [
        pytest.param(1 << 20, 24, 2, 15, 11, id="1MB-records"),
        pytest.param(100, 60_000, 500, 0, 11, id="100B-records"),
    ],
)
def test_sigkill_at_random_points_keeps_every_line_whole(
    tmp_path: Path, record_size: int, count: int, batch: int, delay_ms: int, kills: int
) -> None:
    """SIGKILL 11 times per record size (22 in all), restarting each time: every
    source record reaches the sink at least once, and every sink line parses."""
    write_pipeline(tmp_path, "out.jsonl", batch=batch, delay_ms=delay_ms)
    kill_runs(
        tmp_path, kills=kills, record_size=record_size, count=count,
        rng=random.Random(f"issue-9-{record_size}"),
    )


# -- a full disk -----------------------------------------------------------------------


def _run(*command: str) -> bool:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A small file system of its own: tmpfs, else a loop-mounted ext2 image."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root; this test runs as a user")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = _run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount))
    if not mounted and shutil.which("mkfs.ext2"):
        image = tmp_path / "disk.img"
        with image.open("wb") as handle:
            handle.truncate(8 << 20)
        mounted = _run("mkfs.ext2", "-q", "-F", str(image)) and _run(
            "mount", "-o", "loop", str(image), str(mount)
        )
    if not mounted:
        pytest.skip("neither a tmpfs nor a loop-mounted ext2 could be mounted here")
    try:
        yield mount
    finally:
        _run("umount", "-l", str(mount))


def fill_leaving(directory: Path, free: int) -> Path:
    """Fill ``directory``'s file system with one file, leaving about ``free`` bytes."""
    filler = directory / "filler"
    chunk = b"\0" * (64 << 10)
    # Written until ENOSPC: then the file system is full.
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(chunk)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - free))
    return filler


def test_a_full_disk_is_one_line_and_the_resumed_run_completes(
    tmp_path: Path, small_disk: Path
) -> None:
    """The sink's disk fills up mid-run: one ``error:`` line, no traceback, whole lines;
    after space returns, the next run resumes and completes with every record."""
    sink = small_disk / "out.jsonl"
    write_pipeline(tmp_path, str(sink), batch=50)
    count = append_records(tmp_path / "in.jsonl", 0, 3000, 1000)  # ~3 MB
    filler = fill_leaving(small_disk, 1 << 20)  # room for about a third of it

    failed = subprocess.run(
        COMMAND, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, failed.stderr
    assert str(sink) in errors[0]
    assert "No space left on device" in errors[0]
    assert "free space" in errors[0]
    partial = sink_ids(sink)  # every line whole, though the disk filled mid-write
    assert 0 < len(partial) < count

    filler.unlink()  # space returns
    resumed = subprocess.run(
        COMMAND, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    delivered = sink_ids(sink)
    assert set(delivered) == set(range(count))
    assert delivered[: len(partial)] == partial
