"""Redis Streams: a consumer-group source (acknowledged after the sinks wrote) and a sink.

The source reads as one consumer of a consumer group. On connect it first
re-reads the entries this consumer was given but never acknowledged (a crash
left them pending), then new ones. ``ack()`` XACKs every entry delivered up to
the acknowledged position, so an entry is acknowledged only after every sink
flushed it: at least once. With ``claim_idle_ms`` it also takes over (XAUTOCLAIM)
entries that another consumer left pending longer than that: a dead worker's.
"""

from __future__ import annotations

import collections
import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import redis

from dataflare import ConfigurationError, PluginIOError, Record

from ._base import Position, Sink, Source, SourceBatch

__all__ = ["RedisSink", "RedisSinkConfig", "RedisSource", "RedisSourceConfig"]

_Entry = tuple[bytes, dict[bytes, bytes] | None]


def _describe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def _client(url: str, what: str) -> redis.Redis:
    try:
        client = redis.Redis.from_url(url)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise PluginIOError(f"{what}: cannot connect to {_describe_url(url)}: {exc}") from exc
    return client


@attrs.frozen
class RedisSourceConfig:
    """``connection:`` of the Redis Streams source.

    Reads ``stream`` as ``consumer`` of ``group`` (the group, and the stream, are
    created when missing, the group starting at ``start_id``: ``$`` for entries
    added from now on, ``0`` for the whole stream). A read waits at most
    ``block_ms`` for new entries. ``claim_idle_ms`` (off by default) takes over
    entries other consumers left unacknowledged that long. With
    ``stop_when_caught_up`` the source ends once nothing is pending or new.

    Each entry's field ``value`` is the record value (an entry without one
    becomes a JSON object of all its fields) and field ``key``, if present, the
    record key; the timestamp is the entry ID's milliseconds.
    """

    stream: str
    url: str = "redis://127.0.0.1:6379/0"
    group: str = "dataflare"
    consumer: str = "dataflare-1"
    block_ms: int = 1000
    start_id: str = "$"
    claim_idle_ms: int | None = None
    stop_when_caught_up: bool = False

    def __attrs_post_init__(self) -> None:
        if self.block_ms < 0:
            raise ConfigurationError("redis source: block_ms must not be negative")
        if self.claim_idle_ms is not None and self.claim_idle_ms < 1:
            raise ConfigurationError("redis source: claim_idle_ms must be at least 1")


class RedisSource(Source):
    """Entries of a stream, as one consumer of a consumer group; XACKed in ``ack()``."""

    Config = RedisSourceConfig
    config: RedisSourceConfig

    def __init__(self, config: RedisSourceConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._client: redis.Redis | None = None
        self._offset = 0
        self._last_id: str | None = None
        # (offset, entry id) of every entry delivered and not yet acknowledged, in order.
        self._delivered: collections.deque[tuple[int, bytes]] = collections.deque()
        self._unacked: set[bytes] = set()
        self._pending_cursor: bytes | None = b"0"
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0
        self._what = f"redis source (stream {config.stream}, group {config.group})"

    def connect(self, position: Position | None) -> None:
        config = self.config
        self._client = _client(config.url, self._what)
        if position:
            self._offset = int(position.get("offset", 0))
            self._last_id = position.get("id")
        # Re-read our own pending entries first; whatever was delivered before
        # and not acknowledged comes again with them.
        self._pending_cursor = b"0"
        self._delivered.clear()
        self._unacked.clear()
        try:
            self._client.xgroup_create(
                config.stream, config.group, id=config.start_id, mkstream=True
            )
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise PluginIOError(f"{self._what}: cannot create the group: {exc}") from exc
        except redis.RedisError as exc:
            raise PluginIOError(f"{self._what}: {exc}") from exc

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        if self._client is None:
            raise PluginIOError(f"{self._what} is not connected")
        try:
            records = self._read(max_records, timeout_s)
        except redis.RedisError as exc:
            raise PluginIOError(f"{self._what}: read failed: {exc}") from exc
        if records is None:
            return None
        return SourceBatch(records, self._position())

    def _read(self, max_records: int, timeout_s: float) -> list[Record] | None:
        assert self._client is not None
        config = self.config
        if self._pending_cursor is not None:
            entries = self._xreadgroup(self._pending_cursor, max_records, None)
            if entries:
                self._pending_cursor = entries[-1][0]
                return self._deliver(entries)
            self._pending_cursor = None
        if config.claim_idle_ms is not None and time.monotonic() >= self._next_claim:
            records = self._claim(max_records)
            if records:
                return records
        # Caught up means nothing new right now: do not wait for more then.
        block = 0 if config.stop_when_caught_up else min(config.block_ms, int(timeout_s * 1000))
        entries = self._xreadgroup(b">", max_records, block if block > 0 else None)
        if entries:
            return self._deliver(entries)
        if config.stop_when_caught_up:
            return None
        return []

    def _xreadgroup(self, cursor: bytes, count: int, block: int | None) -> list[_Entry]:
        assert self._client is not None
        config = self.config
        reply: Any = self._client.xreadgroup(
            config.group, config.consumer, {config.stream: cursor}, count=count, block=block
        )
        if not reply:
            return []
        # One stream asked for: RESP2 replies [[stream, entries]], RESP3 {stream: [entries]}.
        if isinstance(reply, dict):
            (entries,) = reply.values()
            return list(entries[0] if entries and isinstance(entries[0], list) else entries)
        return list(reply[0][1])

    def _claim(self, max_records: int) -> list[Record]:
        assert self._client is not None
        config = self.config
        idle = config.claim_idle_ms
        assert idle is not None
        reply: Any = self._client.xautoclaim(
            config.stream,
            config.group,
            config.consumer,
            min_idle_time=idle,
            start_id=self._claim_cursor,
            count=max_records,
        )
        cursor, entries = reply[0], reply[1]
        self._claim_cursor = cursor
        if cursor in (b"0-0", "0-0"):
            # A full pass over the pending entries: look again in a while, not every read.
            self._next_claim = time.monotonic() + idle / 2000
        # XAUTOCLAIM also takes our own entries that the pipeline holds for long:
        # they are already on their way, so do not deliver them twice.
        fresh = [entry for entry in entries if entry[0] not in self._unacked]
        return self._deliver(fresh)

    def _deliver(self, entries: list[_Entry]) -> list[Record]:
        assert self._client is not None
        records = []
        gone = []
        for entry_id, fields in entries:
            if fields is None:  # deleted or trimmed while pending: nothing left to deliver
                gone.append(entry_id)
                continue
            records.append(self._record(entry_id, fields))
            self._delivered.append((self._offset - 1, entry_id))
            self._unacked.add(entry_id)
            self._last_id = entry_id.decode()
        if gone:
            self._client.xack(self.config.stream, self.config.group, *gone)
        return records

    def _record(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Record:
        value = fields.get(b"value")
        if value is None:
            value = json.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()},
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode()
        milliseconds = entry_id.split(b"-", 1)[0]
        record = Record(
            value,
            fields.get(b"key"),
            int(milliseconds),
            {"stream": self.config.stream, "id": entry_id.decode()},
            self._offset,
        )
        self._offset += 1
        return record

    def _position(self) -> Position:
        return {"id": self._last_id, "offset": self._offset}

    def ack(self, position: Position) -> None:
        """XACK every entry delivered before ``position`` (in delivery order)."""
        if not position or self._client is None:
            return
        upto = int(position["offset"])
        done: list[tuple[int, bytes]] = []
        while self._delivered and self._delivered[0][0] < upto:
            done.append(self._delivered.popleft())
        if not done:
            return
        ids = [entry_id for _, entry_id in done]
        try:
            self._client.xack(self.config.stream, self.config.group, *ids)
        except redis.RedisError as exc:
            self._delivered.extendleft(reversed(done))  # still unacknowledged
            raise PluginIOError(f"{self._what}: XACK failed: {exc}") from exc
        self._unacked.difference_update(ids)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@attrs.frozen
class RedisSinkConfig:
    """``connection:`` of the Redis Streams sink.

    XADDs one entry per record to ``stream`` with fields ``value``, ``offset``
    and (when the record has one) ``key``. ``maxlen`` caps the stream's length
    (approximately, which is much cheaper). A batch retried after a crash is
    added again: streams have no upsert, so readers must tolerate duplicates.
    """

    stream: str
    url: str = "redis://127.0.0.1:6379/0"
    maxlen: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.maxlen is not None and self.maxlen < 1:
            raise ConfigurationError("redis sink: maxlen must be at least 1")


class RedisSink(Sink):
    """XADDs records to a stream; ``flush`` sends the buffered batch in one MULTI/EXEC."""

    Config = RedisSinkConfig
    config: RedisSinkConfig

    def __init__(self, config: RedisSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self._client: redis.Redis | None = None
        self._buffer: list[dict[str, bytes | int]] = []
        self._what = f"redis sink (stream {config.stream})"

    def connect(self) -> None:
        self._client = _client(self.config.url, self._what)

    def write(self, records: Sequence[Record]) -> None:
        if self._client is None:
            raise PluginIOError(f"{self._what} is not connected")
        for record in records:
            fields: dict[str, bytes | int] = {"value": record.value, "offset": record.offset}
            if record.key is not None:
                fields["key"] = record.key
            self._buffer.append(fields)

    def flush(self) -> None:
        if self._client is None or not self._buffer:
            return
        config = self.config
        # One MULTI/EXEC: the batch lands whole or not at all. The buffer is kept
        # when it fails, so flushing again retries it.
        pipeline = self._client.pipeline(transaction=True)
        for fields in self._buffer:
            pipeline.xadd(
                config.stream,
                fields,  # type: ignore[arg-type]
                maxlen=config.maxlen,
                approximate=True,
            )
        try:
            pipeline.execute()
        except redis.RedisError as exc:
            raise PluginIOError(
                f"{self._what}: writing {len(self._buffer)} entries failed: {exc}"
            ) from exc
        finally:
            pipeline.reset()
        self._buffer.clear()

    def close(self) -> None:
        if self._client is not None:
            try:
                self.flush()
            finally:
                self._client.close()
                self._client = None
