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
