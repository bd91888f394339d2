"""Issue 24, item 1: every cache folder and file the host trusts is checked as servers/ is.

A folder or file another user owns or can write, or a symbolic link, is refused
with one line naming the path, what is wrong and what to do; the run stops
(documented in CHANGELOG). Another user's files are made with a real second user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from second_user import other_uid

from dataflare import ConfigurationError
from dataflare_host._cache import clear_cache, trusted_file, trusted_folder

FOLDERS = ("builds", "compiled", "keys", "locks")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(root))
    return root


@pytest.mark.parametrize("name", FOLDERS)
def test_cache_folders_are_created_private(cache_dir: Path, name: str) -> None:
    folder = trusted_folder(name)
    assert folder == cache_dir / name
    for path in (cache_dir, folder):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize("name", FOLDERS)
def test_a_cache_folder_of_another_user_is_refused(cache_dir: Path, name: str) -> None:
    uid = other_uid()
    trusted_folder(name)
    os.chown(cache_dir / name, uid, -1)
    with pytest.raises(ConfigurationError) as caught:
        trusted_folder(name)
    assert str(caught.value) == (
        f"cache folder {cache_dir / name} belongs to uid {uid}, not to you (uid {os.getuid()}), "
        "so another user could plant code in it; refusing to use it: remove it, or set "
        "DATAFLARE_CACHE_DIR to a folder of your own"
    )


def test_a_cache_root_of_another_user_is_refused(cache_dir: Path) -> None:
    """The root too: its owner could swap a checked folder for one of hers."""
    uid = other_uid()
    cache_dir.mkdir()
    os.chown(cache_dir, uid, -1)
    with pytest.raises(ConfigurationError, match=rf"cache folder {cache_dir} belongs to uid"):
        trusted_folder("compiled")


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_a_cache_folder_others_can_write_is_refused(cache_dir: Path, mode: int) -> None:
    trusted_folder("compiled")
    os.chmod(cache_dir / "compiled", mode)
    with pytest.raises(ConfigurationError) as caught:
        trusted_folder("compiled")
    assert f"is writable by its group or by anyone (mode {mode:04o})" in str(caught.value)


def test_a_symlinked_cache_folder_is_refused(cache_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    cache_dir.mkdir(mode=0o700)
    (cache_dir / "keys").symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match=r"keys is a symbolic link, so another user"):
        trusted_folder("keys")


def test_a_cached_file_of_another_user_is_refused(cache_dir: Path) -> None:
    uid = other_uid()
    planted = trusted_folder("compiled") / "0123.cwasm"
    planted.write_bytes(b"native code")
    os.chown(planted, uid, -1)
    with pytest.raises(ConfigurationError) as caught:
        trusted_file(planted)
    assert str(caught.value) == (
        f"cached file {planted} belongs to uid {uid}, not to you (uid {os.getuid()}); "
        "refusing to use it: remove it, or set DATAFLARE_CACHE_DIR to a folder of your own"
    )


def test_cached_files_must_be_unwritable_by_others_and_not_links(cache_dir: Path) -> None:
    folder = trusted_folder("builds")
    mine = folder / "mine.wasm"
    mine.write_bytes(b"x")
    mine.chmod(0o644)
    assert trusted_file(mine) is True
    assert trusted_file(folder / "missing.wasm") is False
    mine.chmod(0o664)
    with pytest.raises(ConfigurationError, match="writable by its group or by anyone"):
        trusted_file(mine)
    link = folder / "link.wasm"
    link.symlink_to(mine)
    with pytest.raises(ConfigurationError, match=r"link\.wasm is a symbolic link"):
        trusted_file(link)


def test_cache_clear_does_not_follow_a_symlinked_folder(cache_dir: Path, tmp_path: Path) -> None:
    """Clearing removes the link, never the files it points at."""
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine", encoding="utf-8")
    cache_dir.mkdir()
    (cache_dir / "compiled").symlink_to(elsewhere)
    cleared = clear_cache()
    assert cleared.files == 0
    assert (elsewhere / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert not (cache_dir / "compiled").exists()


# -- the loading paths: builds/ and keys/ (compiled/ is in tests/wasm) ------------------

PLUGIN = """import dataflare


@dataflare.map
def same(record: dataflare.Record) -> dataflare.Record:
    return record
"""


def test_a_planted_build_is_refused_not_run(cache_dir: Path, tmp_path: Path) -> None:
    """Another user's file under the very name of this plugin's build: refused, not loaded."""
    from dataflare_host.wasm.build._cache import build_key, component_for

    uid = other_uid()
    plugin = tmp_path / "same.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    planted = trusted_folder("builds") / f"same-{build_key(plugin)}.wasm"
    planted.write_bytes(b"\0asm evil")
    os.chown(planted, uid, -1)
    with pytest.raises(ConfigurationError, match=rf"cached file {planted} belongs to uid {uid}"):
        component_for(plugin)


def test_a_run_on_a_cache_of_another_user_stops_with_one_line(
    cache_dir: Path, tmp_path: Path
) -> None:
    """``dataflare run`` of a WASM plugin: the refused cache is the one error line, exit 2."""
    from click.testing import CliRunner

    from dataflare_host.cli._main import main

    uid = other_uid()
    (tmp_path / "same.py").write_text(PLUGIN, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n', encoding="utf-8")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "sources: [{id: in, type: plugin, config: {plugin_type: file, "
        "connection: {path: in.jsonl}}}]\n"
        "processors: [{id: same, type: plugin, config: {plugin_type: map, "
        "plugin_source: wasm, plugin_path: same.py}}]\n"
        "sinks: [{id: out, type: plugin, config: {plugin_type: file, "
        "connection: {path: out.jsonl}}}]\n",
        encoding="utf-8",
    )
    trusted_folder("builds")
    os.chown(cache_dir / "builds", uid, -1)
    result = CliRunner().invoke(main, ["run", "--quiet", str(pipeline)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {pipeline}:2: processors[0].config: cache folder {cache_dir / 'builds'} "
        f"belongs to uid {uid}, not to you "
        f"(uid {os.getuid()}), so another user could plant code in it; refusing to use it: "
        "remove it, or set DATAFLARE_CACHE_DIR to a folder of your own"
    ]
    assert not (tmp_path / "out.jsonl").exists()


def test_a_planted_key_memo_is_refused(cache_dir: Path, tmp_path: Path) -> None:
    """A memo names the artifact a component maps: another user's memo is refused."""
    import zlib

    from dataflare_host.wasm.sandbox.child._wasmtime_engine import (
        ComponentError,
        _artifact_key,
        _identity,
    )

    uid = other_uid()
    component = tmp_path / "c.wasm"
    component.write_bytes(b"\0asm\r\0\1\0")
    keys = trusted_folder("keys")
    identity, _ = _identity(component)
    memo = keys / f"{zlib.crc32(identity.encode()):08x}.key"
    memo.write_text(f"{identity}\n{'e' * 32}", encoding="utf-8")
    os.chown(memo, uid, -1)
    with pytest.raises(
        ComponentError,
        match=rf"^cached file {memo} belongs to uid {uid}, not to you \(uid {os.getuid()}\); "
        "refusing to use it",
    ):
        _artifact_key(component, keys)
    os.chown(memo, os.getuid(), -1)
    assert _artifact_key(component, keys) == ("e" * 32, None)  # the check, not the memo, refused
