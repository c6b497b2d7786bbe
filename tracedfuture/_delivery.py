"""What happens to an installation's events after conversion: filters, and one
isolated delivery thread per exporter.

The drain thread (``_pipeline``) hands each installation its records; the
installation samples (``_tail``) and converts (``_convert``) them, passes the
events through its :class:`Filter` (creation module, name), then puts them on
each :class:`Sink`'s bounded queue. A sink's own thread
calls the exporter. So an exporter that blocks delays nobody but itself: when its
queue is full, its batches are dropped and counted; when it raises, the failure is
counted, logged once through the ``tracedfuture`` logger, and after
``max_failures`` failures in a row the exporter is disabled.
"""

from __future__ import annotations

import fnmatch
import logging
import queue
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import _events as ev
from ._events import Event

__all__ = ["Filter", "Sink"]

logger = logging.getLogger("tracedfuture")

_STOP = object()


class Sink:
    """One exporter behind a bounded queue and a thread of its own.

    An exporter whose ``export`` never blocks (an in-memory ring, say) may set
    ``inline = True``: it is then called by whoever drains (the drain thread while
    loops run; the thread calling ``flush()``, ``uninstall()`` or ``loop.close()``
    for what is left), which saves a thread hand-off per batch. Its failures are
    isolated all the same.
    """

    def __init__(self, exporter: Any, *, max_failures: int, max_batches: int = 1000) -> None:
        self.exporter = exporter
        self.max_failures = max_failures
        self.exported = 0
        self.dropped = 0
        self.failures = 0
        self.in_a_row = 0
        self.disabled = False
        self._reported = False
        self._queue: queue.Queue[Any] = queue.Queue(max_batches)
        self._idle = threading.Condition()
        self._pending = 0
        self.inline = getattr(exporter, "inline", False) is True
        self._thread: threading.Thread | None = None
        if not self.inline:
            name = f"tracedfuture-export-{type(exporter).__name__}"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def submit(self, events: list[Event]) -> None:
        """Queue a batch; never blocks. A full queue drops the batch (counted)."""
        if self.disabled:
            return
        if self.inline:
            self.call("export", events)
            self.exported += len(events)
            return
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(events)
        except queue.Full:
            self.dropped += len(events)
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                return
            try:
                if not self.disabled:
                    self.call("export", batch)
                    self.exported += len(batch)
            finally:
                self._done()

    def call(self, method: str, *args: Any) -> None:
        """Call an exporter method, isolating the program from its failures."""
        function = getattr(self.exporter, method, None)
        if function is None or self.disabled:
            return
        try:
            function(*args)
        except Exception:
            self.failures += 1
            self.in_a_row += 1
            if not self._reported:
                self._reported = True
                logger.exception(
                    "tracedfuture: exporter %r failed in %s(); counting further failures", self.exporter, method
                )
            if self.in_a_row >= self.max_failures:
                self.disabled = True
                # The traceback was logged with the first failure; this is a summary.
                message = "tracedfuture: exporter %r disabled after %d failures in a row"
                logger.error(message, self.exporter, self.in_a_row)  # noqa: TRY400
        else:
            self.in_a_row = 0

    def wait(self, timeout: float | None) -> bool:
        """Wait until every queued batch was handed to the exporter."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True  # inline, or an exporter flushing from inside export()
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float | None) -> bool:
        """Deliver what is queued, then flush and shut the exporter down."""
        done = self.wait(timeout)
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if done and (self._thread is None or not self._thread.is_alive()):
            self.call("flush")
            self.call("shutdown")
        else:
            logger.error("tracedfuture: exporter %r did not finish within %ss; abandoning it", self.exporter, timeout)
        return done

    def stats(self) -> dict[str, Any]:
        return {
            "exporter": repr(self.exporter),
            "exported": self.exported,
            "dropped": self.dropped,
            "failures": self.failures,
            "disabled": self.disabled,
        }


class Filter:
    """Keeps the futures created by some modules, or named some way.

    The decision is taken at a future's first event other than ``created`` and
    ``renamed``: asyncio 3.11 names tasks right after creating them.
    """

    def __init__(
        self,
        include_modules: Sequence[str],
        exclude_modules: Sequence[str],
        include_names: Sequence[str],
        exclude_names: Sequence[str],
    ) -> None:
        self.include_modules = tuple(include_modules)
        self.exclude_modules = tuple(exclude_modules)
        self.include_names = tuple(include_names)
        self.exclude_names = tuple(exclude_names)
        self._decided: dict[int, bool] = {}
        self._waiting: dict[int, list[Event]] = {}
        self._module_of_file: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self.include_modules or self.exclude_modules or self.include_names or self.exclude_names)

    def apply(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        decisions = self._decided
        for event in events:
            fid = event.future_id
            if not fid:
                out.append(event)  # a loop-wide lint
                continue
            decided = decisions.get(fid)
            if decided is None:
                waiting = self._waiting.setdefault(fid, [])
                waiting.append(event)
                if event.kind in (ev.CREATED, ev.RENAMED):
                    continue
                created = waiting[0] if waiting[0].kind == ev.CREATED else None
                decided = decisions[fid] = self._accepts(created, event.name)
                del self._waiting[fid]
                if decided:
                    out.extend(waiting)
            elif decided:
                out.append(event)
        while len(decisions) > 1_000_000:
            del decisions[next(iter(decisions))]  # the oldest futures are long gone
        return out

    def flush(self) -> list[Event]:
        """Decide for futures that had only ``created``/``renamed`` so far."""
        out: list[Event] = []
        for fid, waiting in self._waiting.items():
            created = waiting[0] if waiting[0].kind == ev.CREATED else None
            if self._accepts(created, waiting[-1].name):
                out.extend(waiting)
                self._decided[fid] = True
            else:
                self._decided[fid] = False
        self._waiting.clear()
        return out

    def _accepts(self, created: Event | None, name: str | None) -> bool:
        if self.include_modules or self.exclude_modules:
            module = self._module(created.site.filename) if created is not None and created.site else None
            if self.include_modules and not (module and _prefixed(module, self.include_modules)):
                return False
            if self.exclude_modules and module and _prefixed(module, self.exclude_modules):
                return False
        if self.include_names and not (name and any(fnmatch.fnmatchcase(name, p) for p in self.include_names)):
            return False
        return not (self.exclude_names and name and any(fnmatch.fnmatchcase(name, p) for p in self.exclude_names))

    def _module(self, filename: str) -> str | None:
        if filename not in self._module_of_file:
            for name, module in list(sys.modules.items()):
                path = getattr(module, "__file__", None)
                if path and path not in self._module_of_file:
                    self._module_of_file[path] = name
            self._module_of_file.setdefault(filename, None)
        return self._module_of_file[filename]


def _prefixed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)
