"""Records as Elasticsearch bulk actions: target index, document id, JSON body.

The index may be a template: ``{field:NAME}`` is a field of the record's JSON
value (dots reach into nested objects) and ``{date}`` / ``{date:FORMAT}`` the
UTC date of the record's timestamp (strftime, default ``%Y.%m.%d``); ``{{``
and ``}}`` are literal braces. Templating by the record, never by the clock,
keeps a replay writing every document to the index it went to the first time.
"""

from __future__ import annotations

import datetime
import json
import string
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from dataflare import ConfigurationError, Record

from ._base import Rejected

__all__ = ["BulkAction", "DocumentBuilder", "IndexTemplate"]

_DEFAULT_DATE = "%Y.%m.%d"


@attrs.frozen
class _Part:
    kind: Literal["text", "field", "date"]
    value: str


@attrs.frozen
class IndexTemplate:
    """A parsed ``index:`` setting; :meth:`render` names one record's index."""

    text: str
    parts: tuple[_Part, ...]

    @classmethod
    def parse(cls, text: str) -> IndexTemplate:
        """Parse ``text``; a ConfigurationError (setting ``index``) says what is wrong."""
        if not text:
            raise ConfigurationError("elasticsearch sink: index must not be empty", setting="index")
        parts: list[_Part] = []
        try:
            pieces = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ConfigurationError(
                f"elasticsearch sink: index {text!r} is not a valid template ({exc}); "
                "use {field:NAME} or {date:%Y.%m.%d}, and {{ }} for literal braces",
                setting="index",
            ) from exc
        for literal, name, spec, _conversion in pieces:
            if literal:
                parts.append(_Part("text", literal))
            if name is None:
                continue
            if name == "field" and spec:
                parts.append(_Part("field", spec))
            elif name == "date":
                parts.append(_Part("date", spec or _DEFAULT_DATE))
            else:
                shown = "{" + name + (f":{spec}" if spec else "") + "}"
                raise ConfigurationError(
                    f"elasticsearch sink: index {text!r} has {shown}; a placeholder is "
                    "{field:NAME} (a field of the record) or {date} / {date:FORMAT} "
                    "(the record's timestamp, UTC)",
                    setting="index",
                )
        return cls(text, tuple(parts))

    def render(self, record: Record, document: dict[str, Any]) -> str:
        """The index for ``record``; raises ValueError saying what the record lacks."""
        out: list[str] = []
        for part in self.parts:
            if part.kind == "text":
                out.append(part.value)
            elif part.kind == "field":
                out.append(_scalar_text(_field(document, part.value), f"field {part.value!r}"))
            else:
                if record.timestamp is None:
                    raise ValueError(f"index {self.text!r} needs a timestamp; the record has none")
                moment = datetime.datetime.fromtimestamp(record.timestamp / 1000, datetime.UTC)
                out.append(moment.strftime(part.value))
        return "".join(out)


@attrs.frozen
class BulkAction:
    """One ``index`` action of a bulk request and the record it came from."""

    record: Record
    index: str
    id: str | None
    lines: bytes
    """The action line and the source line, each ending in a newline (NDJSON)."""


@attrs.frozen
class DocumentBuilder:
    """Turns records into bulk actions, or into rejections saying why not."""

    template: IndexTemplate
    id_field: str | None = None

    def build(self, records: Sequence[Record]) -> tuple[list[BulkAction], list[Rejected]]:
        """Actions for the records that make documents; the others, rejected with a reason."""
        actions: list[BulkAction] = []
        rejected: list[Rejected] = []
        for record in records:
            try:
                actions.append(self._action(record))
            except ValueError as exc:
                rejected.append(Rejected(record, f"not indexable: {exc}"))
        return actions, rejected

    def _action(self, record: Record) -> BulkAction:
        try:
            document = json.loads(record.value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"the value is not JSON ({exc})") from exc
        if not isinstance(document, dict):
            raise ValueError(f"the value is JSON {type(document).__name__}, not an object")
        index = self.template.render(record, document)
        if self.id_field is not None:
            doc_id: str | None = _scalar_text(_field(document, self.id_field), "id_field")
        elif record.key is not None:
            doc_id = record.key.decode("utf-8", "backslashreplace")
        else:
            doc_id = None  # the server picks one: replays then duplicate (documented)
        meta: dict[str, str] = {"_index": index}
        if doc_id is not None:
            meta["_id"] = doc_id
        # Re-encoded compactly: a pretty-printed value would break the NDJSON framing.
        lines = (
            json.dumps({"index": meta}, separators=(",", ":"), ensure_ascii=False)
            + "\n"
            + json.dumps(document, separators=(",", ":"), ensure_ascii=False)
            + "\n"
        ).encode()
        return BulkAction(record, index, doc_id, lines)


def _field(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            raise ValueError(f"the value has no field {path!r}")
        value = value[name]
    return value


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} is {json.dumps(value)[:40]}, not a string or number")
    text = str(value)
    if not text:
        raise ValueError(f"{what} is empty")
    return text
