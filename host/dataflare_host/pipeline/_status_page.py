"""A live status page of a running pipeline (``dataflare run --status-port``).

A :class:`StatusPage` is a progress reporter like the metrics server: it keeps
one sample of every stage's counters per second for the last minutes and
serves, on loopback only, one HTML page with a row per stage: its rate now and
a small inline SVG chart of its rate (records per second) over those minutes,
and for a source what it has left to read. The page reloads itself every few
seconds; it loads nothing from elsewhere (no script, no font, no stylesheet),
so it works without a network and cannot leak anything to one.
"""

from __future__ import annotations

import html
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs

from dataflare_host._closing import Closing
from dataflare_host.pipeline._runner import RunSummary
from dataflare_host.pipeline._stats import StageStats

__all__ = ["StatusPage"]

HISTORY_S = 300
"""How far back the charts go (seconds)."""
REFRESH_S = 2
"""How often the page reloads itself (seconds)."""

_CHART_W, _CHART_H = 240, 48


@attrs.frozen
class _Sample:
    at: float
    counts: dict[str, int]  # stage -> records through it so far
    backlog: dict[str, int]  # source -> what it has left (bytes or offsets)


@attrs.frozen
class _Row:
    stage: str
    role: str
    kind: str
    count: int
    rates: list[tuple[float, float]]  # (seconds before now, records per second)
    backlog: list[tuple[float, float]]
    backlog_unit: str


class StatusPage(Closing):
    """Serves ``/`` (the page) on ``host:port``; a progress reporter of one pipeline."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        pipeline: str = "pipeline",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[_Sample] = deque(maxlen=HISTORY_S + 1)
        self._stats: list[StageStats] = []
        self._status = "running"
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/", "/index.html"):
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                body = page.render().encode()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: a page reloading every few seconds would fill the log."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dataflare-status-page", daemon=True
        )
        self._thread.start()

    # -- progress reporter ----------------------------------------------------

    def update(self, stats: Sequence[StageStats]) -> None:
        """Keep the counters; take a sample when a second has passed since the last."""
        now = self._clock()
        with self._lock:
            self._stats = list(stats)
            if not self._samples or now - self._samples[-1].at >= 1.0:
                self._samples.append(_sample(now, stats))

    def finish(self, summary: RunSummary) -> None:
        """Keep the final counters and status (the page stays up until closed)."""
        with self._lock:
            self._stats = list(summary.stats)
            self._status = summary.status
            self._samples.append(_sample(self._clock(), summary.stats))

    # -- the page ---------------------------------------------------------------

    def rows(self) -> list[_Row]:
        """Per stage: its count, its rate per sample interval and its backlog, oldest first."""
        with self._lock:
            samples, stats = list(self._samples), list(self._stats)
        if not samples:
            return []
        now = samples[-1].at
        rows = []
        for stage in stats:
            name = stage.stage
            rates = [
                (
                    now - after.at,
                    (after.counts[name] - before.counts[name]) / (after.at - before.at),
                )
                for before, after in itertools.pairwise(samples)
                if name in before.counts and name in after.counts and after.at > before.at
            ]
            backlog = [(now - s.at, float(s.backlog[name])) for s in samples if name in s.backlog]
            unit = stage.backlog.unit if stage.backlog is not None else ""
            rows.append(_Row(name, stage.role, stage.kind, _through(stage), rates, backlog, unit))
        return rows

    def render(self) -> str:
        """The whole page: a table, one row per stage, with its charts."""
        with self._lock:
            status = self._status
        body = []
        for row in self.rows():
            rate_now = row.rates[-1][1] if row.rates else 0.0
            left = (
                f"{row.backlog[-1][1]:,.0f} {html.escape(row.backlog_unit)} left"
                if row.backlog
                else ""
            )
            body.append(
                "<tr>"
                f"<td class=stage>{html.escape(row.stage)}</td>"
                f"<td>{html.escape(row.role)}</td><td>{html.escape(row.kind)}</td>"
                f"<td class=num>{row.count:,}</td><td class=num>{rate_now:,.0f}</td>"
                f"<td>{_chart(row.rates, 'rate', 'rec/s')}</td>"
                f"<td>{_chart(row.backlog, 'lag', row.backlog_unit) if row.backlog else ''}"
                f"<div class=note>{left}</div></td>"
                "</tr>"
            )
        name = html.escape(self.pipeline)
        refresh = (
            f'<meta http-equiv="refresh" content="{REFRESH_S}">' if status == "running" else ""
        )
        return (
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"{refresh}<title>{name}: {html.escape(status)}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{name} <span class='status {html.escape(status)}'>"
            f"{html.escape(status)}</span></h1>"
            f"<p class=note>Rates and lag over the last {HISTORY_S // 60} minutes, one sample "
            f"per second; this page reloads every {REFRESH_S} s while the run goes on.</p>"
            "<table><thead><tr><th>stage</th><th>role</th><th>kind</th><th>records</th>"
            "<th>rec/s now</th><th>rate (rec/s)</th><th>left to read</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></body></html>"
        )

    def close(self) -> None:
        """Stop serving (safe to call twice)."""
        self._server.shutdown()
        self._server.server_close()


def _through(stage: StageStats) -> int:
    """The records a stage moved: what a source read, what any other stage received."""
    return stage.records_out if stage.role == "source" else stage.records_in


def _sample(at: float, stats: Sequence[StageStats]) -> _Sample:
    counts = {stage.stage: _through(stage) for stage in stats}
    backlog = {
        stage.stage: stage.backlog.amount
        for stage in stats
        if stage.role == "source" and stage.backlog is not None
    }
    return _Sample(at, counts, backlog)


def _chart(points: list[tuple[float, float]], kind: str, unit: str) -> str:
    """A small line chart (inline SVG) of ``points`` (seconds ago, value), newest right."""
    top = max((value for _, value in points), default=0.0) or 1.0
    coordinates = " ".join(
        f"{_CHART_W * (1 - min(ago, HISTORY_S) / HISTORY_S):.1f},"
        f"{_CHART_H - 4 - (_CHART_H - 8) * value / top:.1f}"
        for ago, value in points
    )
    label = html.escape(f"max {top:,.0f} {unit}")
    return (
        f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" width="{_CHART_W}" '
        f'height="{_CHART_H}" viewBox="0 0 {_CHART_W} {_CHART_H}" role="img">'
        f"<title>{html.escape(kind)} over the last {HISTORY_S // 60} minutes</title>"
        f'<rect width="{_CHART_W}" height="{_CHART_H}" fill="#f7f9fa"/>'
        f'<polyline points="{coordinates}" fill="none" stroke-width="1.5"/>'
        f'<text x="4" y="11">{label}</text></svg>'
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#263238}"
    "h1{font-size:20px}table{border-collapse:collapse}"
    "th,td{padding:6px 10px;border-bottom:1px solid #eceff1;text-align:left;vertical-align:top}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}td.stage{font-weight:600}"
    ".note{font-size:12px;color:#607d8b}"
    ".status{font-size:13px;padding:2px 8px;border-radius:10px;background:#e3f2fd}"
    ".status.failed{background:#ffebee}.status.completed{background:#e8f5e9}"
    "svg.chart text{font-size:10px;fill:#607d8b}"
    "svg.rate polyline{stroke:#1565c0}svg.lag polyline{stroke:#ef6c00}"
)
