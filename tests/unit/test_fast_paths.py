"""The fast paths of issue 11 behave exactly like the slow ones they replace.

- ``loads_json`` (the guest's ``json.loads``, the file source's JSON check)
  returns the same value and raises the same exception type and message as
  ``json.loads`` on generated JSON and non-JSON.
- ``Record.evolve`` keeps the metadata mapping, checks what changed like
  ``Record()`` does, and gives a record equal to the checked constructor's.
- The file source's records equal the ones the checked constructor builds,
  and its errors keep their wording (file, line, value).
- Parse once: a JSONL source's check hands each line's parse to the record's
  first ``json()`` (no second parse), with the same records, values and errors
  as without the check, inline and in deferred (worker) batches alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import comparable_json_value
from hypothesis import example, given
from hypothesis import strategies as st

from dataflare import Record, SerializationError
from dataflare.runtime import loads_json
from dataflare_host._json import parse_json
from dataflare_host.connectors import FileSource, FileSourceConfig

# -- loads_json == json.loads ---------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_whitespace = st.text(alphabet=" \t\r\n", max_size=3)


def _outcome(call: Any, value: Any) -> tuple[str, Any]:
    try:
        result = call(value)
    except Exception as exc:  # noqa: BLE001 - comparing whatever both raise
        return ("raised", (type(exc), str(exc)))
    return ("returned", comparable_json_value(result))


def _same(value: str | bytes | bytearray) -> None:
    assert _outcome(loads_json, value) == _outcome(json.loads, value)


@given(_json_values, _whitespace, _whitespace, st.booleans(), st.booleans())
def test_loads_json_equals_json_loads_on_json(
    value: Any, before: str, after: str, as_bytes: bool, ascii_only: bool
) -> None:
    text = before + json.dumps(value, ensure_ascii=ascii_only) + after
    _same(text.encode() if as_bytes else text)


@given(st.binary(max_size=40))
@example(b"")
@example(b"\xef\xbb\xbf{}")
@example(b"\xff\xfe1\x00")
@example(b"\x001")
@example(b"1\x00")
@example(b'"\xed\xa0\x80"')
@example(b"[1] x")
@example(b"[1,]")
@example(b"NaN")
@example(b"-Infinity ")
@example(b" \n")
def test_loads_json_equals_json_loads_on_any_bytes(data: bytes) -> None:
    _same(data)
    _same(bytearray(data))


@given(st.text(max_size=40))
@example("\ufeff[]")
@example("nan")
@example('{"a": 1}}')
@example("[" * 100_000)
def test_loads_json_equals_json_loads_on_any_text(text: str) -> None:
    _same(text)


@given(_json_values, st.sampled_from(["]", "}", ",", " x", "\x00", "'", '"']))
def test_loads_json_equals_json_loads_on_broken_json(value: Any, junk: str) -> None:
    text = json.dumps(value)
    for broken in (text + junk, junk + text, text[: len(text) // 2]):
        _same(broken)
        _same(broken.encode())


# -- the host's parse_json (orjson where it agrees) == json.loads ------------------------


def _same_parse(data: bytes) -> None:
    assert _outcome(parse_json, data) == _outcome(json.loads, data)


@given(_json_values, _whitespace, _whitespace, st.booleans())
@example(12345678901234567890, "", "", True)
@example(-(2**63) - 1, "", "", True)
@example(2**64, "", "", False)
@example([1e400, -1e-400, 0.1, 2.5e-308], "", "", True)
def test_parse_json_equals_json_loads_on_json(
    value: Any, before: str, after: str, ascii_only: bool
) -> None:
    """On JSON: the same value as json.loads (big integers, floats, text, nesting)."""
    _same_parse((before + json.dumps(value, ensure_ascii=ascii_only) + after).encode())


@given(st.binary(max_size=40))
@example(b"\xef\xbb\xbf{}")
@example(b'"\xed\xa0\x80"')
@example(b'"\\ud800"')
@example(b"1e400")
@example(b"[NaN, -Infinity]")
@example(b"123456789012345678901234567890")
@example(b'{"a": 1, "a": 2}')
@example(b'"a\x01"')
@example(b"[" * 100_000)
def test_parse_json_equals_json_loads_on_any_bytes(data: bytes) -> None:
    """On any bytes: the same value, or the same exception type and message."""
    _same_parse(data)


@given(_json_values, st.sampled_from(["]", "}", ",", " x", "\x00", "'", '"']))
def test_parse_json_equals_json_loads_on_broken_json(value: Any, junk: str) -> None:
    text = json.dumps(value)
    for broken in (text + junk, junk + text, text[: len(text) // 2]):
        _same_parse(broken.encode())


def test_loads_json_keeps_json_loads_keywords_and_types() -> None:
    assert loads_json("[1.5]", parse_float=str) == ["1.5"]
    assert loads_json('{"a": 1}', object_pairs_hook=list) == [("a", 1)]
    with pytest.raises(TypeError) as fast:
        loads_json(12)  # type: ignore[arg-type]
    with pytest.raises(TypeError) as slow:
        json.loads(12)  # type: ignore[arg-type]
    assert str(fast.value) == str(slow.value)


# -- Record.evolve ------------------------------------------------------------------


def test_evolve_keeps_the_metadata_mapping_and_equals_the_constructor() -> None:
    record = Record(b"a", b"k", 5, {"file": "f.jsonl", "line": "3"}, 7)
    evolved = record.evolve(value="b")
    assert evolved.metadata is record.metadata  # not copied and frozen again
    assert evolved == Record(b"b", b"k", 5, {"file": "f.jsonl", "line": "3"}, 7)
    assert hash(evolved) == hash(Record(b"b", b"k", 5, {"file": "f.jsonl", "line": "3"}, 7))
    assert record.evolve(offset=9, key=None).key is None
    assert record.evolve(metadata={"x": "y"}).metadata == {"x": "y"}


@pytest.mark.parametrize(
    "changes",
    [
        {"value": 1},
        {"value": None},
        {"key": 3},
        {"timestamp": 1 << 64},
        {"timestamp": True},
        {"offset": "1"},
        {"value": b"ok", "offset": -(1 << 64)},
        {"metadata": {"a": 1}},
        {"valeu": b"x"},
    ],
)
def test_evolve_refuses_what_the_constructor_refuses_with_its_words(
    changes: dict[str, Any],
) -> None:
    record = Record(b"a", metadata={"m": "n"})
    with pytest.raises(TypeError) as fast:
        record.evolve(**changes)
    fields = {
        "value": record.value,
        "key": record.key,
        "timestamp": record.timestamp,
        "metadata": record.metadata,
        "offset": record.offset,
        **changes,
    }
    with pytest.raises(TypeError) as checked:
        Record(**fields)
    assert str(fast.value) == str(checked.value)


# -- the file source ------------------------------------------------------------------


def _read_all(path: Path, *, defer: bool = False, **config: Any) -> list[Record]:
    source = FileSource(FileSourceConfig(str(path), **config), {})
    if defer:
        source.defer_records()
    source.connect(None)
    records: list[Record] = []
    try:
        while (batch := source.read(3, 1.0)) is not None:
            records.extend(batch.records)
    finally:
        source.close()
    return records


def test_file_source_records_equal_the_checked_constructors(tmp_path: Path) -> None:
    lines = ['{"u": "a", "ts": 10}', "", '{"u": 2}', '{"ts": "11"}', "[1]", '{"u": null}']
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\r\n")
    got = _read_all(path, key_field="u", timestamp_field="ts")
    expected = [
        Record(b'{"u": "a", "ts": 10}', b"a", 10, {"file": "in.jsonl", "line": "1"}, 0),
        Record(b'{"u": 2}', b"2", None, {"file": "in.jsonl", "line": "3"}, 1),
        Record(b'{"ts": "11"}', None, 11, {"file": "in.jsonl", "line": "4"}, 2),
        Record(b"[1]", None, None, {"file": "in.jsonl", "line": "5"}, 3),
        Record(b'{"u": null}', None, None, {"file": "in.jsonl", "line": "6"}, 4),
    ]
    assert got == expected
    assert all(type(r.metadata) is type(e.metadata) for r, e in zip(got, expected, strict=True))


def test_file_source_json_error_names_file_line_and_json_loads_reason(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2} x\n', encoding="utf-8")
    with pytest.raises(SerializationError) as caught:
        _read_all(path)
    try:
        json.loads(b'{"a": 2} x')
    except ValueError as exc:
        reason = str(exc)
    assert str(caught.value) == (
        f"{path}:3: not valid JSON ({reason}); fix the line or set validate: false to pass "
        "it through as bytes"
    )


def test_file_source_out_of_range_timestamp_is_refused_like_the_constructor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(f'{{"ts": {1 << 70}}}\n', encoding="utf-8")
    with pytest.raises(TypeError) as caught:
        _read_all(path, timestamp_field="ts")
    with pytest.raises(TypeError) as checked:
        Record(b"", timestamp=1 << 70)
    assert str(caught.value) == str(checked.value)


def test_file_source_position_counts_every_line_read(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n\n{"a": 2}\n{"a": 3}\n', encoding="utf-8")
    source = FileSource(FileSourceConfig(str(path)), {})
    source.connect(None)
    first = source.read(2, 1.0)
    assert first is not None
    assert [r.offset for r in first.records] == [0, 1]
    assert (first.position["line"], first.position["offset"]) == (4, 2)
    source.close()
    again = FileSource(FileSourceConfig(str(path)), {})
    again.connect(first.position)
    rest = again.read(10, 1.0)
    again.close()
    assert rest is not None
    assert [(r.value, r.offset, r.metadata["line"]) for r in rest.records] == [
        (b'{"a": 3}', 2, "5")
    ]


def test_file_sink_refuses_a_value_with_a_newline_and_writes_nothing(tmp_path: Path) -> None:
    from dataflare import PluginIOError
    from dataflare_host.connectors import FileSink, FileSinkConfig

    path = tmp_path / "out.jsonl"
    sink = FileSink(FileSinkConfig(str(path), fsync=False), {})
    sink.connect()
    try:
        sink.write([Record(b"a", offset=1), Record(b"b\nc", offset=2), Record(b"d\n", offset=3)])
    except PluginIOError as exc:
        message = str(exc)
    else:
        raise AssertionError("a newline inside a value was written")
    sink.write([Record(b"x", offset=4), Record(b"y", offset=5)])
    sink.close()
    assert message == (
        f"file sink {path}: record at offset 2 holds a newline, which would split it in "
        "jsonl output"
    )
    assert path.read_bytes() == b"x\ny\n"


# -- parse once: the source's check hands its parse to json() ----------------------------

_LINES = st.lists(
    st.one_of(
        st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6), max_size=4),
        st.lists(st.integers(), max_size=3),
    ).map(lambda document: json.dumps(document, ensure_ascii=False)),
    min_size=1,
    max_size=12,
)


@given(lines=_LINES, blank_every=st.integers(min_value=0, max_value=4))
def test_checked_lines_read_as_the_unchecked_ones_and_parse_the_same(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], blank_every: int
) -> None:
    """The fast path (validate: the source's parse kept for json()) gives the same records
    as the slow one (no check, json() parses), and every json() equals json.loads."""
    path = tmp_path_factory.mktemp("parse-once") / "in.jsonl"
    shown = [
        line
        for i, line in enumerate(lines)
        for line in ([line, ""] if blank_every and i % blank_every == 0 else [line])
    ]
    path.write_text("\n".join(shown) + "\n", encoding="utf-8")
    checked = _read_all(path)
    unchecked = _read_all(path, validate=False)
    assert checked == unchecked == _read_all(path, defer=True)
    for fast, slow in zip(checked, unchecked, strict=True):
        expected = json.loads(slow.value)
        assert fast.json() == slow.json() == expected
        assert fast.json() == expected  # the second call parses again


def test_a_checked_line_is_parsed_once_for_its_first_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's check is the only parse a plugin's first record.json() costs."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": [2]}\n', encoding="utf-8")
    records = _read_all(path) + _read_all(path, defer=True)
    calls: list[bytes] = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda v: calls.append(v) or real(v))
    assert [r.json() for r in records] == [{"a": 1}, {"a": [2]}] * 2
    assert calls == []
    assert records[1].json() == {"a": [2]}
    assert calls == [b'{"a": [2]}']


def test_a_malformed_line_among_checked_ones_still_names_its_file_and_line(tmp_path: Path) -> None:
    """Keeping the parses changes no error: the bad line of a slice is named as before."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(SerializationError, match=rf"^{path}:3: not valid JSON \("):
        _read_all(path)
