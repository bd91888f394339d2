"""Windowed aggregates: membership, watermark and lateness, late policies, splits, parity, YAML.

Expected results come from models written here, independently of
``dataflare._windows``: window membership by brute force over every candidate start,
and a record-by-record simulation in which the watermark is the highest
timestamp seen minus the allowed lateness and a window ``[start, end)`` closes,
and is emitted once, when the watermark reaches ``end``.

Most tests fold with ``collect``, which appends each record's offset to the
accumulator, so a window's value shows exactly which records it holds and in
which order they were folded.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.output import line_of
from support.paths import EXAMPLES
from support.pipeline_files import file_pipeline
from support.pipeline_runs import run_to_end

import dataflare
from dataflare import ConfigurationError, ProcessingError, Record, Window
from dataflare.runtime import BatchResult, Dispatcher
from dataflare_host import load_plugin
from dataflare_host.pipeline._runner import Pipeline
from dataflare_host.plugins._interface import Plugin

WINDOWED_COUNT = EXAMPLES / "windowed_count_aggregate.py"


# -- an independent model -------------------------------------------------------


def brute_force_starts(timestamp: int, size: int, step: int) -> list[int]:
    """Every multiple of ``step`` whose window ``[s, s + size)`` holds ``timestamp``."""
    return [
        s
        for s in range(timestamp - size - step, timestamp + 1)
        if s % step == 0 and s <= timestamp < s + size
    ]


def window_record(start: int, size: int, value: bytes, offset: int, late: int = 0) -> Record:
    """The record a closed window ``[start, start + size)`` emits."""
    metadata = {"window_start": str(start), "window_end": str(start + size)}
    if late:
        metadata["late_dropped"] = str(late)
    return Record(value, None, start + size - 1, metadata, offset)


@attrs.frozen
class Outcome:
    """What a stream of records produced: window records, then errors as (offset, type)."""

    outputs: list[Record]
    errors: list[tuple[int, str]]


def model(
    window: Window,
    records: Sequence[Record],
    fold: Callable[[bytes, Record], bytes],
    initial: bytes,
) -> Outcome:
    """Simulate the stream: watermark = max timestamp - lateness, close at watermark >= end.

    A record with no timestamp fails (ValueError). A record with a closed window
    is late: under ``error`` it fails (LateRecordError) and changes nothing;
    under ``drop`` it is folded into its still-open windows only, and the next
    window to close reports how many such records there were.
    """
    size, step = window.size_ms, window.step_ms
    newest: int | None = None
    open_windows: dict[int, bytes] = {}
    pending_late = 0
    outputs: list[Record] = []
    errors: list[tuple[int, str]] = []
    for record in records:
        if record.timestamp is None:
            errors.append((record.offset, "ValueError"))
            continue
        watermark = None if newest is None else newest - window.lateness_ms
        starts = brute_force_starts(record.timestamp, size, step)
        closed = {s for s in starts if watermark is not None and watermark >= s + size}
        if closed:
            if window.late == "error":
                errors.append((record.offset, "LateRecordError"))
                continue
            pending_late += 1
        for start in starts:
            if start not in closed:
                open_windows[start] = fold(open_windows.get(start, initial), record)
        newest = record.timestamp if newest is None else max(newest, record.timestamp)
        watermark = newest - window.lateness_ms
        for start in sorted(open_windows):
            if watermark >= start + size:
                outputs.append(
                    window_record(start, size, open_windows.pop(start), record.offset, pending_late)
                )
                pending_late = 0
    return Outcome(outputs, errors)


def collect_fold(accumulator: bytes, record: Record) -> bytes:
    return accumulator + f"{record.offset},".encode()


def count_fold(accumulator: bytes, record: Record) -> bytes:
    return str(int(accumulator) + 1).encode()


def collecting(window: Window) -> Dispatcher:
    """A windowed aggregate whose value lists the offsets it folded, in order."""

    @dataflare.aggregate(window=window)
    def collect(accumulator: bytes, record: Record) -> bytes:
        return collect_fold(accumulator, record)

    return Dispatcher(
        dataflare.runtime.find_plugin({"collect": collect}, "test_windows.collect"), {}
    )


Step = Callable[[Sequence[Record], "bytes | None"], BatchResult]


@attrs.frozen
class Driven:
    """A driven stream: its outcome, the final state and each error's message."""

    outcome: Outcome
    accumulator: bytes | None
    messages: list[str]


def drive(step: Step, chunks: Sequence[Sequence[Record]]) -> Driven:
    """Run batches the way a pipeline with ``on_error: skip`` does, carrying the state.

    After a failure the rest of the batch is run again from the state the
    failed result reports.
    """
    accumulator: bytes | None = None
    outputs: list[Record] = []
    errors: list[tuple[int, str]] = []
    messages: list[str] = []
    for chunk in chunks:
        remaining = list(chunk)
        while remaining:
            result = step(remaining, accumulator)
            outputs.extend(result.outputs)
            accumulator = result.accumulator
            if result.error is None:
                assert result.consumed == len(remaining)
                break
            error = result.error
            assert isinstance(error, ProcessingError)
            assert error.index == result.consumed
            assert error.offset == remaining[result.consumed].offset
            assert error.kind == "aggregate"
            errors.append((error.offset, error.error_type))
            messages.append(error.error_message)
            remaining = remaining[result.consumed + 1 :]
    return Driven(Outcome(outputs, errors), accumulator, messages)


def on_dispatcher(dispatcher: Dispatcher) -> Step:
    return dispatcher.process


def on_plugin(plugin: Plugin) -> Step:
    """A loaded plugin keeps its own state; the carried one must match it."""

    def step(records: Sequence[Record], accumulator: bytes | None) -> BatchResult:
        assert plugin.accumulator == accumulator
        return plugin.process(records)

    return step


def stream(*events: tuple[int | None, int]) -> list[Record]:
    """Records from (timestamp, offset) pairs."""
    return [Record(b"x", timestamp=ts, offset=offset) for ts, offset in events]


# -- strategies -----------------------------------------------------------------


LATE_POLICIES = st.sampled_from(["error", "drop"])


@st.composite
def windows(draw: st.DrawFn, late: st.SearchStrategy[str] = LATE_POLICIES) -> Window:
    """A tumbling or sliding window, often on round sizes so boundaries meet timestamps."""
    size = draw(st.sampled_from([1, 2, 10, 50, 100, 300]) | st.integers(min_value=1, max_value=600))
    step = draw(
        st.just(size)
        | st.sampled_from([1, size // 2 or 1, size // 3 or 1])
        | st.integers(min_value=1, max_value=size)
    )
    lateness = draw(
        st.just(0) | st.sampled_from([10, 50, 100]) | st.integers(min_value=0, max_value=400)
    )
    return dataflare.sliding(size, step, lateness_ms=lateness, late=draw(late))  # type: ignore[arg-type]


@st.composite
def timed_streams(
    draw: st.DrawFn, *, max_size: int = 25, missing: bool = True, max_behind: int = 700
) -> list[Record]:
    """Records with a drifting clock, each up to ``max_behind`` ms behind it (out of order).

    Timestamps are often round (multiples of 50) so they fall on window
    boundaries. With ``missing``, now and then a record has no timestamp.
    Offsets increase.
    """
    count = draw(st.integers(min_value=0, max_value=max_size))
    round_only = draw(st.booleans())
    grain = 50 if round_only else 1
    clock = draw(st.integers(min_value=0, max_value=100)) * grain
    offset = draw(st.integers(min_value=0, max_value=1_000))
    records = []
    for _ in range(count):
        if missing and draw(st.integers(min_value=0, max_value=12)) == 0:
            timestamp = None
        else:
            clock += draw(st.integers(min_value=0, max_value=300 // grain)) * grain
            behind = draw(st.integers(min_value=0, max_value=max_behind // grain)) * grain
            timestamp = max(0, clock - behind)
        records.append(Record(b"x", timestamp=timestamp, offset=offset))
        offset += draw(st.integers(min_value=1, max_value=3))
    return records


@st.composite
def splits(draw: st.DrawFn, records: list[Record]) -> list[list[Record]]:
    """``records`` cut into consecutive (possibly empty) batches at drawn points."""
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(records)), max_size=5)))
    bounds = [0, *cuts, len(records)]
    return [records[a:b] for a, b in itertools.pairwise(bounds)]


# -- membership -----------------------------------------------------------------


@given(
    size=st.integers(min_value=1, max_value=1_000),
    timestamp=st.integers(min_value=-5_000, max_value=10**12),
)
def test_tumbling_membership_is_the_one_window_holding_the_timestamp(
    size: int, timestamp: int
) -> None:
    """A tumbling window's starts are exactly the brute-force ones: always one."""
    starts = dataflare.tumbling(size).starts(timestamp)
    assert starts == brute_force_starts(timestamp, size, size)
    assert len(starts) == 1


@given(data=st.data(), timestamp=st.integers(min_value=-5_000, max_value=10**12))
def test_sliding_membership_matches_brute_force(data: st.DataObject, timestamp: int) -> None:
    """A sliding window's starts are every step multiple whose window holds it, oldest first."""
    size = data.draw(st.integers(min_value=1, max_value=1_000))
    step = data.draw(st.integers(min_value=1, max_value=size))
    assert dataflare.sliding(size, step).starts(timestamp) == brute_force_starts(
        timestamp, size, step
    )


# -- out of order, inside the lateness bound ------------------------------------


def test_out_of_order_records_inside_the_lateness_bound_land_in_their_window() -> None:
    """Records up to `lateness_ms` behind the newest still join their (still open) window."""
    dispatcher = collecting(dataflare.tumbling(10_000, lateness_ms=5_000))
    records = stream(
        (1_000, 0),
        (12_000, 1),  # watermark 7 000: [0, 10 000) stays open
        (8_000, 2),  # 4 s behind the newest: inside the bound
        (9_500, 3),
        (16_000, 4),  # watermark 11 000: closes [0, 10 000)
        (21_000, 5),  # watermark 16 000: [10 000, 20 000) still open
        (25_000, 6),  # watermark 20 000: closes it
    )
    result = dispatcher.process(records)
    assert result.error is None
    assert result.outputs == [
        window_record(0, 10_000, b"0,2,3,", offset=4),
        window_record(10_000, 10_000, b"1,4,", offset=6),
    ]
    assert result.sources == [4, 6]


def test_a_window_closes_when_the_watermark_reaches_its_end_exactly() -> None:
    """Watermark == end closes the window: it is emitted then, and a record for it is late."""
    dispatcher = collecting(dataflare.tumbling(1_000, lateness_ms=100, late="drop"))
    records = stream((500, 0), (1_099, 1), (1_100, 2), (999, 3), (2_100, 4))
    result = dispatcher.process(records)
    assert result.error is None
    assert result.outputs == [
        window_record(0, 1_000, b"0,", offset=2),
        window_record(1_000, 1_000, b"1,2,", offset=4, late=1),
    ]


@given(data=st.data())
def test_in_bound_streams_fold_every_record_into_exactly_its_windows(data: st.DataObject) -> None:
    """No record beyond the bound: each closed window holds exactly its records, emitted once.

    Checked against a whole-stream statement, not a simulation: the emitted
    windows are those holding a record whose end the final watermark reached,
    in order of start; each holds every record in it, in arrival order, and is
    emitted by the first record that brought the watermark to its end.
    """
    window = data.draw(windows())
    lateness = window.lateness_ms
    records: list[Record] = []
    newest = None
    for offset in range(data.draw(st.integers(min_value=0, max_value=25))):
        if newest is None:
            timestamp = data.draw(st.integers(min_value=0, max_value=3_000))
        else:
            timestamp = data.draw(
                st.integers(min_value=max(0, newest - lateness), max_value=newest + 400)
            )
        newest = timestamp if newest is None else max(newest, timestamp)
        records.append(Record(b"x", timestamp=timestamp, offset=offset))

    result = collecting(window).process(records)

    assert result.error is None
    size, step = window.size_ms, window.step_ms
    expected = []
    if records:
        final_watermark = max(r.timestamp for r in records) - lateness  # type: ignore[type-var]
        members: dict[int, list[Record]] = {}
        for record in records:
            assert record.timestamp is not None
            for start in brute_force_starts(record.timestamp, size, step):
                members.setdefault(start, []).append(record)
        for start in sorted(s for s in members if s + size <= final_watermark):
            closer = next(
                r
                for i, r in enumerate(records)
                if max(x.timestamp for x in records[: i + 1]) - lateness >= start + size  # type: ignore[type-var]
            )
            value = "".join(f"{r.offset}," for r in members[start]).encode()
            expected.append(window_record(start, size, value, closer.offset))
    assert result.outputs == expected


@given(data=st.data())
def test_windowed_aggregate_matches_the_watermark_model(data: st.DataObject) -> None:
    """Out-of-order, late and timestamp-less records: outputs and errors as the model says."""
    window = data.draw(windows())
    records = data.draw(timed_streams())
    outcome = drive(on_dispatcher(collecting(window)), [records]).outcome
    assert outcome == model(window, records, collect_fold, b"")


# -- beyond the lateness bound --------------------------------------------------


def test_late_record_under_error_fails_at_its_offset_and_leaves_the_state_alone() -> None:
    """late="error": LateRecordError at the late record; what follows goes on as without it."""
    dispatcher = collecting(dataflare.tumbling(10_000, lateness_ms=5_000))
    before = stream((1_000, 0), (12_000, 1), (16_000, 2))  # watermark 11 000
    late = stream((9_000, 3))  # its window [0, 10 000) closed
    after = stream((26_000, 4))

    prefix = dispatcher.process(before)
    assert prefix.outputs == [window_record(0, 10_000, b"0,", offset=2)]
    failed = dispatcher.process([*late, *after], prefix.accumulator)

    assert failed.outputs == []
    assert failed.consumed == 0
    assert failed.error is not None
    assert (failed.error.offset, failed.error.index) == (3, 0)
    assert failed.error.error_type == "LateRecordError"
    assert "9000" in failed.error.error_message
    assert failed.accumulator == prefix.accumulator
    rest = dispatcher.process(after, failed.accumulator)
    assert rest.error is None
    assert rest.outputs == [window_record(10_000, 10_000, b"1,2,", offset=4)]


def test_late_record_under_drop_counts_in_its_open_windows_and_is_reported() -> None:
    """late="drop" (sliding): it joins its open windows; the next window says late_dropped."""
    dispatcher = collecting(dataflare.sliding(10_000, 5_000, late="drop"))
    records = stream(
        (101_000, 0),  # windows [95 000, 105 000) and [100 000, 110 000)
        (112_000, 1),  # watermark 112 000 closes both
        (107_000, 2),  # [100 000, 110 000) closed, [105 000, 115 000) open: late, counted there
        (121_000, 3),  # closes [105 000, 115 000) and [110 000, 120 000)
    )
    result = dispatcher.process(records)
    assert result.error is None
    assert result.outputs == [
        window_record(95_000, 10_000, b"0,", offset=1),
        window_record(100_000, 10_000, b"0,", offset=1),
        window_record(105_000, 10_000, b"1,2,", offset=3, late=1),
        window_record(110_000, 10_000, b"1,", offset=3),
    ]


def test_late_record_under_drop_in_no_open_window_is_only_counted() -> None:
    """late="drop" (tumbling): a record whose only window closed is folded nowhere, but reported."""
    dispatcher = collecting(dataflare.tumbling(1_000, late="drop"))
    records = stream((500, 0), (1_500, 1), (700, 2), (800, 3), (2_100, 4))
    result = dispatcher.process(records)
    assert result.error is None
    assert result.outputs == [
        window_record(0, 1_000, b"0,", offset=1),
        window_record(1_000, 1_000, b"1,", offset=4, late=2),
    ]


def test_record_without_timestamp_is_a_processing_error_that_changes_nothing() -> None:
    """A windowed aggregate cannot place a record with no timestamp: ProcessingError at it."""
    dispatcher = collecting(dataflare.tumbling(1_000))
    first = dispatcher.process(stream((100, 7)))
    failed = dispatcher.process(stream((None, 8), (1_200, 9)), first.accumulator)
    assert isinstance(failed.error, ProcessingError)
    assert (failed.error.offset, failed.error.error_type) == (8, "ValueError")
    assert "timestamp" in failed.error.error_message
    assert failed.accumulator == first.accumulator
    rest = dispatcher.process(stream((1_200, 9)), failed.accumulator)
    assert rest.outputs == [window_record(0, 1_000, b"7,", offset=9)]


def test_a_failing_fold_leaves_every_window_of_the_record_unchanged() -> None:
    """A plugin raising on a record in two sliding windows changes neither of them."""

    @dataflare.aggregate(window=dataflare.sliding(1_000, 500))
    def picky(accumulator: bytes, record: Record) -> bytes:
        if record.value == b"bad" and not accumulator:
            raise ValueError("no")
        return accumulator + f"{record.offset},".encode()

    dispatcher = Dispatcher(dataflare.runtime.find_plugin({"picky": picky}, "picky"), {})
    # Offset 1 folds into [0, 1000) first (not empty: fine), then into [500, 1500)
    # (empty: it raises), so the first fold must be thrown away.
    records = [Record(b"x", timestamp=100, offset=0), Record(b"bad", timestamp=600, offset=1)]
    failed = dispatcher.process(records)
    assert failed.error is not None
    assert failed.error.offset == 1
    assert failed.accumulator == dispatcher.process(records[:1]).accumulator


# -- batches --------------------------------------------------------------------


@given(data=st.data())
def test_batches_split_anywhere_with_state_carried_equal_the_whole_stream(
    data: st.DataObject,
) -> None:
    """Cutting the stream into batches changes neither outputs, errors nor the final state."""
    window = data.draw(windows())
    records = data.draw(timed_streams())
    dispatcher = collecting(window)
    whole = drive(on_dispatcher(dispatcher), [records])
    split = drive(on_dispatcher(dispatcher), data.draw(splits(records)))
    assert split == whole


# -- native and WASM ------------------------------------------------------------


@pytest.fixture(scope="module")
def windowed_count_wasm(component_builder: Any) -> Path:
    """guest_examples/windowed_count_aggregate.py as a component, built once."""
    return component_builder(WINDOWED_COUNT)  # type: ignore[no-any-return]


SLIDING_DROP = dataflare.sliding(45_000, 15_000, lateness_ms=5_000, late="drop")
PLUGIN_WINDOW = dataflare.tumbling(60_000, lateness_ms=10_000)


@pytest.fixture(scope="module", params=["plugin window", "sliding drop via dataflare.window"])
def count_pair(
    request: pytest.FixtureRequest, windowed_count_wasm: Path
) -> Iterator[tuple[Window, Plugin, Plugin]]:
    """The same windowed count natively and as the one WASM component, with one window."""
    if request.param == "plugin window":
        window, params = PLUGIN_WINDOW, {}
    else:
        window, params = SLIDING_DROP, {"dataflare.window": SLIDING_DROP.to_json()}
    with (
        load_plugin(WINDOWED_COUNT, params) as native,
        load_plugin(windowed_count_wasm, params) as wasm,
    ):
        yield window, native, wasm


@pytest.mark.wasm
@given(data=st.data())
def test_windowed_count_is_identical_natively_and_as_wasm(
    count_pair: tuple[Window, Plugin, Plugin], data: st.DataObject
) -> None:
    """Same out-of-order, late and timestamp-less batches: same windows, errors and state."""
    window, native, wasm = count_pair
    records = data.draw(timed_streams(max_size=40, max_behind=300).map(spread))
    chunks = data.draw(splits(records))
    native.accumulator = wasm.accumulator = None
    native_run = drive(on_plugin(native), chunks)
    wasm_run = drive(on_plugin(wasm), chunks)
    assert wasm_run == native_run
    assert native_run.outcome == model(window, records, count_fold, b"0")


def spread(records: list[Record]) -> list[Record]:
    """The same stream on a minute scale (x 200 ms), so minute windows open and close."""
    return [
        r if r.timestamp is None else attrs.evolve(r, timestamp=r.timestamp * 200) for r in records
    ]


@pytest.mark.wasm
def test_dataflare_window_param_reaches_the_component(windowed_count_wasm: Path) -> None:
    """The reserved param swaps the component's 60 s tumbling window for a 1 s one."""
    params = {"dataflare.window": dataflare.tumbling(1_000).to_json()}
    with load_plugin(windowed_count_wasm, params) as wasm:
        result = wasm.process(stream((100, 0), (900, 1), (1_000, 2)))
    assert result.outputs == [window_record(0, 1_000, b"2", offset=2)]


# -- pipelines ------------------------------------------------------------------


def write_pipeline(directory: Path, processor: dict[str, Any], **top: Any) -> Path:
    """events.jsonl (timestamps in ``ts``) -> ``processor`` -> out.jsonl, batches of 3."""
    document = file_pipeline(
        "windows",
        "count",
        processor,
        source_id="events",
        source="events.jsonl",
        timestamp_field="ts",
        batch={"size": 3, "linger_ms": 0},
        **top,
    )
    file = directory / "pipeline.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    return file


def write_events(directory: Path, timestamps: Sequence[int]) -> None:
    lines = [json.dumps({"n": i, "ts": ts}) + "\n" for i, ts in enumerate(timestamps)]
    (directory / "events.jsonl").write_text("".join(lines))


@pytest.mark.parametrize("runtime", ["native", "wasm"])
def test_yaml_window_overrides_the_plugins_window_in_a_pipeline(
    tmp_path: Path, runtime: str, request: pytest.FixtureRequest
) -> None:
    """`window:` (1 s tumbling, 200 ms lateness) replaces the plugin's 60 s window."""
    if runtime == "wasm":
        path = str(request.getfixturevalue("windowed_count_wasm"))
        source = {"plugin_source": "wasm", "plugin_path": path}
    else:
        source = {"plugin_path": str(WINDOWED_COUNT)}
    timestamps = [100, 900, 1_050, 950, 1_500, 1_990, 2_300, 2_250, 3_400, 4_100]
    write_events(tmp_path, timestamps)
    file = write_pipeline(
        tmp_path,
        {
            "plugin_type": "aggregate",
            **source,
            "window": {"type": "tumbling", "size_ms": 1_000, "lateness_ms": 200},
        },
    )
    summary = run_to_end(file)
    assert (summary.status, summary.error) == ("completed", None)
    # Computed by hand: watermark = newest - 200; 950 and 2 250 arrive out of order but
    # inside the bound. [0,1000) closes at 1 500 (100, 900, 950), [1000,2000) at 2 300
    # (1 050, 1 500, 1 990), [2000,3000) at 3 400 (2 300, 2 250); [3000,4000) stays open
    # (watermark 3 900). The plugin's own 60 s window would have emitted nothing.
    assert (tmp_path / "out.jsonl").read_text().splitlines() == ["3", "3", "2"]


@pytest.mark.parametrize(
    ("plugin", "window", "reason"),
    [
        pytest.param(
            ("map", EXAMPLES / "uppercase_map.py"),
            {"type": "tumbling", "size_ms": 1_000},
            "only aggregate processors take a window",
            id="on-a-map",
        ),
        pytest.param(
            ("aggregate", WINDOWED_COUNT),
            {"type": "sliding", "size_ms": 1_000},
            "a sliding window needs step_ms",
            id="sliding-without-step",
        ),
    ],
)
def test_a_bad_yaml_window_is_a_located_config_error(
    tmp_path: Path, plugin: tuple[str, Path], window: dict[str, Any], reason: str
) -> None:
    """A `window:` on a map, or a sliding one without step_ms, is refused before anything
    runs, naming file, the window's line and YAML path."""
    write_events(tmp_path, [1])
    plugin_type, plugin_path = plugin
    file = write_pipeline(
        tmp_path, {"plugin_type": plugin_type, "plugin_path": str(plugin_path), "window": window}
    )
    line = line_of(file.read_text(), "window:")
    with pytest.raises(ConfigurationError) as caught:
        Pipeline.from_file(file)
    assert str(caught.value) == f"{file}:{line}: processors[0].config.window: {reason}"


def test_late_records_reach_the_dead_letter_sink(tmp_path: Path) -> None:
    """on_error: dead_letter, late="error": late records go to dead letter; windows go on."""
    timestamps = [100, 1_200, 300, 1_500, 2_600, 1_900, 3_050]
    write_events(tmp_path, timestamps)
    file = write_pipeline(
        tmp_path,
        {
            "plugin_type": "aggregate",
            "plugin_path": str(WINDOWED_COUNT),
            "on_error": "dead_letter",
            "window": {"type": "tumbling", "size_ms": 1_000},
        },
        dead_letter={
            "id": "late",
            "type": "plugin",
            "config": {"plugin_type": "file", "connection": {"path": "late.jsonl"}},
        },
    )
    summary = run_to_end(file)
    assert (summary.status, summary.error) == ("completed", None)
    # Watermark = newest: 300 comes after 1 200 closed [0,1000); 1 900 after 2 600 closed
    # [1000,2000). Windows: [0,1000) = {100}, [1000,2000) = {1200, 1500}, [2000,3000) = {2600}.
    assert (tmp_path / "out.jsonl").read_text().splitlines() == ["1", "2", "1"]
    dead = [json.loads(line) for line in (tmp_path / "late.jsonl").read_text().splitlines()]
    assert [(d["stage"], d["error"]["error_type"]) for d in dead] == [
        ("count", "LateRecordError"),
        ("count", "LateRecordError"),
    ]
    assert [(d["record"]["offset"], d["record"]["timestamp"]) for d in dead] == [
        (2, 300),
        (5, 1_900),
    ]
    assert [d["error"]["offset"] for d in dead] == [2, 5]
    assert [json.loads(d["record"]["value"])["ts"] for d in dead] == [300, 1_900]
