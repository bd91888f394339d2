"""What a hostile cache, plugin or machine cannot do to a WASM run: a planted compiled
artifact is refused, the fork server keeps no host's environment, a guest's error text and
output stay bounded, a looping start function is stopped, and a loaded machine does not get
a well-behaved plugin killed.

Every assertion is on an event (an error, a line, a size, an exit), never on how
long something took: the machine running the suite may be loaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from second_user import other_uid
from support.unix_sockets import wait_until_answering

from dataflare import ConfigurationError, LimitExceededError, Record
from dataflare._errors import MAX_MESSAGE_BYTES
from dataflare_host import load_plugin
from dataflare_host.wasm import SandboxLimits
from dataflare_host.wasm.sandbox._charged_time import Stopwatch
from dataflare_host.wasm.sandbox.child._output import OUTPUT_CAP_BYTES
from dataflare_host.wasm.sandbox.child._wasmtime_engine import compile_key
from dataflare_host.wasm.sandbox.host import _process, _spawn
from dataflare_host.wasm.sandbox.host._spawn import stop_servers

pytestmark = pytest.mark.wasm

REPO = Path(__file__).resolve().parent.parent.parent
PLUGIN = REPO / "tests" / "hostile_plugins" / "noisy_and_huge.py"
SECRET = "s3cr3t-token-of-the-first-run"


@pytest.fixture(scope="module")
def trust_wasm(component_builder) -> Path:  # type: ignore[no-untyped-def]
    """The round-three plugin as a component (built once per session)."""
    return component_builder(PLUGIN)


@pytest.fixture
def own_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache folder of this test's own (short: it holds the servers' sockets), and no
    idle sandbox process from another cache."""
    folder = Path(tempfile.mkdtemp(prefix="dft-", dir="/tmp"))
    monkeypatch.setenv("DATAFLARE_CACHE_DIR", str(folder))
    monkeypatch.setattr(_spawn, "_started", {})
    monkeypatch.setattr(_spawn, "_wanted", {})
    _process._pool.close()
    yield folder
    stop_servers(folder / "servers")
    _process._pool.close()
    shutil.rmtree(folder, ignore_errors=True)


def one(value: bytes, offset: int = 0) -> list[Record]:
    return [Record(value, offset=offset)]


# --- a planted compiled artifact is not mapped --------------------------------


def test_a_compiled_artifact_of_another_user_is_refused_not_mapped(
    trust_wasm: Path, own_cache: Path
) -> None:
    """Another user's file under the very key of this component's artifact (here a real
    artifact: the attack maps another plugin's) is refused with one line naming it."""
    uid = other_uid()
    key = compile_key(trust_wasm)
    shared = Path(os.environ.get("DATAFLARE_TEST_CACHE_DIR") or REPO / ".dataflare" / "test-cache")
    compiled = own_cache / "compiled"
    compiled.mkdir(mode=0o700, parents=True)
    planted = compiled / f"{key}.cwasm"
    source = shared / "compiled" / f"{key}.cwasm"
    if source.is_file():
        shutil.copyfile(source, planted)
    else:
        planted.write_bytes(b"not native code, but planted all the same")
    os.chown(planted, uid, -1)
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(trust_wasm)
    message = str(caught.value)
    assert "\n" not in message
    assert f"cached file {planted} belongs to uid {uid}, not to you" in message
    assert "refusing to use it" in message


def test_a_compiled_folder_of_another_user_is_refused(trust_wasm: Path, own_cache: Path) -> None:
    uid = other_uid()
    (own_cache / "compiled").mkdir(mode=0o700)
    os.chown(own_cache / "compiled", uid, -1)
    with pytest.raises(ConfigurationError, match=r"cache folder .*compiled belongs to uid"):
        load_plugin(trust_wasm)


# --- the fork server keeps no host's environment ------------------------------


def environ_of(pid: int) -> dict[str, str]:
    """The environment block of a process, as ``/proc/PID/environ`` shows it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def test_the_server_and_its_children_never_show_the_first_hosts_environment(
    own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_spawn.IDLE_ENV, "120")
    monkeypatch.setenv("SECRET_TOKEN", SECRET)
    address = _process.server_address()
    assert address is not None
    _spawn._start_server(address, _process.import_roots(), _process.interpreter_flags())
    server = _spawn._servers[-1]
    wait_until_answering(address)
    assert "SECRET_TOKEN" not in environ_of(server.pid)
    assert SECRET not in Path(f"/proc/{server.pid}/environ").read_text(errors="replace")
    # The next run's host has no such variable; the child it is forked shows none either.
    monkeypatch.delenv("SECRET_TOKEN")
    monkeypatch.setenv("DATAFLARE_PROBE", "the second host's")
    child = _process.SandboxProcess()
    try:
        assert isinstance(child.proc, _spawn.ForkedProcess)
        assert SECRET not in Path(f"/proc/{child.proc.pid}/environ").read_text(errors="replace")
        answer = child.request(("environ",), 30.0)
        assert answer[0] == "ok"
        assert answer[1]["DATAFLARE_PROBE"] == "the second host's"  # its host's, as before
        assert "SECRET_TOKEN" not in answer[1]
    finally:
        child.kill()


# --- bounded guest error text -------------------------------------------------


def test_a_guest_error_of_5_mb_is_bounded_with_the_cut_counted(trust_wasm: Path) -> None:
    plugin = load_plugin(trust_wasm)
    try:
        result = plugin.process(one(b"huge_error"))
    finally:
        plugin.close()
    assert result.error is not None
    assert len(str(result.error).encode()) <= MAX_MESSAGE_BYTES
    assert "ValueError: head of a huge message xxx" in str(result.error)
    assert "more bytes cut]" in str(result.error)


def test_a_guest_init_error_of_5_mb_is_one_bounded_line(trust_wasm: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(trust_wasm, {"fail_init": "yes"})
    message = str(caught.value)
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert "\n" not in message
    assert "init refused: xxx" in message
    assert message.endswith("more bytes cut]")


# --- guest output never exceeds its cap, on disk or in memory -----------------


class DiskSampler:
    """The most bytes (size, and blocks allocated) the files under ``folder`` held at once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for root, _, files in os.walk(self.folder):
                for name in files:
                    try:
                        info = os.lstat(os.path.join(root, name))
                    except FileNotFoundError:
                        continue
                    total += max(info.st_size, info.st_blocks * 512)
            self.most = max(self.most, total)
            self.samples += 1
            time.sleep(0.002)


def test_a_flood_of_guest_output_never_leaves_more_than_the_cap_on_disk(
    trust_wasm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """2,000 prints of 64 KiB in one call: at no moment more than the cap on disk, and
    what was dropped is counted to the byte."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the sandbox's scratch folder
    _process._pool.close()
    plugin = load_plugin(trust_wasm, sandbox=SandboxLimits(time_limit_s=120.0))
    caplog.set_level(logging.INFO, logger="dataflare.guest")
    try:
        with DiskSampler(scratch) as disk:
            result = plugin.process(one(b"flood"))
    finally:
        plugin.close()
        _process._pool.close()
    assert result.error is None, result.error
    assert disk.samples > 1
    assert disk.most <= OUTPUT_CAP_BYTES, disk.most
    printed = 2000 * (64 * 1024 + 1)
    assert f"[{printed - OUTPUT_CAP_BYTES:,} more bytes of guest stdout dropped]" in caplog.text


# --- a complete SDK-built component whose start function loops ---------------


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def with_looping_start(component: bytes) -> bytes:
    """``component`` with one more core module, whose start function loops, instantiated
    last: every export is still there, so only its start tells it from the original."""
    import wasmtime

    assert component[:8] == b"\0asm\x0d\0\x01\0", "not a component"
    modules = 0
    at = 8
    while at < len(component):
        section = component[at]
        at += 1
        size = shift = 0
        while True:
            byte = component[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        modules += section == 1  # a core module section holds one module
        at += size
    spin = wasmtime.wat2wasm("(module (func $spin (loop $again (br $again))) (start $spin))")
    instance = b"\x01" + b"\x00" + _leb(modules) + b"\x00"  # one: instantiate it, no args
    return component + b"\x01" + _leb(len(spin)) + spin + b"\x02" + _leb(len(instance)) + instance


def test_a_complete_sdk_component_whose_start_loops_is_stopped_with_one_line(
    trust_wasm: Path, tmp_path: Path
) -> None:
    looping = tmp_path / "looping_start.wasm"
    looping.write_bytes(with_looping_start(trust_wasm.read_bytes()))
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(looping, sandbox=SandboxLimits(time_limit_s=1.0))
    message = str(caught.value)
    assert "\n" not in message
    assert str(looping) in message
    assert "1 s time limit" in message
    assert "start function" in message


# --- a loaded machine does not stop a well-behaved plugin --------------------


def sandbox_children() -> set[int]:
    """The pids of this process's sandbox processes (started without the server)."""
    found = set()
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"sandbox.child._main" in cmdline:
            found.add(int(entry))
    return found


def pinned_plugin(wasm: Path, cpu: int, work: int, limit_s: float) -> tuple[object, int]:
    """The plugin loaded in a new sandbox process that runs on ``cpu`` only; its pid."""
    before = sandbox_children()
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # a process started now inherits it
    try:
        plugin = load_plugin(wasm, {"work": str(work)}, sandbox=SandboxLimits(time_limit_s=limit_s))
    finally:
        os.sched_setaffinity(0, saved)
    (pid,) = sandbox_children() - before
    assert os.sched_getaffinity(pid) == {cpu}
    return plugin, pid


def test_a_loaded_cpu_does_not_stop_a_well_behaved_plugin_but_a_loop_still_is(
    trust_wasm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven busy loops pinned to the sandbox process's CPU: a record that needs a
    quarter of the limit in CPU passes (it needs twice the limit in wall time), and a
    looping record is still stopped at the limit."""
    monkeypatch.setenv(_spawn.IDLE_ENV, "0")  # processes this host starts, so pinned as it is
    _process._pool.close()
    cpu = min(os.sched_getaffinity(0))
    limit = 2.0
    # How much CPU the work costs on this machine: measured, then scaled to limit / 4.
    probe, pid = pinned_plugin(trust_wasm, cpu, 1_000_000, 600.0)
    try:
        watch = Stopwatch(pid, main_thread=True)
        assert probe.process(one(b"work")).error is None  # type: ignore[attr-defined]
        per_million = watch.read().cpu_s
    finally:
        probe.close()  # type: ignore[attr-defined]
        _process._pool.close()
    work = max(1, int(1_000_000 * (limit / 4) / per_million))
    competitors = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass",
            ]
        )
        for _ in range(7)
    ]
    try:
        plugin, _ = pinned_plugin(trust_wasm, cpu, work, limit)
        try:
            for offset in range(3):
                result = plugin.process(one(b"work", offset))  # type: ignore[attr-defined]
                assert result.error is None, result.error
                assert len(result.outputs) == 1
            looped = plugin.process(one(b"loop", 3))  # type: ignore[attr-defined]
        finally:
            plugin.close()  # type: ignore[attr-defined]
    finally:
        for competitor in competitors:
            competitor.kill()
            competitor.wait()
        _process._pool.close()
    assert isinstance(looped.error, LimitExceededError), looped.error
    assert f"{limit:g} s time limit" in str(looped.error)
