"""A Python plugin's files ride in a custom section after the shared runtime's bytes
(issue 25: a new plugin's first WASM output in seconds): found from the end of the file,
split off exactly, and refused when garbled or naming a file outside its folder."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflare_host.wasm.sandbox.plugin_sources import (
    ORIGIN_FILE,
    SECTION_NAME,
    PluginSources,
    SourcesError,
    append_sources,
    read_sources,
    split_sources,
    write_sources,
)

RUNTIME = b"\0asm\x0d\0\x01\0" + bytes(range(256)) * 4  # a component preamble and filler

names = st.lists(
    st.text(
        st.characters(codec="utf-8", exclude_characters="/\\\0"), min_size=1, max_size=12
    ).filter(lambda part: part not in (".", "..")),
    min_size=1,
    max_size=3,
).map("/".join)
sources = st.builds(
    PluginSources,
    st.text(max_size=40),
    st.lists(st.tuples(names, st.binary(max_size=300)), max_size=5).map(tuple),
)


@given(sources, st.binary(max_size=64))
def test_the_runtime_and_the_sources_split_back_exactly(
    plugin: PluginSources, runtime_tail: bytes
) -> None:
    runtime = RUNTIME + runtime_tail
    component = append_sources(runtime, plugin)
    length, found = split_sources(component)
    assert component[:length] == runtime
    assert found == plugin


def test_the_section_is_a_well_formed_custom_section(tmp_path: Path) -> None:
    """Section id 0, its size covering the rest of the file, then its name: any
    component reader skips it; wasmtime compiles the whole file (tests/wasm)."""
    component = append_sources(RUNTIME, PluginSources("p.py", (("a.py", b"x = 1\n"),)))
    section = component[len(RUNTIME) :]
    assert section[0] == 0
    size, at = 0, 1
    for shift in range(0, 35, 7):
        byte = section[at]
        at += 1
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    assert at + size == len(section)
    assert section[at + 1 : at + 1 + section[at]].decode() == SECTION_NAME


def test_a_component_without_sources_is_all_runtime(tmp_path: Path) -> None:
    assert split_sources(RUNTIME) == (len(RUNTIME), None)
    path = tmp_path / "rust.wasm"
    path.write_bytes(RUNTIME)
    assert read_sources(path) == (len(RUNTIME), None)
    (tmp_path / "tiny.wasm").write_bytes(b"\0asm")
    assert read_sources(tmp_path / "tiny.wasm") == (4, None)


def test_reading_the_file_finds_what_splitting_the_bytes_finds(tmp_path: Path) -> None:
    plugin = PluginSources("pkg", (("dataflare_user_plugin/__init__.py", b"# x\n"),))
    path = tmp_path / "p.wasm"
    path.write_bytes(append_sources(RUNTIME, plugin))
    assert read_sources(path) == split_sources(path.read_bytes()) == (len(RUNTIME), plugin)


def _garbled(component: bytes, at: int, value: bytes) -> bytes:
    return component[:at] + value + component[at + len(value) :]


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("a length past the file", lambda c: c[:-4] + struct.pack(">I", len(c) + 1)),
        ("a length shorter than the trailer", lambda c: c[:-4] + struct.pack(">I", 3)),
        ("not a custom section", lambda c: _garbled(c, len(RUNTIME), b"\x01")),
        ("another section's name", lambda c: c.replace(SECTION_NAME.encode(), b"x" * 24)),
        ("a file cut short", lambda c: _garbled(c, len(c) - 30, struct.pack(">I", 99))),
    ],
)
def test_a_garbled_section_is_refused(why: str, change: object, tmp_path: Path) -> None:
    component = append_sources(RUNTIME, PluginSources("p.py", (("a.py", b"x = 1\n"),)))
    garbled = change(component)  # type: ignore[operator]
    with pytest.raises(SourcesError):
        split_sources(garbled)
    path = tmp_path / "garbled.wasm"
    path.write_bytes(garbled)
    with pytest.raises(SourcesError):
        read_sources(path)


@pytest.mark.parametrize("name", ["../escape.py", "/etc/passwd", "a/../../b.py", "", "a\\b.py"])
def test_a_file_outside_the_folder_is_refused_both_ways(name: str) -> None:
    with pytest.raises(SourcesError, match="outside its folder"):
        append_sources(RUNTIME, PluginSources("p.py", ((name, b""),)))
    if not name:
        return
    # Planted after the build, as a hostile component would carry it.
    placeholder = "x" * len(name.encode())
    good = append_sources(RUNTIME, PluginSources("p.py", ((placeholder, b""),)))
    planted = good.replace(placeholder.encode(), name.encode())
    with pytest.raises(SourcesError, match="outside its folder"):
        split_sources(planted)


def test_written_sources_are_the_files_and_the_origin(tmp_path: Path) -> None:
    plugin = PluginSources(
        "my_plugin", (("dataflare_user_plugin/__init__.py", b"A"), ("dep/mod.py", b"B"))
    )
    folder = tmp_path / "sources"
    write_sources(plugin, folder)
    assert (folder / ORIGIN_FILE).read_text() == "my_plugin"
    assert (folder / "dataflare_user_plugin" / "__init__.py").read_bytes() == b"A"
    assert (folder / "dep" / "mod.py").read_bytes() == b"B"
    assert folder.stat().st_mode & 0o077 == 0
