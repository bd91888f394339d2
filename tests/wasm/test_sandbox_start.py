"""A sandbox process starts lean and loads a known component without hashing it.

The cached cold start to a plugin's first record is mostly the sandbox process's
start: these tests pin what it must not do again (import the SDK, attrs,
``importlib.metadata``, read and hash the whole component) by asking the
process which modules it imported, not by timing it. They also pin what the
shortcuts must not cost: a component rewritten in place never runs a stale
artifact, and a killed process leaves no folder behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import EXAMPLES
from support.pipeline_files import write_one_processor_pipeline

from dataflare import ConfigurationError, Record
from dataflare_host import Sandbox, load_plugin
from dataflare_host._cache import cache_root
from dataflare_host.wasm.build._wit import WIT_INTERFACE
from dataflare_host.wasm.sandbox.child import _wasmtime_engine
from dataflare_host.wasm.sandbox.host import _process
from dataflare_host.wasm.sandbox.host._instance import Instance
from dataflare_host.wasm.sandbox.host._process import SandboxProcess, Unanswered
from dataflare_host.wasm.sandbox.protocol import RACY_WINDOW_NS

pytestmark = pytest.mark.wasm

# What the sandbox process used to import before its first record, ~90 ms of it.
HEAVY = ("dataflare", "attr", "attrs", "importlib.metadata", "platformdirs", "logging", "tempfile")


@pytest.fixture
def process() -> Iterator[SandboxProcess]:
    started = SandboxProcess()
    yield started
    started.kill()


def ask(process: SandboxProcess, *message: object) -> object:
    answer = process.request(tuple(message), 60.0)
    assert answer[0] == "ok", answer
    return answer[1]


def start_instance(process: SandboxProcess, component: Path) -> None:
    ask(process, "load", str(component), str(cache_root()))
    ask(process, "instantiate", 256 << 20, 10.0, "test", WIT_INTERFACE)


def heavy_modules(process: SandboxProcess) -> list[str]:
    modules = ask(process, "modules")
    assert isinstance(modules, list)
    assert "wasmtime" in modules  # the answer is the process's, not an empty list
    return [m for m in modules if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY))]


def settled_copy(component: Path, folder: Path) -> Path:
    """A copy of ``component`` whose last change is old enough to be memoised."""
    copy = folder / component.name
    shutil.copyfile(component, copy)
    age_s = (time.time_ns() - copy.stat().st_ctime_ns) / 1e9
    time.sleep(max(0.0, RACY_WINDOW_NS / 1e9 - age_s + 0.1))
    return copy


def compiled(component: Path) -> Path:
    """``component``, its artifact in the cache (a compile imports the cache module)."""
    process = SandboxProcess()
    try:
        ask(process, "load", str(component), str(cache_root()))
    finally:
        process.kill()
    return component


def test_a_sandbox_process_runs_a_plugin_without_the_sdk_attrs_or_metadata(
    example_components: dict[str, Path], process: SandboxProcess
) -> None:
    """Loading, instantiating and calling a compiled component imports none of the host's
    heavy modules."""
    start_instance(process, compiled(example_components["uppercase_map"]))
    ask(process, "call", "describe", (), 10.0)
    assert heavy_modules(process) == []


def test_a_known_component_is_neither_read_nor_hashed_again(
    example_components: dict[str, Path], tmp_path: Path
) -> None:
    """The second process to load an unchanged file finds its key by the file's identity."""
    component = settled_copy(compiled(example_components["uppercase_map"]), tmp_path)
    first = SandboxProcess()
    try:
        start_instance(first, component)  # hashes it, and remembers the key
    finally:
        first.kill()
    second = SandboxProcess()
    try:
        start_instance(second, component)
        assert "hashlib" not in ask(second, "modules")  # type: ignore[operator]
    finally:
        second.kill()


def test_a_component_rewritten_with_its_size_and_mtime_kept_is_not_taken_for_the_old(
    example_components: dict[str, Path], tmp_path: Path
) -> None:
    """Only ctime tells this rewrite apart: the memoised key must not answer for it."""
    component = settled_copy(example_components["uppercase_map"], tmp_path)
    engine = _wasmtime_engine.WasmtimeEngine()
    engine.load(component, cache_root())  # memoises the key of its identity
    before = component.stat()
    data = bytearray(component.read_bytes())
    data[:8] = b"\0" * 8  # no longer WebAssembly; same size
    component.write_bytes(bytes(data))
    os.utime(component, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert component.stat().st_size == before.st_size
    with pytest.raises(_wasmtime_engine.ComponentError, match="not a valid WebAssembly component"):
        engine.load(component, cache_root())


def test_a_rewritten_component_runs_its_new_code_in_a_reused_process(
    example_components: dict[str, Path], tmp_path: Path
) -> None:
    """A pooled process that loaded the old file loads the new one at the same path."""
    component = settled_copy(example_components["uppercase_map"], tmp_path)
    with load_plugin(component) as plugin:
        assert [r.value for r in plugin.process([Record(b"hi")]).outputs] == [b"HI"]
    before = component.stat()
    shutil.copyfile(example_components["json_field_filter"], component)
    os.utime(component, ns=(before.st_atime_ns, before.st_mtime_ns))
    with load_plugin(component, {"field": "status", "value": "active"}) as plugin:
        kept = plugin.process([Record(b'{"status":"active"}'), Record(b'{"status":"paused"}')])
        assert [r.value for r in kept.outputs] == [b'{"status":"active"}']  # not uppercased


def test_a_sandbox_process_s_pipes_hold_a_whole_batch(process: SandboxProcess) -> None:
    """Both pipes are widened to 1 MiB (a 1,000-record batch is ~200 KB), so a batch sent
    ahead is written at once instead of in turns with the process's reader thread."""
    import fcntl

    for stream in (process._in, process._out):
        assert fcntl.fcntl(stream.fileno(), fcntl.F_GETPIPE_SZ) == 1 << 20
    assert ask(process, "modules")  # the channel still works both ways


def test_pipes_the_system_will_not_widen_keep_their_size() -> None:
    """A refused F_SETPIPE_SZ (here: not a pipe) is no error."""
    with open(os.devnull, "rb") as not_a_pipe:
        _process.widen_pipes(not_a_pipe.fileno())


def test_a_sandbox_process_killed_at_its_deadline_leaves_no_scratch_folder() -> None:
    """The host made the process's folder and removes it when it kills the process."""
    process = SandboxProcess()
    scratch = Path(process.scratch)
    assert scratch.is_dir()
    # Stopped, it cannot answer before the host looks: on a loaded machine a running one
    # could, since a deadline is moved later by the time the process waited for a CPU.
    os.kill(process.proc.pid, signal.SIGSTOP)
    with pytest.raises(Unanswered):
        process.request(("modules",), 0.0)  # the deadline has passed: killed at once
    assert not process.alive
    assert not scratch.exists()


def test_a_sandbox_process_that_died_leaves_no_scratch_folder() -> None:
    """A process that died by itself (here SIGKILL from outside) is cleaned up when found dead."""
    process = SandboxProcess()
    scratch = Path(process.scratch)
    os.kill(process.proc.pid, signal.SIGKILL)
    process.proc.wait()
    with pytest.raises(Unanswered, match="signal 9"):
        process.request(("modules",), 10.0)
    assert not scratch.exists()


def test_a_sandbox_process_let_go_by_the_host_removes_its_own_scratch_folder(
    example_components: dict[str, Path],
) -> None:
    """Its stdin closed with an instance still up (a host exiting without closing its
    plugin), the process exits and takes its folder, capture files included, with it."""
    process = SandboxProcess()
    scratch = Path(process.scratch)
    try:
        start_instance(process, compiled(example_components["uppercase_map"]))
        assert any(scratch.iterdir())  # the instance's capture folder
        process.proc.stdin.close()  # type: ignore[union-attr]
        assert process.proc.wait(timeout=30) == 0
        assert not scratch.exists()
    finally:
        process.kill()


def test_a_prestarted_process_is_handed_to_the_next_instance(
    example_components: dict[str, Path],
) -> None:
    """prestart() boots a process that the next instance uses rather than starting its own."""
    component = compiled(example_components["uppercase_map"])
    _process._pool.close()  # no idle process left by earlier tests
    _process.prestart()
    _process.prestart()  # one is idle already: no second process
    idle = _process._pool._idle
    assert len(idle) == 1
    prestarted = idle[0].proc.pid
    instance = Instance(component, Sandbox(), "test")
    try:
        assert instance._process is not None
        assert instance._process.proc.pid == prestarted
    finally:
        instance.close()


def test_prestart_does_not_import_wasmtime_into_the_host() -> None:
    """The point of prestarting: the process boots while the host imports the backend."""
    code = (
        "import sys\n"
        "from dataflare_host.wasm.sandbox.host._process import prestart\n"
        "prestart()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'wasmtime'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]"


def test_a_component_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    """A missing file is refused by the host before any process is asked."""
    with pytest.raises(ConfigurationError, match="cannot read WASM component"):
        load_plugin(tmp_path / "missing.wasm")


def test_loading_a_wasm_plugin_prestarts_a_process_and_its_instance_runs_there(
    example_components: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_plugin starts the sandbox process before importing the backend, then uses it."""
    prestarted: list[int] = []
    real_prestart = _process.prestart

    def prestart() -> None:
        real_prestart()
        prestarted.append(_process._pool._idle[-1].proc.pid)

    _process._pool.close()  # no idle process left by earlier tests
    monkeypatch.setattr(_process, "prestart", prestart)
    plugin = load_plugin(example_components["uppercase_map"])
    try:
        assert [r.value for r in plugin.process([Record(b"a")]).outputs] == [b"A"]
        assert len(prestarted) == 1  # loaded, plus the backend's import: one process
        idle = [process.proc.pid for process in _process._pool._idle]
        assert prestarted[0] not in idle, "the plugin's instance did not take the process"
    finally:
        plugin.close()


def test_a_pipeline_with_a_wasm_step_prestarts_before_building_its_connectors(
    example_components: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline asks for a sandbox process before its connectors; a native one does not."""
    from dataflare_host.pipeline import Pipeline, _runner

    events: list[str] = []
    monkeypatch.setattr(_process, "prestart", lambda: events.append("prestart"))
    real_build = _runner.build_connector
    monkeypatch.setattr(
        _runner,
        "build_connector",
        lambda *args, **kwargs: events.append("connector") or real_build(*args, **kwargs),
    )
    for source, plugin in (
        ("wasm", example_components["uppercase_map"]),
        ("native", EXAMPLES / "uppercase_map.py"),
    ):
        events.clear()
        config = {"plugin_type": "map", "plugin_source": source, "plugin_path": str(plugin)}
        write_one_processor_pipeline(tmp_path / "pipeline.yaml", config)
        Pipeline.from_file(tmp_path / "pipeline.yaml").close()
        if source == "wasm":
            assert events[:2] == ["prestart", "connector"], events
        else:
            assert "prestart" not in events, events
