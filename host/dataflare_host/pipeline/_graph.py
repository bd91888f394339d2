"""A pipeline as a picture's model (stages and arrows), and its Mermaid text.

``dataflare graph pipeline.yaml`` draws what the YAML says, without loading a
plugin or opening a connector: the sources, the processors in chain order with
their kind and runtime (native or wasm), the sinks, the dead-letter sink and
which stages feed it, and the engine and workers that run the chain. The SVG
drawing of the same model is in :mod:`dataflare_host.pipeline._graph_svg`.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

from dataflare_host.pipeline._config import PipelineConfig, ProcessorConfig
from dataflare_host.pipeline._design_names import processor_kind

__all__ = ["Edge", "Node", "PipelineGraph", "graph_of", "mermaid"]

Role = Literal["source", "processor", "sink", "dead_letter"]


@attrs.frozen
class Node:
    """One stage: its id, role and the lines under its name (connector, kind, runtime)."""

    id: str
    role: Role
    details: tuple[str, ...]


@attrs.frozen
class Edge:
    """Records flow from ``source`` to ``target``; ``dead_letter`` edges carry failures."""

    source: str
    target: str
    dead_letter: bool = False


@attrs.frozen
class PipelineGraph:
    """The stages of a pipeline in drawing order, its arrows, and who runs the chain."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    engine: str
    """``engine local, 1 worker`` or ``engine ray, 4 workers``..."""

    def with_role(self, role: Role) -> list[Node]:
        """The stages of one role, in the pipeline's order."""
        return [node for node in self.nodes if node.role == role]


def _runtime(config: ProcessorConfig) -> str:
    path = config.plugin_path or ""
    return "wasm" if config.plugin_source == "wasm" or path.endswith(".wasm") else "native"


def _workers(workers: str) -> str:
    if workers == "auto":
        return "workers: auto"
    return "1 worker" if workers == "1" else f"{workers} workers"


def graph_of(config: PipelineConfig) -> PipelineGraph:
    """The picture's model of a checked pipeline config."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    for source in config.sources:
        nodes.append(Node(source.id, "source", (f"source: {source.config.connector}",)))
    for processor in config.processors:
        settings = processor.config
        kind = processor_kind(settings.plugin_type) or settings.plugin_type
        plugin = settings.plugin_path or settings.plugin_name or ""
        details = [f"{kind} · {_runtime(settings)}", plugin]
        if settings.workers is not None:
            details.append(_workers(settings.workers))
        nodes.append(Node(processor.id, "processor", tuple(d for d in details if d)))
    for sink in config.sinks:
        nodes.append(Node(sink.id, "sink", (f"sink: {sink.config.connector}",)))
    heads = [p.id for p in config.processors[:1]] or [s.id for s in config.sinks]
    for source in config.sources:
        edges.extend(Edge(source.id, head) for head in heads)
    for before, after in zip(config.processors, config.processors[1:], strict=False):
        edges.append(Edge(before.id, after.id))
    if config.processors:
        last = config.processors[-1].id
        edges.extend(Edge(last, sink.id) for sink in config.sinks)
    if config.dead_letter is not None:
        letter = config.dead_letter
        nodes.append(Node(letter.id, "dead_letter", (f"dead letter: {letter.config.connector}",)))
        for processor in config.processors:
            if processor.config.on_error == "dead_letter":
                edges.append(Edge(processor.id, letter.id, dead_letter=True))
        # A sink's target may refuse records for good; they go to the dead letter too.
        edges.extend(Edge(sink.id, letter.id, dead_letter=True) for sink in config.sinks)
    engine = f"engine {config.engine}, {_workers(config.workers)}"
    return PipelineGraph(config.name, tuple(nodes), tuple(edges), engine)


def _mermaid_id(stage: str) -> str:
    """A Mermaid node id for a stage id (stage ids may hold any character)."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", stage)


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for what would end it)."""
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def mermaid(graph: PipelineGraph) -> str:
    """The pipeline as a Mermaid flowchart (left to right), one stage per node.

    >>> from dataflare_host.pipeline._config import ConnectorConfig, ConnectorEntry
    >>> entry = ConnectorEntry("in", "plugin", ConnectorConfig(plugin_type="stdin"))
    >>> out = ConnectorEntry("out", "plugin", ConnectorConfig(plugin_type="stdout"))
    >>> print(mermaid(graph_of(PipelineConfig([entry], [out]))))
    flowchart LR
      %% pipeline: engine local, 1 worker
      subgraph sources
        n_in(["in<br/>source: stdin"])
      end
      subgraph sinks
        n_out[("out<br/>sink: stdout")]
      end
      n_in --> n_out
    """
    shapes = {
        "source": ('(["', '"])'),
        "processor": ('["', '"]'),
        "sink": ('[("', '")]'),
        "dead_letter": ('[("', '")]'),
    }
    lines = ["flowchart LR", f"  %% {_mermaid_text(graph.name)}: {graph.engine}"]
    groups: list[tuple[Role, str]] = [
        ("source", "sources"),
        ("processor", f'chain["processors: {_mermaid_text(graph.engine)}"]'),
        ("sink", "sinks"),
        ("dead_letter", "dead_letter"),
    ]
    for role, title in groups:
        nodes = graph.with_role(role)
        if not nodes:
            continue
        lines.append(f"  subgraph {title}")
        opening, closing = shapes[role]
        for node in nodes:
            label = "<br/>".join(_mermaid_text(part) for part in (node.id, *node.details))
            lines.append(f"    {_mermaid_id(node.id)}{opening}{label}{closing}")
        lines.append("  end")
    for edge in graph.edges:
        arrow = " -. failed .-> " if edge.dead_letter else " --> "
        lines.append(f"  {_mermaid_id(edge.source)}{arrow}{_mermaid_id(edge.target)}")
    return "\n".join(lines)
