"""Declared plugin state as a WASM component: the same transitions and snapshots as natively,
snapshots that cross runtimes, and a guest's snapshot treated as untrusted input.

State across SIGKILL restarts, in both runtimes, is checked in
tests/pipelines/test_state_restart.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.components import ComponentBuilder
from support.paths import EXAMPLES, REPO, TEST_CACHE
from support.records import as_dict
from support.rust_build import build_rust_component, require_cargo

from dataflare import ConfigurationError, PluginError, Record, SerializationError
from dataflare.runtime import EMPTY_SNAPSHOT, StateBounds, encode_batch
from dataflare.runtime._state import decode_entries
from dataflare_host import Plugin, load_plugin
from dataflare_host.testing import run_pipeline

pytestmark = pytest.mark.wasm

COUNTER = REPO / "tests" / "wasm" / "plugins" / "state_counter.py"
HOSTILE = REPO / "tests" / "hostile_plugins" / "hostile_state.py"
DEDUPE = EXAMPLES / "dedupe_filter.py"
PARITY = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def components(component_builder: ComponentBuilder) -> dict[str, Path]:
    """The three stateful plugins as components (built two at a time, cached by content)."""
    built = component_builder.many([COUNTER, HOSTILE, DEDUPE])
    return {source.stem: wasm for source, wasm in built.items()}


@pytest.fixture(scope="module")
def counter_pair(components: dict[str, Path]) -> Iterator[tuple[Plugin, Plugin]]:
    native, wasm = load_plugin(COUNTER), load_plugin(components["state_counter"])
    yield native, wasm
    native.close()
    wasm.close()


# -- parity: the same state transitions in both runtimes -----------------------------------

values = st.sampled_from([b"a", b"b", b"del", b"boom", b"huge", b"\xff\x00"])
keys = st.none() | st.sampled_from([b"", b"k", b"\xff", b"long-key-0123", b"other key!"])


@st.composite
def record_batches(draw: st.DrawFn) -> list[list[Record]]:
    offset = draw(st.integers(0, 1000))
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        size = draw(st.integers(0, 8))
        batches.append(
            [Record(draw(values), key=draw(keys), offset=offset + i) for i in range(size)]
        )
        offset += size
    return batches


def result_fields(result: Any) -> dict[str, Any]:
    error = result.error
    return {
        "outputs": [as_dict(r) for r in result.outputs],
        "sources": result.sources,
        "consumed": result.consumed,
        "error": None
        if error is None
        else (type(error).__name__, error.offset, error.index, error.error_type,
              error.error_message),
    }


@PARITY
@given(batches=record_batches(), swap=st.integers(0, 4))
def test_state_transitions_are_the_same_natively_and_as_a_component(
    counter_pair: tuple[Plugin, Plugin], batches: list[list[Record]], swap: int
) -> None:
    """Batch after batch (evictions by entries and by bytes, deletes, a write before a raise,
    an entry past max_bytes): equal results and byte-equal snapshots. Before batch ``swap``
    the runtimes trade snapshots, so each continues from the other's state."""
    native, wasm = counter_pair
    native.restore_state(None)
    wasm.restore_state(None)
    for index, batch in enumerate(batches):
        if index == swap:
            from_native, from_wasm = native.snapshot_state(), wasm.snapshot_state()
            native.restore_state(from_wasm)
            wasm.restore_state(from_native)
        assert result_fields(wasm.process(batch)) == result_fields(native.process(batch))
        assert wasm.snapshot_state() == native.snapshot_state()
    decode_entries(native.snapshot_state(), "the counter's state")  # well formed


def test_the_dedupe_example_agrees_and_its_component_declares_its_bound(
    components: dict[str, Path],
) -> None:
    with load_plugin(DEDUPE) as native, load_plugin(components["dedupe_filter"]) as wasm:
        assert wasm.state_bounds == native.state_bounds == StateBounds(100_000, 16 << 20)
        batch = [Record(b"v", key=k, offset=i) for i, k in enumerate([b"a", None, b"a", b"b"])]
        assert result_fields(wasm.process(batch)) == result_fields(native.process(batch))
        assert wasm.snapshot_state() == native.snapshot_state()
        wasm.restore_state(None)
        assert [r.key for r in wasm.process(batch).outputs] == [b"a", None, b"b"]


def test_a_stateful_component_never_splits_a_batch_across_instances(
    components: dict[str, Path],
) -> None:
    """instances: 2 would give each instance half the keys: a stateful plugin keeps one."""
    from dataflare_host.wasm import Sandbox

    sandbox = Sandbox(instances=2, min_shard=1)
    with load_plugin(components["dedupe_filter"], sandbox=sandbox) as wasm:
        batch = [Record(b"v", key=b"k%d" % (i % 3), offset=i) for i in range(12)]
        assert [r.offset for r in wasm.process(batch).outputs] == [0, 1, 2]


# -- the guest's snapshot is untrusted -------------------------------------------------------

ATTACKS = {
    "garbage": "not the b'DFR1' magic",
    "over_entries": "holds 3 entries of 3 bytes, more than the 2 entries and 64 bytes it declared",
    "over_bytes": "holds 1 entries of 71 bytes, more than the 2 entries and 64 bytes",
    "duplicate": "a key appears twice",
    "no_key": "an entry has no key",
    "wide": "above U+00FF, so it does not carry bytes",
    "long": "more than the 105 its declared bounds (2 entries, 64 bytes) allow",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_snapshot_is_refused_in_one_line(
    components: dict[str, Path], attack: str
) -> None:
    wasm = components["hostile_state"]
    with load_plugin(wasm, {"attack": attack}) as plugin:
        assert plugin.process([Record(b"x", key=b"k")]).error is None
        with pytest.raises(SerializationError) as caught:
            plugin.snapshot_state()
    message = str(caught.value)
    assert message.startswith(f"{wasm}: the state snapshot from snapshot-state")
    assert ATTACKS[attack] in message
    assert "\n" not in message


def test_a_pipeline_with_a_hostile_snapshot_fails_in_one_line_and_saves_nothing(
    components: dict[str, Path], tmp_path: Path
) -> None:
    import yaml

    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "sources": [{"id": "in", "type": "plugin", "config": {"plugin_type": "stdin"}}],
        "processors": [{"id": "p", "type": "plugin", "config": {
            "plugin_type": "filter", "plugin_source": "wasm",
            "plugin_path": str(components["hostile_state"]), "params": {"attack": "garbage"}}}],
        "sinks": [{"id": "out", "type": "plugin", "config": {"plugin_type": "stdout"}}],
    }))
    checkpoint = tmp_path / "c.json"
    result = run_pipeline(pipeline, {"in": [Record(b"x", key=b"k")]}, checkpoint=checkpoint)
    assert result.summary.status == "failed"
    assert "the state snapshot from snapshot-state" in (result.summary.error or "")
    assert not checkpoint.exists()


def test_a_stateful_component_that_traps_loses_its_state_and_says_so(
    components: dict[str, Path],
) -> None:
    """A trap takes the instance and its state: never a silent fresh start (which would let
    seen keys through again); the batch fails as a whole."""
    with load_plugin(components["hostile_state"]) as plugin:
        plugin.process([Record(b"x", key=b"k")])
        with pytest.raises(PluginError) as caught:
            plugin.process([Record(b"y", key=b"j", offset=7), Record(b"trap", offset=8)])
    message = str(caught.value)
    assert "keeps state and lost its instance" in message
    assert "from offset 7" in message
    assert "last checkpoint" in message


def test_a_snapshot_for_a_plugin_without_state_is_refused(
    example_components: dict[str, Path],
) -> None:
    with load_plugin(example_components["contains_filter"]) as plugin:
        plugin.restore_state(EMPTY_SNAPSHOT)
        one = encode_batch([0], [b"v"], [b"k"]).encode("latin-1")
        with pytest.raises(ConfigurationError, match="declares no state"):
            plugin.restore_state(one)


# -- a component not written in Python implements the two exports too ------------------------


def test_the_rust_plugin_snapshots_an_empty_state_and_takes_only_one() -> None:
    require_cargo()
    component = build_rust_component(TEST_CACHE / "rust-target").component
    with load_plugin(component) as plugin:
        assert plugin.state_bounds is None
        plugin.restore_state(None)
        instance = plugin._acquire()  # type: ignore[attr-defined]
        try:
            assert instance.call("snapshot-state") == EMPTY_SNAPSHOT.decode("latin-1")
        finally:
            plugin._release(instance)  # type: ignore[attr-defined]
        one = encode_batch([0], [b"v"], [b"k"]).encode("latin-1")
        with pytest.raises(ConfigurationError, match="declares no state"):
            plugin.restore_state(one)
