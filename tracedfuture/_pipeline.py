"""Between the hot path and the exporters: buffer, conversion, delivery, isolation.

The hot path (``_future.py``) appends raw records to ``RECORDER.buffer``, a plain
list shared by every traced loop in the process. A daemon thread, the *drain*, wakes
every ``flush_interval`` seconds (or on :meth:`Recorder.flush`), takes what has
accumulated, turns raw records into :class:`~tracedfuture.Event` objects in order,
keeping a little state per live future (name, site, callbacks, awaiters) so that
derived events such as ``callback_scheduled`` and ``abandoned`` carry their context,
and hands each installation its batch. Exporters therefore never run on the event
loop's thread, and one that raises is counted, reported once through the
``tracedfuture`` logger and disabled after ``max_failures`` failures.

Memory is bounded by ``buffer_size`` raw records: past it, new futures are handed
out untraced (and counted in ``stats()["untraced_futures"]``) until the drain
catches up, so every traced future keeps a complete history.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from types import CodeType
from typing import TYPE_CHECKING, Any

from . import _delivery
from . import _events as ev
from ._events import Event, Site
from ._holding import Holding

if TYPE_CHECKING:
    from ._install import Installation

__all__ = ["RECORDER", "Recorder"]

logger = logging.getLogger("tracedfuture")

_MAX_VALUE_CHARS = 200
# The estimated size of one raw record in the buffer, as measured with
# tracemalloc (about 154 bytes for a future awaited by a task): a tuple of 6 to
# 12 items, its slot in the list, its timestamp, a share of what it points to.
RECORD_BYTES = 160


class _FutureState:
    """What the converter remembers about one live future."""

    __slots__ = (
        "awaiter_id",
        "callbacks",
        "cancel",
        "created_ns",
        "done",
        "exc_type",
        "is_task",
        "name",
        "parent_id",
        "route",
        "scheduled",
        "site",
    )

    def __init__(self, route: int, is_task: bool, name: str | None, site: Site | None, ts: int) -> None:
        self.route = route
        self.is_task = is_task
        self.name = name
        self.site = site
        self.created_ns = ts
        self.callbacks: list[tuple[str, int | None]] = []
        self.scheduled: list[tuple[str, int | None]] = []
        self.awaiter_id: int | None = None
        self.cancel: tuple[str | None, int | None, str | None] | None = None
        self.done = False
        self.exc_type: str | None = None
        self.parent_id: int | None = None

    def copy(self) -> _FutureState:
        twin = _FutureState(self.route, self.is_task, self.name, self.site, self.created_ns)
        twin.callbacks, twin.scheduled = list(self.callbacks), list(self.scheduled)
        twin.awaiter_id, twin.cancel, twin.done = self.awaiter_id, self.cancel, self.done
        twin.exc_type, twin.parent_id = self.exc_type, self.parent_id
        return twin


_new_event = tuple.__new__
_CHUNK = 512
# Events are built as lists in Event's field order, then made tuples: NamedTuple's
# keyword constructor costs several times more, and this runs for every event.
_FIELD = {name: index for index, name in enumerate(Event._fields)}
_SITE, _THREAD_ID, _CORO, _PARENT_ID = _FIELD["site"], _FIELD["thread_id"], _FIELD["coro"], _FIELD["parent_id"]
_CALLBACK, _AWAITER_ID = _FIELD["callback"], _FIELD["awaiter_id"]
_RESULT_TYPE, _VALUE, _EXC_TYPE, _EXC_MSG = (
    _FIELD["result_type"],
    _FIELD["value"],
    _FIELD["exc_type"],
    _FIELD["exc_msg"],
)
_MSG, _CANCELLER_ID, _CANCELLER = _FIELD["msg"], _FIELD["canceller_id"], _FIELD["canceller"]
_AGE_NS, _CHAIN, _DETAIL, _CONTEXT = _FIELD["age_ns"], _FIELD["chain"], _FIELD["detail"], _FIELD["context"]
_BLANK: list[Any] = [None] * len(Event._fields)
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _event(kind: str, fid: int, ts: int, tid: int | None, state: _FutureState | None) -> list[Any]:
    event = _BLANK[:]
    event[0], event[1], event[2], event[3] = kind, fid, ts, tid
    if state is not None:
        event[4], event[5] = state.is_task, state.name
    else:
        event[4] = False
    return event


def _short(filename: str) -> str:
    """asyncio's files by their package path, others as they are."""
    if filename.startswith(_ASYNCIO_DIR):
        return "asyncio/" + filename[len(_ASYNCIO_DIR) :]
    return filename


class Recorder:
    """The process-wide raw record buffer and the thread that drains it."""

    def __init__(self) -> None:
        self.buffer: list[tuple[Any, ...]] = []
        self.limit = 1_000_000
        self.flush_interval = 0.1
        self.capture_values = False
        self.untraced = itertools.count()
        self.records_seen = 0
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._states: dict[int, _FutureState] = {}
        self._sites: dict[tuple[int, int], tuple[CodeType, Site]] = {}
        self._types: dict[type, str] = {}
        self._active: list[Installation] = []
        self._routes: dict[int, tuple[Installation, ...]] = {}
        self._next_route = itertools.count(1).__next__
        self._atexit = False
        self._draining = 0  # the thread converting records, 0 for none
        self._holding = Holding()
        self._lazy: dict[int, int | None] = {}

    # -- hot-path helpers (called by _future) -------------------------------------

    def overflow(self) -> None:
        """A future is handed out untraced: the buffer is full."""
        next(self.untraced)
        self._wake.set()

    def value_repr(self, value: object) -> str | None:
        return _safe_repr(value)

    def exc_message(self, exc: BaseException) -> str | None:
        try:
            return str(exc)[:_MAX_VALUE_CHARS]
        except Exception:
            return f"<unprintable {type(exc).__qualname__}>"

    def counters(self) -> dict[str, int]:
        """Process-wide counters, for stats() and trace files."""
        return {
            "records": self.records_seen,
            "untraced_futures": _count(self.untraced),
            "tail_forgotten_futures": self._holding.forgotten,
        }

    def live(self) -> list[tuple[int, _FutureState]]:
        """Copies of the state of every future and task not yet collected, after
        a drain: for snapshots and lints. From a signal handler that interrupted
        a drain on the same thread, the state is copied as it stands."""
        if self._draining != threading.get_ident():
            self.drain()
            self._release_all()  # tail-sampled futures still pending are part of "now"
        with self._lock:
            return [(fid, state.copy()) for fid, state in self._states.items()]

    def record_lint(
        self,
        kind: str,
        future_id: int,
        *,
        task_id: int | None = None,
        chain: tuple[int, ...] | None = None,
        detail: str | None = None,
        age_ns: int | None = None,
    ) -> None:
        """Record a lint finding (``tracedfuture.lints``) in order with other events.

        It reaches the installations that receive ``future_id``'s events, or, for
        ``future_id`` 0 (a blocked loop), every active installation. Safe to call
        from any thread.
        """
        self.buffer.append((ev.OP_LINT, future_id, time.monotonic_ns(), kind, task_id, chain, detail, age_ns))

    # -- installations and routes -------------------------------------------------

    def route(self, installations: tuple[Installation, ...]) -> int:
        """A key naming a set of installations, for the records of one loop.

        Keys are never reused, so records still in the buffer keep their meaning
        after a loop gains or loses an installation.
        """
        for key, value in self._routes.items():
            if value == installations:
                return key
        key = self._next_route()
        self._routes[key] = installations
        return key

    def activate(self, inst: Installation) -> None:
        with self._lock:
            self._lazy.clear()
            self._active.append(inst)
            self._configure()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tracedfuture-drain", daemon=True)
                self._thread.start()
            if not self._atexit:
                atexit.register(self._at_exit)
                self._atexit = True

    def deactivate(self, inst: Installation) -> None:
        with self._lock:
            self.drain()
            self._release_all()
            if inst in self._active:
                self._active.remove(inst)
            # Futures created under a route keep its key: keep the key, drop inst.
            for key, installations in list(self._routes.items()):
                if inst in installations:
                    self._routes[key] = tuple(i for i in installations if i is not inst)
            if not self._active:
                self._states.clear()
            self._configure()

    def _configure(self) -> None:
        active = self._active
        self.capture_values = any(i.options.capture_values for i in active)
        if active:
            # Half of max_memory is the buffer's (four fifths for the buffer, one
            # for what a drain has taken and not converted yet: see drain()); the
            # other half the exporters' queues'.
            self.limit = max(min(i.options.buffer_size, i.options.max_memory * 2 // 5 // RECORD_BYTES) for i in active)
            interval = min(i.options.flush_interval for i in active)
            if interval < self.flush_interval:
                self._wake.set()  # the drain thread may be waiting out a longer interval
            self.flush_interval = interval

    # -- draining -----------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0, *, only: object = None) -> None:
        """Convert everything recorded so far, on the calling thread, and wait
        (at most ``timeout`` seconds per exporter) until the exporters, or only
        the exporter ``only``, have it."""
        self.drain()
        for inst in list(self._active):
            inst._wait_sinks(timeout, only=only)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.drain(yield_gil=True)
            except BaseException:  # pragma: no cover - nothing may kill the drain thread
                logger.exception("tracedfuture: dropping a batch after an internal error")

    def _at_exit(self) -> None:
        # One deadline for everything: the last drain (on a helper thread, as the
        # drain thread may be inside an exporter holding the lock) and every
        # exporter's delivery, flush and shutdown.
        timeout = max((i.options.export_timeout for i in self._active), default=0.0)
        deadline = time.monotonic() + timeout

        def last_drain() -> None:
            with self._lock:
                self.drain()
                self._release_all()

        helper = threading.Thread(target=last_drain, name="tracedfuture-exit-drain", daemon=True)
        helper.start()
        helper.join(timeout)
        for inst in list(self._active):
            inst._shutdown_exporters(deadline)

    def _after_fork_in_child(self) -> None:
        """In a child after ``fork()``: the parent's threads are gone and its drain
        thread may have held the lock. Fresh locks, an empty buffer (the parent's
        records are the parent's to export), and a drain thread of the child's own."""
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._thread = None
        self._draining = 0
        del self.buffer[:]  # in place: the hot path holds this very list
        self._states.clear()
        self._holding = Holding()
        self._lazy.clear()
        self.untraced = itertools.count()
        self.records_seen = 0
        _delivery.after_fork_in_child()
        if self._active:
            self._thread = threading.Thread(target=self._run, name="tracedfuture-drain", daemon=True)
            self._thread.start()

    def drain(self, *, yield_gil: bool = False) -> None:
        """Convert and deliver the buffer, a chunk at a time.

        With ``yield_gil`` (the drain thread), the GIL is released between chunks
        so that a busy event loop waits at most one chunk's conversion. The lock is
        held throughout, so that another drainer cannot convert newer records first.
        """
        buffer = self.buffer
        with self._lock:
            left = len(buffer)
            if not left:
                return
            self._draining = threading.get_ident()
            try:
                # Appends from other threads land after what was there: taking
                # the first n and deleting them is safe without stopping the
                # recorders. A quarter of the buffer's limit at a time, so that
                # what the drain holds while the buffer refills stays within
                # max_memory (the limit leaves it room); deleting a chunk at a
                # time would shift the rest too often.
                step = max(_CHUNK, self.limit // 4)
                while left > 0:
                    n = min(left, step)
                    left -= n
                    batch = buffer[:n]
                    del buffer[:n]
                    self.records_seen += n
                    for start in range(0, n, _CHUNK):
                        self._process(batch[start : start + _CHUNK])
                        if yield_gil:
                            time.sleep(0)
                    del batch
            finally:
                self._draining = 0

    def _process(self, batch: list[tuple[Any, ...]]) -> None:
        out: dict[int, list[Event]] = {}
        convert = self._convert
        holding = self._holding
        held, lingering = holding.held, holding.lingering
        for record in batch:
            op, fid = record[0], record[1]
            if op == ev.OP_CREATED:
                slow = self._lazy_slow(record[10])
                if slow is not None:
                    holding.hold(record, slow)
                    continue
            elif fid in held or fid in lingering:
                if holding.add(record):
                    self._release(holding.release(fid), out)
                continue
            convert(record, out)
        if held or lingering:
            for fid in holding.due(time.monotonic_ns()):
                self._release(holding.release(fid), out)
        self._deliver(out)

    def _release(self, records: list[tuple[Any, ...]], out: dict[int, list[Event]]) -> None:
        convert = self._convert
        for record in records:
            convert(record, out)

    def _deliver(self, out: dict[int, list[Event]]) -> None:
        routes = self._routes
        for key, events in out.items():
            for inst in routes.get(key, ()):
                if inst._installed:
                    inst._deliver(events)

    def _lazy_slow(self, route: int) -> int | None:
        """For a route whose installations all sample by tail, the smallest
        ``slow`` in nanoseconds: its futures are held raw (``_holding``)."""
        slow = self._lazy.get(route, -1)
        if slow == -1:
            installations = self._routes.get(route, ())
            if installations and all(i.options.tail for i in installations):
                slow = int(min(i.options.slow for i in installations) * 1e9)
            else:
                slow = None
            self._lazy[route] = slow
        return slow

    def _release_all(self) -> None:
        """Convert every held future: the routes changed, or a snapshot needs them."""
        with self._lock:
            self._lazy.clear()
            if self._holding.held:
                out: dict[int, list[Event]] = {}
                self._release(self._holding.release_all(), out)
                self._deliver(out)

    # -- conversion ---------------------------------------------------------------

    def _convert(self, record: tuple[Any, ...], out: dict[int, list[Event]]) -> None:
        op, fid, ts = record[0], record[1], record[2]
        if op == ev.OP_CREATED:
            _, _, _, tid, is_task, code, lasti, thread_id, name, coro, route, context = record
            site = self.site(code, lasti)
            born = self._states[fid] = _FutureState(route, is_task, name, site, ts)
            born.parent_id = tid
            event = _event(ev.CREATED, fid, ts, tid, born)
            event[_SITE], event[_THREAD_ID], event[_CORO] = site, thread_id, coro
            event[_PARENT_ID] = tid if is_task else None
            event[_CONTEXT] = context
            self._out(out, route).append(_new_event(Event, event))
            return
        state = self._states.get(fid)
        if state is None:
            if op == ev.OP_LINT and fid == 0:
                self._lint(record, out, None)
            return  # created before any installation, or untraced
        if op == ev.OP_COLLECTED:
            # The most common record: a future gone after it ended; state freed.
            del self._states[fid]
            outcome = record[3]
            if outcome == "PENDING":
                event = _event(ev.ABANDONED, fid, ts, None, state)
                event[_AWAITER_ID] = state.awaiter_id
            elif outcome == "UNRETRIEVED":
                event = _event(ev.UNRETRIEVED, fid, ts, None, state)
                event[_EXC_TYPE], event[_AWAITER_ID] = state.exc_type, state.awaiter_id
            else:
                return
            event[_SITE], event[_AGE_NS] = state.site, ts - state.created_ns
            self._out(out, state.route).append(_new_event(Event, event))
            return
        emit = self._out(out, state.route).append
        tid = record[3]
        if op == ev.OP_CB_ADDED:
            callback, awaiter = record[4], record[5]
            kind = ev.CALLBACK_ADDED
            if awaiter is not None:
                state.awaiter_id = awaiter
                kind = ev.AWAITED
            event = _event(kind, fid, ts, tid, state)
            event[_CALLBACK], event[_AWAITER_ID] = callback, awaiter
            emit(_new_event(Event, event))
            if state.done:
                event[0] = ev.CALLBACK_SCHEDULED
                emit(_new_event(Event, event))
            else:
                state.callbacks.append((callback, awaiter))
        elif op == ev.OP_RESOLVED:
            event = _event(ev.RESOLVED, fid, ts, tid, state)
            event[_RESULT_TYPE] = self.type_name(record[4])
            event[_VALUE] = self._redacted(state, record[5])
            emit(_new_event(Event, event))
            self._finish(emit, state, fid, ts, tid)
        elif op == ev.OP_FAILED:
            state.exc_type = self.type_name(record[4])
            event = _event(ev.FAILED, fid, ts, tid, state)
            event[_EXC_TYPE], event[_EXC_MSG] = state.exc_type, self._redacted(state, record[5])
            emit(_new_event(Event, event))
            self._finish(emit, state, fid, ts, tid)
        elif op == ev.OP_CANCELLED:
            # A task's record has no canceller: its last cancel request, or the
            # cancelled future it was waiting on, is the cause.
            msg, who = self._redacted_msg(state, record[4]), record[5]
            if who is not None or state.cancel is None:
                state.cancel = (msg, tid, self.caller(who))
            event = _event(ev.CANCELLED, fid, ts, tid, state)
            event[_MSG], event[_CANCELLER_ID], event[_CANCELLER] = state.cancel
            emit(_new_event(Event, event))
            self._finish(emit, state, fid, ts, tid)
            for _, awaiter in state.scheduled:
                waiter = self._states.get(awaiter) if awaiter is not None else None
                if waiter is not None and waiter.cancel is None:
                    waiter.cancel = state.cancel
        elif op == ev.OP_CANCEL_REQ:
            state.cancel = (self._redacted_msg(state, record[4]), tid, self.caller(record[5]))
            event = _event(ev.CANCEL_REQUESTED, fid, ts, tid, state)
            event[_MSG], event[_CANCELLER_ID], event[_CANCELLER] = state.cancel
            emit(_new_event(Event, event))
        elif op == ev.OP_RENAMED:
            state.name = record[4]
            emit(_new_event(Event, _event(ev.RENAMED, fid, ts, tid, state)))
        elif op == ev.OP_CB_REMOVED:
            for index in reversed(record[5]):
                if index < len(state.callbacks):
                    del state.callbacks[index]
            event = _event(ev.CALLBACK_REMOVED, fid, ts, tid, state)
            event[_CALLBACK] = record[4]
            emit(_new_event(Event, event))
        elif op == ev.OP_LINT:
            self._lint(record, out, state)

    def _lint(self, record: tuple[Any, ...], out: dict[int, list[Event]], state: _FutureState | None) -> None:
        _, fid, ts, kind, tid, chain, detail, age = record
        if state is None:
            route = self.route(tuple(self._active))
            event = _event(kind, fid, ts, tid, None)
        else:
            route = state.route
            event = _event(kind, fid, ts, tid, state)
            event[_SITE] = state.site
        event[_AGE_NS], event[_CHAIN], event[_DETAIL] = age, chain, detail
        self._out(out, route).append(_new_event(Event, event))

    @staticmethod
    def _out(out: dict[int, list[Event]], route: int) -> list[Event]:
        events = out.get(route)
        if events is None:
            events = out[route] = []
        return events

    @staticmethod
    def _finish(emit: Callable[[Event], None], state: _FutureState, fid: int, ts: int, tid: int | None) -> None:
        """The future is done: every callback it holds is handed to the loop now."""
        state.done = True
        scheduled = state.scheduled = state.callbacks
        state.callbacks = []
        for callback, awaiter in scheduled:
            event = _event(ev.CALLBACK_SCHEDULED, fid, ts, tid, state)
            event[_CALLBACK], event[_AWAITER_ID] = callback, awaiter
            emit(_new_event(Event, event))

    def _redacted(self, state: _FutureState, value: str | None) -> str | None:
        if value is None:
            return None
        for inst in self._routes.get(state.route, ()):
            if inst.options.capture_values:
                return inst.redact(value)
        return None

    def _redacted_msg(self, state: _FutureState, msg: str | None) -> str | None:
        """A cancel message is kept by default (it says why), through ``redact`` if any."""
        if msg is None:
            return None
        for inst in self._routes.get(state.route, ()):
            if inst.options.redact is not None:
                return inst.redact(msg)
        return msg

    def site(self, code: CodeType | None, lasti: int) -> Site | None:
        if code is None:
            return None
        # Keyed by id(code), not code: hashing a code object hashes its bytecode.
        key = (id(code), lasti)
        cached = self._sites.get(key)
        if cached is not None and cached[0] is code:
            return cached[1]
        line = code.co_firstlineno
        for start, end, lineno in code.co_lines():
            if start <= lasti < end and lineno is not None:
                line = lineno
                break
        site = Site(code.co_filename, line, code.co_qualname)
        if len(self._sites) >= 100_000:
            self._sites.clear()
        self._sites[key] = (code, site)  # keeps code alive: its id is not reused
        return site

    def caller(self, who: tuple[CodeType | None, int, CodeType | None, int] | None) -> str | None:
        """``"Timeout._on_timeout (asyncio/timeouts.py:123)"``, and, when that is
        asyncio's code, the user code it was called from: ``"... in main (app.py:9)"``."""
        if who is None:
            return None
        direct = self.site(who[0], who[1])
        if direct is None:
            return None
        text = f"{direct.function} ({_short(direct.filename)}:{direct.lineno})"
        user = self.site(who[2], who[3])
        if user is not None and user != direct:
            text += f" in {user.function} ({user.filename}:{user.lineno})"
        return text

    def type_name(self, tp: type) -> str:
        name = self._types.get(tp)
        if name is None:
            module = getattr(tp, "__module__", None)
            qualname = getattr(tp, "__qualname__", repr(tp))
            name = qualname if module in (None, "builtins") else f"{module}.{qualname}"
            if len(self._types) < 10_000:
                self._types[tp] = name
        return name


def _count(counter: Any) -> int:
    # itertools.count has no public value; its repr is "count(N)".
    return int(repr(counter)[6:-1])


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


RECORDER = Recorder()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RECORDER._after_fork_in_child)
