"""Connectors: where pipelines read records from (sources) and write them to (sinks).

Built in: ``file`` (JSONL, CSV, lines; a file, directory or glob), ``stdin`` /
``stdout``, ``generator``, ``postgres`` and ``redis`` (streams). Third parties add
their own through the ``dataflare.sources`` / ``dataflare.sinks`` entry points.
"""

from ._base import Position, Sink, Source, SourceBatch
from ._files import FileSink, FileSinkConfig, FileSource, FileSourceConfig
from ._generator import GeneratorConfig, GeneratorSource, generated_value
from ._postgres_sink import PostgresSink, PostgresSinkConfig
from ._postgres_source import PostgresSource, PostgresSourceConfig
from ._redis import RedisSink, RedisSinkConfig, RedisSource, RedisSourceConfig
from ._registry import SINK_GROUP, SOURCE_GROUP, ConnectorRegistry
from ._std import StdinConfig, StdinSource, StdoutConfig, StdoutSink

__all__ = [
    "SINK_GROUP",
    "SOURCE_GROUP",
    "ConnectorRegistry",
    "FileSink",
    "FileSinkConfig",
    "FileSource",
    "FileSourceConfig",
    "GeneratorConfig",
    "GeneratorSource",
    "Position",
    "PostgresSink",
    "PostgresSinkConfig",
    "PostgresSource",
    "PostgresSourceConfig",
    "RedisSink",
    "RedisSinkConfig",
    "RedisSource",
    "RedisSourceConfig",
    "Sink",
    "Source",
    "SourceBatch",
    "StdinConfig",
    "StdinSource",
    "StdoutConfig",
    "StdoutSink",
    "generated_value",
]
