"""The sandbox server forks sandbox processes that start as a fresh one would.

A cached cold start was mostly a new interpreter importing wasmtime; a server
that did that once forks each sandbox process instead. These tests pin what
the fork must not change: the child answers as a sandbox process, imports
nothing heavy, takes its host's environment and folder (not the server's),
is killed by its host at once, and outlives a server that stops or dies.
They also pin the server's life: started by a host that found none (after its
own process booted), gone when idle or asked, refused a folder others can
enter, and never shared across different code.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.unix_sockets import wait_until_answering

from dataflare import Record
from dataflare_host import load_plugin
from dataflare_host.cli import main
from dataflare_host.wasm.sandbox.host import _process, _spawn
from dataflare_host.wasm.sandbox.host._process import SandboxProcess
from dataflare_host.wasm.sandbox.host._spawn import ForkedProcess, server_address, stop_servers

pytestmark = pytest.mark.wasm

HEAVY = ("dataflare.", "attr", "attrs", "importlib.metadata", "platformdirs", "logging", "tempfile")
FLAGS = _process.interpreter_flags()


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache folder of this test's own (short: a socket path holds ~100 bytes), so
    its servers are this test's; they are stopped at the end."""
    folder = Path(tempfile.mkdtemp(prefix="dfs-", dir="/tmp"))
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(folder))
    monkeypatch.setenv(_spawn.IDLE_ENV, "120")
    # What this host process already started or wants belongs to other tests' folders.
    monkeypatch.setattr(_spawn, "_started", {})
    monkeypatch.setattr(_spawn, "_wanted", {})
    _process._pool.close()  # no idle process from another folder's server
    yield folder / "servers"
    stop_servers()
    shutil.rmtree(folder, ignore_errors=True)


def address() -> str:
    found = _process.server_address()
    assert found is not None
    return found


def start_server() -> subprocess.Popen[bytes]:
    """A server for this code, answering before this returns."""
    _spawn._start_server(address(), _process.import_roots(), FLAGS)
    server = _spawn._servers[-1]
    wait_until_answering(address())
    return server


def ask(process: SandboxProcess, *message: object) -> object:
    answer = process.request(tuple(message), 60.0)
    assert answer[0] == "ok", answer
    return answer[1]


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_a_sandbox_process_is_forked_by_a_running_server(servers: Path) -> None:
    """The server's child answers as a sandbox process and imports nothing heavy."""
    server = start_server()
    process = SandboxProcess()
    try:
        assert isinstance(process.proc, ForkedProcess)
        assert parent_of(process.proc.pid) == server.pid
        modules = ask(process, "modules")
        assert isinstance(modules, list)
        assert "wasmtime" in modules
        assert [m for m in modules if m.startswith(HEAVY)] == []
    finally:
        process.kill()
    assert process.proc.wait(timeout=2) == -signal.SIGKILL


def test_a_forked_process_has_its_hosts_environment_and_folder(
    servers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the server's: the compile cache's cap, say, is read from the environment."""
    start_server()
    monkeypatch.setenv("DATAFLARE_PROBE", "set after the server started")
    monkeypatch.chdir(tmp_path)
    process = SandboxProcess()
    try:
        assert isinstance(process.proc, ForkedProcess)
        environment = ask(process, "environ")
        assert isinstance(environment, dict)
        assert environment["DATAFLARE_PROBE"] == "set after the server started"
        assert os.readlink(f"/proc/{process.proc.pid}/cwd") == str(tmp_path)
    finally:
        process.kill()


def test_a_forked_process_ends_cleanly_when_its_host_lets_go(servers: Path) -> None:
    """stdin closed: it exits 0, the server reports it, and its folder is gone."""
    start_server()
    process = SandboxProcess()
    assert isinstance(process.proc, ForkedProcess)
    ask(process, "modules")
    assert process.proc.poll() is None
    assert process.proc.stdin is not None
    process.proc.stdin.close()
    try:
        assert process.proc.wait(timeout=30) == 0
        assert not Path(process.scratch).exists()
    finally:
        process.kill()  # closes its stdout


def test_a_peer_that_says_nothing_does_not_stall_the_server(servers: Path) -> None:
    """The server drops a silent connection after half a second and serves the next."""
    start_server()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as silent:
        silent.connect(address())
        started = time.monotonic()
        process = SandboxProcess()
        try:
            assert isinstance(process.proc, ForkedProcess)
            assert time.monotonic() - started < 2.0
        finally:
            process.kill()


def test_a_host_that_finds_no_server_starts_one_once_its_own_process_booted(
    servers: Path,
) -> None:
    """The first process is a new interpreter; the server starts after it answered;
    the next process is forked."""
    first = SandboxProcess()
    try:
        assert not isinstance(first.proc, ForkedProcess)
        assert not os.path.exists(address())  # not before the first process booted
        ask(first, "modules")
        wait_until_answering(address())
        second = SandboxProcess()
        try:
            assert isinstance(second.proc, ForkedProcess)
        finally:
            second.kill()
    finally:
        first.kill()


def test_a_host_starts_its_server_again_once_it_exited_not_while_it_boots(
    servers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = SandboxProcess()
    ask(first, "modules")  # booted: the server starts
    wait_until_answering(address())
    assert stop_servers() == 1
    assert _spawn._servers[-1].wait(timeout=10) == 0
    # Within the boot window a missing server is taken for one still booting.
    second = SandboxProcess()
    ask(second, "modules")
    assert not isinstance(second.proc, ForkedProcess)
    assert not os.path.exists(address())
    # Past it, the host starts a new one.
    monkeypatch.setattr(_spawn, "_REBOOT_AFTER_S", 0.0)
    third = SandboxProcess()
    ask(third, "modules")
    wait_until_answering(address())
    for process in (first, second, third):
        process.kill()


def test_children_outlive_a_killed_server_and_a_new_server_replaces_it(servers: Path) -> None:
    """A server SIGKILLed leaves a stale socket: its child still serves and is still
    killed by its host; the next process starts fresh and brings a new server."""
    server = start_server()
    process = SandboxProcess()
    try:
        assert isinstance(process.proc, ForkedProcess)
        server.kill()
        server.wait()
        assert os.path.exists(address())  # stale
        assert "wasmtime" in ask(process, "modules")  # type: ignore[operator]
        fresh = SandboxProcess()
        try:
            assert not isinstance(fresh.proc, ForkedProcess)
            ask(fresh, "modules")  # booted: it starts a new server
            wait_until_answering(address())
            forked = SandboxProcess()
            assert isinstance(forked.proc, ForkedProcess)
            forked.kill()
        finally:
            fresh.kill()
    finally:
        process.kill()
    assert process.proc.wait(timeout=2) == -signal.SIGKILL  # its status died with the server


def test_stopping_the_servers_leaves_their_children_serving(servers: Path) -> None:
    server = start_server()
    process = SandboxProcess()
    try:
        assert stop_servers() == 1
        assert server.wait(timeout=10) == 0
        assert not os.path.exists(address())
        assert "wasmtime" in ask(process, "modules")  # type: ignore[operator]
    finally:
        process.kill()


def test_cache_info_counts_the_servers_and_cache_clear_stops_them(servers: Path) -> None:
    server = start_server()
    runner = CliRunner()
    info = runner.invoke(main, ["cache", "info"])
    assert info.exit_code == 0, info.output
    assert "sandbox servers: 1 running (exit after 120 s idle" in info.output
    cleared = runner.invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0, cleared.output
    assert cleared.output.splitlines()[-1] == "stopped 1 sandbox server(s)"
    assert server.wait(timeout=10) == 0


def test_an_idle_server_exits_and_removes_its_socket(
    servers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_spawn.IDLE_ENV, "0.5")
    server = start_server()
    process = SandboxProcess()
    process.kill()  # a child alive keeps the server; this one is gone
    assert server.wait(timeout=15) == 0
    assert not os.path.exists(address())


def test_no_server_when_turned_off_not_on_linux_or_when_others_can_enter_its_folder(
    servers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = _process.import_roots()
    assert server_address(roots, FLAGS) is not None
    servers.chmod(0o755)
    assert server_address(roots, FLAGS) is None
    process = SandboxProcess()  # still starts, as a new interpreter
    try:
        assert not isinstance(process.proc, ForkedProcess)
        ask(process, "modules")
        assert not list(servers.glob("*.sock"))  # and no server was started there
    finally:
        process.kill()
    servers.chmod(0o700)
    assert server_address(roots, FLAGS) is not None
    with monkeypatch.context() as elsewhere:
        elsewhere.delattr(os, "pidfd_open")  # not Linux: no pidfd to signal a child by
        assert server_address(roots, FLAGS) is None
    monkeypatch.setenv(_spawn.IDLE_ENV, "0")
    assert server_address(roots, FLAGS) is None


def test_different_code_gets_a_different_server(servers: Path, tmp_path: Path) -> None:
    """The address is keyed by wasmtime's installed version and the interpreter's flags."""
    for version in ("40.0.0", "41.0.0"):
        (tmp_path / version).mkdir()
        (tmp_path / version / f"wasmtime-{version}.dist-info").mkdir()
    key = _spawn._code_key
    assert key((str(tmp_path / "40.0.0"),), ("-I",)) != key((str(tmp_path / "41.0.0"),), ("-I",))
    assert key((str(tmp_path / "40.0.0"),), ("-I",)) != key((str(tmp_path / "40.0.0"),), ("-B",))


def test_a_plugin_runs_in_a_forked_process(example_components: dict[str, Path]) -> None:
    """End to end, in the suite's own cache: load, run, and the process is the server's."""
    roots = _process.import_roots()
    shared = server_address(roots, FLAGS)
    assert shared is not None
    _spawn._start_server(shared, roots, FLAGS)  # exits at once if one runs
    wait_until_answering(shared)
    _process._pool.close()
    plugin = load_plugin(example_components["uppercase_map"])
    try:
        assert [r.value for r in plugin.process([Record(b"a")]).outputs] == [b"A"]
        (instance,) = plugin._idle  # type: ignore[attr-defined]
        assert isinstance(instance._process.proc, ForkedProcess)
    finally:
        plugin.close()


def test_the_host_never_imports_wasmtime_to_run_a_wasm_plugin(
    example_components: dict[str, Path],
) -> None:
    """Answers arrive as plain records and variants, so the host unpickles them without
    wasmtime (~20 ms of a cold start)."""
    code = (
        "import sys\n"
        "from dataflare import Record\n"
        "from dataflare_host import load_plugin\n"
        f"plugin = load_plugin({str(example_components['uppercase_map'])!r})\n"
        "print(plugin.process([Record(b'a')]).outputs[0].value)\n"
        "plugin.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'wasmtime'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.split("\n")[:2] == ["b'A'", "[]"]
