"""Workload W as Bytewax's documentation writes a flow: stock connectors, one line per item.

Run by ``benchmarks/peers.py`` as ``python -m bytewax.run benchmarks/_bytewax_flow.py:flow``
(and ``python -m bytewax.testing ... -p 2`` for two processes), with the input and output
files in ``PEERS_INPUT`` and ``PEERS_OUTPUT``. The stock ``FileSink`` is a partitioned
sink: it takes ``(key, line)`` pairs, hence the ``key_on`` step.
"""

import json
import os
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

flow = Dataflow("peers")
lines = op.input("read", flow, FileSource(Path(os.environ["PEERS_INPUT"])))
active = op.filter("active", lines, lambda line: json.loads(line).get("status") == "active")
upper = op.map("upper", active, str.upper)
keyed = op.key_on("key", upper, lambda _line: "out")
op.output("write", keyed, FileSink(Path(os.environ["PEERS_OUTPUT"])))
