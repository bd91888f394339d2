"""The sandbox holds against what an attacker tries.

Python guests come from ``tests/hostile_plugins``; components not built from the
SDK are written here in the component-model text format, so the limits are shown
to hold for any component, not only for what our shim does.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.output import without_progress
from support.paths import REPO
from support.wat import WASI_SLEEP_CORE_IMPORTS, WASI_SLEEP_IMPORTS, WASI_SLEEP_WITH

from dataflare import ConfigurationError, LimitExceededError, Record, SerializationError
from dataflare.runtime import CONTRACT_VERSION
from dataflare_host import Sandbox, load_plugin
from dataflare_host.cli._main import main
from dataflare_host.wasm.sandbox.host._instance import KILL_GRACE_S

pytestmark = pytest.mark.wasm

PLUGINS = REPO / "tests" / "hostile_plugins"
HOSTILE = PLUGINS / "hostile.py"


@pytest.fixture(scope="module")
def hostile_wasm(component_builder) -> Path:  # type: ignore[no-untyped-def]
    return component_builder(HOSTILE)


@pytest.fixture(scope="module")
def slow_wasm(component_builder) -> Path:  # type: ignore[no-untyped-def]
    return component_builder(PLUGINS / "slow_records.py")


@pytest.fixture(scope="module")
def rising_wasm(component_builder) -> Path:  # type: ignore[no-untyped-def]
    return component_builder(PLUGINS / "rising_filter.py")


def attack(wasm: Path, name: str, **limits: float) -> object:
    return load_plugin(wasm, {"attack": name}, sandbox=Sandbox(**limits))  # type: ignore[arg-type]


ATTACK = [Record(b"first", offset=1), Record(b"attack", offset=2), Record(b"last", offset=3)]


# --- blocking calls ---------------------------------------------------------------------


def test_a_blocking_sleep_is_stopped_at_the_time_limit(hostile_wasm: Path) -> None:
    """time.sleep(30) in the guest with a 2 s limit fails at the limit, not at 30 s.

    One limit for the batch, one for the record alone (narrowing: the time-out is blamed
    on that record), each ended by killing the sandbox process at the limit plus a short grace.
    """
    with load_plugin(
        hostile_wasm, {"attack": "sleep"}, sandbox=Sandbox(time_limit_s=2.0)
    ) as plugin:
        started = time.monotonic()
        result = plugin.process(ATTACK)
        elapsed = time.monotonic() - started
        assert elapsed < 2 * (2.0 + KILL_GRACE_S) + 2.0, f"the sleeping guest ran {elapsed:.1f} s"
        assert isinstance(result.error, LimitExceededError)
        assert result.error.error_type == "TimeLimitExceeded"
        assert result.error.offset == 2  # narrowed down to the record that slept
        # The instance was discarded; the plugin object still works.
        after = plugin.process([Record(b"fine", offset=9)])
        assert after.error is None
        assert [r.value for r in after.outputs] == [b"fine"]


def write_pipeline(tmp_path: Path, wasm: Path, attack_name: str, count: int) -> Path:
    """A pipeline whose every record is b"attack": the guest misbehaves on each one."""
    source = tmp_path / "in.txt"
    source.write_text("attack\n" * count, encoding="utf-8")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "name": "sleepy",
                "batch": {"size": 1, "linger_ms": 10},
                "sources": [
                    {
                        "id": "in",
                        "type": "plugin",
                        "config": {
                            "plugin_type": "file",
                            "connection": {"path": str(source), "format": "lines"},
                        },
                    }
                ],
                "processors": [
                    {
                        "id": "guest",
                        "type": "plugin",
                        "config": {
                            "plugin_type": "map",
                            "plugin_source": "wasm",
                            "plugin_path": str(wasm),
                            "params": {"attack": attack_name},
                            "time_limit_s": 2,
                            "on_error": "skip",
                        },
                    }
                ],
                "sinks": [
                    {
                        "id": "out",
                        "type": "plugin",
                        "config": {
                            "plugin_type": "file",
                            "connection": {
                                "path": str(tmp_path / "out.txt"),
                                "format": "lines",
                            },
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return pipeline


@pytest.mark.slow
def test_sigterm_stops_a_pipeline_whose_guest_sleeps(
    hostile_wasm: Path, tmp_path: Path
) -> None:
    """SIGTERM during a guest's blocking call stops `dataflare run` within a few seconds."""
    sleepy = write_pipeline(tmp_path, hostile_wasm, "sleep", 100)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataflare", "run", "--quiet", str(sleepy)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # Running (its sink connected: after the signal handlers are installed), not a
        # guess at how long loading takes on a loaded machine; then a few sleeping
        # records skipped at the limit (a sleep is charged in full).
        while not (tmp_path / "out.txt").exists() and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(5)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - started
    finally:
        proc.kill()
    # At most the rest of one in-flight call: its limit plus the kill grace, then stop.
    assert stopped_after < 2.0 + KILL_GRACE_S + 2.0, stderr
    assert "Traceback" not in stderr
    assert proc.returncode == 0, stderr
    assert "skipped a record" in stderr  # the limit, not the sleep, ended each call


# --- a deadline while instantiating -----------------------------------------------------

# Both claim the contract (an empty interface at this host's version), so they
# pass the version check and their start function runs.
CLAIMS_THE_CONTRACT = f"""
  (instance $iface)
  (export "dataflare:plugin/plugin@{CONTRACT_VERSION}" (instance $iface))"""

LOOPING_START = f"""
(component
  (core module $m
    (func $spin (loop $again (br $again)))
    (start $spin))
  (core instance (instantiate $m)){CLAIMS_THE_CONTRACT})
"""


# Not built from the SDK: its start function blocks in WASI (a 30 s monotonic-clock
# sleep), blocked outside wasm code.
BLOCKING_START = f"""
(component
{WASI_SLEEP_IMPORTS}
  (core module $m
{WASI_SLEEP_CORE_IMPORTS}
    (func $nap (call $block (call $sub (i64.const 30000000000))))
    (start $nap))
  (core instance (instantiate $m {WASI_SLEEP_WITH}))
  CLAIMS)
""".replace("CLAIMS", CLAIMS_THE_CONTRACT)


def component_file(tmp_path: Path, name: str, text: str) -> Path:
    """A component written in the text format, stored as a .wasm file (binary)."""
    import wasmtime

    path = tmp_path / name
    path.write_bytes(wasmtime.wat2wasm(text))
    return path


def test_a_start_function_that_loops_is_a_load_error_at_the_limit(
    tmp_path: Path,
) -> None:
    """A component not built from the SDK whose start function never returns: one clear error."""
    wasm = component_file(tmp_path, "spin.wasm", LOOPING_START)
    # No wall-clock bound: the limit counts the loop's own time, which a loaded
    # machine hands out slowly.
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(wasm, sandbox=Sandbox(time_limit_s=1.0))
    message = str(caught.value)
    assert str(wasm) in message
    assert "time limit" in message


def test_a_component_blocking_in_wasi_at_start_is_killed_at_the_limit(
    tmp_path: Path,
) -> None:
    """A non-SDK component that blocks (a 30 s WASI sleep) while instantiating: the
    sandbox process is killed shortly after the limit and loading fails in one line."""
    wasm = component_file(tmp_path, "nap.wasm", BLOCKING_START)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(wasm, sandbox=Sandbox(time_limit_s=1.0))
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"took {elapsed:.1f} s for a 1 s limit (the sleep is 30 s)"
    assert "time limit" in str(caught.value)
    assert str(wasm) in str(caught.value)


def test_a_python_guest_whose_init_loops_is_a_load_error_at_the_limit(
    hostile_wasm: Path,
) -> None:
    """Loading runs init under the limit: a looping @init hook is one clear error."""
    with pytest.raises(ConfigurationError) as caught:
        attack(hostile_wasm, "init_loop", time_limit_s=1.0)
    assert "init trapped" in str(caught.value)
    assert "time limit" in str(caught.value)


def test_dataflare_test_on_a_looping_component_is_one_line(tmp_path: Path) -> None:
    """The CLI answers with one error line and exit code 2 instead of hanging."""
    wasm = component_file(tmp_path, "spin.wasm", LOOPING_START)
    result = CliRunner().invoke(main, ["test", str(wasm), "--text", "x", "--time-limit", "1"])
    assert result.exit_code == 2, result.output
    lines = without_progress(result.stderr).strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "time limit" in lines[0]


# --- guest output is capped -------------------------------------------------------------


def test_guest_output_is_capped_per_call(
    hostile_wasm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 MB printed by the guest: at most the cap reaches the log, with a marker, and the
    host's memory does not grow by anything like it."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with (
        caplog.at_level(logging.INFO, logger="dataflare.guest"),
        attack(hostile_wasm, "flood", time_limit_s=30) as plugin,
    ):
        for _ in range(3):
            result = plugin.process(ATTACK)
            assert result.error is None
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    logged = [r.getMessage() for r in caplog.records if r.name == "dataflare.guest"]
    assert sum(len(m) for m in logged) < 3 * 80 * 1024
    markers = [m for m in logged if "more bytes of guest stdout dropped" in m]
    assert len(markers) == 3
    assert grown_kib < 20 * 1024


# --- a time-out is blamed on the record that caused it ----------------------------------


def test_records_that_fit_alone_are_not_blamed_for_a_batch_time_out(
    slow_wasm: Path,
) -> None:
    """Ten records of 0.3 s under a 1 s limit: every one comes through, none is blamed."""
    batch = [Record(f"r{i}".encode(), offset=i) for i in range(10)]
    with load_plugin(slow_wasm, {"ms": "300"}, sandbox=Sandbox(time_limit_s=1.0)) as plugin:
        result = plugin.process(batch)
    assert result.error is None, result.error
    assert [r.value for r in result.outputs] == [r.value for r in batch]


def test_only_the_record_that_exceeds_the_limit_alone_is_reported(
    slow_wasm: Path,
) -> None:
    """Among fast records, the one that takes 5 s alone is the one reported (and nothing
    before it is lost)."""
    batch = [Record(v, offset=i) for i, v in enumerate([b"a", b"b", b"stuck", b"c"])]
    with load_plugin(
        slow_wasm, {"ms": "10", "stuck_ms": "5000"}, sandbox=Sandbox(time_limit_s=1.0)
    ) as plugin:
        result = plugin.process(batch)
    assert isinstance(result.error, LimitExceededError)
    assert result.error.offset == 2
    assert result.error.index == 2
    assert result.consumed == 2
    assert [r.value for r in result.outputs] == [b"a", b"b"]


# --- a failed batch keeps a stateful plugin's state, as natively ------------------------


def test_native_and_wasm_agree_on_state_after_a_failed_batch(rising_wasm: Path) -> None:
    """A Python exception in the guest keeps the instance (and its state), like native."""
    batches = [
        [Record(b"1", offset=0), Record(b"5", offset=1)],
        [Record(b"bad", offset=2)],
        [Record(b"3", offset=3), Record(b"7", offset=4)],
    ]
    with (
        load_plugin(PLUGINS / "rising_filter.py") as native,
        load_plugin(rising_wasm) as wasm,
    ):
        for batch in batches:
            left, right = native.process(batch), wasm.process(batch)
            assert [r.value for r in left.outputs] == [r.value for r in right.outputs]
            assert left.error == right.error
        assert [r.value for r in right.outputs] == [b"7"]  # 5 was remembered


# --- components that are not what they claim --------------------------------------------

ONLY_DESCRIBE = """
(component
  (core module $m (func (export "d") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $describe (result u32) (canon lift (core func $i "d")))
  (instance $iface (export "describe" (func $describe)))
  (export "dataflare:plugin/plugin@CONTRACT" (instance $iface)))
"""

WRONG_TYPES = """
(component
  (core module $m (func (export "d") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $f (result u32) (canon lift (core func $i "d")))
  (instance $iface
    (export "describe" (func $f)) (export "init" (func $f)) (export "filter" (func $f))
    (export "map" (func $f)) (export "filter-map" (func $f)) (export "array-map" (func $f))
    (export "aggregate" (func $f)) (export "look-back" (func $f))
    (export "snapshot-state" (func $f)) (export "restore-state" (func $f)))
  (export "dataflare:plugin/plugin@CONTRACT" (instance $iface)))
"""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (ONLY_DESCRIBE, "lacks the 'init' export"),
        (WRONG_TYPES, "malformed plugin-info"),
        ("(component)", f"does not export dataflare:plugin/plugin@{CONTRACT_VERSION}"),
    ],
    ids=["only-describe", "wrong-types", "empty"],
)
def test_a_mismatched_component_is_a_clear_load_error(
    tmp_path: Path, text: str, fragment: str
) -> None:
    wasm = component_file(tmp_path, "odd.wasm", text.replace("CONTRACT", CONTRACT_VERSION))
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(wasm)
    assert fragment in str(caught.value)
    assert str(wasm) in str(caught.value)


@pytest.mark.parametrize("version", ["0.1.0", "0.4.0", "0.6.0", "1.0.0"])
def test_a_component_of_another_contract_version_is_refused_naming_both(
    tmp_path: Path, version: str
) -> None:
    """The contract version is read off the component's export name, before it runs:
    one line naming the component's version and the one this host supports."""
    wasm = component_file(tmp_path, "old.wasm", WRONG_TYPES.replace("CONTRACT", version))
    result = CliRunner().invoke(main, ["test", str(wasm), "--text", "x"])
    assert result.exit_code != 0
    lines = without_progress(result.output).strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"built for plugin contract {version}" in lines[0]
    assert f"this host supports {CONTRACT_VERSION}" in lines[0]
    assert str(wasm) in lines[0]
    assert "Traceback" not in result.output


def test_broken_wasm_bytes_are_a_clear_load_error(tmp_path: Path) -> None:
    wasm = tmp_path / "broken.wasm"
    wasm.write_bytes(b"\x00asm\x0d\x00\x01\x00garbage")
    with pytest.raises(ConfigurationError) as caught:
        load_plugin(wasm)
    assert "is not a valid WebAssembly component" in str(caught.value)


# --- the memory cap while the shim serializes -------------------------------------------


def test_memory_cap_in_the_shim_is_a_limit_for_the_batch(hostile_wasm: Path) -> None:
    """Outputs too big to encode under the cap fail the batch as a LimitExceededError,
    so the pipeline's error policy applies, and the next batch runs."""
    with attack(hostile_wasm, "bloat", memory_limit_mb=64) as plugin:
        result = plugin.process(ATTACK)
        assert isinstance(result.error, LimitExceededError), result.error
        assert result.error.error_type == "MemoryError"
        after = plugin.process([Record(b"ok", offset=7)])
        assert after.error is None


# --- what the guest returns is checked --------------------------------------------------


def test_forged_outputs_are_refused(hostile_wasm: Path) -> None:
    """A guest whose shim claims 100,000 outputs for a map of three records is refused."""
    with (
        attack(hostile_wasm, "forge") as plugin,
        pytest.raises(SerializationError, match="exactly one record per input"),
    ):
        plugin.process(ATTACK)


def test_out_of_range_timestamps_fail_the_record_in_both_runtimes(
    hostile_wasm: Path,
) -> None:
    native = load_plugin(HOSTILE, {"attack": "far_future"}).process(ATTACK)
    with attack(hostile_wasm, "far_future") as plugin:
        guest = plugin.process(ATTACK)
    assert native.error is not None
    assert native.error == guest.error
    assert native.error.error_type == "TypeError"
    assert "64-bit" in native.error.error_message


def test_terminal_escapes_in_guest_errors_are_escaped_on_the_cli(
    hostile_wasm: Path,
) -> None:
    result = CliRunner().invoke(
        main, ["test", str(hostile_wasm), "--text", "attack", "-e", "attack=escape"]
    )
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[2Jscreen cleared" in result.stderr


# --- the cause chain and the record travel with the error -------------------------------


def test_errors_carry_the_cause_chain_and_the_record_in_both_runtimes(
    hostile_wasm: Path,
) -> None:
    batch = [Record(b"first", offset=1), Record(b"attack", key=b"user-\xff", offset=2)]
    native = load_plugin(HOSTILE, {"attack": "chain"}).process(batch)
    with attack(hostile_wasm, "chain") as plugin:
        guest = plugin.process(batch)
    assert native.error is not None
    assert native.error == guest.error
    assert native.error.error_message == ("no rule for this record; caused by KeyError: b'attack'")
    assert (native.error.record_key, native.error.record_value) == ("user-\\xff", "attack")
