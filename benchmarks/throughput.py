"""Records/s of every example: a plain Python loop, the native backend, the WASM backend.

One run builds each example (through the shared build cache), then
times batches of 10,000 records of ~100-byte JSON (shaped for each example) and
prints a table with ratios, and the cached cold start of each component.

    .venv/bin/python benchmarks/throughput.py [--repeat 5] [--instances 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from dataflare import PluginKind, Record  # noqa: E402
from dataflare.runtime import Dispatcher  # noqa: E402
from dataflare_host import load_plugin  # noqa: E402
from dataflare_host.plugins._native import import_plugin_module  # noqa: E402
from dataflare_host.wasm import Sandbox, component_for  # noqa: E402

BATCH = 10_000
STATUSES = ("active", "paused", "deleted")


def _doc(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "status": STATUSES[i % 3],
        "name": f"user-{i:05d}",
        "score": 42.5,
        "amount": i % 100,
        "tags": ["a", "b"],
    }


def _json_records() -> list[Record]:
    return [Record(json.dumps(_doc(i)).encode(), offset=i) for i in range(BATCH)]


def _int_records() -> list[Record]:
    # ~100 bytes each, like the others: a number padded with leading zeros.
    return [Record(str(i).zfill(96).encode(), offset=i) for i in range(BATCH)]


def _array_records() -> list[Record]:
    return [
        Record(json.dumps([i, f"item-{i}", {"k": i % 7}, "x" * 60]).encode(), offset=i)
        for i in range(BATCH)
    ]


EXAMPLES: dict[str, tuple[dict[str, str], Callable[[], list[Record]]]] = {
    "contains_filter": ({"needle": "active"}, _json_records),
    "uppercase_map": ({}, _json_records),
    "sum_aggregate": ({"field": "amount"}, _json_records),
    "json_field_filter": ({}, _json_records),
    "even_double_filter_map": ({}, _int_records),
    "explode_array_map": ({}, _array_records),
    "regex_filter": ({"pattern": r"user-\d+7\b"}, _json_records),
}


def plain_loop(source: Path, params: dict[str, str]) -> Callable[[Sequence[Record]], Any]:
    """The decorated function called directly in a Python loop: no SDK, no host."""
    module = import_plugin_module(source)
    func = module.definition.function
    context: Any = Dispatcher(module, params).context  # what the function's last arg gets
    takes = module.definition.takes_context
    kind = module.kind
    if kind is PluginKind.FILTER:
        if takes:
            return lambda rs: [r for r in rs if func(r, context)]
        return lambda rs: [r for r in rs if func(r)]
    if kind is PluginKind.MAP:
        return lambda rs: [func(r, context) for r in rs] if takes else [func(r) for r in rs]
    if kind is PluginKind.FILTER_MAP:
        return lambda rs: [o for r in rs if (o := (func(r, context) if takes else func(r)))]
    if kind is PluginKind.ARRAY_MAP:
        return lambda rs: [o for r in rs for o in (func(r, context) if takes else func(r))]

    def fold(rs: Sequence[Record]) -> list[bytes]:
        acc = module.definition.initial
        out = []
        for r in rs:
            acc = func(acc, r, context) if takes else func(acc, r)
            out.append(acc)
        return out

    return fold


def best_rate(run: Callable[[], Any], repeat: int) -> float:
    run()  # warm up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return BATCH / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--instances",
        type=int,
        default=2,
        help="parallel WASM instances for the extra column (default 2)",
    )
    parser.add_argument("--only", nargs="*", help="example names to run")
    args = parser.parse_args()
    out_dir = ROOT / ".dataflare" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / "cwasm-cache"
    os.environ.setdefault("DATAFLARE_CACHE_DIR", str(cache))

    print(f"batch of {BATCH:,} records, best of {args.repeat}, {os.cpu_count()} CPUs\n")
    header = (
        f"{'example':<24}{'plain loop':>12}{'native':>12}{'wasm x1':>12}"
        f"{'wasm x' + str(args.instances):>12}{'native/plain':>14}{'wasm1/native':>14}"
        f"{'wasmN/native':>14}"
    )
    print(header)
    print("-" * len(header))
    cold: list[tuple[str, float, float]] = []
    for name, (params, make) in EXAMPLES.items():
        if args.only and name not in args.only:
            continue
        source = ROOT / "guest_examples" / f"{name}.py"
        wasm = component_for(source)
        records = make()
        load_plugin(wasm, params).close()  # compile once into the disk cache
        # Cached cold start: a sandbox process deserializes the compiled artifact,
        # instantiates, runs describe/init, then the first record.
        start = time.perf_counter()
        plugin = load_plugin(wasm, params)
        loaded = time.perf_counter()
        plugin.process(records[:1])
        first = time.perf_counter()
        cold.append((name, (loaded - start) * 1e3, (first - start) * 1e3))
        plain = plain_loop(source, params)
        native = load_plugin(source, params)
        parallel = load_plugin(wasm, params, sandbox=Sandbox(instances=args.instances))
        rates = [
            best_rate(partial(run, records), args.repeat)
            for run in (plain, native.process, plugin.process, parallel.process)
        ]
        for p in (native, plugin, parallel):
            p.close()
        p_rate, n_rate, w_rate, wn_rate = rates
        print(
            f"{name:<24}"
            + "".join(f"{r:>12,.0f}" for r in rates)
            + f"{n_rate / p_rate:>14.2f}{w_rate / n_rate:>14.2f}{wn_rate / n_rate:>14.2f}"
        )
    print("\ncached cold start (deserialize + instantiate + describe/init, then first record):")
    for name, load_ms, first_ms in cold:
        print(f"  {name:<24} load {load_ms:6.1f} ms   first record at {first_ms:6.1f} ms")
    shutil.rmtree(out_dir / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
