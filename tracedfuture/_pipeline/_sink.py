"""One isolated delivery thread per exporter, a queue bounded in bytes, and
what keeps an exporter's faults away from the program.

An installation (``_install``) puts each batch on each :class:`Sink`; the sink's
own thread calls the exporter, so one that blocks delays nobody but itself. When
its queue is full, whole futures are dropped (counted), and a future that loses
an event after it was exported is marked ``incomplete``. Whatever it raises,
``BaseException`` included, is counted and logged once through the
``tracedfuture`` logger; after ``max_failures`` failures in a row it is
disabled. Its ``flush()`` and ``shutdown()`` run on its thread and are waited
for until a deadline only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import _core
from .._core import _events as ev
from .._core._events import Event, Site
from ._convert import MARK
from ._drain import RECORDER
from ._hooks import Hooks
from ._process import Started, at_fork, host_pump, host_thread, start_daemon, wake_host

__all__ = ["DEFAULT_QUEUE_BYTES", "RECORD_BYTES", "Sink", "safe_repr", "unicode_safe"]

logger = logging.getLogger("tracedfuture")


_STOP = object()
_FLUSH = object()
_SHUTDOWN = object()

# The estimated size of one queued raw record (every sink queues records and
# converts or formats only what it kept): a struct of 11 slots, or a tuple of 5
# to 14, and its ints.
RECORD_BYTES = 200
DEFAULT_QUEUE_BYTES = 32 * 1024 * 1024
# Futures whose events a sink drops from now on, at most: beyond that the oldest
# are forgotten (a long-lived one may then show a history without its start).
_MAX_SCREENED = 100_000


def safe_repr(obj: object) -> str:
    """``repr(obj)``, or a stand-in if that raises: for log messages about exporters."""
    try:
        return repr(obj)
    except BaseException:  # an observer's repr is its own problem
        return f"<{type(obj).__qualname__} object (repr failed)>"


class Sink:
    """One exporter behind a queue bounded in bytes and a thread of its own.

    An exporter whose ``export`` never blocks (an in-memory ring, say) may set
    ``inline = True``: it is then called by whoever drains (the drain thread while
    loops run; the thread calling ``flush()``, ``uninstall()`` or ``loop.close()``
    for what is left), which saves a thread hand-off per batch. Its failures are
    isolated all the same.

    Whatever the exporter does, the program does not see it: anything it raises,
    ``BaseException`` included, is counted and reported once; ``flush()`` and
    ``shutdown()`` run on the sink's thread (an inline exporter's on a helper
    thread) and are waited for until a deadline, never longer.

    When the queue is full, whole futures are dropped: a future whose ``created``
    event does not fit is not exported at all (``dropped_futures``); once a
    future already exported loses an event, its later events are dropped too and
    an ``incomplete`` event says so (``incomplete_futures``), so no history has a
    silent hole.

    With ``lines`` (a :class:`~tracedfuture._pipeline._lines.Lines`, for an
    exporter that has ``export_lines``, such as a trace file) or ``events`` (an
    :class:`~tracedfuture._pipeline._delivery.Events`, for any other), the queue
    holds raw records, and only what the queue kept is formatted or converted:
    what is shed is never converted at all. ``dropped`` then counts records,
    ``exported`` events (lines). An exporter that also has ``export_records``
    (``JsonLinesExporter``) is given the batch and ``lines`` instead, and
    formats and writes it in one call (``lines.write``). A trace file's sink is
    *hosted*: it has no thread of its own, the drain thread serves its queue between drains
    (``_process.host_pump``), so that a traced program with a trace file sees one
    thread of tracing, not two.
    """

    def __init__(
        self,
        hooks: Hooks,
        *,
        max_failures: int,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
        statistics: Callable[[], Mapping[str, int]] | None = None,
        lines: Any = None,
        events: Any = None,
    ) -> None:
        self.hooks = hooks
        self.exporter = hooks.exporter
        # What the installation counted for this exporter (its rings, tail
        # sampling), asked for when shutdown(stats) is due.
        self._statistics = statistics
        self.max_failures = max_failures
        self.max_bytes = max_bytes
        self.exported = 0
        self.dropped = 0
        self.dropped_futures = 0
        self.incomplete_futures = 0
        self.failures = 0
        self.in_a_row = 0
        self.disabled = False
        self.overran = False
        self._reported = False
        self._overrun_reported = False
        self.inline = hooks.inline
        self._hooks = hooks.called()  # resolved once, when installed (_hooks.resolve)
        self.lines = lines if "export_lines" in self._hooks else None
        # A trace file that formats and writes a batch in one call (export_records).
        self._records = self.lines is not None and "export_records" in self._hooks
        self.events = events if self.lines is None else None
        if self.lines is None and self.events is None:
            msg = "a sink needs lines (for export_lines) or events (for export) to make of its records"
            raise TypeError(msg)
        # What the queue holds, item by item: raw records, (op, future_id, ...).
        self._unit = RECORD_BYTES
        self._queued_bytes = 0
        self._untold: dict[int, None] = {}  # futures not exported at all: their later events too
        self._holed: dict[int, None] = {}  # futures marked incomplete: their later events too
        self._marks: list[Any] = []  # incomplete events (or MARK records) not yet queued
        self._late_marks: dict[int, Any] = {}  # after an overrun (see _abandon)
        self._late_born: set[int] = set()
        self._closing = False
        self._stop_ticket = 0
        self._thread: threading.Thread | None = None
        self._helper: Started | None = None
        # A trace file is served by the drain thread (a slow disk delays the drain,
        # never the program: records wait in the ring); any other exporter, which
        # may block for ever, has a thread of its own.
        self.hosted = self.lines is not None and not self.inline
        self._stopped = False
        self._pump_lock = threading.Lock()  # one pumper at a time: the host, or a waiter without one
        self._fresh_state()
        at_fork("delivery", after_in_child=self.after_fork_in_child)
        if self.hosted:
            host_pump(self._pump)
        elif not self.inline:
            self._start()

    def _fresh_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[Any] = deque()  # batches and _FLUSH / _SHUTDOWN / _STOP
        self._queued_bytes = 0
        # A new future was refused for room since the queue last shrank: full
        # (room for a record or two is no room for a future: every batch would
        # be taken only to be shed, and the ring never held).
        self._refused = False
        self._put = 0  # items ever queued
        self._handled = 0  # items ever taken off the queue and handled

    def _start(self) -> None:
        name = f"tracedfuture-export-{type(self.exporter).__name__}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the drain side ----------------------------------------------------------

    def full(self) -> bool:
        """Whether this sink takes nothing new: disabled, closing, or a queue
        with no room for a new future's record (the last quarter is for the
        later records of futures already queued), or that refused a new future
        for room since it last shrank. When every sink of a route's
        installations is full, the drain leaves the route's records in its ring
        and holds it (``_drain``): new futures go untraced at the source,
        which costs the program nothing, rather than recorded, queued and shed
        here; the queued futures' later records wait in the ring for room."""
        if self.disabled or self._closing:
            return True
        if self.inline:
            return False
        return self._refused or self._queued_bytes + self._unit > self.max_bytes - self.max_bytes // 4

    def submit(self, records: Sequence[Any]) -> None:
        """Queue a batch of raw records; never blocks. What does not fit is
        dropped, a whole future at a time, and counted."""
        if self.disabled or self._closing:
            return
        self._submit_records(records)

    def _submit_records(self, records: Sequence[tuple[Any, ...]]) -> None:
        """:meth:`submit` for raw records: the batch sheds itself (in C, for the
        compiled implementation's batches), no loop here per record."""
        batch_type = _core.RecordBatch
        batch: Any = records if type(records) is batch_type else batch_type(records)
        unit = self._unit
        if self.inline:
            if self._untold or self._holed:
                batch = self._shed(batch, len(batch) * unit, 0)
            if self._marks:
                batch, self._marks = batch_type.join(self._marks, batch), []
            if batch:
                self._deliver(batch)
            return
        with self._cond:
            room = self.max_bytes - self._queued_bytes
            if self._untold or self._holed or len(batch) * unit > room:
                batch = self._shed(batch, room, self.max_bytes // 4)
            # The incomplete marks pass no screen (their futures are the screened
            # ones) and no budget: each stands for a record that was dropped, and
            # a future gets one at most. Last: after the records of its future
            # that this batch kept.
            if self._marks:
                batch, self._marks = batch_type.join(batch, self._marks), []
            if not batch:
                return
            self._items.append(batch)
            self._queued_bytes += len(batch) * unit
            self._put += 1
            self._cond.notify()

    def _shed(self, batch: Any, room: int, reserve: int) -> Any:
        kept, dropped, futures, incomplete, marks = batch.shed(
            self._untold, self._holed, room, reserve, self._unit, _MAX_SCREENED
        )
        self.dropped += dropped
        self.dropped_futures += futures
        if futures:
            self._refused = True
        self.incomplete_futures += incomplete
        for fid, ts in marks:
            self._marks.append((MARK, fid, ts, "the exporter's queue was full"))
        return kept

    def _deliver(self, batch: Sequence[Any]) -> None:
        """Hand a batch to the exporter: events as they are, raw records as the
        lines they make."""
        if self.lines is None:
            if self.events is not None:
                try:
                    batch = self.events.convert(batch)
                except Exception:  # pragma: no cover - a bug here must not stop the sink
                    logger.exception("tracedfuture: dropping a batch of %d records after an internal error", len(batch))
                    self.dropped += len(batch)
                    return
                if not batch:
                    return
            self.call("export", batch)
            self.exported += len(batch)
            return
        if self._records:
            count = self.call("export_records", batch, self.lines)
            if type(count) is int:
                self.exported += count
            return
        try:
            data, count = self.lines.lines(batch)
        except Exception:  # pragma: no cover - a bug here must not stop the sink
            logger.exception("tracedfuture: dropping a batch of %d records after an internal error", len(batch))
            self.dropped += len(batch)
            return
        if count:
            self.call("export_lines", data, count)
            self.exported += count

    def _mark(self, item: Any, why: str) -> Any:
        """What says that ``item``'s future lost a record: a MARK record, which
        becomes its ``incomplete`` event."""
        return (MARK, item[1], item[2], why)

    # -- the sink's thread -------------------------------------------------------

    def _run(self) -> None:
        cond, items = self._cond, self._items
        while True:
            with cond:
                while not items:
                    cond.wait()
                item = self._take()
            if not self._handle(item):
                return

    def _pump(self) -> bool:
        """A hosted sink's turn: handle one item of the queue, if any; True when
        more are waiting."""
        if self._stopped or not self._pump_lock.acquire(blocking=False):
            return False
        try:
            with self._cond:
                if not self._items:
                    return False
                item = self._take()
            if not self._handle(item):
                self._stopped = True
                host_pump(self._pump, remove=True)
                return False
            return bool(self._items)
        finally:
            self._pump_lock.release()

    def _take(self) -> Any:
        """The next queued item (``_cond`` held). A queue that was full has room
        again: the drain is woken to trace new futures now, not once a ring has
        refused one (``full()``)."""
        item = self._items.popleft()
        if type(item) is not object:  # a batch, not _FLUSH / _SHUTDOWN / _STOP
            was_full = self.full()
            self._queued_bytes -= len(item) * self._unit
            self._refused = False
            if was_full and not self.full():
                RECORDER.hurry()
        return item

    def _handle(self, item: Any) -> bool:
        """Hand one queued item to the exporter; False for the last one (_STOP)."""
        try:
            if item is _STOP:
                return False
            if self.overran:
                # Abandoned at close: what is still queued is dropped. A slow
                # exporter still gets, if it gets that far, the incomplete
                # marks of the futures this cuts, and its shutdown().
                if type(item) is not object:
                    self._abandon(item)
                elif item is _SHUTDOWN:
                    marks = list(self._late_marks.values())
                    self._late_marks.clear()
                    if marks:
                        self._deliver(marks)
                    self.call("shutdown", *self._shutdown_arguments())
            elif item is _FLUSH:
                self.call("flush")
            elif item is _SHUTDOWN:
                self._finish()
                self.call("shutdown", *self._shutdown_arguments())
            elif not self.disabled:
                self._deliver(item)
            return True
        finally:
            with self._cond:
                self._handled += 1
                self._cond.notify_all()

    def _finish(self) -> None:
        """Before shutdown: what the exporter's filter still held, undecided."""
        if self.events is None or self.disabled:
            return
        try:
            late = self.events.finish()
        except Exception:  # pragma: no cover - a bug here must not stop the sink
            logger.exception("tracedfuture: dropping a filter's last events after an internal error")
            return
        if late:
            self.call("export", late)
            self.exported += len(late)

    def _abandon(self, batch: Sequence[Any]) -> None:
        """Drop a batch left in the queue of an abandoned exporter, marking the
        futures it had already exported events of."""
        for event in batch:
            fid = event[1]
            if event[0] == MARK:
                self._late_marks[fid] = event
                continue
            self.dropped += 1
            if not fid:
                continue
            if event[0] == ev.OP_CREATED:
                self._late_born.add(fid)
                self.dropped_futures += 1
            elif fid not in self._late_born and fid not in self._late_marks:
                self._late_marks[fid] = self._mark(event, "the exporter did not finish within export_timeout")
                self.incomplete_futures += 1

    def call(self, method: str, *args: Any) -> Any:
        """Call an exporter method, isolating the program from whatever it
        raises: what it returns, or None."""
        function = self._hooks.get(method)
        if function is None or self.disabled:
            return None
        try:
            result = function(*args)
        except BaseException:  # an observer's exception is the observer's problem
            self.failures += 1
            self.in_a_row += 1
            if not self._reported:
                self._reported = True
                logger.exception(
                    "tracedfuture: exporter %s failed in %s(); counting further failures",
                    safe_repr(self.exporter),
                    method,
                )
            if self.in_a_row >= self.max_failures:
                self.disabled = True
                # The traceback was logged with the first failure; this is a summary.
                message = "tracedfuture: exporter %s disabled after %d failures in a row"
                logger.error(message, safe_repr(self.exporter), self.in_a_row)  # noqa: TRY400
            return None
        self.in_a_row = 0
        return result

    # -- waiting, with deadlines -------------------------------------------------

    def wait(self, timeout: float | None) -> bool:
        """Wait until every batch queued so far was handed to the exporter."""
        return self.wait_handled(None if timeout is None else time.monotonic() + timeout)

    def wait_handled(self, deadline: float | None, ticket: int | None = None) -> bool:
        """Wait until every batch queued so far (up to ``ticket``, if given) was
        handed to the exporter, at most until ``time.monotonic()`` reaches ``deadline``."""
        if self.hosted:
            return self._wait_hosted(deadline, ticket)
        if self._thread is None or threading.current_thread() is self._thread:
            return True  # inline, or an exporter flushing from inside export()
        with self._cond:
            target = self._put if ticket is None else ticket
            while self._handled < target:
                if not self._thread.is_alive():
                    return False
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _wait_hosted(self, deadline: float | None, ticket: int | None) -> bool:
        """:meth:`wait_handled` for a hosted sink: the host serves the queue; with
        no host (its thread could not start, or a forked child before its drain
        restarts), the waiting thread serves it itself."""
        if threading.current_thread() is host_thread():
            return True  # the host itself (an exporter flushing from inside export())
        with self._cond:
            target = self._put if ticket is None else ticket
        while True:
            with self._cond:
                if self._handled >= target:
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
            if host_thread() is None:
                if self._pump():
                    continue
                if self._stopped:
                    return self._handled >= target
            else:
                wake_host()
            with self._cond:
                if self._handled < target:
                    self._cond.wait(0.05 if left is None else min(left, 0.05))

    def _enqueue(self, item: object) -> int:
        with self._cond:
            self._items.append(item)
            self._put += 1
            self._cond.notify()
            ticket = self._put
        if self.hosted:
            wake_host()
        return ticket

    def flush(self, deadline: float | None) -> bool:
        """Hand over what is queued and call the exporter's ``flush()``, waiting
        until ``deadline`` (a ``time.monotonic()`` value) at most."""
        if self.disabled or self._closing or self.overran:
            return True
        if self.inline:
            self._submit_marks()
            return self._on_helper("flush", deadline)
        if "flush" not in self._hooks:
            return self.wait_handled(deadline)
        return self.wait_handled(deadline, self._enqueue(_FLUSH))

    def begin_close(self) -> None:
        """Ask for what is queued to be delivered, then ``flush()`` and
        ``shutdown()``; returns at once (see :meth:`finish_close`)."""
        if self._closing:
            return
        self._submit_marks()
        self._closing = True
        if self.hosted:
            for item in (_FLUSH, _SHUTDOWN, _STOP):
                self._stop_ticket = self._enqueue(item)
            return
        if self._thread is None:
            self._finish()
            if not self.overran:  # its flush() hung already: no second helper stuck
                self._helper = self._helper_thread(("flush", "shutdown"))
            return
        for item in (_FLUSH, _SHUTDOWN, _STOP):
            self._enqueue(item)

    def finish_close(self, deadline: float | None) -> bool:
        """Wait for :meth:`begin_close`'s work until ``deadline``; past it, the
        exporter is abandoned (reported once) and nothing more is handed to it."""
        if self.hosted:
            done = self._stopped or self._wait_hosted(deadline, self._stop_ticket)
        else:
            done = self._join(self._helper if self._thread is None else self._thread, deadline)
        if not done:
            self._overran()
        return done

    def close(self, timeout: float | None) -> bool:
        """Deliver what is queued, then flush and shut the exporter down, within ``timeout``."""
        self.begin_close()
        return self.finish_close(None if timeout is None else time.monotonic() + timeout)

    def _submit_marks(self) -> None:
        if self._marks and not self.disabled:
            marks, self._marks = self._marks, []
            if self.inline:
                self._deliver(marks)
            else:
                with self._cond:  # few and small: never refused
                    self._items.append(marks)
                    self._queued_bytes += len(marks) * self._unit
                    self._put += 1
                    self._cond.notify()
                if self.hosted:
                    wake_host()

    def _on_helper(self, method: str, deadline: float | None) -> bool:
        if method not in self._hooks:
            return True
        done = self._join(self._helper_thread((method,)), deadline)
        if not done:
            self._overran()
        return done

    def _helper_thread(self, methods: tuple[str, ...]) -> Started | None:
        """A thread running ``methods`` of an inline exporter (None: none to run)."""
        if not any(m in self._hooks for m in methods):
            return None

        def run() -> None:
            for method in methods:
                self.call(method)

        return start_daemon(run, f"tracedfuture-{methods[0]}-{type(self.exporter).__name__}")

    @staticmethod
    def _join(thread: Started | None, deadline: float | None) -> bool:
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not thread.is_alive()

    def _overran(self) -> None:
        self.overran = True
        if not self._overrun_reported:
            self._overrun_reported = True
            logger.error(
                "tracedfuture: exporter %s did not finish within export_timeout; abandoning it",
                safe_repr(self.exporter),
            )

    # -- fork --------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """The child has one thread: this sink's, if any, is gone, and its lock
        may have been held at the fork. Start afresh, without the parent's batches."""
        self._fresh_state()
        self._untold.clear()
        self._holed.clear()
        self._marks.clear()
        if self.lines is not None:
            self.lines.clear()
        if self.events is not None:
            self.events.clear()
        self._helper = None
        self._pump_lock = threading.Lock()
        if self._closing or self.disabled:
            self._thread = None
            return
        self.call("after_fork")
        if not self.inline and not self.hosted:
            self._start()

    def delivery_counters(self) -> dict[str, int]:
        """What this sink dropped and failed to deliver: for a trace file's stats line."""
        return {
            "dropped_events": self.dropped,
            "dropped_futures": self.dropped_futures,
            "incomplete_futures": self.incomplete_futures,
            "export_failures": self.failures,
        }

    def _shutdown_arguments(self) -> tuple[dict[str, Any], ...]:
        """``(stats,)`` for an exporter whose ``shutdown`` takes them, else ``()``."""
        if not self.hooks.shutdown_takes_stats:
            return ()
        stats: dict[str, Any] = {}
        if self._statistics is not None:
            try:
                stats.update(self._statistics())
            except Exception:  # pragma: no cover - counters are plain reads
                logger.exception("tracedfuture: could not count for %s", safe_repr(self.exporter))
        stats.update(self.delivery_counters())
        return (stats,)

    def stats(self) -> dict[str, Any]:
        return {
            "exporter": safe_repr(self.exporter),
            "exported": self.exported,
            "dropped": self.dropped,
            "dropped_futures": self.dropped_futures,
            "incomplete_futures": self.incomplete_futures,
            "failures": self.failures,
            "disabled": self.disabled,
            "overran": self.overran,
        }


_TEXT_FIELDS = tuple(Event._fields.index(name) for name in ev.TEXT_FIELDS)
_SITE_FIELD = Event._fields.index("site")


def _valid(text: object) -> bool:
    if type(text) is not str or text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unicode_safe(events: Sequence[Event]) -> Sequence[Event]:
    r"""``events`` with every string valid Unicode, for exporters whose libraries
    encode to UTF-8 (OpenTelemetry's protobuf, a log file): a lone surrogate,
    as Python decodes a file name that is not UTF-8, becomes the text ``\udcXX``,
    as the trace files show it. The same sequence when nothing needs it.

    >>> unicode_safe([Event("created", 1, 0, name="caf\udce9")])[0].name
    'caf\\udce9'
    """
    out: list[Event] | None = None
    for position, event in enumerate(events):
        site = event.site
        if all(_valid(event[i]) for i in _TEXT_FIELDS) and (
            site is None or (_valid(site.filename) and _valid(site.function))
        ):
            if out is not None:
                out.append(event)
            continue
        if out is None:
            out = list(events[:position])
        values = [
            _escaped(v) if isinstance(v, str) and i in _TEXT_FIELDS and not _valid(v) else v
            for i, v in enumerate(event)
        ]
        if site is not None:
            values[_SITE_FIELD] = Site(_escaped(site.filename), site.lineno, _escaped(site.function))
        out.append(Event._make(values))
    return events if out is None else out
