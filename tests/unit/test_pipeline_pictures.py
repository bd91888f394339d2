"""Pictures of a pipeline: ``dataflare graph`` (Mermaid, SVG) and the live status page."""

from __future__ import annotations

import math
import shutil
import subprocess
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataflare_host.connectors import Backlog
from dataflare_host.pipeline._config import load_pipeline_config
from dataflare_host.pipeline._graph import graph_of, mermaid
from dataflare_host.pipeline._graph_svg import SVG_NS, svg
from dataflare_host.pipeline._stats import StageStats
from dataflare_host.pipeline._status_page import StatusPage

EXAMPLES = Path(__file__).parent.parent.parent / "guest_examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a closed network needs (no background connections, a fresh profile).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def entry(id: str, plugin_type: str, **config: Any) -> dict[str, Any]:
    return {"id": id, "type": "plugin", "config": {"plugin_type": plugin_type, **config}}


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    """Two sources, a WASM map dead-lettering, a native filter in 2 workers, a sink."""
    (tmp_path / "in.jsonl").write_text("{}\n")
    document = {
        "name": "pictured",
        "workers": "2",
        "sources": [
            entry("events", "file", connection={"path": "in.jsonl"}),
            entry("synthetic <test>", "generator"),
        ],
        "processors": [
            entry(
                "parse",
                "transform",
                plugin_path=str(EXAMPLES / "uppercase_map.py"),
                plugin_source="wasm",
                on_error="dead_letter",
            ),
            entry("keep", "filter", plugin_path=str(EXAMPLES / "contains_filter.py")),
        ],
        "sinks": [entry("out", "file", connection={"path": "out.jsonl"})],
        "dead_letter": entry("failed", "file", connection={"path": "failed.jsonl"}),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_mermaid_names_every_stage_with_its_role_runtime_and_the_engine(
    pipeline_file: Path,
) -> None:
    """A left-to-right flowchart: a subgraph per role, the chain's subgraph naming the engine
    and workers, each processor with its kind and runtime, arrows in chain order and a
    dotted arrow for what goes to the dead letter."""
    config, _ = load_pipeline_config(pipeline_file)
    text = mermaid(graph_of(config)).splitlines()
    assert text[0] == "flowchart LR"
    assert '  subgraph chain["processors: engine local, 2 workers"]' in text
    assert "  subgraph sources" in text
    assert "  subgraph sinks" in text
    assert "  subgraph dead_letter" in text
    nodes = {line.strip().split("[", 1)[0].split("(", 1)[0]: line for line in text}
    assert "map · wasm" in nodes["n_parse"]
    assert "filter · native" in nodes["n_keep"]
    assert "source: generator" in nodes["n_synthetic_20__3c_test_3e_"]
    assert "synthetic #lt;test#gt;" in nodes["n_synthetic_20__3c_test_3e_"]  # escaped
    arrows = [line.strip() for line in text if "-->" in line or ".->" in line]
    assert arrows == [
        "n_events --> n_parse",
        "n_synthetic_20__3c_test_3e_ --> n_parse",
        "n_parse --> n_keep",
        "n_keep --> n_out",
        "n_parse -. failed .-> n_failed",
        "n_out -. failed .-> n_failed",
    ]


def test_svg_is_valid_svg_holding_every_stage(pipeline_file: Path) -> None:
    """The SVG parses as XML, its root is an svg element in the SVG namespace, and every
    stage has a box whose title is its id (text escaped, so ``<test>`` stays text)."""
    config, _ = load_pipeline_config(pipeline_file)
    root = ET.fromstring(svg(graph_of(config)))
    assert root.tag == f"{{{SVG_NS}}}svg"
    titles = [g.find(f"{{{SVG_NS}}}title") for g in root.iter(f"{{{SVG_NS}}}g")]
    names = {title.text for title in titles if title is not None}
    assert names == {"events", "synthetic <test>", "parse", "keep", "out", "failed"}
    texts = " ".join(t.text or "" for t in root.iter(f"{{{SVG_NS}}}text"))
    assert "engine local, 2 workers" in texts
    assert "map · wasm" in texts
    paths = list(root.iter(f"{{{SVG_NS}}}path"))
    arrows = [p for p in paths if p.get("marker-end")]
    assert len(arrows) == 6
    assert sum(p.get("stroke-dasharray") is not None for p in arrows) == 2


def fed_status_page() -> StatusPage:
    """A status page given 200 seconds of counters (on its own clock: no waiting)."""
    now = [0.0]
    page = StatusPage(0, pipeline="live <demo>", clock=lambda: now[0])
    source = StageStats("events", "source", "file")
    parse = StageStats("parse", "processor", "map")
    out = StageStats("out", "sink", "file")
    for second in range(200):
        now[0] = float(second)
        count = int(1000 + 500 * math.sin(second / 15))
        source.records_out += count
        parse.records_in += count
        out.records_in += count - 10
        source.backlog = Backlog(10_000_000 - second * 50_000, "bytes")
        page.update([source, parse, out])
    return page


def test_status_page_shows_a_rate_chart_per_stage_and_the_sources_lag() -> None:
    """Served on 127.0.0.1: a row per stage with its rate chart, the source's lag chart,
    the escaped pipeline name, and a reload while the run goes on."""
    page = fed_status_page()
    try:
        assert page._server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{page.port}/", timeout=10) as reply:
            assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
            text = reply.read().decode()
    finally:
        page.close()
    assert "live &lt;demo&gt;" in text
    assert '<meta http-equiv="refresh" content="2">' in text
    assert text.count('<svg class="chart rate"') == 3
    assert text.count('<svg class="chart lag"') == 1
    assert "50,000 bytes left" in text  # the last sample: 10,000,000 - 199 x 50,000
    rows = page.rows()
    assert [row.stage for row in rows] == ["events", "parse", "out"]
    assert len(rows[0].rates) == 199  # one rate per pair of samples


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_status_page_renders_in_headless_chromium(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Headless Chromium loads the page and draws its charts: the DOM it built holds the
    SVG polylines, and the screenshot is kept as an artifact."""
    assert CHROMIUM is not None
    artifacts = tmp_path_factory.mktemp("status-page-artifacts")
    page = fed_status_page()
    url = f"http://127.0.0.1:{page.port}/"
    try:
        common = [CHROMIUM, *CHROMIUM_FLAGS, "--window-size=1100,420"]
        dom = subprocess.run(
            [*common, f"--user-data-dir={artifacts / 'profile-dom'}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        screenshot = artifacts / "status-page.png"
        subprocess.run(
            [
                *common,
                f"--user-data-dir={artifacts / 'profile'}",
                f"--screenshot={screenshot}",
                url,
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    finally:
        page.close()
    assert dom.count("<polyline") == 4  # what the browser parsed, not only what was sent
    assert screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"status page screenshot: {screenshot}")
