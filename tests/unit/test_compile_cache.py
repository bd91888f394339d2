"""The compile cache is bounded (least recently used first); `dataflare cache` shows, clears it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataflare import ConfigurationError
from dataflare_host import _cache
from dataflare_host.cli import main


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(root))
    monkeypatch.delenv("DATAFLARE_CACHE_MAX_MB", raising=False)
    return root


def _file(folder: Path, name: str, size: int, used: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, (used, used))
    return path


def test_evict_deletes_least_recently_used_first_down_to_the_cap(cache_dir: Path) -> None:
    compiled = cache_dir / "compiled"
    old = _file(compiled, "old.cwasm", 400, used=1_000)
    middle = _file(compiled, "middle.cwasm", 400, used=2_000)
    new = _file(compiled, "new.cwasm", 400, used=3_000)
    _cache.touch(old)  # used just now: the most recent
    assert _cache.evict(compiled, 850) == [middle]
    assert sorted(p.name for p in compiled.iterdir()) == ["new.cwasm", "old.cwasm"]
    assert _cache.evict(compiled, 850) == []
    assert _cache.evict(compiled, 0, keep=new) == [old]
    assert [p.name for p in compiled.iterdir()] == ["new.cwasm"]


def test_evict_of_a_missing_folder_is_nothing(cache_dir: Path) -> None:
    assert _cache.evict(cache_dir / "compiled", 0) == []


def test_the_host_evicts_after_a_sandbox_process_compiled(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox process imports nothing of the host: the host keeps the cap after its compile."""
    from dataflare_host.wasm.sandbox.host._instance import evict_compiled

    compiled = cache_dir / "compiled"
    old = _file(compiled, "old.cwasm", 1 << 20, used=1_000)
    new = _file(compiled, "new.cwasm", 1 << 20, used=2_000)
    monkeypatch.setenv("DATAFLARE_CACHE_MAX_MB", "1")
    evict_compiled(new)
    assert not old.exists()
    assert new.exists()  # the artifact just compiled stays, even alone at the cap


def test_a_bad_cap_is_logged_not_raised_after_a_compile(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dataflare_host.wasm.sandbox.host._instance import evict_compiled

    new = _file(cache_dir / "compiled", "new.cwasm", 10, used=2_000)
    monkeypatch.setenv("DATAFLARE_CACHE_MAX_MB", "lots")
    evict_compiled(new)
    assert "compile cache not evicted" in caplog.text
    assert "DATAFLARE_CACHE_MAX_MB" in caplog.text


def test_cap_comes_from_the_environment(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _cache.cache_max_bytes() == _cache.DEFAULT_MAX_MB << 20
    monkeypatch.setenv("DATAFLARE_CACHE_MAX_MB", "1.5")
    assert _cache.cache_max_bytes() == int(1.5 * (1 << 20))
    for bad in ("-1", "lots", "nan"):
        monkeypatch.setenv("DATAFLARE_CACHE_MAX_MB", bad)
        with pytest.raises(ConfigurationError, match="DATAFLARE_CACHE_MAX_MB"):
            _cache.cache_max_bytes()


def test_cache_info_and_clear_commands(cache_dir: Path) -> None:
    _file(cache_dir / "builds", "plugin-abc.wasm", 3 << 20, used=1)
    _file(cache_dir / "compiled", "abc.cwasm", 5 << 20, used=1)
    _file(cache_dir / "compiled", "def.cwasm", 1 << 20, used=2)
    _file(cache_dir / "keys", "0123abcd", 1 << 20, used=3)
    runner = CliRunner()
    info = runner.invoke(main, ["cache", "info"])
    assert info.exit_code == 0, info.output
    lines = info.output.splitlines()
    assert lines[0] == f"cache: {cache_dir}"
    assert lines[1].split() == ["builds/", "1", "file(s)", "3.0", "MB"]
    assert lines[2].split() == ["compiled/", "2", "file(s)", "6.0", "MB"]
    assert lines[3].split() == ["keys/", "1", "file(s)", "1.0", "MB"]
    assert "1024.0 MB" in lines[4]
    assert lines[5].split()[:4] == ["sandbox", "servers:", "0", "running"]
    cleared = runner.invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0, cleared.output
    assert cleared.output.strip() == f"cleared {cache_dir}: 4 file(s), 10.0 MB"
    assert [f.files for f in _cache.cache_info()] == [0, 0, 0]


def test_cache_info_with_a_bad_cap_is_one_line(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAFLARE_CACHE_MAX_MB", "big")
    result = CliRunner().invoke(main, ["cache", "info"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: DATAFLARE_CACHE_MAX_MB must be a size in MB, 0 or more (got 'big')"
    ]
