"""WASM records/s before and after a contract change in one run; the Rust plugin beside its twin.

For every example that ``benchmarks/throughput.py`` covers, the same batch of
10,000 records (throughput.py's batches) goes through the example's component
with the host and SDK of a git ref from before the change (default ``91ed5cf``,
the commit before contract 0.2.0) and with those after it (``--after``: a ref,
default ``HEAD``, or ``checkout`` for the working tree as it is, uncommitted
edits included). Each ref runs from a temporary ``git worktree``: a child
process with ``PYTHONPATH`` on the worktree's ``sdk/`` and ``host/`` builds its
own components with its own SDK and WIT, and its sandbox processes inherit
that path. Runs alternate (before, after, before, after, ...) so that the load of a
shared machine falls on both sides alike; the table gives each side's median,
the after/before ratio of the medians, and where the time of a call goes on the
host (encoding the batch, the guest call including its transport, decoding the
outputs). Then the Rust component (``guest_examples/rust``) beside its Python
twin ``contains_filter.py``, both as WASM with the "after" host, the crate built
by cargo from the "after" tree, with the twin natively for reference.

    .venv/bin/python benchmarks/contract.py [--before 91ed5cf] [--after HEAD] [--repeat 3]

Each child process loads one component, warms it up with one batch, then times
``--inner`` batches; ``--repeat`` such processes run per side and example.
Builds go to ``.dataflare/bench/cache`` (or ``$DATAFLARE_CACHE_DIR``), keyed by
content, so a second run builds nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BEFORE = "91ed5cf"
TWIN = "contains_filter"

# What throughput.py covers, in its order (read from it in the child processes,
# which import it with whichever SDK their PYTHONPATH gives them).
EXAMPLES = (
    "contains_filter",
    "uppercase_map",
    "sum_aggregate",
    "json_field_filter",
    "even_double_filter_map",
    "explode_array_map",
    "regex_filter",
)
_PHASES = ("encode", "call", "decode")


# -- the child: one side, one component, timed --------------------------------------------


@contextmanager
def _phase_timers(totals: dict[str, float]) -> Iterator[None]:
    """Time the host's phases of a WASM call by wrapping the names the backend calls.

    Both the old and the new backend call ``encode_request``, ``Instance.call`` and
    the ``decode_*`` functions through module globals of ``dataflare_host.plugins._wasm``.
    """
    from dataflare_host.plugins import _wasm as _plugin
    from dataflare_host.wasm.sandbox.host import _instance

    def timed(phase: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                totals[phase] += time.perf_counter() - start

        return wrapper

    saved: list[tuple[Any, str, Any]] = []
    patches = [
        (_plugin, "encode_request", "encode"),
        (_plugin, "encode_accumulator", "encode"),
        (_plugin, "decode_kept", "decode"),
        (_plugin, "decode_records", "decode"),
        (_plugin, "decode_accumulator", "decode"),
        (_instance.Instance, "call", "call"),
    ]
    for owner, name, phase in patches:
        original = getattr(owner, name)
        saved.append((owner, name, original))
        setattr(owner, name, timed(phase, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def child(args: argparse.Namespace) -> None:
    """Measure one (side, example, runtime) and print one JSON line."""
    import throughput  # benchmarks/throughput.py: the examples' params and batches

    import dataflare
    from dataflare_host import load_plugin
    from dataflare_host.wasm import component_for

    params, make = throughput.EXAMPLES[args.example]
    source = ROOT / "guest_examples" / f"{args.example}.py"
    if args.build_only:
        component_for(source)
        print(json.dumps({"built": args.example}))
        return
    if args.wire:
        print(json.dumps({**_wire_steps(source, params, make()), "sdk": _sdk_dir(dataflare)}))
        return
    target: Path = source
    if args.runtime == "wasm":
        target = Path(args.component) if args.component else component_for(source)
    records = make()
    rates: list[float] = []
    totals = dict.fromkeys(_PHASES, 0.0)
    with load_plugin(target, params) as plugin:
        plugin.process(records)  # warm-up: the first batch pays one-time costs
        with _phase_timers(totals):
            for _ in range(args.inner):
                start = time.perf_counter()
                plugin.process(records)
                rates.append(len(records) / (time.perf_counter() - start))
    print(
        json.dumps(
            {
                "rates": rates,
                "phases_ms": {k: v * 1e3 / args.inner for k, v in totals.items()},
                "sdk": _sdk_dir(dataflare),
            }
        )
    )


def _sdk_dir(module: Any) -> str:
    return str(Path(module.__file__).resolve().parent)


_WIRE_STEPS = ("host encode", "guest decode", "guest encode", "host decode")


def _wire_steps(source: Path, params: dict[str, str], records: list[Any]) -> dict[str, Any]:
    """The four framing steps of one batch, timed natively with this side's SDK (best of 15).

    The guest's two steps run inside the component on CPython compiled to WASM
    (a few times slower than here), but the same code, so before/after compare.
    """
    from dataflare import PluginKind
    from dataflare.runtime import (
        decode_kept,
        decode_records,
        decode_request,
        encode_kept,
        encode_records,
        encode_request,
    )
    from dataflare_host import load_plugin

    with load_plugin(source, params) as plugin:  # natively: the outputs the guest encodes
        result = plugin.process(records)
        kind = plugin.kind
    request = encode_request(records)
    steps: dict[str, Callable[[], Any]] = {
        "host encode": lambda: encode_request(records),
        "guest decode": lambda: decode_request(request),
    }
    if kind is PluginKind.FILTER:
        kept = encode_kept(list(result.sources))
        steps["guest encode"] = lambda: encode_kept(list(result.sources))
        steps["host decode"] = lambda: decode_kept(kept, result.consumed)
    else:
        answer = encode_records(result.outputs, result.sources)
        steps["guest encode"] = lambda: encode_records(result.outputs, result.sources)
        steps["host decode"] = lambda: decode_records(answer, records, result.consumed)
    best: dict[str, float] = {}
    for name, step in steps.items():
        step()
        times = []
        for _ in range(15):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        best[name] = min(times) * 1e6 / len(records)  # us per input record
    return {"wire_us": best, "outputs": len(result.outputs)}


# -- the parent: worktree, builds, interleaved runs, the table -----------------------------


class Side:
    """A version of the host and SDK: the checkout, or a worktree of a ref."""

    def __init__(self, label: str, tree: Path) -> None:
        self.label = label
        self.tree = tree
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tree / "sdk"), str(tree / "host")]),
            "PYTHONUNBUFFERED": "1",
        }

    def run(self, *argv: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", *argv],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"{self.label} {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        sdk = result.get("sdk")
        if sdk is not None and not Path(sdk).is_relative_to(self.tree):
            raise SystemExit(f"{self.label} ran the SDK at {sdk}, not the one in {self.tree}")
        return result


def _describe_ref(ref: str) -> str:
    if ref == "checkout":
        return "the working tree as it is (uncommitted edits included)"
    return subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()[:100]


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A temporary detached worktree of ``ref`` (removed afterwards); ``checkout``: this one."""
    if ref == "checkout":
        yield ROOT
        return
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(tempfile.mkdtemp(prefix=f"dataflare-bench-{sha[:7]}-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha],
        capture_output=True,
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )


class Samples:
    """Rates and phase times of one column, over every run."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.phases: dict[str, list[float]] = {k: [] for k in _PHASES}

    def add(self, result: dict[str, Any]) -> None:
        self.rates.extend(result["rates"])
        for phase, ms in result["phases_ms"].items():
            self.phases[phase].append(ms)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def best(self) -> float:
        return max(self.rates)

    def phase(self, name: str) -> float:
        return statistics.median(self.phases[name])


def rust_component(tree: Path) -> Path:
    """The Rust plugin of ``tree`` built with cargo, the way the tests build it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from rust_build import build_rust_component

    target = ROOT / ".dataflare" / "bench" / "rust-target"
    return build_rust_component(target, tree / "guest_examples" / "rust").component


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git ref before the change")
    parser.add_argument(
        "--after", default="HEAD", help="git ref after the change, or 'checkout' (the work tree)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="child processes per column")
    parser.add_argument("--inner", type=int, default=3, help="timed batches per process")
    parser.add_argument("--only", nargs="*", help="example names to run")
    parser.add_argument("--no-rust", action="store_true", help="skip the Rust section")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--example", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default="wasm", help=argparse.SUPPRESS)
    parser.add_argument("--component", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wire", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DATAFLARE_CACHE_DIR", str(ROOT / ".dataflare" / "bench" / "cache"))
    if args.child:
        child(args)
        return
    names = [n for n in EXAMPLES if not args.only or n in args.only]
    # A SIGTERM unwinds like Ctrl-C, so the worktrees are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with worktree(args.before) as old_tree, worktree(args.after) as new_tree:
        before = Side(f"before ({args.before})", old_tree)
        after = Side(f"after ({args.after})", new_tree)
        load = os.getloadavg()
        print(
            f"batch of 10,000 records (benchmarks/throughput.py's), {args.repeat} processes x "
            f"{args.inner} timed batches per column, alternating before/after; "
            f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        )
        for side, ref in ((before, args.before), (after, args.after)):
            print(f"{side.label}: {_describe_ref(ref)}\n    from {side.tree}")
        print()
        started = time.monotonic()
        for side in (before, after):  # builds first, so no timed run includes one
            for name in names:
                side.run("--example", name, "--build-only")
        print(f"(components ready in {time.monotonic() - started:.0f} s)\n", flush=True)
        samples = {(side.label, n): Samples() for side in (before, after) for n in names}
        for _ in range(args.repeat):
            for name in names:
                for side in (before, after):
                    common = ["--example", name, "--inner", str(args.inner)]
                    samples[side.label, name].add(side.run(*common))
        wire: dict[tuple[str, str], dict[str, float]] = {}
        for name in names:  # the framing steps natively, once per side, interleaved
            for side in (before, after):
                wire[side.label, name] = side.run("--example", name, "--wire")["wire_us"]
        _print_versions(names, before, after, samples, wire)
        if not args.no_rust:
            _rust_section(args, after)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


def _print_versions(
    names: Sequence[str],
    before: Side,
    after: Side,
    samples: dict[tuple[str, str], Samples],
    wire: dict[tuple[str, str], dict[str, float]],
) -> None:
    print("records/s of the WASM backend (one instance), median and best of every timed batch:")
    header = (
        f"{'example':<24}{'before med':>12}{'after med':>12}{'ratio':>7}"
        f"{'before best':>13}{'after best':>12}{'ratio':>7}{'batches':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        b, a = samples[before.label, name], samples[after.label, name]
        print(
            f"{name:<24}{b.median:>12,.0f}{a.median:>12,.0f}{a.median / b.median:>7.2f}"
            f"{b.best:>13,.0f}{a.best:>12,.0f}{a.best / b.best:>7.2f}"
            f"{len(b.rates):>5}+{len(a.rates)}"
        )
    print("\nthe framing steps natively with each side's SDK, us per input record (best of 15):")
    sub = f"{'example':<24}" + "".join(f"{step:>26}" for step in _WIRE_STEPS)
    print(sub)
    print("-" * len(sub))
    for name in names:
        wb, wa = wire[before.label, name], wire[after.label, name]
        print(
            f"{name:<24}"
            + "".join(f"{wb[step]:>15.2f} -> {wa[step]:<7.2f}" for step in _WIRE_STEPS)
        )
    print("\nwhere a batch's time goes on the host during the runs, ms (median per batch):")
    sub = f"{'example':<24}" + "".join(
        f"{side + ' ' + phase:>15}" for phase in _PHASES for side in ("before", "after")
    )
    print(sub)
    print("-" * len(sub))
    for name in names:
        b, a = samples[before.label, name], samples[after.label, name]
        print(
            f"{name:<24}" + "".join(f"{s.phase(phase):>15.1f}" for phase in _PHASES for s in (b, a))
        )
    print(
        "  encode: the host's encode_request (+ accumulator); call: the guest call as the host "
        "sees it (the guest's decode, function and encode, plus the pipe to the sandbox "
        "process); decode: the host's decode_kept / decode_records (+ accumulator)"
    )


def _rust_section(args: argparse.Namespace, here: Side) -> None:
    try:
        rust = rust_component(here.tree)
    except RuntimeError as exc:
        print(f"\nRust section skipped: {exc}")
        return
    columns = {
        "Rust component (WASM)": ["--runtime", "wasm", "--component", str(rust)],
        "Python twin (WASM)": ["--runtime", "wasm"],
        "Python twin (native)": ["--runtime", "native"],
    }
    samples = {label: Samples() for label in columns}
    for _ in range(args.repeat):
        for label, extra in columns.items():
            samples[label].add(here.run("--example", TWIN, "--inner", str(args.inner), *extra))
    python_wasm = samples["Python twin (WASM)"].median
    print(f"\n{TWIN} (needle=active, throughput.py's JSON batch), {here.label}:")
    header = f"{'plugin':<26}{'rec/s':>14}{'vs Python WASM':>16}{'call ms':>10}"
    print(header)
    print("-" * len(header))
    for label, s in samples.items():
        call = f"{s.phase('call'):>10.1f}" if "WASM" in label else f"{'-':>10}"
        print(f"{label:<26}{s.median:>14,.0f}{s.median / python_wasm:>16.2f}{call}")


if __name__ == "__main__":
    main()
