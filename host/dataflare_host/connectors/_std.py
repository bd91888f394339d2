"""Standard input and standard output, one record per line."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO

from dataflare import PluginIOError, Record

from ._base import NoConnection, Position, Sink, Source, SourceBatch

__all__ = ["StdinConfig", "StdinSource", "StdoutConfig", "StdoutSink"]

# Neither takes a connection key: their Config is the default, NoConnection; these
# names stay importable for code written when each had its own empty class.
StdinConfig = NoConnection
StdoutConfig = NoConnection


class StdinSource(Source):
    """Lines of standard input. A pipe cannot be rewound: positions only count lines."""

    def __init__(
        self, config: NoConnection, params: Mapping[str, str], stream: IO[bytes] | None = None
    ) -> None:
        super().__init__(config, params)
        self._stream = stream
        self._lines: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self._offset = 0
        self._done = False

    def connect(self, position: Position | None) -> None:
        if position:
            self._offset = int(position.get("offset", 0))
        stream = self._stream or sys.stdin.buffer
        # A thread, because a blocking readline cannot honour read()'s timeout.
        threading.Thread(
            target=self._pump, args=(stream,), daemon=True, name="dataflare-stdin"
        ).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._lines.put(line.rstrip(b"\r\n"))
        self._lines.put(None)

    def read(self, max_records: int, timeout_s: float) -> SourceBatch | None:
        if self._done:
            return None
        records: list[Record] = []
        try:
            line = self._lines.get(timeout=timeout_s)
            while True:
                if line is None:
                    self._done = True
                    break
                records.append(Record(line, offset=self._offset))
                self._offset += 1
                if len(records) >= max_records:
                    break
                line = self._lines.get_nowait()
        except queue.Empty:
            pass
        if not records and self._done:
            return None
        return SourceBatch(records, {"offset": self._offset})


class StdoutSink(Sink):
    """Each record's value on its own line of standard output."""

    def __init__(
        self, config: NoConnection, params: Mapping[str, str], stream: IO[bytes] | None = None
    ) -> None:
        super().__init__(config, params)
        self._stream = stream

    def connect(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout.buffer

    def write(self, records: Sequence[Record]) -> None:
        assert self._stream is not None
        for record in records:
            if b"\n" in record.value:
                raise PluginIOError(
                    f"stdout sink: record at offset {record.offset} holds a newline, "
                    "which would split it into two lines"
                )
        if records:
            self._stream.write(b"\n".join(r.value for r in records) + b"\n")

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()
