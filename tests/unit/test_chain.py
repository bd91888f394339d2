"""host.Chain: plugins applied in order; a failing step is reported by index and name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from support.chain_plugins import failing_on, suffix
from support.paths import EXAMPLES
from support.records import any_batches

import dataflare
from dataflare import ProcessingError, Record
from dataflare_host import Chain, ChainResult, Plugin, load_plugin


def native(func: Callable[..., Any], params: dict[str, str] | None = None) -> Plugin:
    return load_plugin(func, params)


BATCH_WITH_BAD = [
    Record(b"a", offset=5),
    Record(b"b", offset=6),
    Record(b"bad", offset=7),
    Record(b"c", offset=8),
]


@given(any_batches())
def test_steps_apply_in_order(batch: list[Record]) -> None:
    """Each step sees the previous step's outputs."""
    result = Chain([suffix(b"1"), suffix(b"2"), suffix(b"3")]).process(batch)
    assert result.outputs == [r.evolve(value=r.value + b"123") for r in batch]
    assert (result.error, result.step, result.ok) == (None, None, True)


def test_empty_chain_passes_records_through() -> None:
    """A chain with no steps outputs its input."""
    batch = [Record(b"a"), Record(b"b")]
    result: ChainResult = Chain([]).process(batch)
    assert (result.outputs, result.error, result.step) == (batch, None, None)


def test_examples_chained_with_their_params() -> None:
    """Example plugins loaded with params chain like Fluvio transforms."""
    chain = Chain(
        [
            load_plugin(EXAMPLES / "contains_filter.py", {"needle": "err"}),
            load_plugin(EXAMPLES / "uppercase_map.py"),
            load_plugin(EXAMPLES / "regex_filter.py", {"pattern": "^ERR"}),
        ]
    )
    texts = ["err 1", "ok", "an err", "error"]
    batch = [Record.from_text(t, offset=i) for i, t in enumerate(texts)]
    result = chain.process(batch)
    assert [(r.text, r.offset) for r in result.outputs] == [("ERR 1", 0), ("ERROR", 3)]


def test_failure_in_a_middle_step_reports_its_index_and_name() -> None:
    """A middle step failing: the error names that step's plugin and index."""
    batch = BATCH_WITH_BAD
    result = Chain([suffix(b"1"), failing_on(b"bad", "middle_step"), suffix(b"3")]).process(batch)
    assert result.step == 1
    assert result.error == ProcessingError(
        plugin="middle_step",
        kind="map",
        offset=7,
        index=2,
        error_type="ValueError",
        error_message="refused b'bad1'",
        record_value="bad1",  # the record as the failing step saw it
        location="chain_plugins.py:26",  # the raise in the failing step's own file
        frames=result.error.frames if result.error is not None else None,
    )
    assert not result.ok


def test_a_failing_step_ends_the_chain_with_its_partial_output() -> None:
    """Like Fluvio: the outputs are the failing step's partial output; no later step runs."""
    batch = BATCH_WITH_BAD
    result = Chain([suffix(b"1"), failing_on(b"bad"), suffix(b"3")]).process(batch)
    assert [(r.value, r.offset) for r in result.outputs] == [(b"a1", 5), (b"b1", 6)]
    assert len(result.steps) == 2


def test_first_step_failure_is_reported_as_step_zero() -> None:
    """Step indexes start at 0."""
    result = Chain([failing_on(b"x", "first"), suffix(b"1")]).process([Record(b"x")])
    assert (result.step, result.outputs) == (0, [])
    assert result.error is not None
    assert result.error.plugin == "first"


def test_chain_carries_aggregate_state_across_batches() -> None:
    """An aggregate step keeps its accumulator between chain batches."""
    chain = Chain([load_plugin(EXAMPLES / "sum_aggregate.py")])
    first = chain.process([Record(b'{"amount": 2}'), Record(b'{"amount": 3}')])
    second = chain.process([Record(b'{"amount": 5}')])
    assert [r.value for r in first.outputs + second.outputs] == [b"2", b"5", b"10"]


def test_close_closes_every_step() -> None:
    """Chain.close (and its with block) closes every plugin; closing twice is safe."""
    plugins = [suffix(b"1"), suffix(b"2")]
    with Chain(plugins) as chain:
        assert not any(p.closed for p in chain.plugins)
    assert all(p.closed for p in plugins)
    chain.close()
    with pytest.raises(dataflare.PluginError, match="closed"):
        plugins[0].process([])


def test_plugin_reports_name_kind_and_origin() -> None:
    """A loaded plugin knows its name, kind and where it came from."""
    plugin: Plugin = load_plugin(EXAMPLES / "regex_filter.py", {"pattern": "x"})
    assert (plugin.name, plugin.kind) == ("matches", dataflare.PluginKind.FILTER)
    assert plugin.origin.endswith("regex_filter.py")
    assert "matches" in repr(plugin)
