"""Kafka connectors' settings (``connection:``) and the librdkafka client they make.

Both connectors share where the brokers are and how to authenticate; the
source adds its consumer group and start, the sink its partitioner and
transactions. ``sasl_password`` is kept out of every repr and message.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from dataflare import ConfigurationError, PluginIOError

__all__ = [
    "BrokerWatch",
    "KafkaConnection",
    "KafkaSinkConfig",
    "KafkaSourceConfig",
    "client_settings",
    "describe",
]

log = logging.getLogger("dataflare.kafka")

_BOOTSTRAP = re.compile(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}\Z")
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@attrs.frozen(kw_only=True)
class KafkaConnection:
    """Where the brokers are and how to reach them.

    ``bootstrap_servers``: ``host:port`` pairs separated by commas.
    ``security_protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) with
    ``sasl_mechanism`` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), ``sasl_username``
    and ``sasl_password`` (write ``${KAFKA_PASSWORD}``: never the secret itself).
    ``options`` passes any other librdkafka setting as is (``ssl.ca.location``...).
    ``connect_timeout_s`` bounds the check at start that the brokers answer;
    ``broker_timeout_s`` how long the brokers may be unreachable mid-run before
    the run fails (it then resumes from its last checkpoint when run again).
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = attrs.field(default=None, repr=False)
    # Only the names: an option may hold a secret (ssl.key.password, sasl.oauthbearer...).
    options: dict[str, str] = attrs.field(factory=dict, repr=lambda o: repr(sorted(o)))
    connect_timeout_s: float = 10.0
    broker_timeout_s: float = 30.0

    def __attrs_post_init__(self) -> None:
        what = type(self).__name__.removesuffix("Config").replace("Kafka", "kafka ").lower()
        servers = [part.strip() for part in self.bootstrap_servers.split(",")]
        if not all(_BOOTSTRAP.match(part) for part in servers):
            raise ConfigurationError(
                f"{what}: bootstrap_servers {self.bootstrap_servers!r} is not a list of "
                "host:port separated by commas (e.g. 127.0.0.1:9092)",
                setting="bootstrap_servers",
            )
        if not self.topic:
            raise ConfigurationError(f"{what}: topic must not be empty", setting="topic")
        if self.security_protocol is not None and self.security_protocol.upper() not in _PROTOCOLS:
            raise ConfigurationError(
                f"{what}: security_protocol {self.security_protocol!r} is not one of "
                f"{', '.join(_PROTOCOLS)}",
                setting="security_protocol",
            )
        for name in ("connect_timeout_s", "broker_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigurationError(
                    f"{what}: {name} must be more than 0 and at most 3600", setting=name
                )


@attrs.frozen(kw_only=True)
class KafkaSourceConfig(KafkaConnection):
    """``connection:`` of the Kafka source.

    Reads every partition of ``topic``. A partition resumes from the
    pipeline's checkpoint; without one, from the offset ``group`` committed,
    else from ``start_offset`` (``earliest`` or ``latest``). The offsets are
    committed to ``group`` after each checkpoint, so Kafka's tools show the
    lag. With ``stop_when_caught_up`` the source ends once it has read every
    partition to its end; otherwise it waits for new records. ``prefetch_kb``
    bounds what the client fetches ahead of the pipeline, over all partitions
    together: a slow sink holds the reading back, with any number of partitions.
    """

    group: str = "dataflare"
    start_offset: Literal["earliest", "latest"] = "earliest"
    stop_when_caught_up: bool = False
    prefetch_kb: int = 16384

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if isinstance(self.prefetch_kb, bool) or not 64 <= self.prefetch_kb <= 2_097_151:
            raise ConfigurationError(
                f"kafka source: prefetch_kb must be a whole number of KiB from 64 to 2097151, "
                f"got {self.prefetch_kb!r}",
                setting="prefetch_kb",
            )


@attrs.frozen(kw_only=True)
class KafkaSinkConfig(KafkaConnection):
    """``connection:`` of the Kafka sink.

    Produces one message per record to ``topic`` (key, value, timestamp, and the
    record's metadata as headers), idempotently with ``acks=all``. Records are
    spread by key with ``partitioner`` (default ``murmur2_random``: the Java
    client's, so a key lands where Java producers put it). ``linger_ms`` and
    ``compression`` (gzip, snappy, lz4, zstd) tune batching. With the pipeline's
    ``delivery: exactly_once`` it writes in transactions under
    ``transactional_id`` (default ``dataflare.<pipeline>.<sink id>``: keep it
    stable across runs, unique across pipelines).
    """

    partitioner: str = "murmur2_random"
    linger_ms: int = 5
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    transactional_id: str | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Kafka fences by this id: a blank one would be every such pipeline's.
        if self.transactional_id is not None and not self.transactional_id.strip():
            raise ConfigurationError(
                "kafka sink: transactional_id must not be empty; leave it out for the "
                "default (dataflare.<pipeline>.<sink id>) or name it",
                setting="transactional_id",
            )


def describe(config: KafkaConnection, role: str) -> str:
    """How errors name a Kafka connector: its role, topic and brokers (never credentials)."""
    return f"kafka {role} (topic {config.topic} at {config.bootstrap_servers})"


def client_settings(
    config: KafkaConnection, watch: BrokerWatch, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """librdkafka's settings for ``config``: ours, then ``extra``, then the user's ``options``."""
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "error_cb": watch.error,
        "logger": _DebugLog(),
        # librdkafka logs every closed idle connection as an error otherwise.
        "log.connection.close": False,
        **extra,
    }
    for name, value in (
        ("security.protocol", config.security_protocol),
        ("sasl.mechanism", config.sasl_mechanism),
        ("sasl.username", config.sasl_username),
        ("sasl.password", config.sasl_password),
    ):
        if value is not None:
            settings[name] = value
    settings.update(config.options)
    return settings


class _DebugLog:
    """librdkafka's own log lines, at debug level: our errors say what went wrong in one
    line, and its connection-refused chatter would drown them."""

    def log(self, _level: int, message: str, *args: object) -> None:
        """Log one librdkafka line."""
        log.debug(message, *args)


class BrokerWatch:
    """What librdkafka reports about the brokers (its error callback), and since when
    none has answered.

    librdkafka retries unreachable brokers forever by itself; this bounds that:
    :meth:`check` fails once they have been unreachable ``timeout_s`` in a row.
    """

    def __init__(self, what: str, timeout_s: float) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.last_error: str | None = None
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def error(self, error: Any) -> None:
        """librdkafka's error callback (runs in the thread that polls the client)."""
        with self._lock:
            self.last_error = str(error.str())
            if self._down_since is None:
                self._down_since = time.monotonic()
            fatal = bool(error.fatal())
        log.debug("%s: %s", self.what, self.last_error)
        if fatal:
            raise PluginIOError(f"{self.what}: {self.last_error}")

    def answered(self) -> None:
        """A broker answered (a message or an end of partition came): not down."""
        with self._lock:
            self._down_since = None

    def down_for(self) -> float:
        """Seconds since the brokers stopped answering (0 while they answer)."""
        with self._lock:
            return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    def lost(self) -> PluginIOError:
        """The error for brokers unreachable longer than ``timeout_s`` mid-run."""
        return PluginIOError(
            f"{self.what}: no broker answered for {self.timeout_s:g} s "
            f"({self.last_error or 'no reply'}); the run stops here: start Kafka again (or "
            "raise broker_timeout_s) and rerun the pipeline: it resumes from its last checkpoint"
        )

    def unreachable(self, timeout_s: float, cause: str) -> PluginIOError:
        """The error for brokers that did not answer at start."""
        detail = self.last_error or cause
        if "resolve" in detail.lower():
            return PluginIOError(
                f"{self.what}: cannot connect ({detail}); check bootstrap_servers: the host "
                "name does not resolve"
            )
        return PluginIOError(
            f"{self.what}: no broker answered within {timeout_s:g} s ({detail}); start "
            "Kafka there or fix bootstrap_servers"
        )


def check_topic(client: Any, config: KafkaConnection, watch: BrokerWatch) -> list[int]:
    """The partitions of ``config.topic``, once a broker answered (else one clear error).

    Asks for every topic's metadata, not the topic's: a request naming a missing
    topic would create it on brokers that auto-create topics.
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + config.connect_timeout_s
    while True:
        try:
            metadata = client.list_topics(timeout=min(1.0, config.connect_timeout_s))
            break
        except KafkaException as exc:
            cause = str(exc.args[0].str())
        client.poll(0)  # serves the error callback: what librdkafka saw, for the message
        resolving = "resolve" in (watch.last_error or "").lower()
        if resolving or time.monotonic() >= deadline:
            raise watch.unreachable(config.connect_timeout_s, cause)
    watch.answered()
    topic = metadata.topics.get(config.topic)
    if topic is None or topic.error is not None:
        raise PluginIOError(
            f"{watch.what}: topic {config.topic!r} does not exist; create it (kafka-topics.sh "
            f"--create --topic {config.topic} --partitions N) or fix topic: in the pipeline"
        )
    return sorted(topic.partitions)
