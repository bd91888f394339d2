"""A build names its phases, says how long each took last time, and publishes a component
only once it is compiled for this host (issue 25, first WASM output in seconds).

Fast: componentize-py and wasmtime are replaced by fakes; tests/wasm/test_first_output.py
runs the real path.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from dataflare import PluginIOError
from dataflare_host import _waiting
from dataflare_host.wasm.build import _cache, _precompile


class FakeBuild:
    """Stands in for componentize-py and the compile, recording what was called on what."""

    def __init__(self, fail_compile: bool = False) -> None:
        self.calls: list[tuple[str, Path, bool]] = []
        self.fail_compile = fail_compile

    def build_component(self, source: Path, output: Path) -> Path:
        output.write_bytes(b"\0asm component")
        self.calls.append(("componentize", output, output.is_file()))
        return output

    def compile_for_this_host(self, component: Path) -> None:
        self.calls.append(("compile", component, component.is_file()))
        if self.fail_compile:
            raise PluginIOError(f"{component} is not a valid WebAssembly component")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeBuild:
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeBuild()
    monkeypatch.setattr(_cache, "build_component", fake.build_component)
    monkeypatch.setattr(_cache, "compile_for_this_host", fake.compile_for_this_host)
    # Built whole (a plugin the shared runtime cannot load): the runtime's path has
    # its own tests below and in tests/wasm/test_shared_runtime.py.
    monkeypatch.setattr(_cache, "shared_runtime", lambda: tmp_path / "runtime.wasm")
    monkeypatch.setattr(_cache, "assemble", lambda runtime, source, target: False)
    return fake


def plugin(tmp_path: Path, name: str = "upper") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text("import dataflare\n\n@dataflare.map\ndef upper(r):\n    return r\n")
    return path


def test_componentize_then_compile_then_publish(fake: FakeBuild, tmp_path: Path) -> None:
    target = _cache.component_for(plugin(tmp_path))
    assert [(name, exists) for name, _, exists in fake.calls] == [
        ("componentize", True),
        ("compile", True),
    ]
    built, compiled = fake.calls[0][1], fake.calls[1][1]
    assert built == compiled != target  # compiled before it is published under its name
    assert target.read_bytes() == b"\0asm component"
    assert not built.exists()
    assert _precompile.last_duration("componentize") is not None
    assert _precompile.last_duration("compile for this host") is not None


def test_a_built_component_is_reused_without_building_or_compiling(
    fake: FakeBuild, tmp_path: Path
) -> None:
    source = plugin(tmp_path)
    first = _cache.component_for(source)
    fake.calls.clear()
    assert _cache.component_for(source) == first
    assert fake.calls == []


def test_a_failed_compile_publishes_nothing(
    fake: FakeBuild, tmp_path: Path
) -> None:
    fake.fail_compile = True
    source = plugin(tmp_path)
    with pytest.raises(PluginIOError):
        _cache.component_for(source)
    assert not list((tmp_path / "cache" / "builds").glob("*.wasm"))
    assert not list((tmp_path / "cache" / "builds").glob(".*"))
    fake.fail_compile = False
    assert _cache.component_for(source).is_file()  # the next call builds it again


def test_compile_now_false_leaves_the_compile_to_the_first_run(
    fake: FakeBuild, tmp_path: Path
) -> None:
    _cache.component_for(plugin(tmp_path), compile_now=False)
    assert [name for name, _, _ in fake.calls] == ["componentize"]


def test_progress_names_each_phase_with_last_times_duration(
    fake: FakeBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each phase's first progress line names it, its step, and how long it took last time."""
    monkeypatch.setattr(_waiting, "FIRST_NOTICE_S", 0.0)
    _precompile.remember_duration("componentize", 7.4)
    _precompile.remember_duration("compile for this host", 4.6)
    lines: list[str] = []
    announced = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            if record.getMessage().endswith("last time)"):
                announced.set()

    def slow_phase(step: object) -> object:
        def run(*args: object) -> object:
            # Blocks until this phase's first notice was logged: an event, not a clock.
            assert announced.wait(30)
            announced.clear()
            return step(*args)  # type: ignore[operator]

        return run

    monkeypatch.setattr(_cache, "build_component", slow_phase(fake.build_component))
    monkeypatch.setattr(_cache, "compile_for_this_host", slow_phase(fake.compile_for_this_host))
    handler = Collect()
    logger = logging.getLogger("dataflare.progress")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        _cache.component_for(plugin(tmp_path, "phases"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert "building phases.py: componentize (1 of 2) ... (about 7 s last time)" in lines
    assert "building phases.py: compile for this host (2 of 2) ... (about 5 s last time)" in lines


def test_a_corrupt_durations_file_only_loses_the_estimate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(tmp_path))
    (tmp_path / "durations.json").write_text("{not json")
    assert _precompile.last_duration("componentize") is None
    _precompile.remember_duration("componentize", 3.0)
    assert _precompile.last_duration("componentize") == 3.0


# --- the shared runtime ------------------------------------------------------------------


class FakeRuntime:
    """Stands in for the shared runtime's build and the load check of a plugin on it."""

    def __init__(self, tmp_path: Path, *, loads: bool) -> None:
        self.calls: list[str] = []
        self.loads = loads
        self.bundled = tmp_path / "install" / "dataflare-runtime-k.wasm"

    def build_runtime(self, output: Path) -> None:
        self.calls.append("componentize the runtime")
        output.write_bytes(b"\0asm runtime")

    def assemble(self, runtime: Path, source: Path, target: Path) -> bool:
        self.calls.append(f"assemble {source.name} on {runtime.read_bytes()!r}")
        if self.loads:
            target.write_bytes(runtime.read_bytes() + b" + files")
        return self.loads


@pytest.fixture
def runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeBuild, request: pytest.FixtureRequest
) -> FakeRuntime:
    runtime = FakeRuntime(tmp_path, loads=getattr(request, "param", True))
    monkeypatch.undo()  # the fake fixture's stand-ins for the runtime, not its build fakes
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_cache, "build_component", fake.build_component)
    monkeypatch.setattr(_cache, "compile_for_this_host", fake.compile_for_this_host)
    monkeypatch.setattr(_cache, "build_runtime", runtime.build_runtime)
    monkeypatch.setattr(_cache, "assemble", runtime.assemble)
    monkeypatch.setattr(_cache, "bundled_runtime", lambda: runtime.bundled)
    return runtime


def test_the_first_plugin_builds_and_compiles_the_runtime_then_every_plugin_is_assembled(
    runtime: FakeRuntime, fake: FakeBuild, tmp_path: Path
) -> None:
    first = _cache.component_for(plugin(tmp_path, "first"))
    second = _cache.component_for(plugin(tmp_path, "second"))
    assert runtime.calls == [
        "componentize the runtime",
        "assemble first.py on b'\\x00asm runtime'",
        "assemble second.py on b'\\x00asm runtime'",
    ]
    # Compiled once, the runtime; neither plugin is componentized nor compiled.
    assert [name for name, _, _ in fake.calls] == ["compile"]
    assert first.read_bytes() == second.read_bytes() == b"\0asm runtime + files"
    assert _precompile.last_duration("componentize the shared runtime") is not None


def test_a_runtime_the_install_carries_is_compiled_not_componentized(
    runtime: FakeRuntime, fake: FakeBuild, tmp_path: Path
) -> None:
    runtime.bundled.parent.mkdir()
    runtime.bundled.write_bytes(b"\0asm bundled runtime")
    target = _cache.shared_runtime()
    assert runtime.calls == []
    assert [name for name, _, _ in fake.calls] == ["compile"]
    assert target.read_bytes() == b"\0asm bundled runtime"
    assert target.stat().st_mode & 0o022 == 0


@pytest.mark.parametrize("runtime", [False], indirect=True)
def test_a_plugin_the_runtime_cannot_load_is_built_whole(
    runtime: FakeRuntime, fake: FakeBuild, tmp_path: Path
) -> None:
    target = _cache.component_for(plugin(tmp_path, "whole"))
    assert runtime.calls == ["componentize the runtime", "assemble whole.py on b'\\x00asm runtime'"]
    # The runtime's compile, then the plugin's own build and compile.
    assert [name for name, _, _ in fake.calls] == ["compile", "componentize", "compile"]
    assert target.read_bytes() == b"\0asm component"
