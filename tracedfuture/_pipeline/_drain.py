"""Between the hot path and the installations: rings, the drain, routes.

Every traced loop records into the :class:`~tracedfuture._core._seam` ring of its
*route*, the set of installations that receive its events. A route is made the
first time a set of installations is asked for, with a ring of the largest
``max_bytes`` among them, and never changes: a loop that gains or loses an
installation moves to another route, and its older futures keep writing to the
ring they were born with.

A daemon thread, the *drain*, wakes when a route's ``flush_interval`` is due (the
smallest of its installations'), or when a ring fills up, or on
:meth:`Recorder.flush`. It takes the route's new records and hands them, in order,
to each installation of the route that wants every record (:class:`Consumer`):
the installation samples, converts and delivers them itself. A route whose
installations only read the ring's recent window (a flight recorder) is never
drained at all: its records stay raw until a dump converts them.

This module knows installations only as :class:`Consumer`, a small protocol; it
never reaches into ``_install``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .. import _core
from .._core import _events as ev
from .._core import _loops
from ._process import Started, at_fork, serve, start_daemon

__all__ = ["RECORDER", "Consumer", "Recorder", "Route"]

logger = logging.getLogger("tracedfuture")

Record = tuple[Any, ...]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class Consumer(Protocol):
    """What the drain needs of an installation: everything it reads is declared here."""

    streaming: bool  # takes every record (False: reads only the ring's window)
    history: bool  # reads the ring's window (a flight recorder): taken records stay in it
    max_bytes: int  # the ring size it asks for
    flush_interval: float
    export_timeout: float  # what exit waits for it, at most
    exporters: tuple[object, ...]  # to flush one exporter alone (flush(only=...))

    def consume(self, records: Sequence[Record]) -> None:
        """This installation's share of a route's new records, in order (a
        ``RecordBatch``: tuples made on access; keep it as it is if you can)."""

    def takes_nothing(self) -> bool:
        """Whether it would take nothing now (its exporters' queues are full): a
        route none of whose installations takes anything is left in its ring."""

    def consume_lint(self, record: Record) -> None:
        """A loop-wide lint record (``future_id`` 0)."""

    def wait_exporters(self, deadline: float, only: object = None) -> bool:
        """Wait (until ``time.monotonic()`` reaches ``deadline``) for exporters to take what they were given."""

    def close_exporters(self, deadline: float) -> None:
        """At exit: deliver what is left and shut the exporters down by ``deadline``."""

    def after_fork_in_child(self) -> None:
        """In the child of a fork: forget what was held of the parent's history."""


class Route:
    """A set of installations and the ring their loops record into."""

    __slots__ = ("__weakref__", "consumers", "due", "interval", "key", "ring", "streaming")

    def __init__(self, key: int, consumers: tuple[Consumer, ...], ring: Any) -> None:
        self.key = key
        self.consumers = consumers
        self.ring = ring
        self.streaming = any(c.streaming for c in consumers)
        self.interval = min((c.flush_interval for c in consumers), default=0.1)
        self.due = time.monotonic() + self.interval

    def __repr__(self) -> str:
        return f"<Route {self.key} {len(self.consumers)} installation(s) streaming={self.streaming}>"


class Recorder:
    """The process-wide registry of routes, and the thread that drains them."""

    def __init__(self) -> None:
        self._routes: dict[int, Route] = {}
        self._by_consumers: dict[tuple[int, ...], Route] = {}
        # Retired routes, as long as something else keeps them (their installation,
        # for its stats and its flight recorder): never the rings of the dead, which
        # hold up to max_bytes each.
        self._retired: weakref.WeakSet[Route] = weakref.WeakSet()
        self._active: list[Consumer] = []
        self._next_key = itertools.count(1).__next__
        self._lock = threading.RLock()  # one drainer at a time: records stay in order
        self._wake = _core.Waker()  # threading.Event; the compiled one takes the GIL back sooner
        self._thread: Started | None = None
        self._atexit = False
        self._loop_lints: list[Record] = []
        self.records_seen = 0
        at_fork("recorder", after_in_child=self._after_fork_in_child)
        at_fork("drain", after_in_child=self._restart_after_fork)

    # -- routes ---------------------------------------------------------------------

    def route(self, consumers: tuple[Consumer, ...]) -> Route | None:
        """The route of a set of installations (``None`` for no installation)."""
        if not consumers:
            return None
        ids = tuple(id(c) for c in consumers)
        with self._lock:
            route = self._by_consumers.get(ids)
            if route is None or route.consumers != consumers:
                key = self._next_key()
                max_bytes = max(c.max_bytes for c in consumers)
                streaming = any(c.streaming for c in consumers)
                history = any(c.history for c in consumers)
                ring = _core.Ring(max_bytes, streaming=streaming, on_full=self.hurry, history=history)
                route = self._routes[key] = self._by_consumers[ids] = Route(key, consumers, ring)
                self._wake.set()  # the drain recomputes when the next route is due
            return route

    def hurry(self) -> None:
        """Drain now, not at the next interval: a ring's ``on_full`` (its backlog
        grew, or it refused a future) and a full queue that has room again. (The
        waker of the moment: a fork()'s child has its own.)"""
        self._wake.set()

    def routes_of(self, consumer: Consumer) -> list[Route]:
        with self._lock:
            return [r for r in (*self._routes.values(), *self._retired) if consumer in r.consumers]

    def activate(self, consumer: Consumer) -> None:
        with self._lock:
            self._active.append(consumer)
            if self._thread is None or not self._thread.is_alive():
                self._thread = start_daemon(self._run, "tracedfuture-drain", wake=self._wake.set)
            if not self._atexit:
                atexit.register(self._at_exit)
                self._atexit = True
        self._wake.set()  # a new, shorter flush_interval applies now

    def deactivate(self, consumer: Consumer) -> None:
        """Deliver what ``consumer``'s routes hold, then forget it; a route left
        with no active installation is retired."""
        with self._lock:
            self.drain(only=consumer, everything=True)
            if consumer in self._active:
                self._active.remove(consumer)
            for key, route in list(self._routes.items()):
                if not any(c in self._active for c in route.consumers):
                    del self._routes[key]
                    self._by_consumers.pop(tuple(id(c) for c in route.consumers), None)
                    self._retired.add(route)

    # -- lints ---------------------------------------------------------------------

    def record_lint(
        self,
        kind: str,
        future_id: int,
        *,
        task_id: int | None = None,
        chain: tuple[int, ...] | None = None,
        detail: str | None = None,
        age_ns: int | None = None,
        loop: object = None,
    ) -> None:
        """Record a lint finding (``tracedfuture.lints``) in order with other events.

        It reaches the installations that receive ``future_id``'s events, or, for
        ``future_id`` 0 (a blocked loop), those of ``loop`` (every active
        installation when ``loop`` is not traced or not given). Safe to call from
        any thread.
        """
        record = (ev.OP_LINT, future_id, time.monotonic_ns(), kind, task_id, chain, detail, age_ns)
        if not future_id:
            ring = getattr(_loops.hooks_of(loop), "ring", None)
            if ring is not None:
                ring.append(record)  # in order with the loop's own records, flight windows included
            else:
                self._loop_lints.append(record)
            self._wake.set()
            return
        # Installations that never saw the future ignore the record.
        for route in list(self._routes.values()):
            route.ring.append(record)

    # -- draining -----------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0, *, only: object = None) -> bool:
        """Drain now, on the calling thread, and wait (at most ``timeout`` seconds
        in all) until the exporters, or only the exporter ``only``, have it."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        consumers = self._consumers_of(only)
        for consumer in consumers:
            self.drain(only=consumer, everything=True)
        done = True
        for consumer in consumers:
            done = consumer.wait_exporters(deadline, only=only) and done
        return done

    def _consumers_of(self, exporter: object) -> list[Consumer]:
        with self._lock:
            active = list(self._active)
        if exporter is None:
            return active
        return [c for c in active if exporter in c.exporters]

    def drain(
        self,
        *,
        only: Consumer | None = None,
        yield_gil: bool = False,
        everything: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Take every streaming route's new records (only ``only``'s routes, if
        given) and hand them to their installations.

        A route none of whose installations would take anything (every
        exporter's queue full: a slow or stuck exporter) is left alone: its
        records stay in the ring, and the ring is held: it traces no new future
        until a queue has room again (``untraced_futures``), and marks the
        histories it cuts; nothing is recorded, taken, copied or shed for what
        would be dropped. ``everything`` (``flush()``, ``uninstall()``, exit)
        takes them all the same, so that what is dropped is counted where it is
        dropped.

        With ``yield_gil`` (the drain thread), the GIL is released between
        routes so that a busy event loop waits at most one batch's conversion.
        With ``timeout``, gives up (draining nothing) when another drain holds
        the lock that long; while the interpreter finalizes, it never waits.
        """
        if sys.is_finalizing():
            # Past the exit handlers (which delivered everything): a daemon thread
            # of tracing may hold the lock, frozen for good (a loop the program
            # never closed is closed by its __del__ now).
            timeout = 0
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return  # its holder is busy past the timeout, or frozen at exit: leave it
        try:
            lints, self._loop_lints = self._loop_lints, []
            if lints:
                for consumer in list(self._active):
                    for record in lints:
                        _isolated(consumer.consume_lint, record)
            now = time.monotonic()
            for route in list(self._routes.values()):
                if only is not None and only not in route.consumers:
                    continue
                if route.streaming:
                    self._drain_route(route, everything)
                route.due = now + route.interval
                if yield_gil:
                    time.sleep(0)
        finally:
            self._lock.release()

    def _drain_route(self, route: Route, everything: bool = False) -> None:
        if not everything and self._takes_nothing(route):
            route.ring.hold(True)  # a ring a flight recorder reads is never held
            return
        route.ring.hold(False)
        records = route.ring.take_batch()  # no tuple made per record (compiled ring)
        if not records:
            return
        self.records_seen += len(records)
        for consumer in route.consumers:
            if consumer.streaming and consumer in self._active:
                _isolated(consumer.consume, records)

    def _takes_nothing(self, route: Route) -> bool:
        takers = [c for c in route.consumers if c.streaming and c in self._active]
        return bool(takers) and all(_takes_nothing(c) for c in takers)

    def _run(self) -> None:
        # The host thread (``_process``): after each drain it also serves the
        # hosted sinks (a trace file's) and the work posted at exit, outside the
        # lock so that a flush() on another thread never waits for a write.
        more = False
        while True:
            now = time.monotonic()
            with self._lock:
                due = min((r.due for r in self._routes.values() if r.streaming), default=now + 1.0)
            # Woken (a ring hurries its reader: its backlog grew, or it refused a
            # future), every streaming route is taken now, not at its interval.
            woken = self._wake.wait(0.0 if more else max(0.0, due - now))
            self._wake.clear()
            now = time.monotonic()
            try:
                with self._lock:
                    for k, route in enumerate(list(self._routes.values())):
                        if k:
                            # Between routes, the program's turn. Not after the last: the
                            # wait is next, and taking the GIL back from a busy program
                            # takes a switch interval (5 ms), while its ring fills.
                            time.sleep(0)
                        if route.streaming and (woken or route.due <= now or route.ring.stats()["untraced"]):
                            self._drain_route(route)
                            route.due = now + route.interval
                    if self._loop_lints:
                        self.drain()
            except BaseException:  # pragma: no cover - the drain must outlive any bug
                logger.exception("tracedfuture: dropping a batch after an internal error")
            more = serve()

    def _at_exit(self) -> None:
        consumers = list(self._active)
        if not consumers:
            return
        # One deadline for everything: the last drain (on a helper thread, as the
        # drain thread may be inside an exporter, holding the lock) and every
        # exporter's delivery, flush and shutdown.
        timeout = max(c.export_timeout for c in consumers)
        deadline = time.monotonic() + timeout
        helper = start_daemon(lambda: self.drain(everything=True), "tracedfuture-exit-drain")
        if helper is not None:
            helper.join(timeout)
        for consumer in consumers:
            _isolated(consumer.close_exporters, deadline)

    def _after_fork_in_child(self) -> None:
        """The child of a fork starts with an empty recorder: the parent's records
        are the parent's to deliver, and its drain thread does not exist here."""
        self._lock = threading.RLock()
        self._wake = _core.Waker()  # threading.Event; the compiled one takes the GIL back sooner
        self._thread = None
        self._loop_lints = []
        for route in (*self._routes.values(), *self._retired):
            route.ring.clear()
        for consumer in self._active:
            _isolated(consumer.after_fork_in_child)

    def _restart_after_fork(self) -> None:
        """Once the installations' sinks are ready again in the child (the layer
        below this hook's): drain there too."""
        if self._active:
            self._thread = start_daemon(self._run, "tracedfuture-drain", wake=self._wake.set)

    # -- reading ------------------------------------------------------------------

    def counters(self, routes: Iterable[Route] | None = None, *, exporter: object = None) -> dict[str, int]:
        """Counters summed over ``routes`` (default: all, or those that feed
        ``exporter``), for stats() and trace files."""
        with self._lock:
            chosen = list(routes) if routes is not None else [*self._routes.values(), *self._retired]
        if exporter is not None:
            chosen = [r for r in chosen if any(exporter in c.exporters for c in r.consumers)]
        out = {"records": 0, "untraced_futures": 0, "dropped_records": 0, "overwritten_records": 0}
        for route in chosen:
            stats = route.ring.stats()
            out["records"] += stats["written"]
            out["untraced_futures"] += stats["untraced"]
            out["dropped_records"] += stats["dropped"]
            out["overwritten_records"] += stats["overwritten"]
        return out


def _takes_nothing(consumer: Consumer) -> bool:
    try:
        return consumer.takes_nothing()
    except Exception:  # a bug there must not stop the route: take as usual
        logger.exception("tracedfuture: an installation could not say whether it takes records")
        return False


def _isolated(function: Any, *args: Any) -> None:
    """Call an installation's hook: a bug in it must not stop other routes.
    (Exporters are isolated one level down, in ``_sink.Sink``, from
    ``BaseException`` too; a ``KeyboardInterrupt`` that lands here is the user's.)"""
    try:
        function(*args)
    except Exception:
        logger.exception("tracedfuture: an installation failed to take its records; they are dropped")


RECORDER = Recorder()
