"""JsonLinesExporter: events to a trace file, one JSON object per line."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from tracedfuture._events import Event
from tracedfuture.trace import event_to_json, header

__all__ = ["JsonLinesExporter"]


class JsonLinesExporter:
    """Writes a trace file that ``tracedfuture tree|stats|html|perfetto`` read.

    >>> import asyncio, tracedfuture
    >>> from tracedfuture.exporters import JsonLinesExporter
    >>> tracedfuture.run(asyncio.sleep(0), exporters=[JsonLinesExporter("trace.jsonl")])  # doctest: +SKIP

    The header is written when the exporter is created; each batch is appended
    and flushed to the operating system, so a crash loses at most the batch being
    written (the reader tolerates its truncated last line). ``shutdown()`` adds a
    ``stats`` line and closes the file.
    """

    def __init__(self, path: str | os.PathLike[str], **header_fields: Any) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: io.TextIOWrapper | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self.events_written = 0
        anchor = (time.time_ns(), time.monotonic_ns())
        self._write_line(header(*anchor, **header_fields))

    def __repr__(self) -> str:
        return f"JsonLinesExporter({self.path!r})"

    def _write_line(self, obj: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")

    def export(self, events: Sequence[Event], /) -> None:
        with self._lock:
            if self._file is None:
                return
            dumps = json.dumps
            lines = [dumps(event_to_json(e), separators=(",", ":"), ensure_ascii=False) for e in events]
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
            self.events_written += len(lines)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def shutdown(self, stats: dict[str, Any] | None = None) -> None:
        with self._lock:
            if self._file is None:
                return
            from tracedfuture._pipeline import RECORDER

            summary = {"events_written": self.events_written, **RECORDER.counters(), **(stats or {})}
            self._write_line({"stats": summary})
            self._file.close()
            self._file = None
