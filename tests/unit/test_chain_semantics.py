"""A chain follows Fluvio when a step fails.

A stopping step (``on_error="stop"``, the pipeline's ``fail``) that fails ends
the chain: the result is that step's partial output and its error, and no later
step runs. A continuing step (the pipeline's ``skip``/``dead_letter``) records
the failure and the later steps run on everything else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.chain_plugins import failing_on, suffix
from support.records import any_batches

import dataflare
from dataflare import Record
from dataflare_host import Chain, Plugin, load_plugin
from dataflare_host.pipeline._runner import Pipeline


def spy(seen: list[bytes]) -> Plugin:
    """A map that notes every value it is run on."""

    @dataflare.map(name="spy")
    def note(record: Record) -> Record:
        seen.append(record.value)
        return record

    return load_plugin(note)


def counter() -> Plugin:
    """An aggregate counting the records it folded (its accumulator)."""

    @dataflare.aggregate(initial=b"0")
    def count(accumulator: bytes, record: Record) -> bytes:
        return str(int(accumulator) + 1).encode()

    return load_plugin(count)


BATCH = [
    Record(b"a", offset=5),
    Record(b"b", offset=6),
    Record(b"bad", offset=7),
    Record(b"c", offset=8),
]


def test_a_failing_middle_step_runs_no_later_step() -> None:
    """No later step sees anything of a batch a stopping step failed on."""
    seen: list[bytes] = []
    result = Chain([suffix(b"1"), failing_on(b"bad"), spy(seen)]).process(BATCH)
    assert seen == []
    assert result.step == 1
    assert len(result.steps) == 2


def test_the_result_is_the_failing_steps_partial_output() -> None:
    """The outputs are the failing step's, for the records before the failing one."""
    result = Chain([suffix(b"1"), failing_on(b"bad"), suffix(b"3")]).process(BATCH)
    assert [(r.value, r.offset) for r in result.outputs] == [(b"a1", 5), (b"b1", 6)]
    assert result.error is not None
    assert (result.error.plugin, result.error.offset, result.error.index) == ("picky", 7, 2)
    assert not result.ok


def test_a_later_aggregate_folds_nothing_of_a_failed_batch() -> None:
    """An aggregate after the failing step keeps its state: it never ran."""
    total = counter()
    chain = Chain([failing_on(b"bad"), total])
    chain.process([Record(b"x"), Record(b"y")])
    assert total.accumulator == b"2"
    result = chain.process(BATCH)
    assert total.accumulator == b"2"
    assert [r.value for r in result.outputs] == [b"a", b"b"]


def test_the_first_stopping_failure_ends_the_chain() -> None:
    """An earlier step failing on a later record ends the chain before a later step could fail."""
    batch = [Record(b"early", offset=1), Record(b"late", offset=2)]
    result = Chain([failing_on(b"late", "first"), failing_on(b"early", "second")]).process(batch)
    assert result.step == 0
    assert result.error is not None
    assert (result.error.plugin, result.error.offset) == ("first", 2)
    assert result.outputs == [Record(b"early", offset=1)]


def test_a_failing_filter_does_not_count_records_after_the_failure_as_filtered() -> None:
    """Records a stopping step never ran on are unprocessed, not filtered."""

    @dataflare.filter
    def keep_short(record: Record) -> bool:
        if record.value == b"bad":
            raise ValueError("bad record")
        return len(record.value) < 2

    plugin = load_plugin(keep_short)
    batch = [Record(b"a"), Record(b"long"), Record(b"bad"), Record(b"b"), Record(b"c")]
    result = Chain([plugin]).process(batch)
    (report,) = result.steps
    assert (report.records_in, report.records_out, report.errored) == (5, 1, 1)
    assert report.unprocessed == 2
    assert Chain.filtered(plugin, report) == 1


@given(batch=any_batches(min_size=1), data=st.data())
def test_a_stopping_failure_equals_running_steps_by_hand_up_to_it(
    batch: list[Record], data: st.DataObject
) -> None:
    """Outputs and error are those of running the steps by hand up to the failing one."""
    index = data.draw(st.integers(0, len(batch) - 1))
    batch = [r.evolve(value=r.value.replace(b"\x00", b"")) for r in batch]
    batch[index] = batch[index].evolve(value=b"\x00boom")
    seen: list[bytes] = []
    result = Chain([suffix(b"x"), failing_on(b"\x00"), spy(seen)]).process(batch)
    first = suffix(b"x").process(batch)
    second = failing_on(b"\x00").process(first.outputs)
    assert result.outputs == second.outputs
    assert result.error == second.error
    assert (result.step, seen) == (1, [])


def test_continuing_step_lets_the_later_steps_run_on_every_other_record() -> None:
    """A continuing step notes the failure; the later steps run on all its other outputs."""
    seen: list[bytes] = []
    chain = Chain([suffix(b"1"), failing_on(b"bad"), spy(seen)], ["stop", "continue", "stop"])
    result = chain.process(BATCH)
    assert result.ok
    assert seen == [b"a1", b"b1", b"c1"]
    assert [r.value for r in result.outputs] == [b"a1", b"b1", b"c1"]
    assert [report.errored for report in result.steps] == [0, 1, 0]
    ((error, failed),) = result.steps[1].failures
    assert (error.offset, failed.value) == (7, b"bad1")


# -- in a pipeline ------------------------------------------------------------------


RECORDER = '''"""Pass records through, appending each id it runs on to the file in param ``log``."""
import dataflare


@dataflare.map(params={"log": None})
def recorder(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    with open(params["log"], "a") as handle:
        handle.write(str(record.json()["id"]) + "\\n")
    return record
'''

FAIL_ON_IDS = '''"""Pass JSON records through; raise ValueError for the ids in param ``bad``."""
import dataflare


@dataflare.map(params={"bad": None})
def fail_on_ids(record: dataflare.Record, params: dict[str, str]) -> dataflare.Record:
    if record.json()["id"] in {int(part) for part in params["bad"].split(",")}:
        raise ValueError(f"id {record.json()['id']} is on the bad list")
    return record
'''


def _pipeline(directory: Path, on_error: str) -> Path:
    (directory / "recorder.py").write_text(RECORDER)
    (directory / "fail_on_ids.py").write_text(FAIL_ON_IDS)
    (directory / "in.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(9)))

    def processor(id: str, path: str, params: dict[str, str], **options: Any) -> dict[str, Any]:
        config = {"plugin_type": "map", "plugin_path": path, "params": params, **options}
        return {"id": id, "type": "plugin", "config": config}

    def connector(id: str, path: str) -> dict[str, Any]:
        config = {"plugin_type": "file", "connection": {"path": path}}
        return {"id": id, "type": "plugin", "config": config}

    document = {
        "name": "failing-stage",
        "batch": {"size": 3, "linger_ms": 0},
        "sources": [connector("in", "in.jsonl")],
        "processors": [
            processor("guard", "fail_on_ids.py", {"bad": "4"}, on_error=on_error),
            processor("record", "recorder.py", {"log": str(directory / "seen.txt")}),
        ],
        "sinks": [connector("out", "out.jsonl")],
    }
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file


def _run(file: Path) -> tuple[str, dict[str, Sequence[int]]]:
    pipeline = Pipeline.from_file(file)
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    counts = {s.stage: (s.records_in, s.records_out, s.errored) for s in summary.stats}
    return summary.status, counts


def _ids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_failing_stage_runs_no_later_stage_of_the_pipeline(tmp_path: Path) -> None:
    """on_error: fail: the stage after the failing one never runs on the failed batch."""
    status, counts = _run(_pipeline(tmp_path, "fail"))
    assert status == "failed"
    # The batch [3, 4, 5] fails at 4: the recorder saw the earlier batches only.
    assert _ids(tmp_path / "seen.txt") == [0, 1, 2]
    out = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in out] == [0, 1, 2]
    assert counts["guard"] == (6, 4, 1)
    assert counts["record"] == (3, 3, 0)


def test_skip_policy_lets_later_stages_run_on_the_other_records(tmp_path: Path) -> None:
    """on_error: skip: the later stage runs on every record but the failed one."""
    status, counts = _run(_pipeline(tmp_path, "skip"))
    assert status == "completed"
    assert _ids(tmp_path / "seen.txt") == [0, 1, 2, 3, 5, 6, 7, 8]
    assert counts["guard"] == (9, 8, 1)
    assert counts["record"] == (8, 8, 0)
