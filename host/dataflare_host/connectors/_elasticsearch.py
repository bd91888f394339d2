"""Elasticsearch / OpenSearch sink: bulk indexing, idempotent ids, dead-lettered rejects.

``write`` turns records into ``index`` actions and sends a ``_bulk`` request
whenever ``batch_size`` actions or ``max_batch_bytes`` are buffered; ``flush``
sends the rest, and returns only when the server has acknowledged every
action (the server's translog is durable by then), so the pipeline
checkpoints after it. The document id is ``id_field`` of the value, or the
record key: a replay after a crash overwrites the same documents, so the
index ends exactly as if each record were written once.

Failures: a whole request answered 429 or 5xx, or a connection error, and
items answered 429 or 5xx, are sent again with exponential backoff and
jitter (tenacity), at most ``max_retries`` times; then the run fails with
one line (nothing after the last checkpoint is lost: it is written again on
restart). Items the server refuses for good (a mapping conflict, a bad
index name) and records that make no document (not a JSON object, a
missing id or index field) are handed back through :meth:`take_rejected`
with the server's reason, for the pipeline's ``dead_letter``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import attrs
import httpx
import tenacity

from dataflare import ConfigurationError, PluginIOError, Record

from ._base import Rejected, Sink
from ._es_client import BulkClient, Credentials, RetryableError, redact_url
from ._es_documents import BulkAction, DocumentBuilder, IndexTemplate

__all__ = ["ElasticsearchSink", "ElasticsearchSinkConfig"]

log = logging.getLogger("dataflare.connectors.elasticsearch")

T = TypeVar("T")


@attrs.frozen
class ElasticsearchSinkConfig:
    """``connection:`` of the Elasticsearch sink (Elasticsearch 8/9, OpenSearch 2).

    ``url``: the server (``http(s)://host:port``; ``user:password@`` is
    accepted and never shown). ``index``: the target index, optionally a
    template: ``logs-{field:service}-{date:%Y.%m}``. ``id_field``: the value's
    field (dotted path) holding the document id; default: the record key; a
    record with neither gets a server-made id (replays then duplicate it).
    ``username``/``password`` or ``api_key``: credentials, never printed.
    """

    url: str = attrs.field(repr=redact_url)
    index: str
    id_field: str | None = None
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    api_key: str | None = attrs.field(default=None, repr=False)
    batch_size: int = 500
    max_batch_bytes: int = 5_000_000
    max_retries: int = 5
    retry_initial_ms: int = 200
    retry_max_ms: int = 10_000
    timeout_s: float = 30.0
    verify_tls: bool = True


class ElasticsearchSink(Sink):
    """Indexes JSON records with the ``_bulk`` API; see the module docstring."""

    Config = ElasticsearchSinkConfig

    def __init__(self, config: ElasticsearchSinkConfig, params: Mapping[str, str]) -> None:
        super().__init__(config, params)
        self.config: ElasticsearchSinkConfig = config
        _check(config)
        self._builder = DocumentBuilder(IndexTemplate.parse(config.index), config.id_field)
        self._credentials = Credentials(config.username, config.password, config.api_key)
        self._client: BulkClient | None = None
        self._buffer: list[BulkAction] = []
        self._buffered_bytes = 0
        self._rejected: list[Rejected] = []
        self._retried = 0

    def retries(self) -> int:
        """Bulk requests (or the connect check) sent again after a 429/5xx or a timeout."""
        return self._retried

    def takes_concurrent_writers(self) -> bool:
        """Always: each ``_bulk`` request stands alone, whoever sends it."""
        return True

    def write_for(self, partitions: Sequence[str]) -> None:
        """Nothing to set: a writer of some partitions writes as any other."""

    def connect(self) -> None:
        """Check the server answers (a down server fails the run here, in one line)."""
        self._client = BulkClient(
            self.config.url,
            self._credentials,
            timeout_s=self.config.timeout_s,
            verify_tls=self.config.verify_tls,
        )
        server = self._retrying(self._client.server)
        log.info("elasticsearch sink: %s is %s", self._client.url, server)

    def write(self, records: Sequence[Record]) -> None:
        """Buffer records as bulk actions; send a request each time a batch is full."""
        actions, rejected = self._builder.build(records)
        self._rejected.extend(rejected)
        for action in actions:
            self._buffer.append(action)
            self._buffered_bytes += len(action.lines)
            if (
                len(self._buffer) >= self.config.batch_size
                or self._buffered_bytes >= self.config.max_batch_bytes
            ):
                self._send()

    def flush(self) -> None:
        """Send what is buffered; returns once the server acknowledged every action."""
        self._send()

    def take_rejected(self) -> list[Rejected]:
        """Records refused for good since the last call, with the server's reasons."""
        rejected, self._rejected = self._rejected, []
        return rejected

    def close(self) -> None:
        """Release the connection; safe twice.

        Does not send what is still buffered: it was written after the last
        checkpoint, so the next run writes it again anyway, and a closing run
        must not wait out retries against a server that is down.
        """
        if self._client is not None:
            self._client.close()
            self._client = None
        self._buffer.clear()

    # -- sending ----------------------------------------------------------------

    def _send(self) -> None:
        if not self._buffer:
            return
        if self._client is None:
            raise PluginIOError("elasticsearch sink: write before connect()")
        pending = self._buffer
        self._buffer, self._buffered_bytes = [], 0
        client = self._client

        def attempt() -> None:
            nonlocal pending
            items = client.bulk(b"".join(a.lines for a in pending), len(pending))
            retry: list[BulkAction] = []
            first_error = ""
            for action, item in zip(pending, items, strict=True):
                if item.error is None:
                    continue
                if item.retryable:
                    retry.append(action)
                    first_error = first_error or f"{item.status} {item.error}"
                else:
                    reason = client.redact(f"{item.status} {item.error}")
                    self._rejected.append(
                        Rejected(action.record, f"index {action.index!r}: {reason}")
                    )
            pending = retry
            if retry:
                raise RetryableError(
                    f"elasticsearch sink: {len(retry)} action(s) answered 429/5xx by "
                    f"{client.url}/_bulk, e.g. {first_error}"
                )

        self._retrying(attempt)

    def _retrying(self, call: Callable[[], T]) -> T:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.max_retries + 1),
            # Exponential backoff plus jitter, so many sinks retrying do not stampede.
            wait=tenacity.wait_exponential(
                multiplier=self.config.retry_initial_ms / 1000,
                max=self.config.retry_max_ms / 1000,
            )
            + tenacity.wait_random(0, self.config.retry_initial_ms / 1000),
            retry=tenacity.retry_if_exception_type(RetryableError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(call)
        except RetryableError as exc:
            raise PluginIOError(
                f"{exc}; gave up after {self.config.max_retries + 1} attempts (max_retries: "
                f"{self.config.max_retries}); the next run writes again everything after the "
                "last checkpoint"
            ) from exc

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._retried += 1
        log.warning("elasticsearch sink: retrying (attempt %d): %s", state.attempt_number, error)


def _check(config: ElasticsearchSinkConfig) -> None:
    try:
        url = httpx.URL(config.url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(
            f"elasticsearch sink: url {redact_url(config.url)!r} is not a URL ({exc})",
            setting="url",
        ) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"elasticsearch sink: url {redact_url(config.url)!r} must be http(s)://host:port",
            setting="url",
        )
    if config.api_key is not None and config.username is not None:
        raise ConfigurationError(
            "elasticsearch sink: give username/password or api_key, not both", setting="api_key"
        )
    if (config.password is not None) and config.username is None:
        raise ConfigurationError(
            "elasticsearch sink: password without username; add username:", setting="password"
        )
    for name, value, low, high in (
        ("batch_size", config.batch_size, 1, 100_000),
        ("max_batch_bytes", config.max_batch_bytes, 1_000, 500_000_000),
        ("max_retries", config.max_retries, 0, 100),
        ("retry_initial_ms", config.retry_initial_ms, 1, 600_000),
        ("retry_max_ms", config.retry_max_ms, 1, 3_600_000),
    ):
        if not low <= value <= high:
            raise ConfigurationError(
                f"elasticsearch sink: {name} must be from {low:,} to {high:,}, got {value:,}",
                setting=name,
            )
    if not 0 < config.timeout_s <= 3600:
        raise ConfigurationError(
            f"elasticsearch sink: timeout_s must be in (0, 3600], got {config.timeout_s}",
            setting="timeout_s",
        )
