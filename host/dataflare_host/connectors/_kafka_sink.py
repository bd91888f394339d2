"""The Kafka sink: one message per record, idempotent; transactional for exactly-once.

A record's key, value and timestamp become the message's; its metadata
becomes headers, except the ``kafka.`` keys the Kafka source adds itself
(``kafka.topic``, ``kafka.partition``). ``flush`` returns once the broker has
every message (``acks=all``); a message it could not deliver fails that flush
and every later one, so the pipeline never checkpoints past a lost record.

Under ``delivery: exactly_once`` (Kafka to Kafka, :meth:`KafkaSink.pair`) the
producer is transactional: each flush commits one transaction holding the
messages written since the last and the source's offsets up to them
(``send_offsets_to_transaction``), the read-process-write pattern. A run
killed mid-transaction leaves it to be aborted when the next run starts (same
``transactional.id``); ``read_committed`` consumers never see its messages. Workers
that read a topic's partitions each write in transactions of their own, under an id
naming their partitions (:func:`writer_id`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dataflare import ConfigurationError, PluginIOError, Record

from ._base import Position, Sink, Source
from ._kafka_config import BrokerWatch, KafkaSinkConfig, check_topic, client_settings, describe
from ._kafka_source import RESERVED_PREFIX, KafkaSource

__all__ = ["KafkaSink", "writer_id"]

log = logging.getLogger("dataflare.kafka")

_Headers = list[tuple[str, str | bytes | None]]


def writer_id(base: str, partitions: Sequence[str]) -> str:
    """The transactional id of the one writer of ``partitions``: ``base.p0-2`` (a digest
    of them past 64 characters). Stable for the same partitions, so a writer started in a
    crashed one's place fences it."""
    named = "-".join(partitions)
    if len(named) > 64:
        named = hashlib.sha256(",".join(partitions).encode()).hexdigest()[:16]
    return f"{base}.p{named}"


class KafkaSink(Sink):
    """Produces records to ``topic``; transactional once :meth:`pair` ed with a Kafka source."""

    Config = KafkaSinkConfig
    config: KafkaSinkConfig

    def __init__(self, config: KafkaSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self.what = describe(config, "sink")
        self._watch = BrokerWatch(self.what, config.broker_timeout_s)
        self._producer: Producer | None = None
        self._failure: str | None = None
        # -- exactly once --
        self._source: KafkaSource | None = None
        self._transactional_id: str | None = None
        self._in_transaction = False
        self._position: Position | None = None
        self._committed: Position | None = None

    def pair(self, source: Source, transactional_id: str) -> None:
        """Write in transactions that also commit ``source``'s offsets (exactly once).

        Refuses (ConfigurationError) a source that is not a Kafka source: only
        its offsets can be committed in a Kafka transaction.
        """
        if not isinstance(source, KafkaSource):
            raise ConfigurationError(
                f"{self.what}: exactly_once needs a kafka source, not {type(source).__name__}"
            )
        source.offsets_in_transactions = True
        self._source = source
        self._transactional_id = self.config.transactional_id or transactional_id

    def takes_concurrent_writers(self) -> bool:
        """Always: at least once each writer is idempotent alone; exactly once each takes
        a transactional id of its own (:meth:`write_for`)."""
        return True

    def write_for(self, partitions: Sequence[str]) -> None:
        """Transactional: the id names ``partitions``, so the one writer of the same
        partitions after a crash fences the one before and aborts what it left open."""
        if self._transactional_id is not None:
            self._transactional_id = writer_id(self._transactional_id, partitions)

    def stage_position(self, position: Position | None) -> None:
        """The source position the next :meth:`flush` commits with the messages."""
        self._position = position

    def connect(self) -> None:
        config = self.config
        settings: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": config.partitioner,
            "linger.ms": config.linger_ms,
            "compression.type": config.compression,
            # A message not delivered in time fails its flush (the brokers are lost).
            "message.timeout.ms": int(config.broker_timeout_s * 1000),
            "on_delivery": self._delivered,
            "delivery.report.only.error": True,
        }
        if self._transactional_id is not None:
            settings["transactional.id"] = self._transactional_id
            settings["transaction.timeout.ms"] = max(60_000, settings["message.timeout.ms"])
        self._producer = Producer(client_settings(config, self._watch, settings))
        check_topic(self._producer, config, self._watch)
        if self._transactional_id is not None:
            # Fences an older producer of this id and aborts what it left open.
            producer = self._producer
            timeout = config.connect_timeout_s + config.broker_timeout_s
            self._transact("starting transactions", lambda: producer.init_transactions(timeout))

    def _connected(self) -> Producer:
        if self._producer is None:
            raise PluginIOError(f"{self.what} is not connected")
        if self._failure is not None:
            raise PluginIOError(self._failure)
        return self._producer

    def write(self, records: Sequence[Record]) -> None:
        producer = self._connected()
        if self._transactional_id is not None and not self._in_transaction:
            self._transact("beginning a transaction", producer.begin_transaction)
            self._in_transaction = True
        topic = self.config.topic
        produce = producer.produce
        for record in records:
            metadata = record.metadata
            headers: _Headers | None = (
                [
                    (name, value.encode())
                    for name, value in metadata.items()
                    if not name.startswith(RESERVED_PREFIX)
                ]
                if metadata
                else None
            )
            try:
                # Positional: topic, value, key (the hot loop; no keyword dict per record).
                produce(topic, record.value, record.key,
                        timestamp=record.timestamp or 0, headers=headers or None)
            except BufferError:
                self._produce_when_room(producer, topic, record, headers)
            except KafkaException as exc:
                self._fail(f"producing failed: {exc.args[0].str()}")
        producer.poll(0)

    def _produce_when_room(
        self, producer: Producer, topic: str, record: Record, headers: _Headers | None
    ) -> None:
        """The local queue is full: serve deliveries until there is room (backpressure)."""
        deadline = time.monotonic() + self.config.broker_timeout_s
        while True:
            producer.poll(0.1)
            if self._failure is not None:
                raise PluginIOError(self._failure)
            try:
                producer.produce(topic, record.value, record.key,
                                 timestamp=record.timestamp or 0, headers=headers or None)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    self._fail(f"the send queue stayed full for {self.config.broker_timeout_s:g} s")
            except KafkaException as exc:
                self._fail(f"producing failed: {exc.args[0].str()}")

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        """librdkafka's delivery report, for failed messages only (a report per delivered
        message would be a Python call per record)."""
        if error is not None and self._failure is None:
            self._failure = self._failed_line(f"a message was not delivered: {error.str()}")

    def _failed_line(self, why: str) -> str:
        return (
            f"{self.what}: {why}; the run stops here: check Kafka and rerun the pipeline: it "
            "resumes from its last checkpoint"
        )

    def _fail(self, why: str) -> None:
        self._failure = self._failed_line(why)
        raise PluginIOError(self._failure)

    def flush(self) -> None:
        if self._producer is None:
            return
        producer = self._connected()
        # Past message.timeout.ms every message is delivered or failed: this returns.
        remaining = producer.flush(self.config.broker_timeout_s + 10)
        if self._failure is not None:
            raise PluginIOError(self._failure)
        if remaining:
            self._fail(f"{remaining} message(s) were not delivered in time")
        if self._transactional_id is not None:
            self._commit_transaction(producer)

    def _commit_transaction(self, producer: Producer) -> None:
        position = self._position
        if not self._in_transaction and position == self._committed:
            return  # nothing written nor read since the last commit
        if not self._in_transaction:
            self._transact("beginning a transaction", producer.begin_transaction)
            self._in_transaction = True
        source = self._source
        assert source is not None
        if position is not None:
            self._transact(
                "adding the source's offsets to the transaction",
                lambda: producer.send_offsets_to_transaction(
                    source.committed_offsets(position),
                    source.group_metadata(),
                    self.config.broker_timeout_s,
                ),
            )
        self._transact(
            "committing the transaction",
            lambda: producer.commit_transaction(self.config.broker_timeout_s),
        )
        self._in_transaction = False
        self._committed = position

    def _transact(self, doing: str, call: Callable[[], object]) -> None:
        """One transactional call; any failure fails the sink for good (the next run aborts
        what is left open and resumes from the last committed transaction)."""
        try:
            call()
        except KafkaException as exc:
            self._fail(f"{doing} failed: {exc.args[0].str()}")

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._failure is not None:
            # Nothing more can be delivered in order: drop the queue, so that destroying the
            # producer does not wait for brokers that are gone.
            producer.purge()
            producer.flush(0)
        elif self._in_transaction:
            # Unflushed: what the pipeline did not checkpoint is written again by the next run.
            try:
                producer.abort_transaction(self.config.broker_timeout_s)
            except KafkaException as exc:
                log.debug("%s: abort on close: %s", self.what, exc)
        else:
            remaining = producer.flush(self.config.broker_timeout_s)
            if remaining:
                log.warning("%s: %d message(s) not delivered at close", self.what, remaining)
