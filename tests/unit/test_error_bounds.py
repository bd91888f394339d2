"""Issue 24, item 7: a plugin's error text is bounded, its head kept and the cut counted.

A native plugin raising a 5 MB message printed a 5 MB line; every error message
(and a ProcessingError's ``error_message`` field) is now at most
MAX_MESSAGE_BYTES of UTF-8. The WASM runtime's side is in tests/wasm.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from support.pipeline_files import file_pipeline

from dataflare import PluginError, ProcessingError
from dataflare._errors import MAX_MESSAGE_BYTES, bounded
from dataflare_host.cli._main import main

HUGE = 5_000_000


@settings(max_examples=60)
@given(st.text(max_size=1500), st.integers(min_value=40, max_value=1000))
def test_bounded_fits_keeps_the_head_and_is_stable(text: str, limit: int) -> None:
    cut = bounded(text, limit)
    assert len(cut.encode("utf-8", errors="surrogatepass")) <= limit
    assert bounded(cut, limit) == cut
    if cut != text:
        head, _, marker = cut.partition(" [... ")
        assert text.startswith(head)
        cut_bytes = int(marker.split(" ")[0].replace(",", ""))
        assert len(head.encode("utf-8", errors="surrogatepass")) + cut_bytes == len(
            text.encode("utf-8", errors="surrogatepass")
        )


def test_a_huge_processing_error_keeps_its_head_and_says_how_much_was_cut() -> None:
    error = ProcessingError(
        plugin="p",
        kind="map",
        offset=0,
        index=0,
        error_type="ValueError",
        error_message="head:" + "x" * HUGE,
    )
    assert len(str(error).encode()) <= MAX_MESSAGE_BYTES
    assert str(error).startswith("plugin 'p' (map) failed at record offset 0: ValueError: head:x")
    assert str(error).endswith("more bytes cut]")
    assert len(error.error_message.encode()) <= MAX_MESSAGE_BYTES
    assert ProcessingError.from_fields(error.fields()) == error  # stable across the wire
    assert len(str(PluginError("y" * HUGE))) <= MAX_MESSAGE_BYTES


def test_a_native_plugin_raising_5_mb_prints_one_bounded_line(tmp_path: Path) -> None:
    (tmp_path / "shout.py").write_text(
        "import dataflare\n\n\n@dataflare.map\n"
        "def shout(record: dataflare.Record) -> dataflare.Record:\n"
        f"    raise ValueError('head of the message ' + 'x' * {HUGE})\n",
        encoding="utf-8",
    )
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n', encoding="utf-8")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            file_pipeline("huge", "shout", {"plugin_type": "map", "plugin_path": "shout.py"})
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["run", "--quiet", str(pipeline)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert len(errors[0].encode()) <= MAX_MESSAGE_BYTES + len("error: ")
    assert "ValueError: head of the message xxx" in errors[0]
    assert "more bytes cut] (record in.jsonl line 1" in errors[0]
    assert "Traceback" not in result.output
    assert len(result.output) < 3 * MAX_MESSAGE_BYTES
