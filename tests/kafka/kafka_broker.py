"""A real Apache Kafka 4.1 broker (KRaft, one node that is also its controller) for the tests.

The jars come from Maven Central once (``bash tests/kafka/build``, which ``scripts/setup``
runs) into ``.dataflare/kafka/lib``. :meth:`KafkaBroker.start` formats a data directory,
starts the JVM on free 127.0.0.1 ports and returns once the broker is ready: the
AdminClient lists it and the group coordinator answers an offset commit (the first group
on a fresh broker creates ``__consumer_offsets``). The flags (serial GC, C1 only, a log4j2
file, short heartbeat and session timeouts, one partition for the internal topics) are
those measured in ``/work/shared/notes/kafka.md``: they make a start take seconds, and a
restart after kill -9 not wait for the old broker's session to expire.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUILD = Path(
    os.environ.get("DATAFLARE_KAFKA_DIR") or HERE.parent.parent / ".dataflare" / "kafka"
)
START_S = 60
STOP_S = 30


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build() -> None:
    """Copy the broker's jars (a no-op once done; ``scripts/setup`` does it ahead of the tests)."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        message = "Java 17 and Maven (for the Kafka test broker) are not installed; run " \
            "`bash scripts/setup` (as root)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    done = subprocess.run(["bash", str(HERE / "build")], capture_output=True, text=True,
                          check=False, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"copying the Kafka jars failed: {done.stdout}{done.stderr}")


class KafkaBroker:
    """One broker process over one data directory; restartable on the same data and ports."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_s = 0.0
        """How long the last :meth:`start` took, from the JVM's launch to ready."""
        self._write_config()
        self._java("kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22],
                   "-c", str(self.directory / "server.properties"), "--standalone",
                   "--ignore-formatted")

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "server.properties").write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                "controller.listener.names=CONTROLLER",
                f"log.dirs={self.directory / 'data'}",
                "num.partitions=1",
                # Topics exist only when a test creates them: "topic missing" must stay missing.
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=1",
                "group.initial.rebalance.delay.ms=0",
                "broker.heartbeat.interval.ms=500",
                "broker.session.timeout.ms=2000",
                "",
            ])
        )

    def _java(self, main: str, *args: str) -> None:
        done = subprocess.run(
            ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={self.directory / 'logs'}",
             "-cp", f"{BUILD / 'lib'}/*", main, *args],
            capture_output=True, text=True, check=False, timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{main} {args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start the JVM and wait until the broker and its group coordinator answer."""
        assert self.process is None, "already running"
        started = time.monotonic()
        log = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            ["java", "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={self.directory / 'logs'}",
             "-cp", f"{BUILD / 'lib'}/*", "kafka.Kafka", str(self.directory / "server.properties")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.directory,
        )
        log.close()
        try:
            self._wait_ready(started + START_S)
        except BaseException:
            self.kill()
            raise
        self.start_s = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        def alive() -> None:
            # A taken port makes the JVM exit after seconds, while another process answers.
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Kafka broker exited with {self.process.returncode} while starting: "
                    f"{self.server_log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Kafka broker was not ready within {START_S} s: "
                                   f"{self.server_log()[-3000:]}")

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "logger": _Quiet()})
        while True:
            alive()
            with contextlib.suppress(KafkaException):
                if 1 in admin.list_topics(timeout=1).brokers:
                    break
            time.sleep(0.05)
        probe = "dataflare-readiness"
        if probe not in admin.list_topics(timeout=10).topics:
            futures = admin.create_topics([NewTopic(probe, 1, 1)])
            with contextlib.suppress(KafkaException):  # created by an earlier start
                futures[probe].result(30)
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": probe,
                             "enable.auto.commit": False, "logger": _Quiet()})
        try:
            while True:
                alive()
                try:
                    # Commits and reads back: the coordinator has loaded the offsets.
                    consumer.commit(offsets=[TopicPartition(probe, 0, 0)], asynchronous=False)
                    consumer.committed([TopicPartition(probe, 0)], timeout=5)
                    break
                except KafkaException:
                    time.sleep(0.05)
        finally:
            consumer.close()

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), waited for; SIGKILL if it hangs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, and reap it (a killed JVM stays a zombie until waited for)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=STOP_S)
        self.process = None

    def server_log(self) -> str:
        """The broker's log so far (for failure messages)."""
        path = self.directory / "logs" / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- helpers for the tests -----------------------------------------------------------------

    def admin_config(self) -> dict[str, object]:
        """The client settings of this broker, librdkafka's logs kept out of the test output."""
        return {"bootstrap.servers": self.bootstrap, "logger": _Quiet()}

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` and wait until it exists."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.admin_config())
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)

    def produce(self, topic: str, messages: Iterable[dict[str, object]]) -> None:
        """Produce ``messages`` (``Producer.produce`` keyword arguments), then flush."""
        from confluent_kafka import Producer

        producer = Producer({**self.admin_config(), "enable.idempotence": True,
                             "partitioner": "murmur2_random", "linger.ms": 5})
        for message in messages:
            while True:
                try:
                    producer.produce(topic, **message)  # type: ignore[arg-type]
                    break
                except BufferError:
                    producer.poll(0.1)
        assert producer.flush(30) == 0

    def consume_all(self, topic: str, *, committed_only: bool = True) -> list[object]:
        """Every message of ``topic`` from its beginning to its current end (``read_committed``
        unless ``committed_only`` is False), partition after partition, each in order."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({
            **self.admin_config(), "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        })
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            ended: set[int] = set()
            messages: list[object] = []
            deadline = time.monotonic() + 60
            while len(ended) < len(partitions):
                assert time.monotonic() < deadline, f"{topic} was not read to its end"
                for message in consumer.consume(1000, 0.5):
                    error = message.error()
                    if error is None:
                        messages.append(message)
                        ended.discard(message.partition())
                    elif error.code() == error._PARTITION_EOF:
                        ended.add(message.partition())
                    else:
                        raise AssertionError(f"reading {topic}: {error}")
            return sorted(messages, key=lambda m: (m.partition(), m.offset()))  # type: ignore[attr-defined]
        finally:
            consumer.close()

    def end_offsets(self, topic: str) -> Sequence[int]:
        """The high watermark of each partition of ``topic``, by partition."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self.admin_config(), "group.id": "watermarks"})
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in partitions]
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> Sequence[int]:
        """The offsets ``group`` committed for each partition of ``topic``, by partition."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self.admin_config(), "group.id": group})
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            return [tp.offset for tp in sorted(got, key=lambda tp: tp.partition)]
        finally:
            consumer.close()


class _Quiet:
    """A librdkafka log sink that drops everything (connection-refused chatter while a
    broker starts or is stopped on purpose)."""

    def log(self, *_args: object, **_kwargs: object) -> None:
        """Drop one log line."""
