"""A hostile plugin cannot hurt the host, and the plugin object stays usable after it tries.

``hostile_plugins/hostile.py`` misbehaves (the way its ``attack`` param names) only
on a record whose value is b"attack", and passes every other record through,
stamped with ``calls``: how many records that copy of the plugin has seen. So
``calls == "1"`` on the batch after an attack proves a fresh instance ran it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from support.paths import REPO

from dataflare import LimitExceededError, PluginError, ProcessingError, Record
from dataflare_host import Plugin, load_plugin
from dataflare_host.wasm import Sandbox

pytestmark = pytest.mark.wasm

HOSTILE = REPO / "tests" / "hostile_plugins" / "hostile.py"
MiB = 1 << 20


@pytest.fixture(scope="module")
def hostile_wasm(component_builder) -> Path:  # type: ignore[no-untyped-def]
    """The hostile plugin as a component (built once per session)."""
    return component_builder(HOSTILE)


def batch(*values: bytes, start: int = 10) -> list[Record]:
    return [Record(v, key=b"k\xff", offset=start + i) for i, v in enumerate(values)]


ATTACK = batch(b"first", b"attack", b"last")


def assert_next_batch_runs(plugin: Plugin, *, fresh: bool) -> None:
    """The same plugin object processes a normal batch correctly (on a fresh instance)."""
    normal = batch(b"a", b"\x00b\x80", start=50)
    result = plugin.process(normal)
    assert result.error is None, result.error
    assert result.consumed == 2
    assert [(r.value, r.key, r.offset) for r in result.outputs] == [
        (r.value, r.key, r.offset) for r in normal
    ]
    if fresh:
        assert [r.metadata["calls"] for r in result.outputs] == ["1", "2"]


def load(wasm: Path, attack: str, **limits: float) -> Plugin:
    return load_plugin(wasm, {"attack": attack}, sandbox=Sandbox(**limits))  # type: ignore[arg-type]


# --- limits: stopped, reported, replaced -------------------------------------------------


def test_infinite_loop_is_stopped_at_the_time_limit(hostile_wasm: Path) -> None:
    """`while True: pass` ends at the time limit as a LimitExceededError naming the record
    that loops (the batch is narrowed down to it: one limit for the batch, one for it alone);
    the record before it keeps its output."""
    with load(hostile_wasm, "loop", time_limit_s=1.0) as plugin:
        started = time.monotonic()
        result = plugin.process(ATTACK)
        # One limit for the batch, one for the record alone. No upper bound: a limit
        # counts the plugin's own time, so a loaded machine stretches the wall clock.
        assert time.monotonic() - started > 1.9
        assert isinstance(result.error, LimitExceededError)
        assert result.error.error_type == "TimeLimitExceeded"
        assert "time limit" in result.error.error_message
        assert result.error.offset == 11  # the b"attack" record, not the batch's first
        assert result.error.record_value == "attack"
        assert result.consumed == 1
        assert [r.value for r in result.outputs] == [b"first"]
        assert_next_batch_runs(plugin, fresh=True)


def test_time_limit_applies_to_every_batch(hostile_wasm: Path) -> None:
    """A second runaway batch is stopped too; the ones between and after run normally."""
    with load(hostile_wasm, "loop", time_limit_s=0.5) as plugin:
        for _ in range(2):
            assert isinstance(plugin.process(ATTACK).error, LimitExceededError)
            assert_next_batch_runs(plugin, fresh=True)


def test_memory_bomb_is_stopped_at_the_cap(hostile_wasm: Path) -> None:
    """Allocating without bound stops at the memory cap with an error saying so."""
    with load(hostile_wasm, "memory", memory_limit_mb=64) as plugin:
        result = plugin.process(ATTACK)
        error = result.error
        assert isinstance(error, ProcessingError)
        assert isinstance(error, LimitExceededError) or "memory" in str(error).lower()
        assert "memory" in str(error).lower()
        assert_next_batch_runs(plugin, fresh=True)


# --- the sandbox: no files, no environment, no network -----------------------------------


def test_reading_etc_passwd_fails_in_the_guest(hostile_wasm: Path) -> None:
    """open("/etc/passwd") fails inside the component while the same code works natively."""
    native = load_plugin(HOSTILE, {"attack": "passwd"}).process(ATTACK)
    assert native.error is None
    assert b"root:" in native.outputs[1].value  # the file is there: only the sandbox stops it

    with load(hostile_wasm, "passwd") as plugin:
        result = plugin.process(ATTACK)
        assert type(result.error) is ProcessingError
        assert result.error.error_type in {"FileNotFoundError", "PermissionError", "OSError"}
        assert (result.error.index, result.error.offset, result.consumed) == (1, 11, 1)
        assert not any(b"root:" in r.value for r in result.outputs)
        assert_next_batch_runs(plugin, fresh=False)


def test_host_environment_is_invisible_in_the_guest(
    hostile_wasm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable set in the host's environment is a KeyError inside the component."""
    monkeypatch.setenv("DATAFLARE_SECRET", "hunter2")
    native = load_plugin(HOSTILE, {"attack": "env"}).process(ATTACK)
    assert native.outputs[1].value == b"hunter2"

    with load(hostile_wasm, "env") as plugin:
        result = plugin.process(ATTACK)
        assert type(result.error) is ProcessingError
        assert result.error.error_type == "KeyError"
        assert "DATAFLARE_SECRET" in result.error.error_message
        assert all(b"hunter2" not in r.value for r in result.outputs)
        assert_next_batch_runs(plugin, fresh=False)


def test_opening_a_socket_fails_in_the_guest(hostile_wasm: Path) -> None:
    """socket.create_connection cannot work inside the component."""
    with load(hostile_wasm, "socket") as plugin:
        result = plugin.process(ATTACK)
        assert type(result.error) is ProcessingError
        assert result.error.error_type in {
            "ModuleNotFoundError",
            "ImportError",
            "OSError",
            "PermissionError",
            "ConnectionRefusedError",
            "NotImplementedError",
        }
        assert [r.value for r in result.outputs] == [b"first"]
        assert_next_batch_runs(plugin, fresh=False)


# --- errors and traps --------------------------------------------------------------------


def test_plain_raise_is_a_plugin_error_like_natively(hostile_wasm: Path) -> None:
    """A raised ValueError comes back as the PluginError the native backend gives."""
    native = load_plugin(HOSTILE, {"attack": "raise"}).process(ATTACK)
    with load(hostile_wasm, "raise") as plugin:
        result = plugin.process(ATTACK)
        error = result.error
        assert isinstance(error, PluginError)
        assert type(error) is ProcessingError
        assert error.fields() == {
            "plugin": "hostile",
            "kind": "map",
            "offset": 11,
            "index": 1,
            "error_type": "ValueError",
            "error_message": "attack refused at the gate",
            "record_key": "k\\xff",
            "record_value": "attack",
            "location": "hostile.py:48",
            "frames": error.frames,
        }
        assert (error.frames or "").endswith(
            'line 48, in refuse\n    raise ValueError("attack refused at the gate")'
        )
        assert error == native.error
        assert [r.value for r in result.outputs] == [b"first"]
        assert_next_batch_runs(plugin, fresh=False)


def test_uncaught_trap_leaves_the_plugin_usable(hostile_wasm: Path) -> None:
    """SystemExit escapes every except in the guest and traps; the next batch still runs."""
    with load(hostile_wasm, "exit") as plugin:
        for _ in range(3):
            result = plugin.process(ATTACK)
            error = result.error
            assert type(error) is ProcessingError  # reported, never raised
            assert error.error_type == "Trap"
            assert error.offset == ATTACK[0].offset
            assert "trapped" in error.error_message
            assert_next_batch_runs(plugin, fresh=True)


def test_trap_in_the_second_shard_keeps_the_first_shards_outputs(hostile_wasm: Path) -> None:
    """Split over two instances, a trap names the failed shard's start; earlier outputs stay."""
    records = batch(b"r0", b"r1", b"r2", b"r3", b"attack", b"r5")
    with load(hostile_wasm, "exit", instances=2, min_shard=2) as plugin:
        result = plugin.process(records)
        assert result.error is not None
        assert result.error.error_type == "Trap"
        assert (result.error.index, result.error.offset, result.consumed) == (3, 13, 3)
        assert [r.value for r in result.outputs] == [b"r0", b"r1", b"r2"]
        assert plugin.process(batch(b"a", b"b", b"c", b"d")).ok


def test_guest_output_goes_to_the_host_log(
    hostile_wasm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the guest prints lands in the dataflare.guest log: stdout as INFO, stderr as WARNING."""
    caplog.set_level(logging.INFO, logger="dataflare.guest")
    with load(hostile_wasm, "print") as plugin:
        result = plugin.process(ATTACK)
        assert result.ok
        assert [r.value for r in result.outputs] == [r.value for r in ATTACK]
        guest = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "dataflare.guest"]
        assert any(
            level == logging.INFO and "guest says hello on stdout" in text for level, text in guest
        ), guest
        assert any(
            level == logging.WARNING and "guest says hello on stderr" in text
            for level, text in guest
        ), guest
        assert_next_batch_runs(plugin, fresh=False)


def pass_through(plugin: Plugin, records: Sequence[Record]) -> list[bytes]:
    result = plugin.process(records)
    assert result.ok, result.error
    return [r.value for r in result.outputs]


@pytest.mark.parametrize("attack", ["loop", "memory", "passwd", "env", "socket", "raise", "exit"])
def test_harmless_records_pass_through(hostile_wasm: Path, attack: str) -> None:
    """Without an attack record every hostile variant is a plain pass-through."""
    with load(hostile_wasm, attack, time_limit_s=2.0, memory_limit_mb=64) as plugin:
        assert pass_through(plugin, batch(b"x", b"attac", b"attack!")) == [
            b"x",
            b"attac",
            b"attack!",
        ]
