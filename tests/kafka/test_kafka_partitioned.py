"""A partitioned source under the pipeline's guarantees (issue 23): a keyed aggregate over a
4-partition topic equals the one-process result per key with two workers; SIGKILLs of
workers and of the driver on a Kafka-to-Kafka run lose nothing and, exactly once, duplicate
nothing; a sink throttled to 1,000 records/s keeps the run's memory flat while four
partitions wait to be read.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka_broker import KafkaBroker, free_port
from support.kills import kill_mid_run
from support.record_files import read_records
from test_kafka import growing_input, kafka_sink, run, topic, values, write_pipeline

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "guest_examples"


# -- a keyed aggregate ----------------------------------------------------------------------------


def purchases(count: int) -> Iterator[dict[str, object]]:
    """``count`` purchases of 29 users, keyed by user (so each user's are in one partition)."""
    for n in range(count):
        user = f"user-{n * 7 % 29}"
        yield {"key": user.encode(), "value": json.dumps({"amount": n % 11}).encode()}


def keyed_sums(
    exe: Path, folder: Path, broker: KafkaBroker, source: str, workers: int
) -> dict[str, list[int]]:
    """Per key, the running sums the aggregate emitted, in order, from a run with ``workers``."""
    folder.mkdir()
    pipeline = write_pipeline(
        folder / "sums.yaml",
        {
            "bootstrap_servers": broker.bootstrap,
            "topic": source,
            "group": f"sums-{workers}",
            "stop_when_caught_up": True,
        },
        {"plugin_type": "file", "connection": {"path": "out.records", "format": "records"}},
        top={"workers": workers},
    )
    doc = yaml.safe_load(pipeline.read_text())
    doc["processors"] = [
        {
            "id": "total",
            "type": "plugin",
            "config": {
                "plugin_type": "aggregate",
                "plugin_path": str(EXAMPLES / "sum_aggregate.py"),
                "partition_by": "key",
            },
        }
    ]
    pipeline.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert (done := run(exe, pipeline)).returncode == 0, done.stderr
    per_key: dict[str, list[int]] = collections.defaultdict(list)
    for record in read_records(folder / "out.records"):
        assert record.key is not None
        per_key[record.key.decode()].append(json.loads(record.value))
    return dict(per_key)


def test_a_keyed_aggregate_over_four_partitions_equals_one_process_per_key(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path
) -> None:
    source = topic(kafka_broker, "sums-in", 4)
    kafka_broker.produce(source, purchases(4000))
    expected: dict[str, list[int]] = collections.defaultdict(list)
    for message in purchases(4000):
        sums = expected[message["key"].decode()]  # type: ignore[attr-defined]
        amount = json.loads(message["value"])["amount"]  # type: ignore[arg-type]
        sums.append((sums[-1] if sums else 0) + amount)
    one = keyed_sums(dataflare_exe, tmp_path / "one", kafka_broker, source, workers=1)
    two = keyed_sums(dataflare_exe, tmp_path / "two", kafka_broker, source, workers=2)
    assert one == dict(expected)  # per key, the partition's order
    assert two == one


# -- the workers read: the driver's share of the CPU ----------------------------------------------


def test_exactly_once_workers_read_and_write_their_partitions_in_their_own_transactions(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """``delivery: exactly_once`` with ``workers: 2``: the workers read the topic's
    partitions themselves, each committing its output and its partitions' offsets in
    transactions of its own; a ``read_committed`` reader sees every record once, and the
    consumer group holds every partition's end offset (what Kafka's own tools show)."""
    from dataflare_host.pipeline import Pipeline

    source, out = topic(kafka_broker, "eos-in", 4), topic(kafka_broker, "eos-out", 2)
    count = 20_000
    kafka_broker.produce(source, ({"key": f"k{n % 97}".encode(),
                                   "value": json.dumps({"n": n}).encode()} for n in range(count)))
    pipeline_path = write_pipeline(
        tmp_path / "eos.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": "eos",
         "stop_when_caught_up": True},
        kafka_sink(kafka_broker, out),
        processors=["uppercase_map"],
        top={"workers": 2, "delivery": "exactly_once"},
    )
    pipeline = Pipeline.from_file(pipeline_path)
    try:
        summary = pipeline.run(None, handle_signals=False)
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert summary.engine.startswith("2 local worker(s) reading partitions of 'in'")
    readers = [s for s in summary.stats if s.role == "worker"]
    assert all(w.records_in > 0 for w in readers), "both workers read partitions"
    seen = collections.Counter(values(kafka_broker.consume_all(out)))
    assert set(seen) == {json.dumps({"n": n}).upper().encode() for n in range(count)}
    assert max(seen.values()) == 1
    assert list(kafka_broker.committed("eos", source)) == list(kafka_broker.end_offsets(source))


def test_workers_read_a_four_partition_topic_and_the_driver_spends_almost_no_cpu(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Two workers read two partitions each into another topic: the driver's own CPU time
    during the run is at most 3% of the run's (its workers are its children, joined by
    the end of the run), and the output is every expected record. Enough records that
    the driver's fixed costs (asking the broker for the partitions, starting the
    workers) are not what is measured, and checkpoints at the default interval."""
    import resource

    from dataflare_host.pipeline import Pipeline

    source, out = topic(kafka_broker, "cpu-in", 4), topic(kafka_broker, "cpu-out", 4)
    count = 400_000
    kafka_broker.produce(
        source,
        ({"key": f"k{n % 31}".encode(), "value": json.dumps({"n": n, "status": "active"
          if n % 3 else "idle"}).encode()} for n in range(count)),
    )
    pipeline_path = write_pipeline(
        tmp_path / "cpu.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": "cpu",
         "stop_when_caught_up": True},
        kafka_sink(kafka_broker, out),
        processors=["json_field_filter", "uppercase_map"],
        top={"workers": 2},
    )
    doc = yaml.safe_load(pipeline_path.read_text())
    doc["checkpoint"] = {"interval_ms": 1000}
    pipeline_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    pipeline = Pipeline.from_file(pipeline_path)
    own, children = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    try:
        before = [resource.getrusage(who) for who in (own, children)]
        summary = pipeline.run(None, handle_signals=False)
        pipeline.close()  # joins the workers: their CPU time is then the children's
        after = [resource.getrusage(who) for who in (own, children)]
    finally:
        pipeline.close()
    assert summary.status == "completed", summary.error
    assert summary.engine.startswith("2 local worker(s) reading partitions of 'in'")
    driver, workers = (
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    )
    assert workers > 0.5, f"the workers used {workers:.2f} s: they did not do the reading"
    assert driver / (driver + workers) <= 0.03, f"driver {driver:.3f} s, workers {workers:.3f} s"
    seen = collections.Counter(values(kafka_broker.consume_all(out)))
    expected = {json.dumps({"n": n, "status": "active"}).upper().encode()
                for n in range(count) if n % 3}
    assert set(seen) == expected


# -- SIGKILLs of workers and of the driver --------------------------------------------------------


UNHURRIED = """
import time

import dataflare


@dataflare.map
def unhurried(record):
    time.sleep(0.001)
    return record
"""


def worker_pids(driver: int) -> list[int]:
    """The driver's worker processes (spawned by multiprocessing, not its resource tracker)."""
    pids = []
    try:
        tasks = list(Path(f"/proc/{driver}/task").iterdir())
    except OSError:
        return []  # the driver ended
    for task in tasks:
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    workers = []
    for pid in pids:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_sigkills_of_workers_and_the_driver_lose_and_duplicate_nothing(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path, delivery: str
) -> None:
    """Five rounds, each a worker SIGKILLed mid-run and, once the output grew again, the driver
    SIGKILLed: ten kills, then a run to the end. At least once, the workers read the
    topic's partitions themselves (two each): a new worker takes a killed one's partitions
    from their last reported offsets. Exactly once too, each worker writing in transactions
    of its own (an id naming its partitions): the worker that takes a killed one's
    partitions fences it and aborts what it left open. A ``read_committed`` reader then
    sees every record, and exactly once under ``delivery: exactly_once``."""
    source, out = topic(kafka_broker, "wkill-in", 4), topic(kafka_broker, "wkill-out", 2)
    produced, more_input = growing_input(kafka_broker, source, 8000, 2000)
    pipeline = write_pipeline(
        tmp_path / f"wkill-{delivery}.yaml",
        {
            "bootstrap_servers": kafka_broker.bootstrap,
            "topic": source,
            "group": delivery,
            "stop_when_caught_up": True,
        },
        kafka_sink(kafka_broker, out),
        processors=["uppercase_map"],
        top={"delivery": delivery, "workers": 2},
    )
    # A millisecond per record in the workers: a run lasts seconds, so kills land mid-run.
    (tmp_path / "unhurried.py").write_text(UNHURRIED)
    doc = yaml.safe_load(pipeline.read_text())
    doc["processors"].append(
        {
            "id": "unhurried",
            "type": "plugin",
            "config": {"plugin_type": "map", "plugin_path": "unhurried.py"},
        }
    )
    pipeline.write_text(yaml.safe_dump(doc, sort_keys=False))
    written = lambda: sum(kafka_broker.end_offsets(out))  # noqa: E731
    worker_kills: list[int] = []

    def kill_a_worker_first(_round: int, driver: subprocess.Popen[bytes]) -> None:
        workers = worker_pids(driver.pid)
        if driver.poll() is not None or not workers:
            return
        os.kill(random.Random(len(worker_kills)).choice(workers), signal.SIGKILL)
        worker_kills.append(1)
        # The driver is killed once the run wrote again: after the engine replaced the worker.
        before = written()
        while driver.poll() is None and written() <= before:
            time.sleep(0.01)

    kill_mid_run(
        [str(dataflare_exe), "run", "--quiet", str(pipeline)],
        pipeline.parent,
        written,
        kills=5,
        rng=random.Random(5),
        pause_s=0.3,
        more_input=more_input,
        budget_s=200,
        aim=kill_a_worker_first,
        poll_s=0.01,
    )
    assert len(worker_kills) >= 3, "the runs ended before their workers could be killed"
    seen = collections.Counter(values(kafka_broker.consume_all(out)))
    expected = {json.dumps({"n": n}).upper().encode() for n in range(produced[0])}
    assert set(seen) == expected  # nothing missing, nothing else
    if delivery == "exactly_once":
        assert max(seen.values()) == 1, [v for v, c in seen.items() if c > 1][:5]


# -- backpressure ---------------------------------------------------------------------------------

THROTTLED_SINK = """
import os
import time

from dataflare_host.connectors import Sink


class Throttled(Sink):
    '''Takes at most 1,000 records a second and notes how many it took.'''

    def connect(self):
        self.started = time.monotonic()
        self.taken = 0

    def write(self, records):
        self.taken += len(records)
        late = self.started + self.taken / 1000 - time.monotonic()
        if late > 0:
            time.sleep(late)
        # Replaced whole, never truncated in place: the test reads it meanwhile.
        with open("taken.partial", "w") as note:
            note.write(str(self.taken))
        os.replace("taken.partial", "taken")

    def flush(self):
        pass
"""


def partition_gauges(port: int) -> dict[str, Any]:
    """The source's lag from ``/metrics``: its total and, per partition, (lag, position)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, Any] = {"total": None, "partitions": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            partition = sample.labels.get("partition")
            if sample.name == "dataflare_source_lag_offsets":
                found["total"] = int(sample.value)
            elif sample.name == "dataflare_source_partition_lag_offsets":
                position = found["partitions"].get(partition, (0, 0))[1]
                found["partitions"][partition] = (int(sample.value), position)
            elif sample.name == "dataflare_source_partition_position_offsets":
                lag = found["partitions"].get(partition, (0, 0))[0]
                found["partitions"][partition] = (lag, int(sample.value))
    return found


def rss_kb(pid: int) -> int:
    """The process's resident set size, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.slow
def test_a_throttled_sink_keeps_memory_flat_under_four_partitions(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path
) -> None:
    """The topic holds more than the source may fetch ahead (``prefetch_kb``, 16 MiB by
    default): for 60 s the sink takes 1,000 records/s, the reading waits on it, and the
    run's RSS after its first 20 s grows by less than 8 MiB. Scraped meanwhile, the metrics
    give each partition's lag and position; the summary at the stop shows them too."""
    source = topic(kafka_broker, "slow-in", 4)
    count = 200_000
    padding = "x" * 150
    kafka_broker.produce(
        source,
        (
            {"key": f"k{n % 97}".encode(), "value": json.dumps({"n": n, "pad": padding}).encode()}
            for n in range(count)
        ),
    )
    (tmp_path / "throttled.py").write_text(THROTTLED_SINK)
    pipeline = write_pipeline(
        tmp_path / "slow.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": "slow"},
        {"plugin_type": "sink", "plugin_path": "throttled.py"},
        processors=["uppercase_map"],
    )
    port = free_port()
    driver = subprocess.Popen(
        [str(dataflare_exe), "run", "--quiet", "--metrics-port", str(port), str(pipeline)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    samples: list[tuple[int, int]] = []
    try:
        while not (tmp_path / "taken").exists():
            assert driver.poll() is None, driver.communicate()[1].decode()
            time.sleep(0.05)
        taken_at_start = int((tmp_path / "taken").read_text())
        for second in range(60):
            assert driver.poll() is None, driver.communicate()[1].decode()
            samples.append((second, rss_kb(driver.pid)))
            if second == 10:
                lags = partition_gauges(port)
            time.sleep(1.0)
        taken = int((tmp_path / "taken").read_text())
    finally:
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 0, stderr.decode()
    # The summary printed at the stop says what the source had left, partition by partition.
    left = [
        cells[-1]
        for cells in (
            [c.strip() for c in row.split("│")[1:-1]] for row in stderr.decode().splitlines()
        )
        if len(cells) == 9 and cells[-1]
    ]
    assert left[0].endswith(" offsets"), left
    assert sorted(line.split()[0] for line in left[1:]) == ["p0", "p1", "p2", "p3"], left
    # The sink set the pace: it took records all along and far fewer than the topic holds.
    assert taken_at_start < taken < count // 2, (taken_at_start, taken)
    # Mid-run, the metrics showed each partition's lag and position, which add up to the
    # topic's end, and their total as the source's lag.
    assert sorted(lags["partitions"]) == ["0", "1", "2", "3"], lags
    assert sum(lag + position for lag, position in lags["partitions"].values()) == count
    assert lags["total"] == sum(lag for lag, _ in lags["partitions"].values()) > 0
    warm = max(rss for second, rss in samples if second < 20)
    later = max(rss for second, rss in samples if second >= 20)
    assert later - warm < 8 * 1024, samples
