"""Scaling out: records/s of one pipeline with workers: 1, workers: 2 and engine: ray.

1,000,000 ~100-byte JSONL records -> JSON field filter -> map -> JSONL, native
and WASM filter; each configuration runs as ``dataflare run`` in its own process
(peak RSS is that process tree's, sampled every 50 ms). Prints the issue's
targets with their ratios. The Ray run starts a two-node local cluster.

It also runs the native pipeline over the same records split into four files
(a glob): with one output file (the driver reads, the workers share the chain)
and with ``out/{partition}`` (each worker reads its files and writes their
outputs: the driver only assigns files and checkpoints), locally and on Ray, and
prints the driver's share of the run's CPU time: the driver's own, against every
process the run kept busy (its tree, and on Ray the cluster's processes, all
started by this script), from /proc, at the last sample each was seen in. Both also
run over the four files empty: what a run costs before its first record (Ray's actors
start in new processes that import Ray), so that the rate once started can be compared
apart from it.

When Ray is installed, its cluster is started first and every round runs every
configuration in turn, Ray's among them, so each round's Ray run pairs with its local
one; a local run's CPU is its own process tree's (the idle cluster's is not counted).

On a shared machine, ``--repeat N`` runs every configuration N times, in turn
(so a burst of other work hits them alike), and reports each one's median rate.

    .venv/bin/python benchmarks/workers.py [--records 1000000] [--repeat 1] [--no-ray]
        [--partitions-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "dataflare"
FILTER = ROOT / "guest_examples" / "json_field_filter.py"
MAP = ROOT / "tests" / "pipeline_fixtures" / "plugins" / "tag.py"
TICKS = os.sysconf("SC_CLK_TCK")


def write_input(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            doc = {"id": i, "status": ("active", "paused")[i % 2], "name": f"user-{i:08d}",
                   "amount": i % 100, "note": "x" * 20}
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")


def split_input(path: Path, parts: int) -> None:
    """``path``'s lines cut into ``parts`` files in order, ``part-0.jsonl``... beside it."""
    lines = path.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    for part in range(parts):
        (path.parent / f"part-{part}.jsonl").write_bytes(b"".join(lines[part * size:][:size]))


def pipeline(directory: Path, wasm: bool, source: str = "in.jsonl", sink: str = "out.jsonl",
             **top: Any) -> Path:
    filter_config: dict[str, Any] = {"plugin_type": "filter", "plugin_path": str(FILTER)}
    if wasm:
        filter_config["plugin_source"] = "wasm"
    doc = {
        "name": "bench",
        "batch": {"size": 2000, "linger_ms": 50},
        "checkpoint": {"interval_ms": 5000},
        "sources": [{"id": "in", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": str(directory / source)}}}],
        "processors": [
            {"id": "active", "type": "plugin", "config": filter_config},
            {"id": "tag", "type": "plugin", "config": {
                "plugin_type": "map", "plugin_path": str(MAP)}},
        ],
        "sinks": [{"id": "out", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": sink}}}],
        **top,
    }
    run_dir = Path(tempfile.mkdtemp(dir=directory))
    file = run_dir / "pipeline.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return file


Processes = tuple[dict[int, list[int]], dict[int, int]]
"""Every process's children, and its RSS in KiB."""


def processes() -> Processes:
    """One ``ps`` of the machine (one per sample: ``ps`` itself costs CPU the runs share)."""
    found = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for line in found.stdout.splitlines():
        p, parent, kb = (int(x) for x in line.split())
        children.setdefault(parent, []).append(p)
        rss[p] = kb
    return children, rss


def tree(pid: int, seen: Processes | None = None) -> list[tuple[int, int]]:
    """A process and all its descendants: (pid, RSS in KiB) each."""
    children, rss = seen or processes()
    members, stack = [], [pid]
    while stack:
        p = stack.pop()
        members.append((p, rss.get(p, 0)))
        stack.extend(children.get(p, []))
    return members


def cpu_ticks(pid: int) -> int:
    """A process's own CPU time in clock ticks; 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # After the name: state is field 3, utime 14, stime 15.
    return int(fields[11]) + int(fields[12])


def output(directory: Path) -> str:
    """The run's output: ``out.jsonl``, or the files of ``out/`` in name order."""
    single = directory / "out.jsonl"
    if single.exists():
        return single.read_text()
    return "".join(p.read_text() for p in sorted((directory / "out").iterdir()))


class Run(NamedTuple):
    rate: float  # records/s
    peak: float  # peak RSS of the run's process tree, MB
    out: str  # what it wrote
    share: float  # the driver's share of the run's CPU time
    cpu: float  # the run's CPU seconds (its tree, and a Ray cluster's processes)
    seconds: float  # its wall-clock time


def median_run(done: list[Run]) -> Run:
    """The median of each figure (the output only when every run wrote the same)."""
    return Run(
        statistics.median(r.rate for r in done),
        max(r.peak for r in done),
        done[0].out if all(r.out == done[0].out for r in done) else "differs",
        statistics.median(r.share for r in done),
        statistics.median(r.cpu for r in done),
        statistics.median(r.seconds for r in done),
    )


def timed(file: Path, count: int, cluster: bool = False) -> Run:
    """One run of ``file`` (a fresh start) and its figures; ``cluster``: the run uses the
    Ray cluster this script started, whose processes' CPU then counts as the run's."""
    # A fresh start each time: no checkpoint to resume from, no output to append to.
    (file.parent / "out.jsonl").unlink(missing_ok=True)
    shutil.rmtree(file.parent / "out", ignore_errors=True)
    shutil.rmtree(file.parent / ".dataflare", ignore_errors=True)
    # The run's processes count from here: on Ray, everything this script started (the
    # cluster's processes too); otherwise the run's own tree (the idle cluster's
    # processes are not the run's).
    before = {p: cpu_ticks(p) for p, _ in tree(os.getpid())}
    started = time.monotonic()
    # No sandbox server: every sandbox process is then in the run's process tree, so
    # its memory counts (a server's children are the server's, not the run's).
    proc = subprocess.Popen([str(EXE), "run", "--quiet", str(file)], cwd=file.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DATAFLARE_SANDBOX_SERVER_IDLE_S": "0"})
    peak, seen = 0.0, {}
    while proc.poll() is None:
        now = processes()
        peak = max(peak, sum(rss for _, rss in tree(proc.pid, now)) / 1024)
        for p, _ in tree(os.getpid() if cluster else proc.pid, now):
            ticks = cpu_ticks(p)
            if ticks and p != os.getpid():  # gone processes keep their last sample
                seen[p] = ticks - before.get(p, 0)
        time.sleep(0.05)
    seconds = time.monotonic() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{file}: exit {proc.returncode}: {stderr[-500:]}")
    everyone = sum(seen.values())
    share = seen.get(proc.pid, 0) / max(everyone, 1)
    return Run(count / seconds, peak, output(file.parent), share, everyone / TICKS, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument(
        "--partitions-only",
        action="store_true",
        help="only the four files read in the workers, locally and on Ray (and empty)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_input(directory / "in.jsonl", args.records)
        split_input(directory / "in.jsonl", 4)
        # The same four files empty: what a run costs before its first record (start-up,
        # workers or actors, the end), to tell the steady rate from the whole run's.
        (directory / "empty").mkdir()
        for part in range(4):
            (directory / "empty" / f"part-{part}.jsonl").write_bytes(b"")
        files = {}
        if not args.partitions_only:
            files = {
                f"{'wasm' if wasm else 'native'} workers={workers}": pipeline(
                    directory, wasm, workers=workers
                )
                for wasm in (False, True)
                for workers in ("1", "2")
            }
            files["native workers=2, 4 files"] = pipeline(
                directory, False, source="part-*.jsonl", workers="2"
            )
        files["... out/{partition}"] = pipeline(
            directory, False, source="part-*.jsonl", sink="out/{partition}", workers="2"
        )
        files["... the files empty"] = pipeline(
            directory, False, source="empty/part-*.jsonl", sink="out/{partition}", workers="2"
        )
        ray_note = "skipped"
        cluster: Any = None
        if not args.no_ray:
            try:
                import ray
                from ray.cluster_utils import Cluster
            except ImportError:
                ray_note = "ray not installed (pip install 'dataflare-plugins[ray]')"
            else:
                cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                on_ray = {"workers": "2", "engine": "ray", "address": cluster.address}
                if not args.partitions_only:
                    files["native ray 2 nodes"] = pipeline(directory, False, **on_ray)
                files["ray, 4 files, out/{partition}"] = pipeline(
                    directory, False, source="part-*.jsonl", sink="out/{partition}", **on_ray
                )
                files["... ray, the files empty"] = pipeline(
                    directory, False, source="empty/part-*.jsonl", sink="out/{partition}",
                    **on_ray,
                )
        runs: dict[str, list[Run]] = {name: [] for name in files}
        try:
            # Every configuration in each round, Ray's among them, so that a change in the
            # machine's speed hits them alike and a round's Ray and local runs pair up.
            for _ in range(args.repeat):
                for name, file in files.items():
                    count = 0 if "empty" in name else args.records
                    runs[name].append(timed(file, count, cluster="ray" in name))
        finally:
            if cluster is not None:
                ray.shutdown()
                cluster.shutdown()
        rows = {name: median_run(done) for name, done in runs.items()}
        print(f"{args.records:,} records, {os.cpu_count()} cores, median of {args.repeat} run(s)")
        print(f"{'configuration':<32}{'rec/s':>12}{'peak RSS MB':>14}{'driver CPU':>12}"
              f"{'CPU s':>8}{'wall s':>8}")
        for name, row in rows.items():
            print(f"{name:<32}{row.rate:>12,.0f}{row.peak:>14,.0f}{row.share:>12.1%}"
                  f"{row.cpu:>8.1f}{row.seconds:>8.2f}")
        print("\ntargets:")
        parts = rows["... out/{partition}"]
        if not args.partitions_only:
            n1, n2 = rows["native workers=1"], rows["native workers=2"]
            w1, w2 = rows["wasm workers=1"], rows["wasm workers=2"]
            print(f"  native workers 2 / 1 = {n2.rate / n1.rate:.2f}x (target >= 1.5x)")
            print(f"  wasm   workers 2 / 1 = {w2.rate / w1.rate:.2f}x (target >= 1.8x)")
            print(f"  native peak RSS, workers 2 = {n2.peak:.0f} MB (target <= 400 MB); "
                  f"wasm {w2.peak:.0f} MB (reported)")
            glob = rows["native workers=2, 4 files"]
            print(f"  driver's share of the run's CPU, 4 files, workers 2: read in the driver "
                  f"{glob.share:.1%}, read in the workers {parts.share:.1%} (target <= 3%)")
        else:
            print(f"  driver's share of the run's CPU, 4 files read in the workers "
                  f"{parts.share:.1%} (target <= 3%)")
        # Every configuration's output (the files of out/ in name order) is the same.
        same = len({row.out for name, row in rows.items() if "empty" not in name}) == 1
        if "ray, 4 files, out/{partition}" in rows:
            rp = rows["ray, 4 files, out/{partition}"]
            if "native ray 2 nodes" in rows:
                r, n2 = rows["native ray 2 nodes"], rows["native workers=2"]
                print(f"  ray (2 nodes) / local workers 2, one file, read in the driver = "
                      f"{r.rate / n2.rate:.2f}x")
            paired = statistics.median(
                ray_run.rate / local_run.rate
                for ray_run, local_run in zip(
                    runs["ray, 4 files, out/{partition}"], runs["... out/{partition}"],
                    strict=True,
                )
            )
            print(f"  ray (2 nodes) / local workers 2, 4 files read in the workers = "
                  f"{rp.rate / parts.rate:.2f}x, each round's pair {paired:.2f}x (median) "
                  f"(target >= 0.9x); driver's share on ray {rp.share:.1%} (target <= 3%)")
            # Steady: the records over the time a run takes beyond the same run with no
            # records (what starting and ending cost each, Ray's actors most).
            empty, ray_empty = rows["... the files empty"], rows["... ray, the files empty"]
            steady = args.records / max(parts.seconds - empty.seconds, 1e-9)
            ray_steady = args.records / max(rp.seconds - ray_empty.seconds, 1e-9)
            print(f"  once started (beyond an empty run: local {empty.seconds:.2f} s, ray "
                  f"{ray_empty.seconds:.2f} s): ray / local = {ray_steady / steady:.2f}x")
        else:
            print(f"  ray: {ray_note}")
        print(f"  outputs identical across configurations: {same}")


if __name__ == "__main__":
    main()
