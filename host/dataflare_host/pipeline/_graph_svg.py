"""A pipeline's picture as a standalone SVG: boxes in columns, arrows between them.

Drawn here with the standard library's ElementTree rather than by a graph
layout library: a pipeline is a short chain (sources, processors in order,
sinks, a dead letter below), so columns are the whole layout, and a library
such as Graphviz would be a native dependency for a picture this simple.
ElementTree escapes every text, so stage ids and paths cannot break the markup.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dataflare_host.pipeline._graph import Node, PipelineGraph, Role

__all__ = ["svg"]

SVG_NS = "http://www.w3.org/2000/svg"

_BOX_W, _BOX_H = 200, 64
_GAP_X, _GAP_Y = 64, 24
_MARGIN = 24
_TITLE_H = 36
_FILL: dict[Role, tuple[str, str]] = {
    # (fill, stroke) per role: sources green, processors blue, sinks violet, dead letter red
    "source": ("#e8f5e9", "#2e7d32"),
    "processor": ("#e3f2fd", "#1565c0"),
    "sink": ("#f3e5f5", "#6a1b9a"),
    "dead_letter": ("#ffebee", "#c62828"),
}
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"


def _column_of(graph: PipelineGraph) -> dict[str, int]:
    """Which column each stage sits in: sources, each processor, sinks."""
    processors = graph.with_role("processor")
    columns = {node.id: 0 for node in graph.with_role("source")}
    columns.update({node.id: 1 + i for i, node in enumerate(processors)})
    columns.update({node.id: 1 + len(processors) for node in graph.with_role("sink")})
    return columns


def svg(graph: PipelineGraph) -> str:
    """The pipeline drawn as SVG text (an ``<svg>`` root in the SVG namespace)."""
    ET.register_namespace("", SVG_NS)
    columns = _column_of(graph)
    rows: dict[int, list[Node]] = {}
    for node in graph.nodes:
        if node.id in columns:
            rows.setdefault(columns[node.id], []).append(node)
    tallest = max(len(stack) for stack in rows.values())
    body_h = tallest * _BOX_H + (tallest - 1) * _GAP_Y
    letters = graph.with_role("dead_letter")
    width = 2 * _MARGIN + len(rows) * _BOX_W + (len(rows) - 1) * _GAP_X
    height = _TITLE_H + 2 * _MARGIN + body_h + (_BOX_H + 2 * _GAP_Y if letters else 0)
    root = ET.Element(
        f"{{{SVG_NS}}}svg",
        {
            "width": str(width),
            "height": str(height),
            "viewBox": f"0 0 {width} {height}",
            "role": "img",
        },
    )
    ET.SubElement(root, f"{{{SVG_NS}}}title").text = f"pipeline {graph.name}"
    _arrow_markers(root)
    ET.SubElement(root, f"{{{SVG_NS}}}rect", {"width": "100%", "height": "100%", "fill": "#ffffff"})
    heading = ET.SubElement(
        root,
        f"{{{SVG_NS}}}text",
        {"x": str(_MARGIN), "y": str(_MARGIN + 4), "style": f"{_FONT};font-size:15px"},
    )
    heading.text = f"{graph.name} ({graph.engine})"
    boxes: dict[str, tuple[float, float]] = {}  # stage id -> top-left corner
    top = _TITLE_H + _MARGIN
    for column, stack in sorted(rows.items()):
        x = _MARGIN + column * (_BOX_W + _GAP_X)
        stack_h = len(stack) * _BOX_H + (len(stack) - 1) * _GAP_Y
        y = top + (body_h - stack_h) / 2
        for node in stack:
            boxes[node.id] = (x, y)
            y += _BOX_H + _GAP_Y
    processors = graph.with_role("processor")
    if processors:
        _chain_frame(root, graph, boxes[processors[0].id][0], len(processors), top, body_h)
    letter_y = top + body_h + 2 * _GAP_Y
    for index, node in enumerate(letters):
        boxes[node.id] = (_MARGIN + (1 + index) * (_BOX_W + _GAP_X), letter_y)
    for edge in graph.edges:
        _arrow(root, boxes[edge.source], boxes[edge.target], dashed=edge.dead_letter)
    for node in graph.nodes:
        _box(root, node, *boxes[node.id])
    return ET.tostring(root, encoding="unicode")


def _arrow_markers(root: ET.Element) -> None:
    defs = ET.SubElement(root, f"{{{SVG_NS}}}defs")
    for name, colour in (("arrow", "#455a64"), ("arrow-failed", "#c62828")):
        marker = ET.SubElement(
            defs,
            f"{{{SVG_NS}}}marker",
            {
                "id": name,
                "viewBox": "0 0 10 10",
                "refX": "10",
                "refY": "5",
                "markerWidth": "8",
                "markerHeight": "8",
                "orient": "auto-start-reverse",
            },
        )
        ET.SubElement(marker, f"{{{SVG_NS}}}path", {"d": "M0,0 L10,5 L0,10 z", "fill": colour})


def _chain_frame(
    root: ET.Element, graph: PipelineGraph, x: float, count: int, top: float, body_h: float
) -> None:
    """A dashed frame around the processors, naming the engine and workers running them."""
    pad = 12
    width = count * _BOX_W + (count - 1) * _GAP_X + 2 * pad
    ET.SubElement(
        root,
        f"{{{SVG_NS}}}rect",
        {
            "x": str(x - pad),
            "y": str(top - pad - 6),
            "width": str(width),
            "height": str(body_h + 2 * pad + 6),
            "rx": "10",
            "fill": "none",
            "stroke": "#90a4ae",
            "stroke-dasharray": "6 4",
        },
    )
    label = ET.SubElement(
        root,
        f"{{{SVG_NS}}}text",
        {
            "x": str(x - pad + 8),
            "y": str(top - pad - 10),
            "style": f"{_FONT};font-size:11px;fill:#546e7a",
        },
    )
    label.text = graph.engine


def _box(root: ET.Element, node: Node, x: float, y: float) -> None:
    fill, stroke = _FILL[node.role]
    group = ET.SubElement(root, f"{{{SVG_NS}}}g", {"class": f"stage {node.role}"})
    ET.SubElement(group, f"{{{SVG_NS}}}title").text = node.id
    ET.SubElement(
        group,
        f"{{{SVG_NS}}}rect",
        {
            "x": str(x),
            "y": str(y),
            "width": str(_BOX_W),
            "height": str(_BOX_H),
            "rx": "8",
            "fill": fill,
            "stroke": stroke,
            "stroke-width": "1.5",
        },
    )
    lines = [
        (node.id, "font-size:13px;font-weight:600"),
        *((d, "font-size:11px") for d in node.details),
    ]
    for index, (text, style) in enumerate(lines[:3]):
        item = ET.SubElement(
            group,
            f"{{{SVG_NS}}}text",
            {
                "x": str(x + 10),
                "y": str(y + 20 + index * 16),
                "style": f"{_FONT};{style};fill:#263238",
            },
        )
        item.text = _fit(text, 28) if index else _fit(text, 26, keep_end=False)


def _fit(text: str, characters: int, *, keep_end: bool = True) -> str:
    """Text cut to what fits a box's width: a path keeps its end (the file's name); the
    full id stays in the box's title."""
    if len(text) <= characters:
        return text
    return "…" + text[-(characters - 1) :] if keep_end else text[: characters - 1] + "…"


def _arrow(
    root: ET.Element, start: tuple[float, float], end: tuple[float, float], *, dashed: bool
) -> None:
    """A curve from one box's right side to the next one's left (or top, for a dead letter)."""
    if dashed:
        x1, y1 = start[0] + _BOX_W / 2, start[1] + _BOX_H
        x2, y2 = end[0] + _BOX_W / 2, end[1]
        middle = (y1 + y2) / 2
        path = f"M{x1},{y1} C{x1},{middle} {x2},{middle} {x2},{y2}"
    else:
        x1, y1 = start[0] + _BOX_W, start[1] + _BOX_H / 2
        x2, y2 = end[0], end[1] + _BOX_H / 2
        middle = (x1 + x2) / 2
        path = f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
    attributes = {
        "d": path,
        "fill": "none",
        "stroke": "#c62828" if dashed else "#455a64",
        "stroke-width": "1.5",
        "marker-end": "url(#arrow-failed)" if dashed else "url(#arrow)",
    }
    if dashed:
        attributes["stroke-dasharray"] = "5 4"
    ET.SubElement(root, f"{{{SVG_NS}}}path", attributes)
