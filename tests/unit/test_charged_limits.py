"""Issue 24, item 10: limits count what the plugin consumed, and a build stopped on a
starved machine says so instead of blaming the plugin.

The build's decisions are tested on given readings of its stopwatch (what Linux's
schedstat would say), so they do not depend on how loaded this machine is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflare import ConfigurationError
from dataflare_host.wasm.build import _componentize
from dataflare_host.wasm.sandbox._charged_time import Charged, Stopwatch


class Readings:
    """A stopwatch whose readings are given, one per look."""

    def __init__(self, *readings: Charged) -> None:
        self._readings = list(readings)

    def __call__(self, _pid: object, **_options: object) -> Readings:
        return self

    def read(self) -> Charged:
        return self._readings.pop(0) if len(self._readings) > 1 else self._readings[0]


def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *readings: Charged, code: str) -> str:
    monkeypatch.setattr(_componentize, "Stopwatch", Readings(*readings))
    monkeypatch.setattr(_componentize, "_POLL_S", 0.01)
    done = _componentize._run_charged(
        [sys.executable, "-c", code], dict(os.environ), str(tmp_path), 12.0, tmp_path / "p.py"
    )
    return done.stdout


def stopped_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, charged: Charged) -> str:
    """The message of the ConfigurationError that stops a build which sleeps past the
    limit, charged ``charged``."""
    with pytest.raises(ConfigurationError) as caught:
        run(monkeypatch, tmp_path, charged, code="import time; time.sleep(60)")
    return str(caught.value)


def test_a_build_starved_of_cpu_goes_on_past_the_limit_in_wall_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """200 s of wall time of which 195 waiting for a CPU: 5 s charged, under 12; it ends."""
    out = run(
        monkeypatch,
        tmp_path,
        Charged(wall_s=200.0, cpu_s=5.0, waited_s=195.0),
        code="import time; time.sleep(0.3); print('built')",
    )
    assert out.strip() == "built"


def test_a_build_charged_past_the_limit_on_a_starved_machine_blames_the_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = stopped_build(
        monkeypatch, tmp_path, Charged(wall_s=250.0, cpu_s=13.0, waited_s=231.0)
    )
    assert message == (
        f"building {tmp_path / 'p.py'} was stopped after 19 s of its 12 s build time limit "
        "(13.0 s of CPU in 250.0 s, 231.0 s of it waiting for a CPU): the machine is heavily "
        "loaded; if the plugin does not loop or block when imported, retry, or raise "
        "DATAFLARE_BUILD_TIMEOUT_S"
    )


def test_a_build_charged_past_the_limit_on_an_idle_machine_asks_about_the_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = stopped_build(monkeypatch, tmp_path, Charged(wall_s=13.0, cpu_s=12.8, waited_s=0.2))
    assert "(12.8 s of CPU in 13.0 s, 0.2 s of it waiting for a CPU)" in message
    assert message.endswith(
        "does the plugin loop or block when imported? (module-level code runs at build "
        "time; DATAFLARE_BUILD_TIMEOUT_S sets the limit)"
    )


def test_charged_time_leaves_out_a_wait_for_a_cpu_and_counts_a_sleep() -> None:
    """Busy beside a busy process pinned to the same CPU, this thread is charged the wall
    clock minus its wait for the CPU; asleep, it is charged the whole sleep."""
    if not Path("/proc/thread-self/schedstat").exists():
        pytest.skip("needs Linux's schedstat")
    cpu = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    competitor = subprocess.Popen(
        [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]
    )
    try:
        os.sched_setaffinity(0, {cpu})
        watch = Stopwatch(thread_self=True)
        while watch.read().waited_s == 0:  # the competitor takes its turns: we wait
            pass
        reading = watch.read()
    finally:
        os.sched_setaffinity(0, saved)
        competitor.kill()
        competitor.wait()
    assert reading.waited_s > 0
    assert reading.charged_s == pytest.approx(reading.wall_s - reading.waited_s)
    asleep = Stopwatch(thread_self=True)
    time.sleep(0.2)
    slept = asleep.read()
    assert slept.charged_s >= 0.2 - slept.waited_s
    assert slept.cpu_s < slept.charged_s


def test_a_build_that_mostly_did_not_run_is_not_blamed_on_the_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Charged 30 s with 8.7 s of CPU (the rest blocked: threads waiting on each other,
    a busy disk): the machine, not a loop, is the likely cause."""
    with pytest.raises(ConfigurationError) as caught:
        run(
            monkeypatch,
            tmp_path,
            Charged(wall_s=45.9, cpu_s=8.7, waited_s=15.5),
            code="import time; time.sleep(60)",
        )
    assert "the machine is heavily loaded" in str(caught.value)


def test_a_build_short_of_cpu_on_a_loaded_machine_is_not_blamed_on_the_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A well-behaved build stopped at load 7.6 read 6.2 s of CPU in 11.0 s, 2.9 s of it
    waiting for a CPU (an 8 s limit); here the same proportions past the 12 s limit. A
    plugin looping at import keeps a thread running the whole charged time; this build
    ran for three quarters of it."""
    message = stopped_build(monkeypatch, tmp_path, Charged(wall_s=17.0, cpu_s=9.6, waited_s=4.5))
    assert "(9.6 s of CPU in 17.0 s, 4.5 s of it waiting for a CPU)" in message
    assert "the machine is heavily loaded" in message
