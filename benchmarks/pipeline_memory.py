"""Peak RSS of a 1,000,000-record JSONL -> filter -> map -> JSONL pipeline run.

Writes the input (~100 MB) and a pipeline file under .dataflare/memory-bench,
runs ``dataflare run --quiet`` in a child process, and reports the child's peak
resident set size (getrusage) and its throughput. Target: peak RSS < 300 MB.

    .venv/bin/python benchmarks/pipeline_memory.py [--records 1000000] [--wasm]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATUSES = ("active", "paused", "deleted")


def write_input(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            handle.write(
                json.dumps(
                    {
                        "id": i,
                        "status": STATUSES[i % 3],
                        "name": f"user-{i:07d}",
                        "amount": i % 1000,
                        "tags": ["a", "b"],
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )


def write_pipeline(path: Path, wasm: bool) -> None:
    source = "wasm" if wasm else "native"
    path.write_text(
        f"""
name: memory-bench
batch: {{size: 1000, linger_ms: 50, queue_batches: 4}}
checkpoint: {{path: bench.checkpoint.json, interval_ms: 2000}}
sources:
  - id: input
    type: plugin
    config: {{plugin_type: file, connection: {{path: input.jsonl}}}}
processors:
  - id: active
    type: plugin
    config:
      plugin_type: filter
      plugin_source: {source}
      plugin_path: {ROOT / "guest_examples" / "json_field_filter.py"}
  - id: upper
    type: plugin
    config:
      plugin_type: map
      plugin_path: {ROOT / "guest_examples" / "uppercase_map.py"}
sinks:
  - id: output
    type: plugin
    config: {{plugin_type: file, connection: {{path: output.jsonl, fsync: false}}}}
""",
        encoding="utf-8",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--wasm", action="store_true", help="run the filter as a WASM component")
    args = parser.parse_args()
    work = ROOT / ".dataflare" / "memory-bench"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "input.jsonl"
    if not data.exists() or sum(1 for _ in data.open("rb")) != args.records:
        write_input(data, args.records)
    for stale in ("output.jsonl", "bench.checkpoint.json"):
        (work / stale).unlink(missing_ok=True)
    write_pipeline(work / "pipeline.yaml", args.wasm)
    exe = Path(sys.executable).with_name("dataflare")
    start = time.perf_counter()
    completed = subprocess.run(
        [str(exe), "run", "--quiet", str(work / "pipeline.yaml")],
        capture_output=True,
        text=True,
        check=False,
        # No sandbox server: a sandbox process is then the run's child, and its
        # peak counts in RUSAGE_CHILDREN (a server's children are the server's).
        env={**os.environ, "DATAFLARE_SANDBOX_SERVER_IDLE_S": "0"},
    )
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    written = sum(1 for _ in (work / "output.jsonl").open("rb"))
    print(completed.stderr.strip())
    print(
        f"records in: {args.records:,}  written: {written:,}  expected: "
        f"{sum(1 for i in range(args.records) if i % 3 == 0):,}"
    )
    print(f"wall time: {seconds:.1f} s  ({args.records / seconds:,.0f} records/s end to end)")
    print(f"peak RSS of the pipeline process: {peak_mb:.0f} MB (target < 300 MB)")
    sys.exit(completed.returncode or (0 if peak_mb < 300 else 1))


if __name__ == "__main__":
    main()
