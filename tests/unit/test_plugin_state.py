"""A plugin's declared state : bounds, snapshots, errors, checkpoints.

``dataflare.KeyedState`` is a bytes -> bytes mapping with a hard bound; at the
bound the least recently written entries go. Its snapshot is a ``record-batch``
of the entries, the same bytes natively and in WASM (tests/wasm/test_state_wasm.py).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataflare
from dataflare import ConfigurationError, KeyedState, PluginKind, Record, SerializationError
from dataflare.runtime import EMPTY_SNAPSHOT, Dispatcher, StateBounds, encode_batch, find_plugin
from dataflare.runtime._state import decode_entries, restore_state, snapshot_state
from dataflare_host import load_plugin
from dataflare_host.pipeline._checkpoint import Checkpoint, CheckpointStore
from dataflare_host.pipeline._config import ProcessorConfig
from dataflare_host.pipeline.engines import Plan
from dataflare_host.wasm.sandbox.host._values import PluginInfo

# -- a model of the bound: an OrderedDict, newest write last, evicting from the front --


class Model:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.entries: OrderedDict[bytes, bytes] = OrderedDict()

    def write(self, key: bytes, value: bytes) -> bool:
        if len(key) + len(value) > self.max_bytes:
            return False  # refused, nothing changes
        self.entries.pop(key, None)
        self.entries[key] = value
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            self.entries.popitem(last=False)
        return True

    @property
    def size(self) -> int:
        return sum(len(k) + len(v) for k, v in self.entries.items())


keys = st.sampled_from([b"", b"a", b"b", b"c", b"\x00", b"\xff\xfe", b"long-key-" * 3])
values = st.binary(max_size=12)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("del"), keys, st.just(b"")),
        st.tuples(st.just("get"), keys, st.just(b"")),
    ),
    max_size=40,
)
bounds = st.tuples(st.integers(1, 5), st.integers(1, 60))


def apply(state: KeyedState, model: Model, ops: list[tuple[str, bytes, bytes]]) -> None:
    for op, key, value in ops:
        if op == "set":
            if model.write(key, value):
                state[key] = value
            else:
                with pytest.raises(ValueError, match="larger than the whole state"):
                    state[key] = value
        elif op == "del":
            if key in model.entries:
                del state[key]
                del model.entries[key]
            else:
                with pytest.raises(KeyError):
                    del state[key]
        else:
            assert state.get(key) == model.entries.get(key)  # a read changes no order
        assert list(state.items()) == list(model.entries.items())
        assert state.nbytes == model.size <= state.max_bytes
        assert len(state) <= state.max_entries


@given(limits=bounds, ops=operations)
def test_the_bound_evicts_the_least_recently_written_entries(
    limits: tuple[int, int], ops: list[tuple[str, bytes, bytes]]
) -> None:
    """Every write keeps both bounds by evicting from the oldest end, exactly as the model;
    an entry larger than max_bytes alone is refused and changes nothing."""
    state, model = KeyedState(*limits), Model(*limits)
    apply(state, model, ops)


def test_a_rewrite_makes_a_key_the_newest_and_a_read_does_not() -> None:
    state = KeyedState(max_entries=2)
    state[b"a"] = b"1"
    state[b"b"] = b"2"
    assert state[b"a"] == b"1"  # reads: a stays the oldest
    assert b"a" in state
    state[b"c"] = b"3"
    assert list(state) == [b"b", b"c"]
    state[b"b"] = b"22"  # a rewrite: b becomes the newest
    state[b"d"] = b"4"
    assert list(state.items()) == [(b"b", b"22"), (b"d", b"4")]


def test_the_byte_bound_counts_keys_and_values() -> None:
    state = KeyedState(max_entries=100, max_bytes=10)
    state[b"aa"] = b"111"  # 5
    state[b"bb"] = b"222"  # 10
    assert (state.nbytes, len(state)) == (10, 2)
    state[b"c"] = b""  # 11: a goes
    assert (list(state), state.nbytes) == ([b"bb", b"c"], 6)
    with pytest.raises(ValueError, match=r"entry of 11 bytes .* \(max_bytes=10\)"):
        state[b"x"] = b"y" * 10
    assert list(state) == [b"bb", b"c"]


@pytest.mark.parametrize(
    "action",
    [
        lambda s: s.__setitem__("k", b"v"),
        lambda s: s.__setitem__(b"k", "v"),
        lambda s: s.__setitem__(b"k", bytearray(b"v")),
        lambda s: s.__contains__(None),
        lambda s: s.get("k"),
    ],
    ids=["str-key", "str-value", "bytearray-value", "none-in", "str-get"],
)
def test_keys_and_values_are_bytes_everywhere(action: Any) -> None:
    """A str or None key fails loudly (a silent miss would let every record through)."""
    with pytest.raises(TypeError, match=r"state (key|value)s are bytes"):
        action(KeyedState())


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", 1 << 32])
@pytest.mark.parametrize("name", ["max_entries", "max_bytes"])
def test_bounds_are_whole_numbers_from_one(name: str, bad: object) -> None:
    with pytest.raises(TypeError, match=f"KeyedState\\({name}=...\\) must be a whole number"):
        KeyedState(**{name: bad})  # type: ignore[arg-type]


# -- snapshots ---------------------------------------------------------------------------


@given(limits=bounds, ops=operations)
def test_a_snapshot_restores_the_same_entries_in_the_same_order(
    limits: tuple[int, int], ops: list[tuple[str, bytes, bytes]]
) -> None:
    """snapshot -> restore gives the same entries, order (so the same future evictions) and
    bytes; the snapshot fits the length the host allows for those bounds."""
    state = KeyedState(*limits)
    apply(state, Model(*limits), ops)
    snapshot = snapshot_state(state)
    assert len(snapshot) <= state.bounds.wire_limit()
    state.bounds.check_snapshot(snapshot, "test")
    copy = KeyedState(*limits)
    copy[b"s"] = b""
    restore_state(copy, snapshot, "test")
    assert list(copy.items()) == list(state.items())
    assert copy.nbytes == state.nbytes
    assert snapshot_state(copy) == snapshot
    copy[b"n"] = b""
    state[b"n"] = b""
    assert list(copy.items()) == list(state.items())


@given(ops=operations, smaller=st.integers(1, 3))
def test_a_snapshot_into_smaller_bounds_keeps_the_most_recent_entries(
    ops: list[tuple[str, bytes, bytes]], smaller: int
) -> None:
    """A bound lowered since the checkpoint: restoring writes oldest first, so the same rule
    keeps the newest entries."""
    state = KeyedState(5, 200)
    apply(state, Model(5, 200), ops)
    copy = KeyedState(max_entries=smaller, max_bytes=200)
    restore_state(copy, snapshot_state(state), "test")
    assert list(copy.items()) == list(state.items())[-smaller:]


def test_the_empty_snapshot_is_the_nine_bytes_the_wit_shows() -> None:
    wit = (Path(__file__).parents[2] / "wit" / "plugin.wit").read_text()
    assert "`44 46 52 31 00 00 00 00 00`" in wit
    assert bytes.fromhex("44 46 52 31 00 00 00 00 00") == EMPTY_SNAPSHOT
    assert snapshot_state(KeyedState()) == EMPTY_SNAPSHOT


def frame(**columns: Any) -> bytes:
    return encode_batch(**columns).encode("latin-1")


MALFORMED = {
    "not a framing": (b"garbage!!", "not the b'DFR1' magic"),
    "too short": (b"DFR1", "the header needs 9 bytes"),
    "truncated": (frame(positions=[0], values=[b"v"], keys=[b"k"])[:-1], "only 0 are left"),
    "trailing bytes": (EMPTY_SNAPSHOT + b"x", "follow the last column"),
    "positions out of order": (
        frame(positions=[1, 0], values=[b"", b""], keys=[b"a", b"b"]),
        "positions are not 0, 1, 2",
    ),
    "an entry without key": (
        frame(positions=[0, 1], values=[b"", b""], keys=[b"a", None]),
        "an entry has no key",
    ),
    "no keys at all": (frame(positions=[0], values=[b""]), "an entry has no key"),
    "a key twice": (
        frame(positions=[0, 1], values=[b"1", b"2"], keys=[b"a", b"a"]),
        "a key appears twice",
    ),
    "timestamps": (
        frame(positions=[0], values=[b""], keys=[b"a"], timestamps=[5]),
        "no timestamps or metadata",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_snapshot_is_one_serialization_error(name: str) -> None:
    snapshot, reason = MALFORMED[name]
    state = KeyedState()
    state[b"keep"] = b"me"
    with pytest.raises(SerializationError, match=reason) as caught:
        restore_state(state, snapshot, "plugin 'p' (p.py): the state snapshot")
    assert str(caught.value).startswith("plugin 'p' (p.py): the state snapshot")
    assert "\n" not in str(caught.value)
    assert dict(state) == {b"keep": b"me"}  # refused before anything changed


def test_the_host_refuses_a_snapshot_beyond_the_declared_bounds() -> None:
    three = frame(positions=[0, 1, 2], values=[b"", b"", b""], keys=[b"a", b"b", b"c"])
    StateBounds(3, 3).check_snapshot(three, "x")
    with pytest.raises(SerializationError, match="3 entries of 3 bytes, more than the 2"):
        StateBounds(2, 100).check_snapshot(three, "x")
    with pytest.raises(SerializationError, match="more than the 100 entries and 2 bytes"):
        StateBounds(100, 2).check_snapshot(three, "x")


# -- decorators ----------------------------------------------------------------------------


def dedupe_plugin(**options: Any) -> Any:
    @dataflare.filter(state=KeyedState(max_entries=3), **options)
    def dedupe(record: Record, seen: KeyedState) -> bool:
        assert record.key is not None
        if record.key in seen:
            return False
        seen[record.key] = b""
        return True

    return dedupe


def test_the_state_is_the_argument_after_the_record_and_before_the_context() -> None:
    @dataflare.init(params={"tag": "t"})
    def prepare(params: Any) -> bytes:
        return params["tag"].encode()

    @dataflare.map(state=KeyedState())
    def count(record: Record, state: KeyedState, tag: bytes) -> Record:
        seen = int(state.get(tag, b"0")) + 1  # type: ignore[arg-type]
        state[tag] = str(seen).encode()
        return record.evolve(value=str(seen))

    plugin = find_plugin({"prepare": prepare, "count": count}, "doc")
    assert plugin.definition.state == StateBounds(100_000, 16 << 20)
    dispatcher = Dispatcher(plugin, {"tag": "x"})
    result = dispatcher.process([Record(b"a"), Record(b"b")])
    assert [r.value for r in result.outputs] == [b"1", b"2"]
    assert dict(dispatcher.state or {}) == {b"x": b"2"}
    # Still a plain function: a test passes a state of its own.
    mine = KeyedState()
    assert count(Record(b"q"), mine, b"y").value == b"1"
    assert dict(mine) == {b"y": b"1"}


@pytest.mark.parametrize("kind", ["filter", "map", "filter_map", "array_map"])
def test_a_stateful_function_must_take_the_state(kind: str) -> None:
    def only_record(record: Record) -> Any:
        return record

    with pytest.raises(TypeError) as caught:
        getattr(dataflare, kind)(state=KeyedState())(only_record)
    assert str(caught.value) == (
        f"@{kind} function {only_record.__qualname__!r} must take (record, state) or "
        "(record, state, context), but it takes 1 positional argument."
    )


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (True, r"state= must be dataflare.KeyedState\(max_entries=..., max_bytes=...\), not True"),
        ({}, r"state= must be dataflare.KeyedState"),
        (KeyedState, r"state= must be dataflare.KeyedState"),
    ],
    ids=["True", "dict", "the-class"],
)
def test_state_must_be_a_keyed_state(state: object, message: str) -> None:
    def plugin(record: Record, state: Any) -> bool:
        return True

    with pytest.raises(TypeError, match=message) as caught:
        dataflare.filter(state=state)(plugin)  # type: ignore[arg-type]
    assert "'test_state_must_be_a_keyed_state.<locals>.plugin'" in str(caught.value)


def test_a_declared_state_starts_empty() -> None:
    template = KeyedState()
    template[b"k"] = b"v"

    def plugin(record: Record, state: Any) -> bool:
        return True

    with pytest.raises(TypeError, match="must be an empty KeyedState"):
        dataflare.filter(state=template)(plugin)


def test_an_aggregate_takes_no_state_its_accumulator_is_its_state() -> None:
    def total(acc: bytes, record: Record, state: Any) -> bytes:
        return acc

    with pytest.raises(TypeError, match="state"):
        dataflare.aggregate(state=KeyedState())(total)  # type: ignore[call-overload]


# -- the dispatcher: failures and snapshots ------------------------------------------------


def test_writes_before_a_failing_record_stay_and_so_do_its_own() -> None:
    """Processing-error semantics: the state is changed in place, like a running fold."""

    @dataflare.filter_map(state=KeyedState())
    def remember(record: Record, state: KeyedState) -> Record | None:
        state[record.value] = b"seen"
        if record.value == b"bad":
            raise ValueError("bad record")
        return record

    dispatcher = Dispatcher(find_plugin({"r": remember}, "doc"), {})
    batch = [Record(b"a", offset=1), Record(b"bad", offset=2), Record(b"c", offset=3)]
    result = dispatcher.process(batch)
    assert result.error is not None
    assert (result.consumed, result.error.offset) == (1, 2)
    assert [r.value for r in result.outputs] == [b"a"]
    assert list(dispatcher.state or {}) == [b"a", b"bad"]  # c never ran


def test_a_dispatcher_snapshot_restores_into_another() -> None:
    first = Dispatcher(find_plugin({"d": dedupe_plugin()}, "doc"), {})
    batch = [Record(b"", key=k, offset=i) for i, k in enumerate([b"a", b"b", b"a", b"c"])]
    assert [r.key for r in first.process(batch).outputs] == [b"a", b"b", b"c"]
    second = Dispatcher(find_plugin({"d": dedupe_plugin()}, "doc"), {})
    second.restore_state(first.snapshot_state())
    more = [Record(b"", key=k) for k in [b"a", b"d", b"b"]]
    # d evicts a (max_entries=3): a passes again, as it would have in the first.
    assert [r.key for r in second.process(more).outputs] == [b"d"]
    assert second.snapshot_state() == (first.process(more), first.snapshot_state())[1]


def test_a_plugin_without_state_takes_only_the_empty_snapshot() -> None:
    @dataflare.filter
    def keep(record: Record) -> bool:
        return True

    dispatcher = Dispatcher(find_plugin({"keep": keep}, "p.py"), {})
    assert dispatcher.snapshot_state() == EMPTY_SNAPSHOT
    dispatcher.restore_state(EMPTY_SNAPSHOT)
    one = frame(positions=[0], values=[b"v"], keys=[b"k"])
    with pytest.raises(ConfigurationError, match=r"plugin 'keep' \(p.py\) declares no state"):
        dispatcher.restore_state(one)
    with pytest.raises(SerializationError):
        dispatcher.restore_state(b"junk")


def test_the_plugin_interface_moves_state_in_and_out(examples_dir: Path) -> None:
    with load_plugin(examples_dir / "dedupe_filter.py") as plugin:
        assert plugin.state_bounds == StateBounds(100_000, 16 << 20)
        plugin.process([Record(b"", key=b"k")])
        snapshot = plugin.snapshot_state()
        assert decode_entries(snapshot, "x") == ([b"kk"], [b""])
        plugin.restore_state(None)
        assert plugin.snapshot_state() == EMPTY_SNAPSHOT
        plugin.restore_state(snapshot)
        assert plugin.process([Record(b"", key=b"k")]).outputs == []
    with load_plugin(examples_dir / "contains_filter.py") as stateless:
        assert stateless.state_bounds is None
        assert stateless.snapshot_state() == EMPTY_SNAPSHOT


# -- what a component declares is checked --------------------------------------------------


def wit_info(**fields: Any) -> Any:
    info = SimpleNamespace(
        name="p", kind="filter", params=None, initial="", emit="each", origin="p.py",
        window=None, state=None,
    )
    setattr(info, "sdk-version", "x")
    setattr(info, "has-look-back", False)
    setattr(info, "parsed-json", False)
    for name, value in fields.items():
        setattr(info, name, value)
    return info


def state_decl(entries: object, size: object) -> Any:
    decl = SimpleNamespace()
    setattr(decl, "max-entries", entries)
    setattr(decl, "max-bytes", size)
    return decl


def test_a_component_declaring_state_gets_its_bounds() -> None:
    info = PluginInfo.from_wit(wit_info(state=state_decl(7, 99)), Path("p.wasm"))
    assert info.state == StateBounds(7, 99)
    assert PluginInfo.from_wit(wit_info(), Path("p.wasm")).state is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"state": state_decl(0, 10)}, "state max-entries is 0"),
        ({"state": state_decl(5, "10")}, "state max-bytes is '10'"),
        ({"state": state_decl(5, None)}, "state max-bytes is None"),
        ({"state": state_decl(5, 10), "kind": "aggregate"}, "an aggregate declares state"),
    ],
    ids=["zero", "text", "missing", "aggregate"],
)
def test_a_malformed_state_declaration_is_refused_in_one_line(
    fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PluginInfo.from_wit(wit_info(**fields), Path("evil.wasm"))
    message = str(caught.value)
    assert message.startswith("evil.wasm: its describe export returned a malformed plugin-info")
    assert reason in message
    assert "\n" not in message


# -- checkpoints and where the chain splits -------------------------------------------------


@given(states=st.dictionaries(st.text(max_size=8), st.binary(max_size=40), max_size=4))
def test_plugin_states_survive_the_checkpoint_file(states: dict[str, bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        store = CheckpointStore(Path(scratch) / "c.json")
        store.save(Checkpoint({"in": 3}, {"agg": b"\x00acc"}, states))
        loaded = store.load()
    assert loaded == Checkpoint({"in": 3}, {"agg": b"\x00acc"}, states)


def test_a_checkpoint_without_states_still_loads(tmp_path: Path) -> None:
    """A checkpoint written before plugin state existed resumes, with no state."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": 1, "positions": {"in": 2}, "accumulators": {}}))
    assert CheckpointStore(path).load() == Checkpoint({"in": 2}, {}, {})


@pytest.mark.parametrize("states", ['{"d": "not base64!"}', '{"d": 5}', '["d"]'])
def test_a_damaged_state_in_a_checkpoint_names_the_file_and_reset(
    tmp_path: Path, states: str
) -> None:
    path = tmp_path / "c.json"
    body = f'{{"version": 1, "positions": {{}}, "accumulators": {{}}, "states": {states}}}'
    path.write_text(body)
    with pytest.raises(SerializationError) as caught:
        CheckpointStore(path).load()
    assert str(path) in str(caught.value)
    assert "--reset" in str(caught.value)


def test_a_plugin_declaring_state_splits_the_chain_like_stateful_true() -> None:
    """Declared state is never spread across workers unless partitioned by key."""
    config = ProcessorConfig(plugin_type="filter", plugin_name="x")
    keyed = ProcessorConfig(plugin_type="filter", plugin_name="x", partition_by="key")
    kinds = [PluginKind.MAP, PluginKind.FILTER, PluginKind.MAP]
    undeclared = Plan.of([config] * 3, kinds)
    assert (undeclared.split, undeclared.serial, undeclared.carried) == (3, False, ())
    declared = Plan.of([config] * 3, kinds, [False, True, False])
    assert (declared.split, declared.partitioned, declared.carried) == (1, False, (1,))
    partitioned = Plan.of([config, keyed, config], kinds, [False, True, False])
    assert (partitioned.split, partitioned.partitioned) == (1, True)
