"""Exporters: where events go once they leave the hot path.

This directory sits at the top of the repository and is installed as
``tracedfuture.exporters`` (never as a top-level ``exporters`` package). The
dependency-free exporters live here; ``structlog`` and ``otel`` import their
third-party package only in their own module.

The exporter protocol, whole (the pipeline reads it once, when an exporter is
installed, and asks nothing else of it):

``export(events)``, the one method an exporter needs
    A batch (a sequence) of :class:`tracedfuture.Event`, oldest first, called off
    the event loop's thread. The return value is ignored.
``flush()``, optional
    Called after everything recorded so far was exported, by
    ``Installation.flush()``: write out what is buffered.
``shutdown(stats)``, optional
    Called once, last, at ``uninstall()`` or at the process's exit. ``stats`` is
    what the pipeline counted for this exporter, a mapping of names to ints:
    ``records``, ``untraced_futures``, ``dropped_records``,
    ``overwritten_records``, ``tail_forgotten_futures`` (its installation's
    rings and tail sampling) and ``dropped_events``, ``dropped_futures``,
    ``incomplete_futures``, ``export_failures`` (its own queue). A
    ``shutdown()`` that takes no argument is called without it.
``after_fork()``, optional
    Called in a child after ``fork()``: re-create locks, let go of the
    parent's files. Events exported before the fork are the parent's.
``attach(loop)``, optional
    Called with each event loop the installation starts to trace.
``capture()``, optional
    Called on the loop's thread as each future is created; what it returns
    travels in the ``created`` event's ``context`` (OpenTelemetry's current
    context, for the span links). It must be cheap and must not raise.
``export_lines(data, count)``, optional
    For a writer of trace files: ``data`` is ``count`` events as trace-file
    lines (UTF-8 bytes, see docs/trace-format.md), formatted by the pipeline
    straight from raw records on the exporter's own thread, with no ``Event`` in
    between. An exporter that has it gets lines instead of ``export`` calls
    (except with the ``include_*`` / ``exclude_*`` filters, which decide on events).
``export_records(records, lines)``, optional
    For a writer of trace files into a file descriptor, with ``export_lines``:
    called instead of it with a batch of raw records and the pipeline's line
    writer, whose ``lines.write(records, fd)`` formats them and appends them
    to ``fd`` in one call (with the compiled core, the interpreter lock
    released throughout; ``lines.lines(records)`` gives what ``export_lines``
    would get). Returns how many events the batch made. ``JsonLinesExporter``
    has it.
``inline = True``, optional
    ``export`` never blocks (an in-memory list): it is called by whoever drains,
    the drain thread or the thread calling ``flush()``, ``uninstall()`` or
    ``loop.close()``, which saves a thread hand-off per batch. Otherwise each
    exporter has a thread of its own and a queue bounded in bytes.

Whatever an exporter raises, ``BaseException`` included, is counted and
reported once; it never reaches the traced program, and one that blocks delays
nobody but itself (past ``export_timeout`` at exit, it is abandoned).

A :class:`RawReader` (the flight recorder) takes no events: it reads the recent
window of its installation's raw rings when it needs them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, overload, runtime_checkable

from tracedfuture._core._events import Event

if TYPE_CHECKING:
    from tracedfuture._install import Installation

__all__ = ["Exporter", "ExporterHooks", "JsonLinesExporter", "MemoryExporter", "RawReader"]


@runtime_checkable
class Exporter(Protocol):
    """Receives batches of events, like OpenTelemetry's ``SpanExporter``: the one
    required method. The optional ones are listed in the module docs and in
    :class:`ExporterHooks`."""

    def export(self, events: Sequence[Event], /) -> object:
        """Handle one batch. The return value is ignored.

        ``events`` is a :class:`~collections.abc.Sequence` (``len``, indexing,
        slicing, iteration), not necessarily a list: with the compiled core its
        items are made when they are read, so an exporter that looks at few of
        them pays for few. Copy what you keep (``list(events)``); each read of an
        item may build a new, equal :class:`Event`."""


class ExporterHooks(Exporter, Protocol):
    """An exporter with every optional hook of the protocol, typed (see the
    module docs for what each means). An exporter may have any of them."""

    inline: bool

    def export_lines(self, data: bytes, count: int, /) -> object: ...
    def export_records(self, records: Sequence[tuple[object, ...]], lines: object, /) -> int: ...
    def flush(self) -> object: ...
    def shutdown(self, stats: Mapping[str, int] | None = None, /) -> object: ...
    def after_fork(self) -> object: ...
    def attach(self, loop: asyncio.AbstractEventLoop, /) -> object: ...
    def capture(self) -> object: ...


@runtime_checkable
class RawReader(Protocol):
    """Reads an installation's raw rings instead of taking events (the flight
    recorder): ``raw`` is ``True``; ``max_bytes`` is the ring size it asks for;
    ``bind(installation)`` is called once, and the reader then calls
    ``installation.recent_events()`` when it needs the window, converted then.
    ``attach(loop)`` may be defined too, as for exporters."""

    raw: Literal[True]
    max_bytes: int

    def bind(self, installation: Installation, /) -> object: ...


class MemoryExporter(Sequence[Event]):
    """Keeps every event in memory, for tests and notebooks.

    Reading it (``len``, indexing, iterating, the queries) first delivers what
    has been recorded so far, so a test sees the events of everything that
    already happened. It waits for nothing but itself: other exporters, of this
    installation or of others, may be slow or stuck without delaying a read.

    A task's own life, as asyncio lives it: ``asyncio.run`` adds a done callback
    to the main task (``callback_added``), which is scheduled when it resolves:

    >>> import asyncio, tracedfuture
    >>> memory = MemoryExporter()
    >>> tracedfuture.run(asyncio.sleep(0, "done"), exporters=[memory])
    'done'
    >>> memory.kinds(memory.tasks()[0])
    ['created', 'callback_added', 'resolved', 'callback_scheduled']
    """

    # export() only appends: called on the drain thread, no hand-off.
    inline = True

    def __init__(self) -> None:
        self._events: list[Event] = []
        # Batches delivered since the last read, as the pipeline made them: the
        # compiled core's are sequences whose Events are made when read. They
        # become Events at the next read, so that a program that is traced into
        # memory pays neither for making every event while it runs nor for the
        # collector walking through them (what a test reads, it reads once).
        self._unread: list[Sequence[Event]] = []
        self._lock = threading.Lock()

    def export(self, events: Sequence[Event], /) -> None:
        # A list may be changed by whoever made it; the pipeline's views may not.
        kept = events if isinstance(events, tuple) or type(events).__name__ == "EventView" else tuple(events)
        with self._lock:
            self._unread.append(kept)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._unread.clear()

    def after_fork(self) -> None:
        """In a child after ``fork()``: a fresh lock (the parent's drain thread
        may have held it). The events exported before the fork stay."""
        self._lock = threading.Lock()

    # -- Sequence -----------------------------------------------------------------

    def _snapshot(self) -> list[Event]:
        from tracedfuture._pipeline._drain import RECORDER

        # Only what reaches this exporter: a slow exporter elsewhere must not
        # make a read wait (inline, so the drain itself delivers to it).
        RECORDER.flush(only=self)
        with self._lock:
            for part in self._unread:
                self._events.extend(part)
            self._unread.clear()
            return list(self._events)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._snapshot()[index]

    def __len__(self) -> int:
        return len(self._snapshot())

    def __iter__(self) -> Iterator[Event]:
        return iter(self._snapshot())

    def __repr__(self) -> str:
        with self._lock:
            held = len(self._events) + sum(len(part) for part in self._unread)
        return f"<MemoryExporter events={held}>"

    # -- queries ------------------------------------------------------------------

    def of_kind(self, *kinds: str) -> list[Event]:
        """The events whose kind is one of ``kinds``, in order."""
        return [e for e in self._snapshot() if e.kind in kinds]

    def for_future(self, future_id: int) -> list[Event]:
        """Every event of one future or task, in order."""
        return [e for e in self._snapshot() if e.future_id == future_id]

    def kinds(self, future_id: int | None = None) -> list[str]:
        """The sequence of kinds, for one future or for all."""
        events = self._snapshot() if future_id is None else self.for_future(future_id)
        return [e.kind for e in events]

    def futures(self) -> list[int]:
        """Ids of the traced futures (not tasks), in creation order."""
        return [e.future_id for e in self.of_kind("created") if not e.is_task]

    def tasks(self) -> list[int]:
        """Ids of the traced tasks, in creation order."""
        return [e.future_id for e in self.of_kind("created") if e.is_task]

    def named(self, name: str) -> list[int]:
        """Ids of the futures and tasks that were ever called ``name``."""
        return list(dict.fromkeys(e.future_id for e in self._snapshot() if e.name == name))

    def created(self, future_id: int) -> Event:
        """The ``created`` event of a future (``KeyError`` if there is none)."""
        for e in self.for_future(future_id):
            if e.kind == "created":
                return e
        raise KeyError(future_id)


from tracedfuture.exporters.jsonl import JsonLinesExporter  # noqa: E402 - after the protocol it implements
