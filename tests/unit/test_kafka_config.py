"""Kafka connector settings and ``delivery: exactly_once``, checked before anything connects
(no broker needed: tests/kafka runs them against one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dataflare import ConfigurationError, PluginError
from dataflare_host.connectors import KafkaSinkConfig, KafkaSource, KafkaSourceConfig
from dataflare_host.pipeline import Pipeline
from dataflare_host.pipeline._schema import pipeline_schema


@pytest.mark.parametrize("servers", ["", "host", "host:port", "a:9092;b:9092", "a b:9092"])
def test_a_bootstrap_address_that_is_not_host_port_is_refused(servers: str) -> None:
    with pytest.raises(ConfigurationError, match=r"bootstrap_servers .* is not a list of host"):
        KafkaSourceConfig(bootstrap_servers=servers, topic="t")


def test_several_brokers_and_ipv6_are_accepted() -> None:
    KafkaSinkConfig(bootstrap_servers="a:9092, b.example:9093,[::1]:9094", topic="t")


def test_the_sasl_password_is_never_shown() -> None:
    config = KafkaSourceConfig(topic="t", sasl_username="me", sasl_password="s3cret-value",
                               options={"ssl.key.password": "other-secret"})
    assert "s3cret-value" not in repr(config)
    assert "other-secret" not in repr(config)
    assert "'me'" in repr(config)
    assert "ssl.key.password" in repr(config)


@pytest.mark.parametrize(("key", "value"), [("connect_timeout_s", 0), ("broker_timeout_s", -1)])
def test_timeouts_must_be_positive(key: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=key) as raised:
        KafkaSinkConfig(topic="t", **{key: value})
    assert raised.value.setting == key


@pytest.mark.parametrize("value", ["", "  "])
def test_a_blank_transactional_id_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="transactional_id must not be empty") as caught:
        KafkaSinkConfig(topic="t", transactional_id=value)
    assert caught.value.setting == "transactional_id"
    KafkaSinkConfig(topic="t", transactional_id="orders.enrich")


@pytest.mark.parametrize("value", [0, 63, 2_097_152, True])
def test_prefetch_is_bounded_and_named_when_wrong(value: int) -> None:
    wanted = "prefetch_kb must be a whole number of KiB"
    with pytest.raises(ConfigurationError, match=wanted) as caught:
        KafkaSourceConfig(topic="t", prefetch_kb=value)
    assert caught.value.setting == "prefetch_kb"


def test_prefetch_reaches_the_client_as_its_queue_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prefetch_kb`` becomes librdkafka's bound on the one consumer queue."""
    from dataflare_host.connectors import _kafka_source

    made: list[dict[str, Any]] = []

    class Stop(Exception):
        pass

    def consumer(settings: dict[str, Any]) -> None:
        made.append(settings)
        raise Stop

    monkeypatch.setattr(_kafka_source, "Consumer", consumer)
    with pytest.raises(Stop):
        KafkaSource(KafkaSourceConfig(topic="t", prefetch_kb=2048), {}).connect(None)
    assert made[0]["queued.max.messages.kbytes"] == 2048


def test_a_position_of_another_topic_is_refused() -> None:
    source = KafkaSource(KafkaSourceConfig(topic="orders"), {})
    source.check_position({"topic": "orders", "offsets": {"0": 5, "3": 0}})
    with pytest.raises(PluginError, match="offsets of topic 'payments'"):
        source.check_position({"topic": "payments", "offsets": {"0": 5}})
    with pytest.raises(PluginError, match="is not a kafka position"):
        source.check_position({"path": "in.jsonl", "line": 3})


def kafka(topic: str) -> dict[str, Any]:
    return {"plugin_type": "kafka", "connection": {"topic": topic}}


def file(path: str) -> dict[str, Any]:
    return {"plugin_type": "file", "connection": {"path": path}}


def pipeline(tmp_path: Path, source: dict[str, Any], sink: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "name": "eos",
        **top,
        "sources": [{"id": "in", "type": "plugin", "config": source}],
        "sinks": [{"id": "out", "type": "plugin", "config": sink}],
    }, sort_keys=False))
    return path


def test_exactly_once_kafka_to_kafka_is_accepted(tmp_path: Path) -> None:
    """Nothing connects while the pipeline loads: no broker is needed to pair them."""
    loaded = Pipeline.from_file(
        pipeline(tmp_path, kafka("a"), kafka("b"), delivery="exactly_once")
    )
    try:
        (source,) = loaded.sources
        assert isinstance(source, KafkaSource)
        assert source.offsets_in_transactions
    finally:
        loaded.close()


@pytest.mark.parametrize(
    ("source", "sink", "named"),
    [
        (file("in.jsonl"), kafka("b"), "source 'in' (file), sink 'out' (kafka)"),
        (kafka("a"), file("out.jsonl"), "source 'in' (kafka), sink 'out' (file)"),
    ],
)
def test_exactly_once_is_refused_unless_kafka_to_kafka(
    tmp_path: Path, source: dict[str, Any], sink: dict[str, Any], named: str
) -> None:
    (tmp_path / "in.jsonl").write_text("")
    path = pipeline(tmp_path, source, sink, delivery="exactly_once")
    with pytest.raises(ConfigurationError) as raised:
        Pipeline.from_file(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:2: delivery: exactly_once needs one kafka source and one "
                              "kafka sink")
    assert named in message
    assert message.endswith("use delivery: at_least_once")


def test_exactly_once_refuses_a_dead_letter_sink(tmp_path: Path) -> None:
    path = pipeline(tmp_path, kafka("a"), kafka("b"), delivery="exactly_once",
                    dead_letter={"id": "dead", "type": "plugin", "config": kafka("dlq")})
    with pytest.raises(ConfigurationError, match="exactly_once cannot include a dead_letter"):
        Pipeline.from_file(path)


def test_delivery_defaults_to_at_least_once_and_is_in_the_schema(tmp_path: Path) -> None:
    loaded = Pipeline.from_file(pipeline(tmp_path, kafka("a"), kafka("b")))
    try:
        assert loaded.config.delivery == "at_least_once"
        assert not loaded.sources[0].offsets_in_transactions  # type: ignore[attr-defined]
    finally:
        loaded.close()
    assert pipeline_schema()["properties"]["delivery"] == {
        "enum": ["at_least_once", "exactly_once"]
    }


def test_a_wrong_delivery_value_is_a_located_error(tmp_path: Path) -> None:
    path = pipeline(tmp_path, kafka("a"), kafka("b"), delivery="twice")
    with pytest.raises(ConfigurationError, match=r"p\.yaml:2: delivery"):
        Pipeline.from_file(path)
