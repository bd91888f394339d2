"""The parsed column in a real guest (contract 0.5.0, flags bit 4): a Python component asks
for it, the host sends each record's JSON parse with the batch, and the guest's first
``record.json()`` returns it instead of parsing the value again (the guest's largest
per-record cost); what the plugin sees is what ``json.loads`` of the value returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.components import ComponentBuilder
from support.pipeline_runs import run_to_end
from support.records import holding_parses

from dataflare import Record
from dataflare_host.plugins import load_plugin
from dataflare_host.testing import run_plugin

pytestmark = pytest.mark.wasm

BOTH_PARSES = """\
import json
import dataflare

@dataflare.map
def both_parses(record):
    first = record.json()
    first["changed"] = True  # the plugin's own value: the second call does not see it
    return record.evolve(value=json.dumps([first, record.json()]).encode())
"""

HANDED_OVER = """\
import dataflare

@dataflare.map
def handed_over(record):
    # Whether the record arrived holding a parse (the slot json() hands over first).
    held = getattr(record, "_parsed", None) is not None
    return record.evolve(value=b"held" if held else b"parsed here")
"""


def test_the_guests_first_json_is_the_parse_the_host_sent(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    source = tmp_path / "both_parses.py"
    source.write_text(BOTH_PARSES)
    component = component_builder(source)
    plugin = load_plugin(component)
    try:
        assert plugin.info.parsed_json  # type: ignore[attr-defined]
    finally:
        plugin.close()
    # A parse that differs from its value shows which one the guest's json() returned.
    batch = [
        *holding_parses([b'{"from": "value"}'], [{"from": "host"}]),
        Record(b'{"from": "value 2"}'),
    ]
    result = run_plugin(component, batch)
    assert [json.loads(r.value) for r in result.outputs] == [
        [{"from": "host", "changed": True}, {"from": "value"}],
        [{"from": "value 2", "changed": True}, {"from": "value 2"}],
    ]
    assert batch[0].json() == {"from": "host"}  # the host's own parse, untouched


KEEP_ODD = """\
import dataflare

@dataflare.filter
def keep_odd(record):
    return record.offset % 2 == 1
"""


def test_after_a_wasm_step_the_hosts_records_still_hand_over_their_parses(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    """Sent to a guest, the host's records keep their parses (as the column sent): a native
    json() after the step and a second WASM step get the source's parse, not the value's."""
    (tmp_path / "keep_odd.py").write_text(KEEP_ODD)
    (tmp_path / "both_parses.py").write_text(BOTH_PARSES)
    keep_odd = load_plugin(component_builder(tmp_path / "keep_odd.py"))
    both = load_plugin(component_builder(tmp_path / "both_parses.py"))
    try:
        values = [f'{{"from": "value {i}"}}'.encode() for i in range(6)]
        records = holding_parses(values, [{"from": f"host {i}"} for i in range(6)])
        kept = keep_odd.process(records).outputs
        assert [r.offset for r in kept] == [1, 3, 5]
        # The second step sees the first's kept records holding the source's parses...
        outputs = both.process(kept).outputs
        assert [json.loads(r.value)[0] for r in outputs] == [
            {"from": f"host {i}", "changed": True} for i in (1, 3, 5)
        ]
        # ...and so does a native json() on the host, once, as before any step.
        assert [r.json() for r in kept] == [{"from": f"host {i}"} for i in (1, 3, 5)]
        assert [r.json() for r in kept] == [{"from": f"value {i}"} for i in (1, 3, 5)]
    finally:
        keep_odd.close()
        both.close()


def test_batch_after_batch_the_guest_hands_over_the_hosts_parses(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    """One instance, batch after batch: once the plugin read a batch's JSON the guest
    unmarshals the next batch's parses at once; what json() returns stays the same, with
    batches of records holding no parse in between."""
    source = tmp_path / "both_parses.py"
    source.write_text(BOTH_PARSES)
    plugin = load_plugin(component_builder(source))
    try:
        for turn in range(4):
            batch = [
                *holding_parses([b'{"v": 1}', b'{"v": 2}'], [{"host": turn}, {"host": -turn}]),
                Record(b'{"v": 3}', offset=2),
            ]
            result = plugin.process(batch)
            assert result.error is None
            assert [json.loads(r.value) for r in result.outputs] == [
                [{"host": turn, "changed": True}, {"v": 1}],
                [{"host": -turn, "changed": True}, {"v": 2}],
                [{"v": 3, "changed": True}, {"v": 3}],
            ]
            plain = plugin.process([Record(b'{"p": 7}', offset=9)])  # no parse to send
            assert [json.loads(r.value) for r in plain.outputs] == [
                [{"p": 7, "changed": True}, {"p": 7}]
            ]
    finally:
        plugin.close()


def test_a_jsonl_sources_records_reach_the_guest_holding_their_parse(
    component_builder: ComponentBuilder, tmp_path: Path
) -> None:
    """In a pipeline: a JSONL file's records carry their parse into the guest, a plain
    text file's (never parsed) do not, and the outputs are as natively."""
    source = tmp_path / "handed_over.py"
    source.write_text(HANDED_OVER)
    component_builder(source)
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n[2]\n"three"\n')
    (tmp_path / "in.txt").write_text('{"a": 1}\n[2]\n')
    seen: dict[str, list[bytes]] = {}
    for name, form in (("in.jsonl", "jsonl"), ("in.txt", "lines")):
        out = tmp_path / f"{name}.out"
        pipeline = tmp_path / f"{name}.yaml"
        pipeline.write_text(
            yaml.safe_dump(
                {
                    "name": f"parsed-column-{form}",
                    "sources": [
                        {
                            "id": "in",
                            "type": "plugin",
                            "config": {
                                "plugin_type": "file",
                                "connection": {"path": str(tmp_path / name), "format": form},
                            },
                        },
                    ],
                    "processors": [
                        {
                            "id": "p",
                            "type": "plugin",
                            "config": {
                                "plugin_type": "map",
                                "plugin_path": str(source),
                                "plugin_source": "wasm",
                            },
                        },
                    ],
                    "sinks": [
                        {
                            "id": "out",
                            "type": "plugin",
                            "config": {
                                "plugin_type": "file",
                                "connection": {"path": str(out), "format": "lines"},
                            },
                        },
                    ],
                }
            )
        )
        summary = run_to_end(pipeline)
        assert summary.status == "completed", summary.error
        seen[name] = out.read_bytes().splitlines()
    assert seen == {"in.jsonl": [b"held"] * 3, "in.txt": [b"parsed here"] * 2}
