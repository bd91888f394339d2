"""The Kafka source and sink against a real Apache Kafka 4.1 broker (KRaft, one node).

Records round-trip (key, value, timestamp, headers); a 4-partition topic through a
filter and a map equals the same pipeline over a file, per partition in order;
SIGKILLs of ``dataflare run`` lose nothing at least once and duplicate nothing
exactly once (``read_committed``); the failures a user meets (broker down at start,
unresolvable address, missing topic, broker lost mid-run) are one line each.
"""

from __future__ import annotations

import collections
import json
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka_broker import KafkaBroker
from support.kills import kill_mid_run

from dataflare_host.connectors import KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "guest_examples"


def topic(broker: KafkaBroker, name: str, partitions: int) -> str:
    """A new topic of this test (unique name)."""
    unique = f"{name}-{uuid.uuid4().hex[:8]}"
    broker.create_topic(unique, partitions)
    return unique


def write_pipeline(
    path: Path,
    source: dict[str, Any],
    sink: dict[str, Any],
    *,
    processors: Sequence[str] = (),
    top: dict[str, Any] | None = None,
) -> Path:
    """A pipeline file: one ``kafka`` source (its ``connection:``), the example plugins
    ``processors`` (native), one sink (its ``config:``)."""
    doc = {
        "name": path.stem,
        **(top or {}),
        "checkpoint": {"interval_ms": 100},
        "batch": {"size": 200, "linger_ms": 20},
        "sources": [{"id": "in", "type": "plugin",
                     "config": {"plugin_type": "kafka", "connection": source}}],
        "processors": [
            {"id": f"p{i}", "type": "plugin",
             "config": {"plugin_type": kind, "plugin_path": str(EXAMPLES / f"{name}.py")}}
            for i, name in enumerate(processors)
            for kind in ["filter" if name.endswith("filter") else "map"]
        ],
        "sinks": [{"id": "out", "type": "plugin", "config": sink}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def kafka_sink(broker: KafkaBroker, name: str, **more: Any) -> dict[str, Any]:
    """The ``config:`` of a kafka sink writing to ``name``."""
    return {"plugin_type": "kafka",
            "connection": {"bootstrap_servers": broker.bootstrap, "topic": name, **more}}


def run(exe: Path, pipeline: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``dataflare run --quiet pipeline``, in the pipeline's folder."""
    return subprocess.run([str(exe), "run", "--quiet", str(pipeline)], cwd=pipeline.parent,
                          capture_output=True, text=True, timeout=timeout, check=False)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line of a failed run, checked to come without a traceback."""
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def values(messages: Sequence[Any]) -> list[bytes]:
    """The values of ``messages``."""
    return [m.value() for m in messages]


def numbered(count: int, start: int = 0) -> Iterator[dict[str, object]]:
    """``count`` keyed JSON messages numbered from ``start``, timestamped now."""
    now = int(time.time() * 1000)
    for n in range(start, start + count):
        yield {"key": f"k{n % 37}".encode(), "value": json.dumps({"n": n}).encode(),
               "timestamp": now}


def growing_input(
    broker: KafkaBroker, source: str, first: int, step: int
) -> tuple[list[int], Callable[[], None]]:
    """``first`` numbered messages in ``source`` now; the count so far (a one-item list) and
    a function that adds ``step`` more (a killed run's next run then has work to do)."""
    produced = [first]
    broker.produce(source, numbered(first))

    def more_input() -> None:
        broker.produce(source, numbered(step, start=produced[0]))
        produced[0] += step

    return produced, more_input


# -- records ------------------------------------------------------------------------------------


def test_source_maps_a_message_to_a_record(kafka_broker: KafkaBroker) -> None:
    """Key, value, timestamp, headers as metadata (plus the topic and partition), offset."""
    name = topic(kafka_broker, "fields", 1)
    kafka_broker.produce(name, [
        {"key": b"k", "value": b"v1", "timestamp": 1_000,
         "headers": [("trace", b"abc"), ("empty", b"")]},
        {"value": None, "timestamp": 2_000},
    ])
    source = KafkaSource(KafkaSourceConfig(bootstrap_servers=kafka_broker.bootstrap, topic=name,
                                           group="fields", stop_when_caught_up=True), {})
    source.connect(None)
    records, position = [], None
    try:
        while (batch := source.read(100, 0.5)) is not None:
            records.extend(batch.records)
            position = batch.position
    finally:
        source.close()
    first, tombstone = records
    assert (first.key, first.value, first.timestamp, first.offset) == (b"k", b"v1", 1_000, 0)
    assert dict(first.metadata) == {"trace": "abc", "empty": "", "kafka.topic": name,
                                    "kafka.partition": "0"}
    assert (tombstone.key, tombstone.value, tombstone.offset) == (None, b"", 1)
    assert position == {"topic": name, "offsets": {"0": 2}}


def test_sink_maps_metadata_to_headers(kafka_broker: KafkaBroker) -> None:
    """Metadata become headers, except the ``kafka.`` keys the source adds itself."""
    from dataflare import Record

    name = topic(kafka_broker, "headers", 1)
    sink = KafkaSink(KafkaSinkConfig(bootstrap_servers=kafka_broker.bootstrap, topic=name), {})
    sink.connect()
    sink.write([Record(b"v", b"k", 5_000, {"a": "1", "kafka.partition": "3"})])
    sink.flush()
    sink.close()
    (message,) = kafka_broker.consume_all(name)
    assert (message.key(), message.value(), message.timestamp()[1]) == (b"k", b"v", 5_000)
    assert message.headers() == [("a", b"1")]


def test_keys_values_timestamps_headers_round_trip(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path
) -> None:
    """Through a pipeline, Kafka to Kafka: every message arrives as it was, and the source's
    group committed the input's end offsets (Kafka's tools show no lag)."""
    source, out = topic(kafka_broker, "trip-in", 2), topic(kafka_broker, "trip-out", 2)
    now = int(time.time() * 1000)
    sent = [
        {"key": b"k1", "value": b'{"a": 1}', "timestamp": now,
         "headers": [("trace", b"abc"), ("empty", b"")]},
        {"value": b"\x00\xff binary", "timestamp": now - 5_000},
        {"key": b"k2", "value": b"", "timestamp": now + 1, "headers": [("h", "é".encode())]},
        *({"key": f"k{n}".encode(), "value": f"v{n}".encode(), "timestamp": now + n,
           "headers": [("n", str(n).encode())]} for n in range(300)),
    ]
    kafka_broker.produce(source, sent)
    pipeline = write_pipeline(
        tmp_path / "trip.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": "trip",
         "stop_when_caught_up": True},
        kafka_sink(kafka_broker, out),
    )
    done = run(dataflare_exe, pipeline)
    assert done.returncode == 0, done.stderr

    def shape(m: Any) -> tuple[object, ...]:
        return (m.key(), m.value(), m.timestamp()[1], tuple(m.headers() or ()))

    expected = collections.Counter(
        (m.get("key"), m["value"], m["timestamp"], tuple(m.get("headers", ()))) for m in sent
    )
    got = kafka_broker.consume_all(out)
    assert collections.Counter(shape(m) for m in got) == expected
    # Keyed messages keep their partition: the sink partitions as the Java client does.
    where = {m.key(): m.partition() for m in kafka_broker.consume_all(source) if m.key()}
    assert {m.key(): m.partition() for m in got if m.key()} == where
    assert list(kafka_broker.committed("trip", source)) == list(kafka_broker.end_offsets(source))


@pytest.mark.parametrize("workers", [1, 2])
def test_four_partitions_filter_map_equal_the_file_pipeline(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path, workers: int
) -> None:
    """A 4-partition topic through a filter and a map into another 4-partition topic holds,
    partition by partition and in order, what the same plugins write from a file: read
    in one process, and read by two workers (two partitions each, the driver reading
    nothing)."""
    source = topic(kafka_broker, f"four-in-{workers}", 4)
    out = topic(kafka_broker, f"four-out-{workers}", 4)
    documents = [{"n": n, "k": f"k{n % 23}", "status": "active" if n % 3 else "idle"}
                 for n in range(3000)]
    kafka_broker.produce(source, ({"key": d["k"].encode(), "value": json.dumps(d).encode()}
                                  for d in documents))
    plugins = ["json_field_filter", "uppercase_map"]
    pipeline = write_pipeline(
        tmp_path / "four.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": f"four-{workers}",
         "stop_when_caught_up": True},
        kafka_sink(kafka_broker, out),
        processors=plugins,
        top={"workers": workers},
    )
    done = subprocess.run([str(dataflare_exe), "run", str(pipeline)], cwd=pipeline.parent,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    reading = "2 local worker(s) reading partitions of 'in'"
    assert (reading in done.stdout + done.stderr) == (workers == 2), done.stdout
    files = tmp_path / "files"
    files.mkdir()
    (files / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in documents))
    file_pipeline = files / "four-files.yaml"
    file_pipeline.write_text(yaml.safe_dump({
        "name": "four-files",
        "sources": [{"id": "in", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": "in.jsonl", "format": "jsonl"}}}],
        "processors": yaml.safe_load(pipeline.read_text())["processors"],
        "sinks": [{"id": "out", "type": "plugin", "config": {
            "plugin_type": "file", "connection": {"path": "out.jsonl", "format": "jsonl"}}}],
    }))
    assert (done := run(dataflare_exe, file_pipeline)).returncode == 0, done.stderr
    from_file = [json.loads(line) for line in (files / "out.jsonl").read_text().splitlines()]
    assert len(from_file) == 2000

    partition_of = {m.key().decode(): m.partition() for m in kafka_broker.consume_all(source)}
    by_partition: dict[int, list[object]] = collections.defaultdict(list)
    for message in kafka_broker.consume_all(out):
        by_partition[message.partition()].append(json.loads(message.value()))
    expected: dict[int, list[object]] = collections.defaultdict(list)
    for document in from_file:
        expected[partition_of[document["K"].lower()]].append(document)
    assert len(expected) == 4
    assert by_partition == expected


# -- crashes ------------------------------------------------------------------------------------


def kill_while_writing(
    exe: Path, pipeline: Path, broker: KafkaBroker, out: str, *, kills: int, seed: int,
    more_input: Callable[[], None],
) -> None:
    """SIGKILL ``dataflare run pipeline`` ``kills`` times, each at a random moment after the
    output topic has grown in that run (uncommitted transactional messages count: a kill
    may land inside a transaction), then run it to its end."""
    kill_mid_run(
        [str(exe), "run", "--quiet", str(pipeline)], pipeline.parent,
        lambda: sum(broker.end_offsets(out)), kills=kills, rng=random.Random(seed),
        pause_s=0.3, more_input=more_input, budget_s=150, poll_s=0.01,
    )


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_sigkill_then_resume(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path, delivery: str
) -> None:
    """SIGKILLs of ``dataflare run`` mid-run, then a resumed run to the end: nothing is
    missing; with ``delivery: exactly_once`` a ``read_committed`` consumer sees every
    record exactly once (the output and the input offsets commit in one transaction)."""
    source, out = topic(kafka_broker, "kill-in", 3), topic(kafka_broker, "kill-out", 2)
    produced, more_input = growing_input(kafka_broker, source, 6000, 1000)
    pipeline = write_pipeline(
        tmp_path / f"kill-{delivery}.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": delivery,
         "stop_when_caught_up": True},
        kafka_sink(kafka_broker, out),
        processors=["uppercase_map"],
        top={"delivery": delivery},
    )
    kills = 3 if delivery == "exactly_once" else 1
    kill_while_writing(dataflare_exe, pipeline, kafka_broker, out, kills=kills,
                       seed=23 + kills, more_input=more_input)
    seen = collections.Counter(values(kafka_broker.consume_all(out)))
    expected = {json.dumps({"n": n}).upper().encode() for n in range(produced[0])}
    assert set(seen) == expected  # nothing missing, nothing else
    if delivery == "exactly_once":
        assert max(seen.values()) == 1, [v for v, c in seen.items() if c > 1][:5]
        assert list(kafka_broker.committed(delivery, source)) == list(
            kafka_broker.end_offsets(source)
        )


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])  # 2: the workers would read the partitions
def test_broker_down_at_start_is_one_line(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path, workers: int
) -> None:
    from kafka_broker import free_port

    nobody = f"127.0.0.1:{free_port()}"
    pipeline = write_pipeline(
        tmp_path / "down.yaml",
        {"bootstrap_servers": nobody, "topic": "t", "connect_timeout_s": 1},
        kafka_sink(kafka_broker, topic(kafka_broker, f"down-out-{workers}", 1)),
        top={"workers": workers},
    )
    line = error_line(run(dataflare_exe, pipeline))
    assert f"source 'in': kafka source (topic t at {nobody}): no broker answered within 1 s" in line
    assert "Connection refused" in line
    assert "start Kafka there or fix bootstrap_servers" in line


def test_unresolvable_bootstrap_address_is_one_line(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path
) -> None:
    pipeline = write_pipeline(
        tmp_path / "bad-address.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": topic(kafka_broker, "addr", 1)},
        {"plugin_type": "kafka", "connection": {
            "bootstrap_servers": "no-such-host.invalid:9092", "topic": "t",
            "connect_timeout_s": 5}},
    )
    line = error_line(run(dataflare_exe, pipeline))
    assert "kafka sink (topic t at no-such-host.invalid:9092): cannot connect" in line
    assert "check bootstrap_servers: the host name does not resolve" in line


@pytest.mark.parametrize("workers", [1, 2])
def test_missing_topic_is_one_line(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path, workers: int
) -> None:
    pipeline = write_pipeline(
        tmp_path / "missing.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": "no-such-topic"},
        kafka_sink(kafka_broker, topic(kafka_broker, f"missing-out-{workers}", 1)),
        top={"workers": workers},
    )
    line = error_line(run(dataflare_exe, pipeline))
    assert "topic 'no-such-topic' does not exist; create it" in line


def test_broker_lost_mid_run_fails_in_one_line_and_a_rerun_completes(
    tmp_path: Path, dataflare_exe: Path
) -> None:
    """A broker of its own, killed (SIGKILL) while the pipeline writes: the run fails once
    the broker stayed away ``broker_timeout_s``; started again, the rerun delivers everything."""
    broker = KafkaBroker(tmp_path / "broker")
    try:
        broker.start()
        source, out = topic(broker, "lost-in", 2), topic(broker, "lost-out", 2)
        broker.produce(source, numbered(20_000))
        timeouts = {"broker_timeout_s": 2, "connect_timeout_s": 5}
        pipeline = write_pipeline(
            tmp_path / "lost.yaml",
            {"bootstrap_servers": broker.bootstrap, "topic": source, "group": "lost",
             "stop_when_caught_up": True, **timeouts},
            kafka_sink(broker, out, **timeouts),
            processors=["uppercase_map"],
        )
        # A second pipeline tails the same topic into a file: it is waiting for records, not
        # writing, when the broker goes, so its source is what notices.
        tail = write_pipeline(
            tmp_path / "tail.yaml",
            {"bootstrap_servers": broker.bootstrap, "topic": source, "group": "tail", **timeouts},
            {"plugin_type": "file", "connection": {"path": "tail.jsonl", "format": "lines"}},
        )
        def start(path: Path) -> subprocess.Popen[str]:
            return subprocess.Popen([str(dataflare_exe), "run", "--quiet", str(path)],
                                    cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)

        def tailed() -> int:
            written = tmp_path / "tail.jsonl"
            return written.read_bytes().count(b"\n") if written.exists() else 0

        runs = [start(tail)]
        try:
            # Bounded waits: a run that stops making progress fails the test, never hangs it.
            give_up = time.monotonic() + 180
            while runs[0].poll() is None and tailed() < 20_000:  # caught up, waiting
                assert time.monotonic() < give_up, f"the tail wrote {tailed()} of 20,000 lines"
                time.sleep(0.01)
            runs.insert(0, start(pipeline))
            while runs[0].poll() is None and sum(broker.end_offsets(out)) == 0:
                assert time.monotonic() < give_up, "the pipeline wrote nothing to its topic"
                time.sleep(0.01)
            broker.kill()
            ended = [child.communicate(timeout=90) for child in runs]
        finally:
            for child in runs:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
        assert runs[0].returncode != 0, "the run ended before the broker was killed"
        line = error_line(subprocess.CompletedProcess(runs[0].args, runs[0].returncode, "",
                                                      ended[0][1]))
        assert line.startswith("error: kafka s"), line
        assert "the run stops here" in line, line
        assert "rerun the pipeline: it resumes from its last checkpoint" in line
        line = error_line(subprocess.CompletedProcess(runs[1].args, runs[1].returncode, "",
                                                      ended[1][1]))
        assert line.startswith(
            f"error: source 'in' failed: kafka source (topic {source} at {broker.bootstrap}): "
            "no broker answered for 2 s"
        ), line
        broker.start()
        assert (done := run(dataflare_exe, pipeline)).returncode == 0, done.stderr
        expected = {json.dumps({"n": n}).upper().encode() for n in range(20_000)}
        assert set(values(broker.consume_all(out))) == expected
    finally:
        broker.stop()


def test_a_topic_deleted_while_a_run_tails_it_is_one_line(
    kafka_broker: KafkaBroker, tmp_path: Path, dataflare_exe: Path
) -> None:
    """Workers waiting for records of a topic that is then deleted: the client would retry
    in silence for ever; the run fails in one line once nothing answered for
    ``broker_timeout_s`` and the topic is gone (the client's metadata takes some 30 s to
    drop it). Reading in the driver is the same source code."""
    workers = 2
    from confluent_kafka.admin import AdminClient

    source = topic(kafka_broker, f"deleted-{workers}", 2)
    out_topic = topic(kafka_broker, f"deleted-out-{workers}", 2)
    kafka_broker.produce(source, numbered(100))
    pipeline = write_pipeline(
        tmp_path / "deleted.yaml",
        {"bootstrap_servers": kafka_broker.bootstrap, "topic": source, "group": "deleted",
         "broker_timeout_s": 2},
        kafka_sink(kafka_broker, out_topic),
        top={"workers": workers},
    )
    child = subprocess.Popen([str(dataflare_exe), "run", "--quiet", str(pipeline)],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        give_up = time.monotonic() + 120
        while child.poll() is None and sum(kafka_broker.end_offsets(out_topic)) < 100:
            assert time.monotonic() < give_up, "the run did not catch up"  # then it waits
            time.sleep(0.05)
        admin = AdminClient(kafka_broker.admin_config())  # kept: its futures need it alive
        admin.delete_topics([source])[source].result(30)
        _, stderr = child.communicate(timeout=90)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    line = error_line(subprocess.CompletedProcess(child.args, child.returncode, "", stderr))
    assert f"topic {source!r} no longer exists (deleted mid-run); create it again" in line, line
