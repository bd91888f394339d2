"""Building the Rust example plugin (guest_examples/rust) into a component with cargo.

The target directory lives in the test cache, so cargo's own incremental build
makes a second test run rebuild nothing. Builds are ``--offline --locked``:
``scripts/setup`` fetched the crates of ``Cargo.lock`` beforehand. Outside CI a
failed offline build (crates never fetched) is retried online once; in CI it
is a failure, because set-up should have fetched them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import attrs

from support.paths import REPO

__all__ = ["RUST_CRATE", "RustBuild", "build_rust_component", "cargo", "require_cargo"]

RUST_CRATE = REPO / "guest_examples" / "rust"
TARGET = "wasm32-wasip2"
_BUILD_TIMEOUT_S = 900  # a cold release build with LTO on a busy 2-core machine


@attrs.frozen
class RustBuild:
    """A built component and how long cargo took (cold: compiles everything; warm: ~0 s)."""

    component: Path
    seconds: float


def cargo() -> str | None:
    """The cargo executable: on PATH, or where rustup installs it."""
    found = shutil.which("cargo")
    if found is not None:
        return found
    default = Path.home() / ".cargo" / "bin" / "cargo"
    return str(default) if default.is_file() else None


def require_cargo() -> None:
    """Skip the calling test without cargo, except in CI, where set-up installs it:
    there a missing toolchain must fail the run, not pass it quietly."""
    import pytest

    if cargo() is not None:
        return
    reason = "cargo is not installed: the Rust plugin cannot be built (https://rustup.rs)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def build_rust_component(target_dir: Path, crate: Path = RUST_CRATE) -> RustBuild:
    """``crate`` built for wasm32-wasip2 (release) into ``target_dir``; RuntimeError on failure."""
    exe = cargo()
    if exe is None:
        raise RuntimeError("cargo is not installed (https://rustup.rs)")
    command = [
        exe,
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
        "--target-dir",
        str(target_dir),
        "--manifest-path",
        str(crate / "Cargo.toml"),
    ]
    env = {**os.environ, "CARGO_TERM_COLOR": "never"}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )

    started = time.monotonic()
    done = run("--offline")
    if done.returncode != 0 and not os.environ.get("CI"):
        done = run()
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    with (crate / "Cargo.toml").open("rb") as manifest:
        name = tomllib.load(manifest)["package"]["name"]
    return RustBuild(target_dir / TARGET / "release" / f"{name}.wasm", seconds)
