"""Every example plugin obeys the law of its kind, checked against an independent model.

Each law is a Hypothesis property. ``LAWS`` maps every file in ``guest_examples/``
to its law, and a test fails when a file has none, so a new example cannot ship
untested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.json_values import to_json
from support.paths import EXAMPLES
from support.records import any_batches, as_dict

from dataflare import PluginKind, Record
from dataflare_host import Plugin, load_plugin
from dataflare_host.testing import byte_values, json_documents, json_scalars


def load(name: str, **params: str) -> Plugin:
    return load_plugin(EXAMPLES / name, params)


def is_subsequence(part: Sequence[Record], whole: Sequence[Record]) -> bool:
    """Whether ``part`` is ``whole`` with some records left out, order kept."""
    remaining = iter(whole)
    return all(any(item == candidate for candidate in remaining) for item in part)


def run_ok(plugin: Plugin, batch: Sequence[Record]) -> list[Record]:
    result = plugin.process(batch)
    assert result.error is None, result.error
    assert result.consumed == len(batch)
    return result.outputs


def check_filter_law(plugin: Plugin, batch: list[Record], keep: Callable[[Record], bool]) -> None:
    """A filter keeps an in-order subsequence: exactly the records the model accepts."""
    assert plugin.kind is PluginKind.FILTER
    outputs = run_ok(plugin, batch)
    assert is_subsequence(outputs, batch)
    assert [as_dict(r) for r in outputs] == [as_dict(r) for r in batch if keep(r)]


# --- contains_filter.py ----------------------------------------------------------------

# Values built from a few letters so the needle occurs often but not always.
letter_soup = st.lists(st.sampled_from([b"e", b"r", b"o", b"x", b"\xff"]), max_size=8).map(b"".join)


@given(
    batch=any_batches(values=letter_soup | byte_values()),
    needle=st.sampled_from(["error", "err", "r", "ro"]) | st.text(min_size=1, max_size=3),
)
def contains_filter_law(batch: list[Record], needle: str) -> None:
    """contains_filter keeps exactly the records whose value holds the needle's UTF-8 bytes."""
    check_filter_law(
        load("contains_filter.py", needle=needle), batch, lambda r: needle.encode() in r.value
    )


@given(batch=any_batches(values=letter_soup | st.just(b"an error here")))
def contains_filter_default_law(batch: list[Record]) -> None:
    """Without params, contains_filter looks for "error"."""
    check_filter_law(load("contains_filter.py"), batch, lambda r: b"error" in r.value)


# --- dedupe_filter.py ------------------------------------------------------------------

few_keys = st.sampled_from([None, b"", b"a", b"b", b"\xff", b"user-1"])
few_values = st.sampled_from([b"", b"a", b"b", b"\xff"])


@given(
    batch=any_batches(values=few_values),
    keys=st.lists(few_keys, min_size=12, max_size=12),
    data=st.data(),
)
def dedupe_filter_law(batch: list[Record], keys: list[bytes | None], data: st.DataObject) -> None:
    """dedupe_filter keeps each key's first record (a keyless record's name is its value); split
    at any point, its state snapshot restored into a fresh copy (as from a checkpoint), it
    keeps the same."""
    batch = [record.evolve(key=key) for record, key in zip(batch, keys, strict=False)]
    seen: set[tuple[str, bytes]] = set()

    def first_of_key(record: Record) -> bool:
        name = ("value", record.value) if record.key is None else ("key", record.key)
        new = name not in seen
        seen.add(name)
        return new

    expected = [r for r in batch if first_of_key(r)]
    split = data.draw(st.integers(min_value=0, max_value=len(batch)), label="split")
    first, second = load("dedupe_filter.py"), load("dedupe_filter.py")
    head = run_ok(first, batch[:split])
    second.restore_state(first.snapshot_state())
    assert head + run_ok(second, batch[split:]) == expected
    assert second.snapshot_state() == load_whole_state(batch)


def load_whole_state(batch: list[Record]) -> bytes:
    whole = load("dedupe_filter.py")
    run_ok(whole, batch)
    return whole.snapshot_state()


# --- json_field_filter.py --------------------------------------------------------------

FIELD_VALUES = st.sampled_from(
    ["active", "inactive", "on", "", 1, None, True, ["active"], {"a": 1}]
)


@st.composite
def status_documents(draw: st.DrawFn, fields: Sequence[str]) -> bytes:
    """JSON objects that often have one of ``fields``, plus other JSON documents."""
    other_fields = st.sampled_from(["id", "note", "Status"])
    document = draw(st.dictionaries(other_fields, json_scalars(), max_size=2))
    for field in fields:
        if draw(st.booleans()):
            document[field] = draw(FIELD_VALUES)
    if draw(st.integers(0, 9)) == 0:
        # Sometimes not an object at all.
        return to_json(draw(json_scalars() | st.lists(json_scalars(), max_size=3)))
    return to_json(document)


def json_field_model(field: str, value: str) -> Callable[[Record], bool]:
    def keep(record: Record) -> bool:
        document = json.loads(record.value.decode("utf-8"))
        return type(document) is dict and field in document and document[field] == value

    return keep


@given(batch=any_batches(values=status_documents(["status", "kind"])))
def json_field_filter_default_law(batch: list[Record]) -> None:
    """json_field_filter keeps objects whose "status" is the string "active" by default."""
    check_filter_law(load("json_field_filter.py"), batch, json_field_model("status", "active"))


@given(
    batch=any_batches(values=status_documents(["status", "kind"])),
    value=st.sampled_from(["on", "active", ""]),
)
def json_field_filter_params_law(batch: list[Record], value: str) -> None:
    """With field/value params it compares that field to that string."""
    check_filter_law(
        load("json_field_filter.py", field="kind", value=value),
        batch,
        json_field_model("kind", value),
    )


# --- regex_filter.py -------------------------------------------------------------------

PATTERNS = [r"^ab+", r"\d{2}", r"é", r"(?i)ERR", r"x$", r"."]
regex_soup = st.lists(
    st.sampled_from([b"a", b"b", b"1", b"2", "é".encode(), b"err", b"x", b"\xff", b"\n"]),
    max_size=8,
).map(b"".join)


@given(batch=any_batches(values=regex_soup), pattern=st.sampled_from(PATTERNS))
def regex_filter_law(batch: list[Record], pattern: str) -> None:
    """regex_filter keeps records whose text (bad bytes replaced) has a match anywhere."""
    compiled = re.compile(pattern)
    check_filter_law(
        load("regex_filter.py", pattern=pattern),
        batch,
        lambda r: compiled.search(r.value.decode("utf-8", errors="replace")) is not None,
    )


# --- uppercase_map.py ------------------------------------------------------------------


@given(batch=any_batches(values=byte_values() | st.text(max_size=10).map(str.encode)))
def uppercase_map_law(batch: list[Record]) -> None:
    """uppercase_map keeps count and order, upper-cases ASCII letters, leaves the rest alone."""
    plugin = load("uppercase_map.py")
    assert plugin.kind is PluginKind.MAP
    outputs = run_ok(plugin, batch)
    assert len(outputs) == len(batch)
    for before, after in zip(batch, outputs, strict=True):
        expected = bytes(b - 32 if 0x61 <= b <= 0x7A else b for b in before.value)
        assert as_dict(after) == {**as_dict(before), "value": expected}


# --- even_double_filter_map.py ---------------------------------------------------------

integer_text = st.integers(min_value=-(10**20), max_value=10**20).map(lambda n: str(n).encode())


@given(batch=any_batches(values=integer_text))
def even_double_filter_map_law(batch: list[Record]) -> None:
    """even_double keeps the records with even integers, in order, each value doubled."""
    plugin = load("even_double_filter_map.py")
    assert plugin.kind is PluginKind.FILTER_MAP
    outputs = run_ok(plugin, batch)
    kept = [r for r in batch if int(r.value.decode()) % 2 == 0]
    # A subsequence of the input, transformed: same positions, new values.
    assert [r.offset for r in outputs] == [r.offset for r in kept]
    assert [as_dict(r) for r in outputs] == [
        {**as_dict(r), "value": str(2 * int(r.value.decode())).encode()} for r in kept
    ]


# --- explode_array_map.py --------------------------------------------------------------

json_arrays = st.lists(json_documents(), max_size=4)


@given(batch=any_batches(values=json_arrays.map(to_json)))
def explode_array_map_law(batch: list[Record]) -> None:
    """explode's output is the concatenation of its per-record outputs, one per element."""
    plugin = load("explode_array_map.py")
    assert plugin.kind is PluginKind.ARRAY_MAP
    outputs = run_ok(plugin, batch)
    one_by_one = [out for record in batch for out in run_ok(plugin, [record])]
    assert outputs == one_by_one
    model = [
        {**as_dict(r), "value": to_json(item)} for r in batch for item in json.loads(r.value)
    ]
    assert [as_dict(r) for r in outputs] == model


# --- sum_aggregate.py ------------------------------------------------------------------

amounts = st.integers(min_value=-(10**12), max_value=10**12) | st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False
)


@st.composite
def amount_documents(draw: st.DrawFn, field: str) -> bytes:
    document = draw(st.dictionaries(st.sampled_from(["id", "note"]), st.text(max_size=4)))
    if draw(st.integers(0, 4)):  # usually has the field; missing counts as 0
        document[field] = draw(amounts)
    return to_json(document)


def running_sum(batch: Sequence[Record], field: str) -> list[bytes]:
    """The model: Python's left fold of the field's values, starting at 0, as JSON."""
    total: float = 0
    sums = []
    for record in batch:
        total = total + json.loads(record.value).get(field, 0)
        sums.append(json.dumps(total).encode())
    return sums


@given(batch=any_batches(values=amount_documents("amount")), data=st.data())
def sum_aggregate_law(batch: list[Record], data: st.DataObject) -> None:
    """sum_aggregate split at any point in two, state carried, equals it over the whole batch."""
    split = data.draw(st.integers(min_value=0, max_value=len(batch)), label="split")
    whole = load("sum_aggregate.py")
    assert whole.kind is PluginKind.AGGREGATE
    expected = run_ok(whole, batch)

    carried = load("sum_aggregate.py")  # the same Plugin object keeps the state
    assert run_ok(carried, batch[:split]) + run_ok(carried, batch[split:]) == expected
    assert carried.accumulator == whole.accumulator

    first, second = load("sum_aggregate.py"), load("sum_aggregate.py")
    head = run_ok(first, batch[:split])
    second.accumulator = first.accumulator  # restored as from a checkpoint
    assert head + run_ok(second, batch[split:]) == expected
    assert second.accumulator == whole.accumulator

    # emit each: the running fold, one output per input, at the input's position.
    sums = running_sum(batch, "amount")
    assert [as_dict(r) for r in expected] == [
        {**as_dict(r), "value": total} for r, total in zip(batch, sums, strict=True)
    ]


@given(batch=any_batches(values=amount_documents("qty")), data=st.data())
def sum_aggregate_params_law(batch: list[Record], data: st.DataObject) -> None:
    """With field=qty it sums that field, and splitting still changes nothing."""
    split = data.draw(st.integers(min_value=0, max_value=len(batch)), label="split")
    whole = load("sum_aggregate.py", field="qty")
    carried = load("sum_aggregate.py", field="qty")
    expected = run_ok(whole, batch)
    assert run_ok(carried, batch[:split]) + run_ok(carried, batch[split:]) == expected
    assert [r.value for r in expected] == running_sum(batch, "qty")


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=50_000), max_size=40),
    start=st.integers(min_value=0, max_value=10**9),
    data=st.data(),
)
def windowed_count_law(gaps: list[int], start: int, data: st.DataObject) -> None:
    """In-order records: each closed 60 s window emits its count, once, oldest first.

    A window closes when the highest timestamp seen passes its end plus the 10 s
    lateness; splitting the batch (state carried) changes nothing.
    """
    timestamps, now = [], start
    for gap in gaps:
        now += gap
        timestamps.append(now)
    batch = [Record(b"x", timestamp=t, offset=i) for i, t in enumerate(timestamps)]
    size, lateness = 60_000, 10_000
    counts: dict[int, int] = {}
    for t in timestamps:
        counts[t // size * size] = counts.get(t // size * size, 0) + 1
    watermark = (max(timestamps) - lateness) if timestamps else None
    expected = [
        (begin, str(count).encode())
        for begin, count in sorted(counts.items())
        if watermark is not None and begin + size <= watermark
    ]
    plugin = load("windowed_count_aggregate.py")
    outputs = run_ok(plugin, batch)
    assert [(int(r.metadata["window_start"]), r.value) for r in outputs] == expected
    assert all(r.timestamp == int(r.metadata["window_end"]) - 1 for r in outputs)

    split = data.draw(st.integers(min_value=0, max_value=len(batch)), label="split")
    carried = load("windowed_count_aggregate.py")
    assert run_ok(carried, batch[:split]) + run_ok(carried, batch[split:]) == outputs


def sum_aggregate_look_back_law() -> None:
    """look_back resumes from the last running total; a non-number stops the warm-up."""
    plugin = load("sum_aggregate.py")
    warm = plugin.look_back([Record(b"3", offset=0), Record(b"40.5", offset=1)])
    assert warm.error is None
    assert plugin.accumulator == b"40.5"
    assert run_ok(plugin, [Record(b'{"amount": 2}', offset=2)])[0].value == b"42.5"
    bad = load("sum_aggregate.py").look_back([Record(b"oops", offset=9)])
    assert bad.error is not None
    assert (bad.error.offset, bad.error.error_type) == (9, "JSONDecodeError")


LAWS: dict[str, list[Callable[[], None]]] = {
    "contains_filter.py": [contains_filter_law, contains_filter_default_law],
    "dedupe_filter.py": [dedupe_filter_law],
    "json_field_filter.py": [json_field_filter_default_law, json_field_filter_params_law],
    "regex_filter.py": [regex_filter_law],
    "uppercase_map.py": [uppercase_map_law],
    "even_double_filter_map.py": [even_double_filter_map_law],
    "explode_array_map.py": [explode_array_map_law],
    "sum_aggregate.py": [sum_aggregate_law, sum_aggregate_params_law, sum_aggregate_look_back_law],
    "windowed_count_aggregate.py": [windowed_count_law],
}

EXAMPLE_FILES = sorted(path.name for path in EXAMPLES.glob("*.py"))


def test_every_example_file_has_a_law() -> None:
    """LAWS covers exactly the files in guest_examples/: add a law with every new example."""
    assert set(LAWS) == set(EXAMPLE_FILES)


@pytest.mark.parametrize("name", sorted(set(LAWS) | set(EXAMPLE_FILES)))
def test_example_obeys_its_law(name: str) -> None:
    """Each example file loads and satisfies every law listed for it."""
    assert name in LAWS, f"guest_examples/{name} has no law in tests/test_examples.py"
    assert (EXAMPLES / name).is_file()
    for law in LAWS[name]:
        law()


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_is_short_and_documented(name: str) -> None:
    """Each example is one short file with a docstring saying what it does."""
    path: Path = EXAMPLES / name
    source = path.read_text(encoding="utf-8")
    assert source.startswith('"""'), f"{name} starts without a docstring"
    assert len(source.splitlines()) <= 30
