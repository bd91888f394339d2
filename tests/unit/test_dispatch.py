"""The dispatcher: each kind's semantics, wrong returns, and what a failure keeps and reports."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import any_batches

import dataflare
from dataflare import LimitExceededError, PluginError, ProcessingError, Record
from dataflare.runtime import BatchResult, Dispatcher, find_plugin
from dataflare.runtime._error_details import preview
from dataflare_host import load_plugin


def dispatcher(func: Callable[..., Any], params: dict[str, str] | None = None) -> Dispatcher:
    return Dispatcher(find_plugin({"plugin": func}, "test"), params or {})


def _values(result: BatchResult) -> list[bytes]:
    return [r.value for r in result.outputs]


def _counting_fold(acc: bytes, record: Record) -> bytes:
    """acc + the record's value, separated by '|' (order-revealing)."""
    return acc + b"|" + record.value


def _aggregate(emit: str = "each", initial: bytes = b"") -> Dispatcher:
    def concat(acc: bytes, record: Record) -> bytes:
        return _counting_fold(acc, record)

    return dispatcher(dataflare.aggregate(initial=initial, emit=emit)(concat))


# --- per-kind semantics ----------------------------------------------------------------


@given(any_batches())
def test_filter_keeps_accepted_records_unchanged_in_order(batch: list[Record]) -> None:
    """A filter's outputs are exactly the records it accepted, untouched, in order."""
    @dataflare.filter
    def even_length(record: Record) -> bool:
        return len(record.value) % 2 == 0

    result = dispatcher(even_length).process(batch)
    assert result.outputs == [r for r in batch if len(r.value) % 2 == 0]
    assert (result.consumed, result.error, result.accumulator, result.ok) == (
        len(batch), None, None, True,
    )


@given(any_batches())
def test_filter_indices_are_positions_of_kept_records(batch: list[Record]) -> None:
    """filter_indices returns the indices of accepted records and the consumed count."""
    @dataflare.filter
    def even_length(record: Record) -> bool:
        return len(record.value) % 2 == 0

    kept, consumed, error = dispatcher(even_length).filter_indices(batch)
    assert kept == [i for i, r in enumerate(batch) if len(r.value) % 2 == 0]
    assert (consumed, error) == (len(batch), None)


@given(any_batches())
def test_map_replaces_each_record_keeping_the_input_offset(batch: list[Record]) -> None:
    """A map emits one output per input, in order, at the input's offset."""
    @dataflare.map
    def reverse(record: Record) -> Record:
        return Record(record.value[::-1], offset=-1)  # offset deliberately wrong

    result = dispatcher(reverse).process(batch)
    assert result.outputs == [Record(r.value[::-1], offset=r.offset) for r in batch]
    assert result.consumed == len(batch)


@given(any_batches())
def test_filter_map_drops_none_and_keeps_transformed(batch: list[Record]) -> None:
    """A filter_map drops records it maps to None and emits the others at the input offset."""
    @dataflare.filter_map
    def short_doubled(record: Record) -> Record | None:
        if len(record.value) > 5:
            return None
        return record.evolve(value=record.value * 2, offset=0)

    result = dispatcher(short_doubled).process(batch)
    assert result.outputs == [r.evolve(value=r.value * 2) for r in batch if len(r.value) <= 5]


@pytest.mark.parametrize("style", ["list", "tuple", "generator", "iterator"])
@given(batch=any_batches())
def test_array_map_concatenates_outputs_at_the_input_offset(
    style: str, batch: list[Record]
) -> None:
    """An array_map's outputs are each input's 0..N outputs in order, at the input's offset."""
    def split(record: Record) -> Iterator[Record]:
        for byte in record.value[:3]:
            yield Record(bytes([byte]), key=record.key, offset=123)

    if style == "generator":
        plugin = split
    else:
        converters: dict[str, Callable[[Iterator[Record]], Any]] = {
            "list": list, "tuple": tuple, "iterator": iter,
        }
        convert = converters[style]

        def plugin(record: Record) -> Any:  # type: ignore[misc]
            return convert(split(record))

    dataflare.array_map(plugin)
    result = dispatcher(plugin).process(batch)
    assert result.outputs == [
        Record(bytes([b]), key=r.key, offset=r.offset) for r in batch for b in r.value[:3]
    ]
    assert result.consumed == len(batch)


def test_array_map_may_return_nothing() -> None:
    """An empty iterable drops the record."""
    @dataflare.array_map
    def nothing(record: Record) -> list[Record]:
        return []

    result = dispatcher(nothing).process([Record(b"a"), Record(b"b")])
    assert (result.outputs, result.consumed, result.error) == ([], 2, None)


def test_output_at_same_offset_is_the_returned_record() -> None:
    """A map returning a record already at the input's offset emits that very record."""
    @dataflare.map
    def same(record: Record) -> Record:
        return record

    batch = [Record(b"a", offset=4)]
    assert dispatcher(same).process(batch).outputs[0] is batch[0]


@given(any_batches(), st.binary(max_size=4))
def test_aggregate_each_emits_the_running_fold(batch: list[Record], initial: bytes) -> None:
    """emit="each": each input emits itself with the accumulator after it as value."""
    result = _aggregate("each", initial).process(batch)
    expected = []
    acc = initial
    for r in batch:
        acc = _counting_fold(acc, r)
        expected.append(r.evolve(value=acc))
    assert result.outputs == expected
    assert result.accumulator == acc
    assert result.consumed == len(batch)


@given(any_batches(), st.binary(max_size=4))
def test_aggregate_batch_emits_once_at_the_last_record(batch: list[Record], initial: bytes) -> None:
    """emit="batch": one output per non-empty batch, the last record carrying the accumulator."""
    result = _aggregate("batch", initial).process(batch)
    acc = initial
    for r in batch:
        acc = _counting_fold(acc, r)
    assert result.outputs == ([batch[-1].evolve(value=acc)] if batch else [])
    assert result.accumulator == acc


@pytest.mark.parametrize("emit", ["each", "batch"])
@given(any_batches(), any_batches())
def test_aggregate_carries_the_accumulator_across_batches(
    emit: str, first: list[Record], second: list[Record]
) -> None:
    """Passing a batch's accumulator to the next batch continues the fold."""
    agg = _aggregate(emit, b"start")
    one = agg.process(first)
    two = agg.process(second, one.accumulator)
    assert two.accumulator == agg.process(first + second).accumulator
    if emit == "each":
        assert one.outputs + two.outputs == agg.process(first + second).outputs


def test_aggregate_starts_from_initial_when_no_accumulator() -> None:
    """accumulator=None starts from initial; a given accumulator overrides it."""
    agg = _aggregate("each", b"init")
    assert _values(agg.process([Record(b"a")])) == [b"init|a"]
    assert _values(agg.process([Record(b"a")], b"prev")) == [b"prev|a"]
    assert agg.process([], b"prev").accumulator == b"prev"
    assert agg.process([]).accumulator == b"init"


def test_aggregate_with_context() -> None:
    """An aggregate taking a context receives it third."""
    @dataflare.aggregate(initial=b"", params={"sep": ","})
    def join(acc: bytes, record: Record, params: dict[str, str]) -> bytes:
        return acc + params["sep"].encode() + record.value if acc else record.value

    result = dispatcher(join, {"sep": ";"}).process([Record(b"a"), Record(b"b")])
    assert _values(result) == [b"a", b"a;b"]


# --- wrong return types ----------------------------------------------------------------

WRONG_RETURNS: list[tuple[str, object]] = [
    ("filter", 1),
    ("filter", None),
    ("filter", b""),
    ("map", b"bytes"),
    ("map", None),
    ("map", [Record()]),
    ("filter_map", "text"),
    ("filter_map", False),
    ("array_map", Record()),
    ("array_map", b"ab"),
    ("array_map", "ab"),
    ("array_map", None),
    ("array_map", 3),
    ("array_map", [b"x"]),
    ("array_map", [Record(), None]),
    ("aggregate", "acc"),
    ("aggregate", None),
    ("aggregate", bytearray(b"a")),
]


@pytest.mark.parametrize(("kind", "returned"), WRONG_RETURNS)
def test_wrong_return_type_is_a_processing_type_error(kind: str, returned: object) -> None:
    """Returning the wrong type is a ProcessingError with error_type TypeError at that record."""
    calls = []
    if kind == "aggregate":
        def bad(acc: bytes, record: Record) -> Any:
            calls.append(record)
            return returned if record.value == b"bad" else acc + record.value
    else:
        def bad(record: Record) -> Any:  # type: ignore[misc]
            calls.append(record)
            if record.value == b"bad":
                return returned
            return {"filter": True, "array_map": [record]}.get(kind, record)

    getattr(dataflare, kind)(bad)
    batch = [Record(b"ok", offset=10), Record(b"bad", offset=11), Record(b"never", offset=12)]
    result = dispatcher(bad).process(batch)
    assert result.error is not None
    assert result.error.error_type == "TypeError"
    assert (result.error.offset, result.error.index, result.consumed) == (11, 1, 1)
    assert len(result.outputs) == 1
    assert [r.value for r in calls] == [b"ok", b"bad"]


# --- a raising plugin ------------------------------------------------------------------


class Boom(Exception):
    pass


def raise_line(function: Callable[..., Any]) -> int:
    """The line of the first ``raise`` in ``function``, a plugin defined in this file."""
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, text in enumerate(lines) if text.strip().startswith("raise"))


def _raising(kind: str, fail_on: bytes) -> Callable[..., Any]:
    """A plugin of ``kind`` that passes records through and raises on ``fail_on``."""
    if kind == "aggregate":
        def exploding(acc: bytes, record: Record) -> bytes:
            if record.value == fail_on:
                raise Boom(f"cannot take {record.value!r}")
            return acc + record.value
    else:
        def exploding(record: Record) -> Any:  # type: ignore[misc]
            if record.value == fail_on:
                raise Boom(f"cannot take {record.value!r}")
            return {"filter": True, "array_map": [record, record]}.get(kind, record)

    return getattr(dataflare, kind)(name="exploding_plugin")(exploding)


KINDS = ["filter", "map", "filter_map", "array_map", "aggregate"]


@pytest.mark.parametrize("kind", KINDS)
@given(batch=any_batches(values=st.binary(min_size=1, max_size=4), min_size=1), data=st.data())
def test_raising_plugin_keeps_earlier_outputs_and_reports_the_record(
    kind: str, batch: list[Record], data: st.DataObject
) -> None:
    """Outputs before the failing record are kept; the error names plugin, kind, offset, index."""
    index = data.draw(st.integers(min_value=0, max_value=len(batch) - 1), label="fail at")
    batch[index] = batch[index].evolve(value=b"")  # the only empty value
    before = batch[:index]
    result = dispatcher(_raising(kind, b"")).process(batch)
    expected_error = ProcessingError(
        plugin="exploding_plugin",
        kind=kind,
        offset=batch[index].offset,
        index=index,
        error_type="Boom",
        error_message="cannot take b''",
        record_key=None if batch[index].key is None else preview(batch[index].key),
        record_value="",  # the failing record's (empty) value, as the error carries it
        location=f"test_dispatch.py:{raise_line(_raising(kind, b''))}",
        frames=result.error.frames if result.error is not None else None,
    )
    assert result.error == expected_error
    assert not result.ok
    assert result.consumed == index
    whole = dispatcher(_raising(kind, b"never")).process(before)
    assert result.outputs == whole.outputs
    assert str(result.error) == (
        f"plugin 'exploding_plugin' ({kind}) failed at record offset {batch[index].offset} "
        f"({expected_error.location}): Boom: cannot take b''"
    )


def test_error_offset_is_the_record_offset_not_its_index() -> None:
    """offset is the failing record's position in the stream; index its position in the batch."""
    batch = [Record(b"a", offset=100), Record(b"b", offset=205), Record(b"", offset=310)]
    error = dispatcher(_raising("map", b"")).process(batch).error
    assert error is not None
    assert (error.offset, error.index) == (310, 2)


@pytest.mark.parametrize("emit", ["each", "batch"])
def test_aggregate_accumulator_after_an_error_is_after_the_last_consumed_record(emit: str) -> None:
    """A failing aggregate reports the accumulator of the records before the failure."""
    @dataflare.aggregate(initial=b"<", emit=emit)
    def concat_until_bang(acc: bytes, record: Record) -> bytes:
        if record.value == b"!":
            raise Boom("bang")
        return acc + record.value

    result = dispatcher(concat_until_bang).process(
        [Record(b"a"), Record(b"b"), Record(b"!"), Record(b"c")]
    )
    assert result.accumulator == b"<ab"
    assert result.consumed == 2
    assert _values(result) == ([b"<a", b"<ab"] if emit == "each" else [])


def test_array_map_failing_mid_iterable_keeps_none_of_that_records_outputs() -> None:
    """A generator raising half-way: outputs of earlier records kept, none of the failing one."""
    @dataflare.array_map
    def halves(record: Record) -> Iterator[Record]:
        yield record.evolve(value=record.value + b"-1")
        if record.value == b"bad":
            raise Boom("half-way")
        yield record.evolve(value=record.value + b"-2")

    result = dispatcher(halves).process([Record(b"ok", offset=1), Record(b"bad", offset=2)])
    assert _values(result) == [b"ok-1", b"ok-2"]
    assert result.error is not None
    assert (result.error.offset, result.error.error_type, result.error.error_message) == (
        2, "Boom", "half-way",
    )


def test_array_map_wrong_item_mid_list_keeps_none_of_that_records_outputs() -> None:
    """A list with a non-Record item drops that record's valid outputs too."""
    @dataflare.array_map
    def mixed(record: Record) -> list[Any]:
        return [record, b"oops"] if record.value == b"bad" else [record]

    result = dispatcher(mixed).process([Record(b"ok"), Record(b"bad")])
    assert _values(result) == [b"ok"]
    assert result.error is not None
    assert result.error.error_type == "TypeError"


def test_exception_without_message() -> None:
    """An exception with no message reports just its type."""
    @dataflare.map
    def silent(record: Record) -> Record:
        raise KeyError

    error = dispatcher(silent).process([Record(b"a", offset=3)]).error
    assert error is not None
    assert (error.error_type, error.error_message) == ("KeyError", "")
    assert str(error) == (
        f"plugin 'silent' (map) failed at record offset 3 (test_dispatch.py:{raise_line(silent)}): "
        "KeyError"
    )


def test_empty_batch_is_ok_for_every_kind() -> None:
    """No records: no outputs, no error."""
    for kind in KINDS:
        result = dispatcher(_raising(kind, b"")).process([])
        assert (result.outputs, result.consumed, result.error) == ([], 0, None)


def test_base_exception_is_not_swallowed() -> None:
    """KeyboardInterrupt and SystemExit from a plugin propagate; only Exceptions are reported."""
    @dataflare.map
    def interrupted(record: Record) -> Record:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dispatcher(interrupted).process([Record(b"a")])


# --- ProcessingError as a value --------------------------------------------------------

FIELDS: dict[str, Any] = {
    "plugin": "parse",
    "kind": "map",
    "offset": 7,
    "index": 2,
    "error_type": "ValueError",
    "error_message": "bad digit",
    "record_key": "k\\xff",
    "record_value": "12x",
    "location": "parse.py:3",
    "frames": '  File "parse.py", line 3, in parse',
}


@pytest.mark.parametrize("cls", [ProcessingError, LimitExceededError])
def test_processing_error_pickles_round_trip(cls: type[ProcessingError]) -> None:
    """A pickled error comes back equal, of the same class, with the same message."""
    error = cls(**FIELDS)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert copy == error
    assert copy.fields() == FIELDS
    assert str(copy) == str(error)
    assert str(copy) == (
        "plugin 'parse' (map) failed at record offset 7 (parse.py:3): ValueError: bad digit"
    )


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_processing_errors_differing_in_a_field_are_unequal(field: str) -> None:
    """Equality compares every field."""
    changed = {**FIELDS, field: FIELDS[field] + (1 if isinstance(FIELDS[field], int) else "x")}
    assert ProcessingError(**FIELDS) != ProcessingError(**changed)
    assert ProcessingError(**FIELDS) == ProcessingError(**dict(FIELDS))
    assert hash(ProcessingError(**FIELDS)) == hash(ProcessingError(**dict(FIELDS)))


def test_processing_error_subclass_is_not_equal_to_base() -> None:
    """A LimitExceededError is not equal to a ProcessingError with the same fields."""
    assert LimitExceededError(**FIELDS) != ProcessingError(**FIELDS)


def test_processing_error_hierarchy() -> None:
    """ProcessingError is a PluginError and a RuntimeError exiting 1."""
    error = ProcessingError(**FIELDS)
    assert isinstance(error, PluginError)
    assert isinstance(error, RuntimeError)
    assert error.exit_code == 1


def test_batch_result_from_a_sequence_that_is_not_a_list() -> None:
    """process accepts any sequence of records."""
    @dataflare.filter
    def keep(record: Record) -> bool:
        return True

    batch: Sequence[Record] = (Record(b"a"), Record(b"b"))
    assert dispatcher(keep).process(batch).outputs == list(batch)


def test_a_long_record_is_previewed_truncated_in_the_error() -> None:
    """The failing record's value is in the error, cut at PREVIEW_CHARS with an ellipsis."""
    from dataflare.runtime._error_details import PREVIEW_CHARS

    @dataflare.map
    def refuse(record: Record) -> Record:
        raise ValueError("no")

    long = Record(b"v" * 1000, key=b"k", offset=3)
    error = load_plugin(refuse).process([long]).error
    assert error is not None
    assert error.record_value == "v" * PREVIEW_CHARS + "..."
    assert error.record_key == "k"
