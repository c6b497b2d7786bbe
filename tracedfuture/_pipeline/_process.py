"""The process around tracing: the threads it starts, and what ``fork()`` does to it.

Threads: :func:`start_daemon` is the one way tracedfuture starts a thread (the
drain, an exporter's sink, a helper at exit). The program should see as few as
possible: one, ``tracedfuture-drain``, with a trace file alone. That thread is
the *host*: besides draining, it serves the queues of *hosted* sinks (a trace
file's, see :func:`host_pump`) and the work *posted* to it. From 3.12 on,
``atexit`` handlers cannot start threads, so work that must run on a thread of
its own at exit is posted to the host; only when there is no host does a
*spare* thread, ``tracedfuture-spare``, stand in for it, started with tracing's
first thread.

``fork()``: the whole package registers with ``os.register_at_fork`` once, here.
A part that must act around a fork calls :func:`at_fork` with its *layer*; the
hooks of each moment run layer by layer, lowest first, so that each finds the
layers below it already reset in the child:

=============  ==========================================================
``threads``    the host and the spare thread (this module)
``recorder``   the drain's lock, rings and queues (``_drain``)
``delivery``   installations' filters, then each exporter's sink (``_sink``)
``drain``      the drain thread restarts, now that its consumers are ready
``control``    the control socket (``_control.server``)
``flight``     flight recorders (``tracedfuture.flight``)
``startup``    ``tracedfuture run``'s trace of a forked child (``_startup``)
=============  ==========================================================

A bound method is held weakly (its object may be collected; its hook then goes
with it). A hook that raises is logged and the others still run: a ``fork()``
never fails because of tracing.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from types import MethodType
from typing import Protocol

__all__ = [
    "LAYERS",
    "Started",
    "at_fork",
    "ensure_spare",
    "host_pump",
    "host_thread",
    "serve",
    "start_daemon",
    "wake_host",
]

logger = logging.getLogger("tracedfuture")

LAYERS = ("threads", "recorder", "delivery", "drain", "control", "flight", "startup")
_MOMENTS = ("before", "after_in_child", "after_in_parent")

_Hook = Callable[[], object]
# moment -> [(layer's rank, registration order, a callable returning the hook or None)]
_hooks: dict[str, list[tuple[int, int, Callable[[], _Hook | None]]]] = {moment: [] for moment in _MOMENTS}
_count = 0


def at_fork(
    layer: str,
    *,
    before: _Hook | None = None,
    after_in_child: _Hook | None = None,
    after_in_parent: _Hook | None = None,
) -> None:
    """Run these around every ``fork()`` of the process, in ``layer``'s turn (see
    the module docs); bound methods are held weakly."""
    global _count
    rank = LAYERS.index(layer)
    for moment, hook in zip(_MOMENTS, (before, after_in_child, after_in_parent), strict=True):
        if hook is None:
            continue
        _count += 1
        get = weakref.WeakMethod(hook) if isinstance(hook, MethodType) else _strong(hook)
        _hooks[moment].append((rank, _count, get))
        _hooks[moment].sort(key=lambda entry: entry[:2])


def _strong(hook: _Hook) -> Callable[[], _Hook | None]:
    return lambda: hook


def _run(moment: str) -> None:
    entries = _hooks[moment]
    live = []
    for entry in list(entries):
        hook = entry[2]()
        if hook is None:
            continue  # its object is gone
        live.append(entry)
        try:
            hook()
        except BaseException:  # a fork must never fail because of an observer
            logger.exception("tracedfuture: a %s fork handler failed", moment.replace("_", " "))
    if len(live) != len(entries):
        entries[:] = live


os.register_at_fork(
    before=lambda: _run("before"),
    after_in_child=lambda: _run("after_in_child"),
    after_in_parent=lambda: _run("after_in_parent"),
)


# --- threads ---------------------------------------------------------------------------


class Started(Protocol):
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


def start_daemon(
    target: Callable[[], object], name: str, *, wake: Callable[[], object] | None = None
) -> Started | None:
    """Run ``target`` on a daemon thread of its own, started now.

    With ``wake``, the thread is the host (the drain): ``target`` calls
    :func:`serve` in its loop, and ``wake()`` makes it do so soon.

    From 3.12 on, ``atexit`` handlers cannot start threads ("can't create new
    thread at interpreter shutdown"): there ``target`` is posted to the host (or
    the spare thread), which runs such work one piece at a time; the caller waits
    for it within its own deadline, as for a thread. None if nothing can run it
    (a process out of threads, or a fork()ed child at exit).
    """
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return _SPARE.post(target)
    if wake is not None:
        _SPARE.host(thread, wake)
    _SPARE.ensure()
    return thread


class _Posted:
    """Work given to the host or the spare thread, waited for like a thread."""

    def __init__(self, target: Callable[[], object]) -> None:
        self.target = target
        self.done = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        self.done.wait(timeout)

    def is_alive(self) -> bool:
        return not self.done.is_set()


class _Spare:
    """Who runs the work that needs a thread when no thread can start any more
    (see :func:`start_daemon`): the host, or else a thread of its own, idle
    until then. Also the registry of hosted pumps."""

    def __init__(self) -> None:
        self._pumps: list[Callable[[], Callable[[], bool] | None]] = []
        self._forget()
        at_fork("threads", after_in_child=self._forget)

    def _forget(self) -> None:
        # Also in a fork()ed child, which has no host nor spare until it starts
        # one, and whose copy of the lock may have been held by another thread.
        self._cond = threading.Condition(threading.Lock())
        self._work: deque[_Posted] = deque()
        self._pid = 0
        self._host: threading.Thread | None = None
        self._wake: Callable[[], object] | None = None
        self._host_pid = 0

    def host(self, thread: threading.Thread, wake: Callable[[], object]) -> None:
        with self._cond:
            self._host, self._wake, self._host_pid = thread, wake, os.getpid()

    def host_thread(self) -> threading.Thread | None:
        host = self._host
        if host is None or self._host_pid != os.getpid() or not host.is_alive():
            return None
        return host

    def wake_host(self) -> None:
        wake = self._wake
        if wake is not None and self._host_pid == os.getpid():
            wake()

    def ensure(self) -> None:
        with self._cond:
            if self._pid == os.getpid() or self.host_thread() is not None:
                return
            try:
                threading.Thread(target=self._run, name="tracedfuture-spare", daemon=True).start()
            except RuntimeError:  # no thread now: maybe at the next try
                return
            self._pid = os.getpid()

    def post(self, target: Callable[[], object]) -> _Posted | None:
        with self._cond:
            hosted = self.host_thread() is not None
            if not hosted and self._pid != os.getpid():
                return None
            posted = _Posted(target)
            self._work.append(posted)
            self._cond.notify()
        if hosted:
            self.wake_host()
        return posted

    def add_pump(self, pump: Callable[[], bool]) -> None:
        get = weakref.WeakMethod(pump) if isinstance(pump, MethodType) else _strong(pump)
        with self._cond:
            self._pumps.append(get)  # type: ignore[arg-type]

    def remove_pump(self, pump: Callable[[], bool]) -> None:
        with self._cond:
            self._pumps[:] = [get for get in self._pumps if get() not in (None, pump)]

    def serve(self) -> bool:
        """On the host: run what was posted, then each hosted pump once. True if
        a pump has more to do at once."""
        while True:
            with self._cond:
                if not self._work:
                    break
                posted = self._work.popleft()
            self._run_one(posted)
        with self._cond:
            pumps = [pump for pump in (get() for get in self._pumps) if pump is not None]
        more = False
        for pump in pumps:
            try:
                more = bool(pump()) or more
            except BaseException:  # pragma: no cover - pumps isolate their exporters' errors
                logger.exception("tracedfuture: internal error in a trace file's delivery")
        return more

    @staticmethod
    def _run_one(posted: _Posted) -> None:
        try:
            posted.target()
        except BaseException:  # pragma: no cover - targets isolate their own errors
            logger.exception("tracedfuture: internal error at exit")
        finally:
            posted.done.set()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._work:
                    self._cond.wait()
                posted = self._work.popleft()
            self._run_one(posted)


_SPARE = _Spare()


def ensure_spare() -> None:
    """Start the spare thread if this process has neither host nor spare yet."""
    _SPARE.ensure()


def host_pump(pump: Callable[[], bool], *, remove: bool = False) -> None:
    """Have the host call ``pump()`` on each of its turns (held weakly if a bound
    method) until removed; ``pump`` returns True when it has more to do at once."""
    if remove:
        _SPARE.remove_pump(pump)
    else:
        _SPARE.add_pump(pump)


def host_thread() -> threading.Thread | None:
    """The host thread of this process, if it runs."""
    return _SPARE.host_thread()


def wake_host() -> None:
    """Have the host serve its pumps soon."""
    _SPARE.wake_host()


def serve() -> bool:
    """The host's turn (called by the drain thread): posted work, then the pumps."""
    return _SPARE.serve()
