"""The Kafka source: every partition of a topic, resumed from the pipeline's checkpoint.

Its position is the next offset of every partition. The partitions are
assigned (no group rebalancing: the checkpoint, not the group, says where each
resumes), and after each checkpoint the same offsets are committed to the
consumer group so that ``kafka-consumer-groups.sh --describe`` shows the lag.
Delivery is at least once: records after the last checkpoint are read again.
Under the pipeline's ``delivery: exactly_once`` the Kafka sink commits the
offsets in its transaction instead, and the source resumes from the later of
the checkpoint and the group's offsets (a crash between the two leaves the
group ahead).

A message becomes a record: key and value (an empty value for a tombstone),
its timestamp in milliseconds, its headers as metadata (values as UTF-8 text;
a repeated header keeps its last value), plus ``kafka.topic`` and
``kafka.partition``; the record's offset is the message's offset in its
partition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from dataflare import PluginError, PluginIOError, Record

from ._base import Backlog, PartitionLag, Position, Source, SourceBatch
from ._kafka_config import (
    BrokerWatch,
    KafkaSourceConfig,
    check_topic,
    client_settings,
    describe,
)
from ._partitions import PartitionPositions

__all__ = ["KafkaSource"]

log = logging.getLogger("dataflare.kafka")

RESERVED_PREFIX = "kafka."
"""Metadata the source adds itself; the sink does not write these keys as headers."""

_PROBE_S = 2.0


class KafkaSource(Source):
    """Every partition of ``topic``; positions are the partitions' next offsets."""

    Config = KafkaSourceConfig
    config: KafkaSourceConfig

    def __init__(self, config: KafkaSourceConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self.what = describe(config, "source")
        self._watch = BrokerWatch(self.what, config.broker_timeout_s)
        self._consumer: Consumer | None = None
        self._next: dict[int, int] = {}
        self._starts: dict[int, int] = {}
        self._at_end: set[int] = set()
        self._interrupted = False
        self._only: frozenset[int] | None = None  # restrict(): the partitions a worker reads
        self.offsets_in_transactions = False
        """Set by a transactional sink: it commits the group's offsets, :meth:`ack` does not."""

    # -- positions ----------------------------------------------------------------------------

    def check_position(self, position: Position) -> None:
        """Refuse a position of another topic or connector."""
        if not (
            isinstance(position, dict)
            and isinstance(position.get("offsets"), dict)
            and all(
                str(p).isdigit() and isinstance(o, int) for p, o in position["offsets"].items()
            )
        ):
            raise PluginError(f"{self.what}: {repr(position)[:80]} is not a kafka position")
        if position.get("topic") != self.config.topic:
            raise PluginError(
                f"{self.what}: the checkpoint holds offsets of topic {position.get('topic')!r}"
            )

    def _position(self) -> Position:
        return {"topic": self.config.topic, "offsets": {str(p): o for p, o in self._next.items()}}

    # -- partitions: the topic's (see _partitions) --

    def partitions(self) -> list[str]:
        """The topic's partitions, asked of the broker (one line when it does not answer)."""
        probe = Consumer(client_settings(self.config, self._watch, {"group.id": self.config.group}))
        try:
            return [str(p) for p in check_topic(probe, self.config, self._watch)]
        finally:
            _close(probe, self.what)

    def partitions_end(self) -> bool:
        """Only with ``stop_when_caught_up``: otherwise a partition is read for as long as
        the pipeline runs."""
        return self.config.stop_when_caught_up

    def restrict(self, names: Sequence[str]) -> None:
        """Read only the partitions numbered ``names``."""
        self._only = frozenset(int(n) for n in names)

    def split_position(self, position: Position | None) -> PartitionPositions:
        """Each partition's offset as a position of its own."""
        if not position:
            return PartitionPositions({})
        self.check_position(position)
        topic, offsets = self.config.topic, position["offsets"]
        return PartitionPositions(
            {str(p): {"topic": topic, "offsets": {str(p): o}} for p, o in offsets.items()}
        )

    def join_positions(self, positions: PartitionPositions) -> Position:
        """Every partition's offset in one position."""
        offsets: dict[str, int] = {}
        for position in positions.at.values():
            if position:
                offsets.update(position["offsets"])
        return {"topic": self.config.topic, "offsets": offsets}

    def committed_offsets(self, position: Position) -> list[TopicPartition]:
        """``position``'s offsets as the group's, never behind where this run started (a
        checkpoint older than the group's offsets must not move them back)."""
        offsets = dict(self._starts)
        for partition, offset in position["offsets"].items():
            offsets[int(partition)] = max(int(offset), offsets.get(int(partition), -1))
        return [TopicPartition(self.config.topic, p, o) for p, o in sorted(offsets.items())]

    def group_metadata(self) -> Any:
        """The consumer group's metadata, for ``send_offsets_to_transaction``."""
        return self._connected().consumer_group_metadata()

    # -- lifecycle ----------------------------------------------------------------------------

    def connect(self, position: Position | None) -> None:
        config = self.config
        self._consumer = Consumer(
            client_settings(
                config,
                self._watch,
                {
                    "group.id": config.group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": config.start_offset,
                    # Only what producers committed: a transaction aborted by a crash is skipped.
                    "isolation.level": "read_committed",
                    # The one consumer queue's bound, whatever the number of partitions
                    # (librdkafka's default, 64 MiB, holds four times this).
                    "queued.max.messages.kbytes": config.prefetch_kb,
                },
            )
        )
        partitions = check_topic(self._consumer, config, self._watch)
        if self._only is not None:
            partitions = [p for p in partitions if p in self._only]
        starts = self._start_offsets(partitions, position)
        self._next = dict(starts)
        self._starts = dict(starts)
        self._at_end.clear()
        self._consumer.assign(
            [TopicPartition(config.topic, p, offset) for p, offset in starts.items()]
        )

    def _start_offsets(self, partitions: list[int], position: Position | None) -> dict[int, int]:
        """Where each partition starts: checkpoint, else group (the later of the two under
        exactly-once), else ``start_offset`` resolved to a number now so that the checkpoint
        holds where this run began."""
        consumer = self._connected()
        topic = self.config.topic
        saved = {int(p): int(o) for p, o in (position or {}).get("offsets", {}).items()}
        try:
            committed = {
                tp.partition: tp.offset
                for tp in consumer.committed(
                    [TopicPartition(topic, p) for p in partitions],
                    timeout=self.config.connect_timeout_s,
                )
                if tp.offset >= 0
            }
        except KafkaException as exc:
            raise PluginIOError(
                f"{self.what}: cannot read the offsets of group {self.config.group!r}: "
                f"{exc.args[0].str()}; check the group's ACLs, or wait for the broker to load "
                "them and rerun"
            ) from None
        starts: dict[int, int] = {}
        for partition in partitions:
            if partition in saved and self.offsets_in_transactions:
                starts[partition] = max(saved[partition], committed.get(partition, -1))
            elif partition in saved:
                starts[partition] = saved[partition]
            elif partition in committed:
                starts[partition] = committed[partition]
            else:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self.config.connect_timeout_s
                )
                starts[partition] = low if self.config.start_offset == "earliest" else high
        return starts

    def _connected(self) -> Consumer:
        if self._consumer is None:
            raise PluginIOError(f"{self.what} is not connected")
        return self._consumer

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        consumer = self._connected()
        if self._interrupted:
            return SourceBatch([], self._position())
        try:
            messages = consumer.consume(max_records, timeout_s)
        except KafkaException as exc:
            raise PluginIOError(f"{self.what}: read failed: {exc.args[0].str()}") from None
        records: list[Record] = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(self._record(message))
                continue
            partition = message.partition()
            if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                self._watch.answered()
                self._at_end.add(partition)
            elif error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise self._topic_gone()
            elif error.fatal() or not error.retriable():
                raise PluginIOError(f"{self.what}: read failed: {error.str()}")
        if records:
            self._watch.answered()
        elif self.config.stop_when_caught_up and len(self._at_end) == len(self._next):
            return None
        elif self._watch.down_for() > self._watch.timeout_s:
            self._probe()
        return SourceBatch(records, self._position())

    def backlog(self) -> Backlog | None:
        """Offsets left in each partition: its end as the last fetch saw it (no round trip)
        minus the next offset to read; none once the partition was read to its end."""
        consumer = self._consumer
        if consumer is None:
            return None
        partitions = []
        for partition, position in sorted(self._next.items()):
            if partition in self._at_end:
                lag = 0
            else:
                try:
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(self.config.topic, partition), cached=True
                    )
                except KafkaException:
                    return None
                if high < 0:  # not fetched yet: unknown
                    return None
                lag = max(high - position, 0)
            partitions.append(PartitionLag(str(partition), lag, position))
        return Backlog(sum(p.lag for p in partitions), "offsets", tuple(partitions))

    def _record(self, message: Message) -> Record:
        partition = message.partition()
        offset = message.offset()
        assert partition is not None
        assert offset is not None
        self._next[partition] = offset + 1
        self._at_end.discard(partition)
        kind, timestamp = message.timestamp()
        # A consumed message's headers are a list of (name, value) pairs, never a dict.
        headers = cast("list[tuple[str, str | bytes | None]]", message.headers() or [])
        metadata = {name: _text(value) for name, value in headers}
        metadata["kafka.topic"] = self.config.topic
        metadata["kafka.partition"] = str(partition)
        return Record(
            message.value() or b"",
            message.key(),
            None if kind == TIMESTAMP_NOT_AVAILABLE else timestamp,
            metadata,
            offset,
        )

    def _probe(self) -> None:
        """The brokers have not answered for ``broker_timeout_s``: ask once more, then fail;
        and fail if the topic is gone (the client retries a deleted topic's partitions in
        silence: the run would wait for records forever)."""
        try:
            metadata = self._connected().list_topics(self.config.topic, timeout=_PROBE_S)
        except KafkaException:
            raise self._watch.lost() from None
        found = metadata.topics.get(self.config.topic)
        if found is None or (
            found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            raise self._topic_gone()
        self._watch.answered()

    def _topic_gone(self) -> PluginIOError:
        return PluginIOError(
            f"{self.what}: topic {self.config.topic!r} no longer exists (deleted mid-run); "
            "create it again and rerun"
        )

    def ack(self, position: Position) -> None:
        """Commit ``position`` to the consumer group (unless a transaction did), without
        waiting: the checkpoint is what resumes; the group's offsets show the lag."""
        if not position or self._consumer is None or self.offsets_in_transactions:
            return
        try:
            self._consumer.commit(
                offsets=self.committed_offsets(position), asynchronous=True
            )
        except KafkaException as exc:
            log.warning("%s: committing the offsets to its group failed: %s", self.what, exc)

    def interrupt(self) -> None:
        """The pipeline stops: later reads return nothing."""
        self._interrupted = True

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        # librdkafka's close waits for the group coordinator (the offsets committed in
        # ack() still in flight): with the brokers gone, for as long as they stay away.
        # Bounded here: a run whose brokers are lost ends with its one error line.
        closing = threading.Thread(target=_close, args=(consumer, self.what), daemon=True)
        closing.start()
        closing.join(self.config.broker_timeout_s)
        if closing.is_alive():
            log.debug("%s: left closing in the background (no broker answers)", self.what)


def _text(value: str | bytes | None) -> str:
    """A header's value as metadata text (librdkafka hands bytes, or None for a null)."""
    if isinstance(value, str):
        return value
    return (value or b"").decode(errors="replace")


def _close(consumer: Consumer, what: str) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.debug("%s: close: %s", what, exc)
