"""A WASM plugin's batch runs in its sandbox process while the host does other work.

``Plugin.begin`` sends a stateless WASM plugin's batch at once; the in-process
engine uses it to keep the guest on batch N+1 while the driver runs the rest of
the chain and the sinks on batch N. Timings here are wall-clock sleeps and busy
loops on the monotonic clock, so a loaded machine stretches neither side's work;
the pipeline's overlap is asserted on the order of events instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.paths import REPO

from dataflare import LimitExceededError, Record
from dataflare_host import Sandbox, load_plugin
from dataflare_host.pipeline import Pipeline
from dataflare_host.plugins import _wasm
from dataflare_host.wasm.sandbox.host import _process
from dataflare_host.wasm.sandbox.host._instance import KILL_GRACE_S

pytestmark = pytest.mark.wasm

SLOW = REPO / "tests" / "hostile_plugins" / "slow_records.py"


@pytest.fixture(scope="module")
def slow_wasm(component_builder) -> Path:  # type: ignore[no-untyped-def]
    return component_builder(SLOW)


def test_a_begun_batch_runs_in_the_sandbox_while_the_caller_works(slow_wasm: Path) -> None:
    """0.3 s of guest work and 0.3 s of the caller's overlap: well under the 0.6 s in turns."""
    batch = [Record(b"a", offset=0), Record(b"b", offset=1), Record(b"c", offset=2)]
    with load_plugin(slow_wasm, {"ms": "100"}) as plugin:
        plugin.process(batch[:1])  # a warm instance, as in a running pipeline
        started = time.monotonic()
        begun = plugin.begin(batch)
        time.sleep(0.3)  # the caller's own work
        result = begun.result()
        elapsed = time.monotonic() - started
    assert [r.value for r in result.outputs] == [b"a", b"b", b"c"]
    assert result.error is None
    assert elapsed < 0.5, f"{elapsed:.2f} s: the batch did not run while the caller worked"


def test_a_native_plugin_runs_a_begun_batch_when_its_result_is_asked_for(tmp_path: Path) -> None:
    """Natively nothing runs elsewhere: begin() only defers the call to result()."""
    seen = tmp_path / "seen"
    plugin_file = tmp_path / "mark.py"
    plugin_file.write_text(
        "import pathlib\n"
        "import dataflare\n\n"
        "@dataflare.filter\n"
        "def mark(record: dataflare.Record) -> bool:\n"
        f"    pathlib.Path({str(seen)!r}).write_bytes(record.value)\n"
        "    return True\n",
        encoding="utf-8",
    )
    with load_plugin(plugin_file) as plugin:
        begun = plugin.begin([Record(b"x")])
        assert not seen.exists()
        assert [r.value for r in begun.result().outputs] == [b"x"]
        assert seen.read_bytes() == b"x"


def test_a_cancelled_batch_kills_its_sandbox_process(slow_wasm: Path) -> None:
    """A pipeline that stops with a batch in the guest must not leave the guest running."""
    with load_plugin(slow_wasm, {"ms": "1", "stuck_ms": "30000"}) as plugin:
        process = plugin._idle[0]._process  # type: ignore[attr-defined]
        assert process is not None
        begun = plugin.begin([Record(b"stuck")])
        started = time.monotonic()
        begun.cancel()
        assert process.proc.wait(timeout=2) == -9
        assert time.monotonic() - started < 1
        # The plugin goes on with a new instance.
        assert [r.value for r in plugin.process([Record(b"ok")]).outputs] == [b"ok"]


def test_a_begun_batch_past_the_time_limit_fails_at_the_limit_even_when_asked_late(
    slow_wasm: Path,
) -> None:
    """The limit runs from the send: a result asked for after it is a time-out at once,
    and the record that exceeds the limit alone is the one named."""
    sandbox = Sandbox(time_limit_s=0.5)
    with load_plugin(slow_wasm, {"ms": "1", "stuck_ms": "30000"}, sandbox=sandbox) as plugin:
        batch = [Record(b"fine", offset=7), Record(b"stuck", offset=8)]
        begun = plugin.begin(batch)
        time.sleep(0.5 + KILL_GRACE_S + 0.3)
        started = time.monotonic()
        result = begun.result()
        narrowing = time.monotonic() - started
    assert [r.value for r in result.outputs] == [b"fine"]
    assert isinstance(result.error, LimitExceededError)
    assert result.error.offset == 8
    assert "0.5 s time limit" in result.error.error_message
    # Killed at once, then the two records alone: one fast, one at the limit.
    assert narrowing < 0.5 + KILL_GRACE_S + 1.5


def _file_pipeline(
    folder: Path, source: Path, processors: list[dict[str, Any]], batch: int
) -> Pipeline:
    """``source`` (a file) -> ``processors`` (id: config) -> ``folder/out.txt``."""
    doc = {
        "name": "ahead",
        "batch": {"size": batch, "linger_ms": 10},
        "sources": [
            {
                "id": "in",
                "type": "plugin",
                "config": {"plugin_type": "file", "connection": {"path": str(source)}},
            }
        ],
        "processors": [
            {"id": step["id"], "type": "plugin", "config": step["config"]} for step in processors
        ],
        "sinks": [
            {
                "id": "out",
                "type": "plugin",
                "config": {"plugin_type": "file", "connection": {"path": str(folder / "out.txt")}},
            }
        ],
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return Pipeline.from_file(path)


@pytest.fixture
def sandbox_starts(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[object]]:
    """Call it to start counting the sandbox processes started from then on."""
    started: list[object] = []
    original = _process.SandboxProcess.__init__

    def counted(self: _process.SandboxProcess) -> None:
        started.append(self)
        original(self)

    def count_from_now() -> list[object]:
        monkeypatch.setattr(_process.SandboxProcess, "__init__", counted)
        return started

    return count_from_now


def _slow_step(slow_wasm: Path, ms: int, **more: Any) -> dict[str, Any]:
    """The config of a WASM map that spends ``ms`` per record in the guest."""
    return {
        "plugin_type": "map",
        "plugin_source": "wasm",
        "plugin_path": str(slow_wasm),
        "params": {"ms": str(ms)},
        **more,
    }


def _log_sends(monkeypatch: pytest.MonkeyPatch, log: Callable[[str], None]) -> None:
    """``log("sent B")`` each time batch B (records numbered n, five a batch) goes out."""
    send = _wasm._Ahead._send

    def logged_send(self: Any) -> None:
        log(f"sent {json.loads(self._records[0].value)['n'] // 5}")
        send(self)

    monkeypatch.setattr(_wasm._Ahead, "_send", logged_send)


def test_a_pipeline_runs_its_wasm_first_step_beside_the_rest_of_the_chain(
    slow_wasm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six batches through a WASM step then a native one: each next batch is sent to the
    guest before the driver starts the native step on this one (so the two overlap).
    Asserted on the order of events in the driver, which a loaded machine cannot change."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(30)))
    events = tmp_path / "events"
    nap = tmp_path / "nap.py"
    nap.write_text(
        "import json\n"
        "import time\n"
        "import dataflare\n\n"
        "@dataflare.map\n"
        "def nap(record: dataflare.Record) -> dataflare.Record:\n"
        "    n = json.loads(record.value)['n']\n"
        "    if n % 5 == 0:\n"
        f"        with open({str(events)!r}, 'a') as log:\n"
        "            log.write(f'native {n // 5}\\n')\n"
        "    time.sleep(0.04)\n"
        "    return record\n",
        encoding="utf-8",
    )

    def append(event: str) -> None:
        with events.open("a") as log:
            log.write(event + "\n")

    _log_sends(monkeypatch, append)
    slow = _slow_step(slow_wasm, 40)
    nap_step = {"plugin_type": "map", "plugin_path": str(nap)}
    pipeline = _file_pipeline(
        tmp_path, source, [{"id": "slow", "config": slow}, {"id": "nap", "config": nap_step}], 5
    )
    try:
        summary = pipeline.run()
    finally:
        pipeline.close()
    assert summary.error is None
    written = (tmp_path / "out.txt").read_text().splitlines()
    assert [json.loads(line) for line in written] == [{"n": i} for i in range(30)]
    order = events.read_text().splitlines()
    assert sorted(order) == sorted(
        [f"sent {b}" for b in range(6)] + [f"native {b}" for b in range(6)]
    )
    for batch in range(5):
        assert order.index(f"sent {batch + 1}") < order.index(f"native {batch}"), (
            f"batch {batch + 1} went to the guest only after the driver's step on batch "
            f"{batch} began (the two took turns): {order}"
        )


def test_a_batch_begun_behind_a_busy_one_goes_to_the_same_process_when_it_is_free(
    slow_wasm: Path, sandbox_starts: Callable[[], list[object]]
) -> None:
    """The second batch goes to the one instance, queued behind the first (which it
    runs after): no second sandbox process, results in order."""
    with load_plugin(slow_wasm, {"ms": "50"}) as plugin:
        started = sandbox_starts()
        first = plugin.begin([Record(b"1", offset=0), Record(b"2", offset=1)])
        second = plugin.begin([Record(b"3", offset=2)])
        assert [r.value for r in first.result().outputs] == [b"1", b"2"]
        second.start()
        assert [r.value for r in second.result().outputs] == [b"3"]
    assert started == []


def test_a_batch_queued_behind_a_busy_one_runs_the_moment_that_one_ends(
    slow_wasm: Path,
) -> None:
    """The sandbox process holds the next batch and starts it as it answers the one
    before: by the time the first result is taken, the second is done too (taken in
    turns, it would start only then and take its 0.3 s after)."""
    with load_plugin(slow_wasm, {"ms": "300"}) as plugin:
        plugin.process([Record(b"warm")])
        first = plugin.begin([Record(b"1", offset=0)])
        second = plugin.begin([Record(b"2", offset=1)])
        (instance,) = plugin._busy  # type: ignore[attr-defined]
        assert instance.in_flight == 2
        time.sleep(1.2)  # both run meanwhile, one after the other (0.6 s in all)
        assert [r.value for r in first.result().outputs] == [b"1"]
        started = time.monotonic()
        assert [r.value for r in second.result().outputs] == [b"2"]
        assert time.monotonic() - started < 0.2
    assert instance.closed


def test_a_batch_queued_behind_one_that_traps_runs_again_on_a_fresh_instance(
    component_builder: Any, tmp_path: Path
) -> None:
    """The trap loses the instance (and the sandbox process, with the batch it held): the
    queued batch never ran there, so it runs whole on a new instance, not as a trap."""
    source = tmp_path / "bail_on_bail.py"
    source.write_text(
        "import dataflare\n\n"
        "@dataflare.map\n"
        "def bail(record: dataflare.Record) -> dataflare.Record:\n"
        "    if record.value == b'bail':\n"
        "        raise SystemExit(3)  # no Exception: nothing in the guest catches it\n"
        "    return record\n",
        encoding="utf-8",
    )
    with load_plugin(component_builder(source)) as plugin:
        first = plugin.begin([Record(b"bail", offset=0)])
        second = plugin.begin([Record(b"fine", offset=1), Record(b"too", offset=2)])
        (instance,) = plugin._busy  # type: ignore[attr-defined]
        assert instance.in_flight == 2
        trapped = first.result()
        fine = second.result()
    assert trapped.outputs == []
    assert trapped.error is not None
    assert trapped.error.error_type == "Trap"
    assert fine.error is None
    assert [r.value for r in fine.outputs] == [b"fine", b"too"]
    assert [r.offset for r in fine.outputs] == [1, 2]


def test_a_batch_begun_behind_one_that_times_out_runs_on_a_fresh_instance(
    slow_wasm: Path,
) -> None:
    """The instance the first batch killed is not the second's: it gets a new one."""
    sandbox = Sandbox(time_limit_s=0.5)
    with load_plugin(slow_wasm, {"ms": "1", "stuck_ms": "30000"}, sandbox=sandbox) as plugin:
        first = plugin.begin([Record(b"stuck", offset=0)])
        second = plugin.begin([Record(b"fine", offset=1)])
        stuck = first.result()
        assert isinstance(stuck.error, LimitExceededError)
        assert stuck.outputs == []
        second.start()
        fine = second.result()
    assert fine.error is None
    assert [r.value for r in fine.outputs] == [b"fine"]


def test_a_failed_record_in_the_first_step_starts_no_second_sandbox_process(
    example_components: dict[str, Path],
    tmp_path: Path,
    sandbox_starts: Callable[[], list[object]],
) -> None:
    """With on_error: skip, the first step runs again on the rest of a batch after a
    failed record: the next batch waits for that, so one instance does both."""
    source = tmp_path / "in.txt"
    lines = []
    for batch in range(6):  # the bad line mid-batch: two records after it to run again
        good = [json.dumps({"n": batch * 5 + i, "status": "active"}) for i in range(4)]
        lines += [*good[:2], f"not json {batch}", *good[2:]]
    source.write_text("\n".join(lines) + "\n")
    active = {
        "plugin_type": "filter",
        "plugin_source": "wasm",
        "plugin_path": str(example_components["json_field_filter"]),
        "params": {"field": "status", "value": "active"},
        "on_error": "skip",
    }
    pipeline = _file_pipeline(tmp_path, source, [{"id": "active", "config": active}], 5)
    started = sandbox_starts()
    try:
        summary = pipeline.run()
    finally:
        pipeline.close()
    assert summary.error is None
    kept = [json.loads(line)["n"] for line in (tmp_path / "out.txt").read_text().splitlines()]
    assert kept == [batch * 5 + i for batch in range(6) for i in range(4)]
    assert [s.errored for s in pipeline.stats if s.stage == "active"] == [6]
    assert started == []


def test_cancelling_a_finished_batch_leaves_the_instance_alone(slow_wasm: Path) -> None:
    """Once its result is taken, a batch's instance is the plugin's again: cancel is a no-op."""
    with load_plugin(slow_wasm, {"ms": "1"}) as plugin:
        begun = plugin.begin([Record(b"a")])
        assert [r.value for r in begun.result().outputs] == [b"a"]
        process = plugin._idle[0]._process  # type: ignore[attr-defined]
        begun.cancel()
        assert process.alive
        assert [r.value for r in plugin.process([Record(b"b")]).outputs] == [b"b"]
        assert plugin._idle[0]._process is process  # type: ignore[attr-defined]


def test_with_two_instances_two_batches_are_out_at_once_and_land_in_order(
    slow_wasm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`instances: 2` on a stateless first step: the batch after the head goes to the
    second instance before the head's result is taken (each batch whole on one
    instance), never a third instance, and the output keeps the source's order."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(40)))
    events: list[str] = []
    _log_sends(monkeypatch, events.append)
    finish = _wasm._Ahead.finish

    def logged_finish(self: Any) -> Any:
        events.append(f"taken {json.loads(self._records[0].value)['n'] // 5}")
        return finish(self)

    monkeypatch.setattr(_wasm._Ahead, "finish", logged_finish)
    slow = _slow_step(slow_wasm, 20, instances=2)
    pipeline = _file_pipeline(tmp_path, source, [{"id": "slow", "config": slow}], 5)
    try:
        summary = pipeline.run()
        instances = len(pipeline.processors[0].plugin._idle)  # type: ignore[attr-defined]
    finally:
        pipeline.close()
    assert summary.error is None
    written = (tmp_path / "out.txt").read_text().splitlines()
    assert [json.loads(line) for line in written] == [{"n": i} for i in range(40)]
    for batch in range(7):
        assert events.index(f"sent {batch + 1}") < events.index(f"taken {batch}"), events
    assert events.count("sent 0") == 1
    assert instances == 2


def test_a_batch_split_while_begun_batches_are_out_uses_only_the_free_instances(
    example_components: dict[str, Path],
) -> None:
    """With one of two instances out on a begun batch, a large batch run meanwhile (the
    rest of a batch after a failed record) is not split: the plugin never holds a third
    instance (each one a sandbox process)."""
    records = [Record(json.dumps({"n": n}).encode(), offset=n) for n in range(2_000)]
    wasm = example_components["uppercase_map"]
    with load_plugin(wasm, sandbox=Sandbox(instances=2)) as plugin:
        begun = plugin.begin(records[:10])  # on the instance made at load
        whole = plugin.process(records)  # 2,000 records: two shards if both were free
        assert [r.value for r in whole.outputs] == [r.value.upper() for r in records]
        assert [r.value for r in begun.result().outputs] == [r.value.upper() for r in records[:10]]
        assert len(plugin._idle) == 2  # type: ignore[attr-defined]
        split = plugin.process(records)  # both free again: split across the two
        assert [r.value for r in split.outputs] == [r.value.upper() for r in records]
        assert len(plugin._idle) == 2  # type: ignore[attr-defined]
