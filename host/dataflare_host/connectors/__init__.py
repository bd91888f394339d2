"""Connectors: where pipelines read records from (sources) and write them to (sinks).

Built in: ``file`` (JSONL, CSV, lines, lossless ``records``; a file, directory or
glob), ``stdin`` / ``stdout``, ``generator``, ``postgres``, ``redis`` (streams),
``kafka`` and the ``elasticsearch`` sink (Elasticsearch 8/9 and OpenSearch 2, through ``_bulk``).
Third parties add their own through the ``dataflare.sources`` /
``dataflare.sinks`` entry points, and pipelines name one-file source and sink
plugins by ``plugin_path:``; both take the built-ins' path (:mod:`._loader`).

A source or sink plugin subclasses :class:`Source` or :class:`Sink`, declares
its parameters in ``PARAMS`` and runs natively, in the pipeline's process (it
does I/O, which the WASM sandbox forbids).

A batch may come as :class:`DeferredRecords`, made records on first use: a file
source's :class:`LineRecords` (lines in :class:`LineSpan` parts) cross to a
pipeline worker as the lines themselves, and a JSONL or lines file sink writes
:class:`JoinedValues` without making their records.

The PostgreSQL, Redis, Kafka and Elasticsearch connectors import their client
libraries, so they are loaded only when first named: ``import
dataflare_host.connectors`` imports none of psycopg, redis, confluent_kafka, httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflare_host._lazy import lazy_attributes as _lazy_attributes

from ._base import (
    Backlog,
    NoConnection,
    PartitionLag,
    Position,
    Rejected,
    Sink,
    Source,
    SourceBatch,
)
from ._deferred import DeferredRecords
from ._file_config import FileSinkConfig, FileSourceConfig
from ._file_sink import FileSink, JoinedValues
from ._file_source import FileSource
from ._generator import GeneratorConfig, GeneratorSource, generated_value
from ._line_batches import LineRecords, LineSpan
from ._loader import (
    connector_class,
    load_connector_file,
    open_connector,
    resolve_connector_params,
)
from ._partitions import (
    PARTITION_FIELD,
    PartitionedSource,
    PartitionPositions,
    SharedSink,
    SplitSink,
)
from ._records_codec import FORMAT_VERSION, decode_batch, encode_batch
from ._registry import SINK_GROUP, SOURCE_GROUP, ConnectorRegistry
from ._std import StdinConfig, StdinSource, StdoutConfig, StdoutSink

__all__ = [
    "FORMAT_VERSION",
    "PARTITION_FIELD",
    "SINK_GROUP",
    "SOURCE_GROUP",
    "Backlog",
    "PartitionLag",
    "PartitionPositions",
    "PartitionedSource",
    "ConnectorRegistry",
    "DeferredRecords",
    "ElasticsearchSink",
    "ElasticsearchSinkConfig",
    "FileSink",
    "FileSinkConfig",
    "FileSource",
    "FileSourceConfig",
    "GeneratorConfig",
    "GeneratorSource",
    "JoinedValues",
    "KafkaSink",
    "KafkaSinkConfig",
    "KafkaSource",
    "KafkaSourceConfig",
    "LineRecords",
    "LineSpan",
    "NoConnection",
    "Position",
    "SharedSink",
    "SplitSink",
    "PostgresSink",
    "PostgresSinkConfig",
    "PostgresSource",
    "PostgresSourceConfig",
    "RedisSink",
    "RedisSinkConfig",
    "RedisSource",
    "RedisSourceConfig",
    "Rejected",
    "Sink",
    "Source",
    "SourceBatch",
    "StdinConfig",
    "StdinSource",
    "StdoutConfig",
    "StdoutSink",
    "connector_class",
    "decode_batch",
    "encode_batch",
    "generated_value",
    "load_connector_file",
    "open_connector",
    "resolve_connector_params",
]

if TYPE_CHECKING:
    from ._elasticsearch import ElasticsearchSink, ElasticsearchSinkConfig
    from ._kafka_config import KafkaSinkConfig, KafkaSourceConfig
    from ._kafka_sink import KafkaSink
    from ._kafka_source import KafkaSource
    from ._postgres_sink import PostgresSink, PostgresSinkConfig
    from ._postgres_source import PostgresSource, PostgresSourceConfig
    from ._redis import RedisSink, RedisSinkConfig, RedisSource, RedisSourceConfig

__getattr__ = _lazy_attributes(
    __name__,
    {
        "ElasticsearchSink": "_elasticsearch",
        "ElasticsearchSinkConfig": "_elasticsearch",
        "KafkaSink": "_kafka_sink",
        "KafkaSinkConfig": "_kafka_config",
        "KafkaSource": "_kafka_source",
        "KafkaSourceConfig": "_kafka_config",
        "PostgresSink": "_postgres_sink",
        "PostgresSinkConfig": "_postgres_sink",
        "PostgresSource": "_postgres_source",
        "PostgresSourceConfig": "_postgres_source",
        "RedisSink": "_redis",
        "RedisSinkConfig": "_redis",
        "RedisSource": "_redis",
        "RedisSourceConfig": "_redis",
    },
)
