"""The ``_bulk`` HTTP API of Elasticsearch 8/9 and OpenSearch 2, spoken through httpx.

The official Elasticsearch client refuses servers that are not Elasticsearch
(it checks a product header and sends ``compatible-with=8`` media types), so
the sink speaks the one API both servers share itself: ``GET /`` to check the
server, ``POST /_bulk`` with NDJSON. Credentials are taken out of the URL and
sent as a header; every message this module builds shows the URL without them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import attrs
import httpx

from dataflare import PluginIOError
from dataflare_host._closing import Closing

__all__ = ["BulkClient", "BulkItem", "Credentials", "RetryableError", "redact_url"]

RETRYABLE_STATUS = frozenset({429, 502, 503, 504, 500})
"""HTTP statuses worth retrying: overload (429) and server-side failures."""


class RetryableError(PluginIOError):
    """A failure that may pass on its own (429, 5xx, a connection error): retry it."""


@attrs.frozen
class Credentials:
    """Basic auth or an API key; never shown (repr hides the secrets)."""

    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    api_key: str | None = attrs.field(default=None, repr=False)

    def header(self) -> str | None:
        """The ``Authorization`` header value (None: anonymous)."""
        if self.api_key is not None:
            return f"ApiKey {self.api_key}"
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return f"Basic {base64.b64encode(pair).decode()}"
        return None

    def secrets(self) -> list[str]:
        """The values that must never appear in a message."""
        return [s for s in (self.password, self.api_key) if s]


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username="***", password=None))


@attrs.frozen
class BulkItem:
    """The server's answer for one action of a bulk request."""

    status: int
    error: str | None
    """``type: reason`` of a failed item (None when it succeeded)."""

    @property
    def retryable(self) -> bool:
        """Whether sending the action again may succeed (the node was busy or failing)."""
        return self.error is not None and self.status in RETRYABLE_STATUS


class BulkClient(Closing):
    """One server: check it, send bulk bodies, read back one result per action."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        timeout_s: float,
        verify_tls: bool,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.userinfo:
            # user:password in the URL is accepted, moved into the header, and never shown.
            credentials = attrs.evolve(
                credentials,
                username=credentials.username or parsed.username,
                password=credentials.password or parsed.password,
            )
            parsed = parsed.copy_with(username=None, password=None)
        self.url = str(parsed).rstrip("/")
        self._secrets = [*credentials.secrets(), *([parsed.password] if parsed.password else [])]
        headers = {"Accept": "application/json"}
        header = credentials.header()
        if header is not None:
            headers["Authorization"] = header
        self._client = httpx.Client(
            headers=headers, timeout=timeout_s, verify=verify_tls, follow_redirects=False
        )

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def server(self) -> str:
        """``distribution version`` of the server, e.g. ``opensearch 2.19.6``."""
        body = self._json(self._request("GET", "/"), "GET /")
        version = body.get("version", {}) if isinstance(body, dict) else {}
        return f"{version.get('distribution', 'elasticsearch')} {version.get('number', '?')}"

    def bulk(self, body: bytes, expected: int) -> list[BulkItem]:
        """POST ``body`` to ``/_bulk``; one item per action, in order."""
        response = self._request(
            "POST", "/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        answer = self._json(response, "POST /_bulk")
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != expected:
            raise PluginIOError(
                f"elasticsearch sink: {self.url}/_bulk answered {len(items or [])} items for "
                f"{expected} actions; is this an Elasticsearch or OpenSearch server?"
            )
        return list(_items(items))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"{method} {self.url}{path}"
        try:
            response = self._client.request(method, self.url + path, **kwargs)
        except httpx.TransportError as exc:
            raise RetryableError(
                self.redact(f"elasticsearch sink: {where} failed: {type(exc).__name__}: {exc}")
            ) from exc
        if response.status_code in RETRYABLE_STATUS:
            raise RetryableError(self._status_message(where, response))
        if response.status_code >= 400:
            raise PluginIOError(self._status_message(where, response))
        return response

    def _status_message(self, where: str, response: httpx.Response) -> str:
        reason = _error_text(response)
        hint = {
            401: "; check username/password or api_key",
            403: "; the credentials lack the right to write this index",
            413: "; lower batch_size or max_batch_bytes",
        }.get(response.status_code, "")
        return self.redact(
            f"elasticsearch sink: {where} answered {response.status_code}"
            f"{f': {reason}' if reason else ''}{hint}"
        )

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise PluginIOError(
                f"elasticsearch sink: {what} on {self.url} did not answer JSON "
                f"({response.text[:80]!r})"
            ) from exc

    def close(self) -> None:
        """Close the connection pool (safe twice)."""
        self._client.close()


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    error = body.get("error") if isinstance(body, dict) else None
    return _reason(error) if error is not None else json.dumps(body)[:200]


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            text += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
        return text
    return str(error)


def _items(items: Iterable[Any]) -> Iterable[BulkItem]:
    for item in items:
        # One key per item, the action's name: "index" here.
        result = next(iter(item.values())) if isinstance(item, dict) and item else {}
        status = int(result.get("status", 500)) if isinstance(result, dict) else 500
        error = result.get("error") if isinstance(result, dict) else "malformed item"
        yield BulkItem(status, None if error is None and status < 300 else _reason(error))
