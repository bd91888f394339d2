"""The Redis Streams source (consumer groups, ack after the sink) and sink, on a real server."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from support.servers import RedisServer

from dataflare import ConfigurationError, PluginIOError, Record
from dataflare_host.connectors import RedisSink, RedisSinkConfig, RedisSource, RedisSourceConfig

pytestmark = pytest.mark.server


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def stream() -> str:
    """A stream name no other test uses."""
    return f"s-{uuid.uuid4().hex[:10]}"


def source_for(url: str, stream: str, **options: Any) -> RedisSource:
    options.setdefault("start_id", "0")
    options.setdefault("stop_when_caught_up", True)
    return RedisSource(RedisSourceConfig(url=url, stream=stream, **options), {})


def add(url: str, stream: str, count: int, start: int = 0) -> None:
    client = redis.Redis.from_url(url)
    for i in range(start, start + count):
        client.xadd(stream, {"value": f"v{i}", "key": f"k{i}"})
    client.close()


def values(records: list[Record]) -> list[str]:
    return [r.value.decode() for r in records]


def read_all(source: RedisSource, max_records: int = 100) -> tuple[list[Record], Any]:
    records: list[Record] = []
    position = None
    while (batch := source.read(max_records, 0.5)) is not None:
        records.extend(batch.records)
        position = batch.position
    return records, position


def pending(url: str, stream: str, group: str = "dataflare") -> int:
    client = redis.Redis.from_url(url)
    count = int(client.xpending(stream, group)["pending"])
    client.close()
    return count


def test_sink_then_source_round_trip(url: str, stream: str) -> None:
    """What the sink adds the source reads back: value, key, and offsets counted from 0."""
    sent = [Record(b"\x00\xffbinary", b"k0", offset=10), Record(b'{"a":1}', None, offset=11),
            Record(b"", b"k2", offset=12)]
    with RedisSink(RedisSinkConfig(url=url, stream=stream), {}) as sink:
        sink.connect()
        sink.write(sent)
        assert redis.Redis.from_url(url).xlen(stream) == 0  # buffered until flush
        sink.flush()
    with source_for(url, stream) as source:
        source.connect(None)
        records, position = read_all(source)
    assert [(r.value, r.key) for r in records] == [(r.value, r.key) for r in sent]
    assert [r.offset for r in records] == [0, 1, 2]
    assert all(r.timestamp and r.timestamp > 1_600_000_000_000 for r in records)
    assert position["offset"] == 3
    assert position["id"] == records[-1].metadata["id"]


def test_unacked_entries_are_redelivered_after_a_crash_acked_ones_are_not(
    url: str, stream: str
) -> None:
    """A new source object of the same consumer re-reads exactly what was never acked."""
    add(url, stream, 10)
    with source_for(url, stream) as crashed:
        crashed.connect(None)
        first = crashed.read(4, 0.5)
        second = crashed.read(4, 0.5)
        assert first is not None
        assert second is not None
        crashed.ack(first.position)  # the sink flushed only the first batch
    assert pending(url, stream) == 4
    with source_for(url, stream) as restarted:
        restarted.connect(first.position)
        records, position = read_all(restarted, 3)
        assert values(records) == [f"v{i}" for i in range(4, 10)]
        assert [r.offset for r in records] == list(range(4, 10))
        restarted.ack(position)
    assert pending(url, stream) == 0
    with source_for(url, stream) as after:
        after.connect(position)
        assert after.read(10, 0.1) is None


def test_another_consumer_claims_a_dead_consumers_entries(url: str, stream: str) -> None:
    """With claim_idle_ms, entries a dead consumer left pending are taken over, and acked."""
    add(url, stream, 5)
    dead = source_for(url, stream, consumer="dead")
    dead.connect(None)
    assert len(dead.read(3, 0.5).records) == 3  # type: ignore[union-attr]
    dead.close()  # never acks
    add(url, stream, 2, start=5)
    time.sleep(0.06)
    with source_for(url, stream, consumer="heir", claim_idle_ms=50) as heir:
        heir.connect(None)
        records, position = read_all(heir)
        heir.ack(position)
    assert sorted(values(records)) == [f"v{i}" for i in range(7)]
    assert pending(url, stream) == 0


def test_a_claimed_entry_already_in_flight_is_not_delivered_twice(url: str, stream: str) -> None:
    """XAUTOCLAIM also returns our own slow entries: they are not handed out again."""
    add(url, stream, 3)
    with source_for(url, stream, claim_idle_ms=20) as source:
        source.connect(None)
        batch = source.read(10, 0.5)
        assert batch is not None
        assert len(batch.records) == 3
        time.sleep(0.03)
        assert source.read(10, 0.1) is None


def test_an_endless_source_waits_for_new_entries(url: str, stream: str) -> None:
    """Without stop_when_caught_up an empty read is an empty batch; later entries arrive."""
    source = RedisSource(RedisSourceConfig(url=url, stream=stream, start_id="$", block_ms=50), {})
    with source:
        source.connect(None)
        started = time.monotonic()
        empty = source.read(10, 1.0)
        assert empty is not None
        assert empty.records == []
        assert time.monotonic() - started < 0.5
        add(url, stream, 2)
        batch = source.read(10, 1.0)
    assert batch is not None
    assert values(list(batch.records)) == ["v0", "v1"]


def test_entries_without_a_value_field_become_json(url: str, stream: str) -> None:
    """An entry another producer wrote with its own fields is passed on as a JSON object."""
    redis.Redis.from_url(url).xadd(stream, {"temp": "21", "room": "b"})
    with source_for(url, stream) as source:
        source.connect(None)
        records, _ = read_all(source)
    assert [r.json() for r in records] == [{"temp": "21", "room": "b"}]


def test_sink_maxlen_caps_the_stream(url: str, stream: str) -> None:
    """maxlen trims the stream (approximately: never below the cap)."""
    with RedisSink(RedisSinkConfig(url=url, stream=stream, maxlen=10), {}) as sink:
        sink.connect()
        sink.write([Record(b"x", offset=i) for i in range(500)])
    assert 10 <= redis.Redis.from_url(url).xlen(stream) < 500


def test_connection_errors_name_the_url_without_password() -> None:
    """An unreachable server is a PluginIOError; the password is masked."""
    source = source_for("redis://user:hunter2@127.0.0.1:1/0", "s")
    with pytest.raises(PluginIOError, match=r"cannot connect to redis://user:\*\*\*@127.0.0.1:1"):
        source.connect(None)
    with pytest.raises(ConfigurationError, match="block_ms"):
        RedisSourceConfig(stream="s", block_ms=-1)


@given(st.lists(st.tuples(st.binary(max_size=20), st.none() | st.binary(max_size=5)),
                max_size=20))
def test_any_batch_survives_the_round_trip(redis_server: RedisServer,
                                           batch: list[tuple[bytes, bytes | None]]) -> None:
    """Any values and keys, including empty and non-UTF-8 bytes, come back unchanged."""
    stream = f"p-{uuid.uuid4().hex[:10]}"
    with RedisSink(RedisSinkConfig(url=redis_server.url, stream=stream), {}) as sink:
        sink.connect()
        sink.write([Record(value, key) for value, key in batch])
    with source_for(redis_server.url, stream) as source:
        source.connect(None)
        records, _ = read_all(source, 7)
    assert [(r.value, r.key) for r in records] == batch
