"""DataFlare against Bytewax and the CPython floor on workload W.

W: JSONL lines of about 100 bytes (``{"id", "status", "name", "amount", "tags"}``,
generated deterministically, a third of them ``"status": "active"``) -> keep
``status == "active"`` -> upper-case the line -> JSONL file. Every system runs
as its user would start it, each in a process of its own, timed from start to
exit (interpreter start and imports included, for all alike):

- ``floor``: a plain-Python loop over the text lines, one ``json.loads`` each
  (what CPython can do on one core with no framework at all);
- ``bytewax``: Bytewax 0.21.1 as its documentation writes the flow (stock
  ``FileSource`` -> ``op.filter`` with ``json.loads`` -> ``op.map(str.upper)`` ->
  stock ``FileSink``, see ``_bytewax_flow.py``), ``python -m bytewax.run``;
- ``bytewax-p2``: the same flow in two processes, ``python -m bytewax.testing -p 2``;
- ``native``: ``dataflare run`` of file -> ``json_field_filter.py`` ->
  ``uppercase_map.py`` -> file, batches of 1,000, checkpoints at the default interval;
- ``wasm``: the same with the filter as a sandboxed WASM component;
- ``wasm-i2``: ``wasm`` with ``instances: 2`` on the filter (two batches in the guest
  at once, each on its own instance: the setting for a guest-bound first step);
- ``workers2``: ``native`` with ``workers: 2``.

Rounds run the systems in turn (``--rounds``), so a change in the machine's
load falls on all of them; best and median rates are printed, the ratios of
the medians against Bytewax and the floor, peak RSS (the largest process of the
run's tree, from ``RUSAGE_CHILDREN`` of a wrapper process per run), records per
CPU-second (all the run's processes: the WASM runs start their sandbox processes
themselves, with no sandbox server, so those count), each system's start-up (the same command
on a one-line input, in the same turns) and each target of the issue beside its
goal. Every output, sorted, must be byte-identical to the floor's: the script
fails loudly otherwise.

``--breakdown`` times DataFlare's layers one by one on the same input instead
(read, record build, dispatch, plugin call, encode, write; and for the WASM
filter the host's encoding, the guest's work and the rest of the call).

    .venv/bin/python benchmarks/peers.py [--records 1000000] [--rounds 3] [--breakdown]

Needs ``pip install -e '.[bench]'`` (Bytewax) for the peers; ``--skip bytewax,bytewax-p2``
runs without it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".dataflare" / "peers-bench"
FLOW = Path(__file__).resolve().parent / "_bytewax_flow.py"
FILTER = ROOT / "guest_examples" / "json_field_filter.py"
UPPER = ROOT / "guest_examples" / "uppercase_map.py"
PARAMS = {"field": "status", "value": "active"}
STATUSES = ("active", "paused", "deleted")
TAGS = ("alpha", "beta", "gamma", "delta", "omega")
BATCH = 1000
SYSTEMS = ("floor", "bytewax", "bytewax-p2", "native", "wasm", "wasm-i2", "workers2")


# -- the input and the pipelines ------------------------------------------------------


def line_of(i: int) -> str:
    """Line ``i`` of W (without its newline): about 100 bytes of JSON, the same every run."""
    doc = {
        "id": i,
        "status": STATUSES[i % 3],
        "name": f"user-{i:07d}",
        "amount": (i * 7919) % 100_000 / 100,
        "tags": [TAGS[i % 5], TAGS[(i * 3 + 1) % 5], TAGS[(i * 7 + 2) % 5]],
    }
    return json.dumps(doc, separators=(",", ":"))


def write_input(path: Path, count: int) -> None:
    """``count`` lines of W."""
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, count, 10_000):
            handle.write(
                "".join(line_of(i) + "\n" for i in range(start, min(count, start + 10_000)))
            )


def write_pipeline(
    path: Path, data: Path, output: Path, *, wasm: bool, workers: int, instances: int = 1
) -> None:
    """file -> filter (native or WASM) -> uppercase -> file; checkpoints at the default interval."""
    path.write_text(
        f"""
name: peers-{path.stem}
batch: {{size: {BATCH}}}
{"workers: " + str(workers) if workers > 1 else ""}
checkpoint: {{path: {path.stem}.checkpoint.json}}
sources:
  - id: input
    type: plugin
    config: {{plugin_type: file, connection: {{path: {data}}}}}
processors:
  - id: active
    type: plugin
    config:
      plugin_type: filter
      plugin_source: {"wasm" if wasm else "native"}
      plugin_path: {FILTER}
      params: {{field: status, value: active}}
      instances: {instances}
  - id: upper
    type: plugin
    config:
      plugin_type: map
      plugin_path: {UPPER}
sinks:
  - id: output
    type: plugin
    config: {{plugin_type: file, connection: {{path: {output}}}}}
""",
        encoding="utf-8",
    )


def run_floor(data: Path, output: Path) -> None:
    """The floor: text lines, one ``json.loads`` per line, buffered writes."""
    loads = json.loads
    with (
        data.open(encoding="utf-8") as lines,
        output.open("w", encoding="utf-8") as out,
    ):
        write = out.write
        for line in lines:
            if loads(line).get("status") == "active":
                write(line.upper())


# -- one run: a wrapper process times a command and reports its tree's peak RSS --------


def measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``command``; its wall time and the peak RSS of its largest process (MB)."""
    started = time.perf_counter()
    completed = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "returncode": completed.returncode,
        "stderr": completed.stderr[-3000:],
    }


def run_measured(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """:func:`measure` in a wrapper process of its own (so ``RUSAGE_CHILDREN`` is this run's)."""
    wrapper = [sys.executable, __file__, "--measure", json.dumps(env), "--", *command]
    completed = subprocess.run(wrapper, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"measuring {command} failed:\n{completed.stderr}")
    answer: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if answer["returncode"] != 0:
        raise SystemExit(f"{' '.join(command)} exited {answer['returncode']}:\n{answer['stderr']}")
    return answer


class Setup:
    """The input, the output files and the command of every system."""

    def __init__(self, work: Path, records: int) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.data = work / f"w-{records}.jsonl"
        if not self.data.exists():
            partial = self.data.with_suffix(".partial")
            write_input(partial, records)
            partial.replace(self.data)
        self.outputs = {system: work / f"{system}.out.jsonl" for system in SYSTEMS}
        bin_dir = Path(sys.executable).parent
        dataflare = str(bin_dir / "dataflare")
        self.commands: dict[str, list[str]] = {
            "floor": [
                sys.executable,
                __file__,
                "--floor",
                str(self.data),
                str(self.outputs["floor"]),
            ],
            "bytewax": [sys.executable, "-m", "bytewax.run", f"{FLOW}:flow"],
            "bytewax-p2": [sys.executable, "-m", "bytewax.testing", f"{FLOW}:flow", "-p", "2"],
        }
        for system, wasm, workers, instances in (
            ("native", False, 1, 1),
            ("wasm", True, 1, 1),
            ("wasm-i2", True, 1, 2),
            ("workers2", False, 2, 1),
        ):
            pipeline = work / f"{system}.yaml"
            write_pipeline(
                pipeline,
                self.data,
                self.outputs[system],
                wasm=wasm,
                workers=workers,
                instances=instances,
            )
            self.commands[system] = [dataflare, "run", "--quiet", str(pipeline)]

    def env(self, system: str) -> dict[str, str]:
        if system.startswith("bytewax"):
            return {"PEERS_INPUT": str(self.data), "PEERS_OUTPUT": str(self.outputs[system])}
        if system.startswith("wasm"):
            # No sandbox server: its forked sandbox processes would not be the run's
            # children, so their CPU time and memory would escape the run's figures.
            return {"DATAFLARE_SANDBOX_SERVER_IDLE_S": "0"}
        return {}

    def clear(self, system: str) -> None:
        self.outputs[system].unlink(missing_ok=True)
        (self.work / f"{system}.checkpoint.json").unlink(missing_ok=True)


def sorted_digest(path: Path) -> str:
    """A hash of the file's lines sorted: the same records in any order give the same."""
    return hashlib.sha256(b"\n".join(sorted(path.read_bytes().splitlines()))).hexdigest()


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


# -- the per-layer breakdown --------------------------------------------------------


def _timed(func: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    # The cyclic collector off while timing: the layers' results are all kept here,
    # which a pipeline never does (it frees each batch, and makes collections rare).
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = func()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best, result


def breakdown(data: Path, count: int, wasm: bool) -> None:
    """Time each layer of the native (and WASM) per-record path alone on ``count`` lines."""
    import dataflare
    from dataflare import Record
    from dataflare.runtime import Dispatcher, find_plugin, loads_json
    from dataflare_host.connectors import FileSource
    from dataflare_host.plugins._native import import_plugin_module

    sample = data.parent / f"breakdown-{count}.jsonl"
    if not sample.exists():
        with data.open("rb") as source, sample.open("wb") as out:
            for _, line in zip(range(count), source, strict=False):
                out.write(line)

    def read_lines() -> list[bytes]:
        # What a line source does before any record exists: chunks split into lines.
        lines: list[bytes] = []
        with sample.open("rb") as handle:
            tail = b""
            while chunk := handle.read(1 << 20):
                parts = (tail + chunk).split(b"\n")
                tail = parts.pop()
                lines += parts
        return lines

    def read_records() -> list[list[Record]]:
        source = FileSource(FileSource.Config(path=str(sample)), {})
        source.connect(None)
        batches = []
        while (batch := source.read(BATCH, 0.0)) is not None:
            batches.append(list(batch.records))
        source.close()
        return batches

    @dataflare.filter
    def keep_all(record: Record) -> bool:
        return True

    @dataflare.map
    def same(record: Record) -> Record:
        return record

    def dispatcher_of(plugin: Any, params: dict[str, str] | None = None) -> Dispatcher:
        return Dispatcher(plugin, params or {})

    t_read, lines = _timed(read_lines)
    t_parse, _ = _timed(lambda: list(map(loads_json, lines)))
    t_source, batches = _timed(read_records)
    n = sum(map(len, batches))
    empty_filter = dispatcher_of(find_plugin({"keep_all": keep_all}, "peers"))
    empty_map = dispatcher_of(find_plugin({"same": same}, "peers"))
    real_filter = dispatcher_of(import_plugin_module(FILTER), PARAMS)
    real_map = dispatcher_of(import_plugin_module(UPPER))

    def run(filt: Dispatcher, mapper: Dispatcher) -> list[list[Record]]:
        return [mapper.process(filt.process(batch).outputs).outputs for batch in batches]

    t_dispatch, _ = _timed(lambda: run(empty_filter, empty_map))
    t_plugins, outputs = _timed(lambda: run(real_filter, real_map))
    t_encode, joined = _timed(
        lambda: [b"\n".join([r.value for r in out]) + b"\n" for out in outputs]
    )
    target = data.parent / "breakdown.out"

    def write() -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for chunk in joined:
            os.write(fd, chunk)
        os.close(fd)

    t_write, _ = _timed(write)
    us = 1e6 / n
    rows = [
        ("read (file chunks split into lines)", t_read),
        ("JSON parse, once (the source's check, kept for json())", t_parse),
        ("record build (the file source's read minus the above)", t_source - t_read - t_parse),
        ("dispatch (a filter and a map that do nothing)", t_dispatch),
        ("plugin call (the real filter and map, minus dispatch)", t_plugins - t_dispatch),
        ("encode (the sink joins the values)", t_encode),
        ("write (os.write, no fsync)", t_write),
    ]
    total = sum(seconds for _, seconds in rows)
    print(f"\nPer-record cost of DataFlare's layers, native, {n:,} records (best of 3):")
    for name, seconds in rows:
        print(f"  {name:<58}{seconds * us:>7.2f} us  {seconds / total:>5.0%}")
    print(f"  {'sum':<58}{total * us:>7.2f} us  ({1 / (total * us) * 1e6:,.0f} rec/s)")
    if wasm:
        _wasm_breakdown(batches, n)


def _wasm_breakdown(batches: Sequence[Sequence[Any]], n: int) -> None:
    from dataflare.runtime import Dispatcher
    from dataflare.runtime._wire import decode_request, encode_kept, encode_request
    from dataflare_host import load_plugin
    from dataflare_host.plugins._native import import_plugin_module
    from dataflare_host.wasm import component_for

    plugin = load_plugin(component_for(FILTER), PARAMS)
    try:
        plugin.process(batches[0])  # warm up
        t_call, _ = _timed(lambda: [plugin.process(batch) for batch in batches])
    finally:
        plugin.close()
    t_encode, encoded = _timed(lambda: [encode_request(batch, parsed=True) for batch in batches])
    texts = [e.decode("latin-1") for e in encoded]
    t_decode, decoded = _timed(lambda: [decode_request(text) for text in texts])
    guest = Dispatcher(import_plugin_module(FILTER), PARAMS)
    t_filter, kept = _timed(lambda: [guest.filter_indices(records)[0] for records in decoded])
    t_result, _ = _timed(lambda: [encode_kept(k) for k in kept])
    us = 1e6 / n
    rest = t_call - t_encode - t_decode - t_filter - t_result
    print(f"\nThe WASM filter's call, {n:,} records in batches of {BATCH} (best of 3):")
    rows = [
        ("host: encode the batch", t_encode),
        ("guest's work run natively: decode + record build", t_decode),
        ("guest's work run natively: dispatch + plugin", t_filter),
        ("guest's work run natively: encode the result", t_result),
        ("the rest: crossing, host decode, the guest's slower CPython", rest),
    ]
    for name, seconds in rows:
        print(f"  {name:<58}{seconds * us:>7.2f} us")
    print(f"  {'whole call':<58}{t_call * us:>7.2f} us  ({n / t_call:,.0f} rec/s)")


# -- the parent -----------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="turns over every system")
    parser.add_argument("--skip", default="", help="systems to leave out, comma-separated")
    parser.add_argument("--breakdown", action="store_true", help="time DataFlare's layers")
    parser.add_argument("--breakdown-records", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=WORK, help=f"folder for files ({WORK})")
    parser.add_argument("--floor", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        run_floor(*args.floor)
        return
    if args.measure is not None:
        print(json.dumps(measure(args.command, json.loads(args.measure))))
        return

    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    setup = Setup(work, args.records)
    skipped = {name.strip() for name in args.skip.split(",") if name.strip()}
    if unknown := skipped - set(SYSTEMS):
        raise SystemExit(f"--skip: unknown systems {sorted(unknown)}; known: {SYSTEMS}")
    if args.breakdown:
        breakdown(setup.data, args.breakdown_records, wasm="wasm" not in skipped)
        return
    systems = [s for s in SYSTEMS if s not in skipped]
    print(
        f"W: {args.records:,} lines, {setup.data.stat().st_size / args.records:.0f} bytes each; "
        f"{args.rounds} interleaved round(s); {os.cpu_count()} CPUs; load before {load()}"
    )
    if "wasm" in systems or "wasm-i2" in systems:
        # Build and compile the filter (and start the sandbox server) outside the timings.
        from dataflare_host.wasm import component_for

        component_for(FILTER)
    # Start-up: each system on a one-line input, in the same turns (what every run pays
    # before and after its records: interpreter, imports, connecting, closing).
    tiny = Setup(work / "startup", 1)
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    startup: dict[str, list[float]] = {s: [] for s in systems}
    digests: dict[str, set[str]] = {s: set() for s in systems}
    for _ in range(args.rounds):
        for system in systems:
            setup.clear(system)
            results[system].append(run_measured(setup.commands[system], setup.env(system)))
            digests[system].add(sorted_digest(setup.outputs[system]))
            tiny.clear(system)
            startup[system].append(run_measured(tiny.commands[system], tiny.env(system))["seconds"])
    reference = digests[systems[0]]
    differing = [s for s in systems if digests[s] != reference or len(digests[s]) != 1]
    if differing:
        raise SystemExit(f"OUTPUTS DIFFER from {systems[0]}'s (sorted): {differing}")
    written = len(setup.outputs[systems[0]].read_bytes().splitlines())

    def rates(system: str) -> list[float]:
        return [args.records / r["seconds"] for r in results[system]]

    median = {s: statistics.median(rates(s)) for s in systems}
    cpu = {
        s: statistics.median(args.records / r["cpu_seconds"] for r in results[s]) for s in systems
    }
    rss = {s: max(r["rss_mb"] for r in results[s]) for s in systems}
    print(f"load after {load()}; every output the same {written:,} lines once sorted\n")
    print(
        f"  {'system':<12}{'best rec/s':>12}{'median rec/s':>14}{'vs Bytewax':>12}"
        f"{'vs floor':>10}{'peak RSS MB':>13}{'rec/CPU-s':>11}{'start-up s':>12}"
    )
    for s in systems:
        vs_bytewax = f"{median[s] / median['bytewax']:.2f}x" if "bytewax" in median else "-"
        vs_floor = f"{median[s] / median['floor']:.2f}x" if "floor" in median else "-"
        print(
            f"  {s:<12}{max(rates(s)):>12,.0f}{median[s]:>14,.0f}{vs_bytewax:>12}"
            f"{vs_floor:>10}{rss[s]:>13.0f}{cpu[s]:>11,.0f}"
            f"{statistics.median(startup[s]):>12.2f}"
        )
    print("\n  target (medians)" + " " * 30 + f"{'measured':>10}   goal")
    targets: list[tuple[str, float, str, bool]] = []
    if {"native", "bytewax"} <= median.keys():
        ratio = median["native"] / median["bytewax"]
        targets.append(("native / Bytewax (one worker)", ratio, ">= 1.0x", ratio >= 1.0))
    if {"native", "floor"} <= median.keys():
        ratio = median["native"] / median["floor"]
        targets.append(("native / the one-parse floor", ratio, ">= 0.9x", ratio >= 0.9))
    wasm_rows = (("wasm", "WASM filter / Bytewax"), ("wasm-i2", "  the same, instances: 2"))
    for system, name in wasm_rows:
        if {system, "bytewax"} <= median.keys():
            ratio = median[system] / median["bytewax"]
            targets.append((name, ratio, ">= 0.6x", ratio >= 0.6))
    if {"workers2", "bytewax"} <= median.keys():
        ratio = median["workers2"] / median["bytewax"]
        targets.append(("workers: 2 / Bytewax one worker", ratio, ">= 1.6x", ratio >= 1.6))
    for name, ratio, goal, ok in targets:
        print(f"  {name:<46}{ratio:>9.2f}x   {goal:<10}{_verdict(ok)}")
    if {"native", "bytewax", "floor"} <= cpu.keys():
        print(
            f"  {'':<4}(in CPU time, which a busy machine disturbs less: native "
            f"{cpu['native'] / cpu['bytewax']:.2f}x Bytewax, {cpu['native'] / cpu['floor']:.2f}x "
            "the floor; rec/CPU-s counts every process of a run)"
        )
    if "native" in rss:
        ok = rss["native"] <= 45
        print(f"  {'native peak RSS':<46}{rss['native']:>7.0f} MB   {'<= 45 MB':<10}{_verdict(ok)}")


if __name__ == "__main__":
    main()
