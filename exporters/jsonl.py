"""JsonLinesExporter: events to a trace file, one JSON object per line."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tracedfuture import _core
from tracedfuture._core._events import Event
from tracedfuture._files import DropBehind
from tracedfuture._tracefile import encode_line, event_to_json, header, open_private

__all__ = ["JsonLinesExporter"]

logger = logging.getLogger("tracedfuture")

# After a write error, the whole lines of the failed write are kept but for this
# many bytes: room for the stats line that says what happened.
_STATS_ROOM = 1024


def _one_call(cls: type) -> bool:
    """Whether ``cls.export_records`` writes a batch itself: no subclass overrode
    ``export_lines`` below the class whose ``export_records`` it has."""
    for klass in cls.__mro__:
        if "export_records" in vars(klass):
            return True
        if "export_lines" in vars(klass):
            return False
    return True


class JsonLinesExporter:
    """Writes a trace file that ``tracedfuture tree|stats|html|perfetto`` read.

    >>> import asyncio, tracedfuture
    >>> from tracedfuture.exporters import JsonLinesExporter
    >>> tracedfuture.run(asyncio.sleep(0), exporters=[JsonLinesExporter("trace.jsonl")])  # doctest: +SKIP

    The file is created readable by its owner only (``0600``), and never through
    a symbolic link, into a FIFO or device, or into a file someone else owns:
    such a path raises ``tracedfuture._files.Refused`` (an ``OSError``) naming
    it (``trace.open_private``). The header is
    written when the exporter is created; each batch is appended straight to the
    operating system, so a crash loses at most the batch being written (the reader
    tolerates its truncated last line). ``shutdown()`` adds a ``stats`` line, with
    every drop counter, and closes the file.

    When a write fails (a full disk, a file size limit), the file is cut back to
    its last whole line and ends with a ``stats`` line whose ``write_error`` says
    what happened; later events are counted in ``events_lost``, once reported.

    After ``fork()``, a child never writes into its parent's file: its events go
    to a file of its own, named with its pid (``trace.jsonl`` becomes
    ``trace.<pid>.jsonl``), created when the child first has something to write.
    """

    def __init__(self, path: str | os.PathLike[str], **header_fields: Any) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._header_fields = header_fields
        self.events_written = 0
        self.events_lost = 0
        self.write_error: str | None = None
        self._size = 0  # bytes written, always whole lines
        self._fd: int | None = None
        self._behind: DropBehind | None = None  # with the descriptor
        self._parent_pid: int | None = None
        self._pending_open = False
        self._one_call = _one_call(type(self))
        self._open()

    def __repr__(self) -> str:
        return f"JsonLinesExporter({self.path!r})"

    def _open(self) -> None:
        self._fd = open_private(self.path)
        self._behind = DropBehind(self._fd)
        self._size = 0
        anchor = (time.time_ns(), time.monotonic_ns())
        fields = dict(self._header_fields)
        if self._parent_pid is not None:
            fields["parent_pid"] = self._parent_pid
        self._write(encode_line(header(*anchor, **fields)))

    def _ready(self) -> bool:
        """Whether there is a file to write to (a forked child opens its own now)."""
        if self._pending_open:
            self._pending_open = False
            try:
                self._open()
            except OSError as exc:
                self._failed(exc)
        return self._fd is not None and self.write_error is None

    def _write(self, data: bytes) -> None:
        """Write whole lines; on failure, keep the whole lines that were written
        (but for room for the stats line), raise, and leave the file at its last
        whole line."""
        assert self._fd is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                # os.write; the compiled core's takes the GIL back sooner (_core.write)
                written += _core.write(self._fd, view[written:])
        except OSError as exc:
            self._cut_back(data, written, exc)
            raise
        self._size += written
        self._behind.wrote(self._size)  # type: ignore[union-attr]  # set with the descriptor

    def _cut_back(self, data: bytes, written: int, exc: OSError) -> None:
        """After a write of ``data`` failed with ``exc`` (``written`` of its bytes
        went through): keep its whole lines but for room for the stats line,
        leave the file at its last whole line, and say in ``exc.lines_written``
        how many lines were kept."""
        assert self._fd is not None
        keep = data.rfind(b"\n", 0, max(0, written - _STATS_ROOM)) + 1
        try:
            if written:
                os.ftruncate(self._fd, self._size + keep)
                os.lseek(self._fd, self._size + keep, os.SEEK_SET)  # ftruncate leaves the offset
        except OSError:
            keep = 0
        self._size += keep
        exc.lines_written = data.count(b"\n", 0, keep)  # type: ignore[attr-defined]

    def _failed(self, exc: OSError) -> None:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        self.write_error = f"{reason} after {self.events_written} events"
        logger.warning(
            "tracedfuture: could not write to the trace %s (%s); it ends after %d events",
            self.path,
            reason,
            self.events_written,
        )
        self._close(self._summary())

    def export(self, events: Sequence[Event], /) -> None:
        import json  # the events' way; a trace file's usual way is export_lines

        dumps = json.dumps
        text = "\n".join([dumps(event_to_json(e), separators=(",", ":"), ensure_ascii=False) for e in events])
        self.export_lines((text + "\n").encode("utf-8", "backslashreplace") if events else b"", len(events))

    def export_lines(self, data: bytes, count: int, /) -> None:
        """Append ``count`` events already written as trace-file lines.

        What the pipeline calls instead of :meth:`export`: it formats the lines
        of a trace file straight from its raw records, with no event objects in
        between (the same bytes :meth:`export` writes for those events)."""
        with self._lock:
            if not self._ready():
                self.events_lost += count
                return
            if not count:
                return
            try:
                self._write(data)
            except OSError as exc:
                self._lost(exc, count)
                return
            self.events_written += count

    def export_records(self, records: Sequence[Any], lines: Any, /) -> int:
        """Append the lines of a batch of raw records, formatted and written by
        ``lines`` (the pipeline's line writer) in one call: with the compiled
        core, the interpreter lock is released from the first record to the
        last byte, and taken back once. Returns how many events (lines) the
        batch made, written or not.

        What the pipeline calls instead of :meth:`export_lines`, for the same
        bytes; a subclass that overrides :meth:`export_lines` (and not this) gets
        its lines there, as before."""
        if not self._one_call:
            data, count = lines.lines(records)
            if count:
                self.export_lines(data, count)
            return int(count)
        with self._lock:
            if not self._ready():
                _, count = lines.lines(records)
                self.events_lost += count
                return int(count)
            count, written, error, data = lines.write(records, self._fd)
            if error is None:
                self._size += written
                self._behind.wrote(self._size)  # type: ignore[union-attr]  # set with the descriptor
                self.events_written += count
                return int(count)
            self._cut_back(data, written, error)
            self._lost(error, count)
            return int(count)

    def _lost(self, exc: OSError, count: int) -> None:
        """A write of ``count`` events failed: what it kept is counted written,
        the rest lost, and the file is finished."""
        kept = getattr(exc, "lines_written", 0)
        self.events_written += kept
        self.events_lost += count - kept
        self._failed(exc)

    def flush(self) -> None:
        """Nothing to do: every batch is written to the operating system at once."""

    def after_fork(self) -> None:
        """In a child after ``fork()``: let go of the parent's file, without
        writing to it, and write the child's events to a file named with its pid."""
        self._lock = threading.Lock()  # the parent's sink thread may have held it
        fd, self._fd = self._fd, None
        behind, self._behind = self._behind, None
        if behind is not None:
            behind.close()  # the child's copy of its descriptor; the parent's thread is not here
        if fd is None or self.write_error is not None:
            return
        try:
            os.close(fd)
        except OSError:
            pass
        self._parent_pid = os.getppid()
        root, ext = os.path.splitext(self.path)
        self.path = f"{root}.{os.getpid()}{ext}"
        self.events_written = self.events_lost = 0
        self._pending_open = True

    def _summary(self, stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
        summary = {
            "events_written": self.events_written,
            # When the file was finished: what was still pending is measured to here.
            "end_ns": time.monotonic_ns(),
            # What the pipeline counted for this file (given to shutdown).
            **(stats or {}),
        }
        if self.write_error is not None:
            summary["write_error"] = self.write_error
            summary["events_lost"] = self.events_lost
        return summary

    def _close(self, summary: dict[str, Any]) -> None:
        fd, self._fd = self._fd, None
        behind, self._behind = self._behind, None
        if behind is not None:
            behind.close()
        if fd is None:
            return
        try:
            # Best effort after a write error: cutting the partial line back
            # usually leaves room for this one.
            os.write(fd, encode_line({"stats": summary}))
        except OSError:
            pass
        finally:
            os.close(fd)

    def shutdown(self, stats: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            if self._pending_open and not self._ready():
                return
            if self._fd is None:
                if self.write_error is not None and self.events_lost:
                    logger.warning(
                        "tracedfuture: %d events after the write error were not written to %s",
                        self.events_lost,
                        self.path,
                    )
                return
            self._close(self._summary(stats))
