"""Lints: findings about futures, recorded as events and exported like any other.

>>> import asyncio, tracedfuture, tracedfuture.lints
>>> from tracedfuture.exporters import MemoryExporter
>>> memory = MemoryExporter()
>>> async def main():
...     with tracedfuture.lints.enable(stall=0.05, blocked=None, orphan=None):
...         await asyncio.sleep(0.2)
>>> tracedfuture.run(main(), exporters=[memory])
>>> print(tracedfuture.lints.describe(memory.of_kind("stalled")[0]))  # doctest: +ELLIPSIS
stalled: (T) #... -> (F) #... pending ...s, created at ... in main

What is found, and the event that says it:

``stalled``
    a future pending longer than ``stall`` seconds while a task awaits it. The
    event is about the leaf future; ``chain`` holds the awaiting tasks from the
    outermost down to it (then the future itself), ``task_id`` the innermost
    awaiting task. Reported again after 2x, 4x, 8x... the threshold. Waits that
    last for ever on purpose are not stalls (see "Waits on purpose" below).
``blocked_loop``
    the loop did not come back to its heartbeat for longer than ``blocked``
    seconds. A watchdog thread notices, so it works on any loop that has
    ``call_soon_threadsafe`` and ``call_later`` (uvloop included). ``detail`` is
    the loop thread's stack at that moment, ``task_id`` the task that was running.
``orphan``
    a future (not a task) pending longer than ``orphan`` seconds with no done
    callback and nobody awaiting it: nothing will ever see its result.
``abandoned`` / ``unretrieved``
    recorded by the core when a future is collected while pending, or with an
    exception nobody retrieved; :func:`describe` and :func:`findings` show them
    with the lints.

Waits on purpose, and excludes
------------------------------

Some futures are meant to stay pending for the program's life. The stall lint
recognises these (``known_waits=True``, the default; :data:`KNOWN_WAITS`) and
never reports them, neither at ``stall`` seconds nor at 2x, 4x, 8x:

* ``await server.serve_forever()`` (asyncio's ``Server``, uvloop's too);
* ``await stop.wait()`` (an ``asyncio.Event``, ``asyncio.Event().wait()``
  included) directly in a root task, such as ``asyncio.run``'s main task: the
  usual "run until told to stop";
* servers' own waits: aiohttp's ``web.run_app`` (its main task sleeps an hour
  at a time, for ever) and a keep-alive connection waiting for the next request;
  uvicorn's lifespan task waiting for the server's shutdown (``LifespanOn.receive``)
  and its main loop's tick (``Server.main_loop``); hypercorn's lifespan, its
  ``serve()`` waiting for the shutdown trigger, its connections waiting for the
  client; ``grpc.aio``'s ``wait_for_termination()`` and its server's loops
  waiting for the next call.

Each is one row of :data:`KNOWN_WAITS` (a :class:`KnownWait`); only futures are
recognised, never a task (a task stalled waits on something untraced).

Anything else is excluded per lint with ``stall_exclude`` and ``orphan_exclude``:
shell patterns, each tried against

* the creation site, as ``path:line in function``; a pattern that does not start
  with ``/`` or ``*`` also matches the end of the path, so ``"aiohttp/web.py:*"``
  matches every line of that file, and ``"myapp/pool.py:* in Pool.acquire"`` one
  function;
* the code of the creation line, stripped: ``"*self._closed.wait()*"``;
* a task's name or a future's label: ``"heartbeat-*"``;

for the stalled future and for the task awaiting it (the orphan lint: the future).
A future excluded or recognised is counted once in ``Lints.excused``.

Lints need tracing installed (:func:`tracedfuture.install`): they reach the
installations that receive the future's events, and a blocked loop reaches every
active installation. The checks run on a background thread from the recorder's
state (``graph.live_snapshot()``); the only calls into the loop are the heartbeat's
``call_soon_threadsafe`` and, for a task stalled on an ``asyncio.Lock``, one
callback that reads the tasks' coroutines for a deadlock: the stall is then
recorded with its paragraph ("deadlock: worker-a holds Lock#1 (acquired at
app.py:20) and waits for Lock#2 (app.py:21), held by worker-b ..."). A failing check is logged once through the
``tracedfuture`` logger and never reaches the traced program.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from types import FrameType
from typing import Any, NamedTuple

from . import _core, _locks
from ._core import _events as ev
from ._core._events import Event, Site
from ._pipeline._drain import RECORDER
from .graph import PendingFuture, Snapshot, live_snapshot, site_text

__all__ = [
    "FINDINGS",
    "KNOWN_WAITS",
    "KnownWait",
    "Lints",
    "describe",
    "enable",
    "findings",
    "report",
    "waits_on_purpose",
]

logger = logging.getLogger("tracedfuture")

# The event kinds that describe a problem: the lints and the core's findings.
FINDINGS = frozenset({ev.STALLED, ev.BLOCKED_LOOP, ev.ORPHAN, ev.ABANDONED, ev.UNRETRIEVED})

_STACK_LIMIT = 40
_NS = 1_000_000_000


class KnownWait(NamedTuple):
    """A wait on purpose: a framework's own future that stays pending for the
    server's whole life, or for as long as a client keeps its connection open.

    ``pattern`` is a shell pattern, matched as ``stall_exclude``'s: against the
    stalled future (its site, its line of code, its label) when ``of`` is
    ``"future"``; against the coroutine of the task awaiting it
    (``AioServer._request_call``) when ``of`` is ``"awaiter"``, for frameworks
    compiled with Cython, whose futures have no Python frame to name. ``root``:
    only when the task awaiting it is a root task (made outside any task).
    Only futures are waits on purpose: a task stalled is one waiting on
    something untraced, which is always worth a look.
    """

    framework: str
    pattern: str
    of: str = "future"
    root: bool = False


#: The waits on purpose the stall lint recognises (``known_waits=True``): one
#: row per wait, the only place that knows a framework's waits.
KNOWN_WAITS: tuple[KnownWait, ...] = (
    # await server.serve_forever(), asyncio's or uvloop's; the same in a task of its own
    KnownWait("asyncio", "*serve_forever(*"),
    KnownWait("asyncio", "asyncio/base_events.py:* in Server.serve_forever"),
    # await stop.wait() in the main task: "run until told to stop"
    KnownWait("asyncio", "*.wait()*", root=True),
    # aiohttp: web.run_app sleeps an hour at a time, for ever; a keep-alive
    # connection's handler waits for the client's next request.
    KnownWait("aiohttp", "aiohttp/web.py:* in _run_app"),
    KnownWait("aiohttp", "aiohttp/web_protocol.py:* in RequestHandler.start"),
    # uvicorn: the lifespan task waits for "lifespan.shutdown" for the server's
    # whole life; the server's main task ticks asyncio.sleep(0.1) until told to exit.
    KnownWait("uvicorn", "uvicorn/lifespan/on.py:* in LifespanOn.receive"),
    KnownWait("uvicorn", "uvicorn/server.py:* in Server.main_loop"),
    # hypercorn: the lifespan task waits for shutdown; serve() waits for its
    # shutdown trigger and its workers' end; each connection reads the client's
    # next bytes and times its keep-alive out; its events wait for the peer.
    KnownWait("hypercorn", "hypercorn/asyncio/lifespan.py:* in Lifespan.asgi_receive"),
    KnownWait("hypercorn", "hypercorn/asyncio/run.py:* in worker_serve"),
    KnownWait("hypercorn", "hypercorn/utils.py:* in raise_shutdown"),
    KnownWait("hypercorn", "hypercorn/asyncio/worker_context.py:* in EventWrapper.wait"),
    KnownWait("hypercorn", "hypercorn/asyncio/tcp_server.py:* in TCPServer._read_data"),
    KnownWait("hypercorn", "hypercorn/asyncio/tcp_server.py:* in TCPServer._idle_timeout"),
    # grpc.aio: server.wait_for_termination() waits for the server's stop; the
    # server's loops (Cython) wait for the next call.
    KnownWait("grpc", "grpc/aio/_server.py:* in Server.__init__"),
    KnownWait("grpc", "AioServer._server_main_loop", of="awaiter"),
    KnownWait("grpc", "AioServer._request_call", of="awaiter"),
)


def waits_on_purpose(snap: Snapshot, parents: Mapping[int, int | None]) -> frozenset[int]:
    """What in ``snap`` waits on purpose: each leaf future that :data:`KNOWN_WAITS`
    recognises (uvicorn's lifespan and its server loop, aiohttp's keep-alive...)
    and every task up its await chain. ``parents`` maps a task's id to its
    parent's (``None`` for a root task). The control socket's current findings
    leave these out, as the stall lint does, and ``tracedfuture pstree`` folds
    them with a server's background.

    >>> waits_on_purpose(Snapshot(0, ()), {})
    frozenset()
    """
    excuses = _Excuses((), known_waits=True)
    found: set[int] = set()
    for leaf in snap.leaves():
        chain = snap.chain(leaf.future_id)
        awaiter = snap.get(chain[-2]) if len(chain) > 1 else None
        if excuses.excused(leaf, awaiter, parents):
            found.update(chain)
    return frozenset(found)


def _patterns(name: str, value: object) -> tuple[str, ...]:
    """Exclude patterns, validated: a sequence of strings."""
    if isinstance(value, str):
        msg = f"{name} must be a sequence of shell patterns, such as ({value!r},), not the single string {value!r}"
        raise TypeError(msg)
    items = tuple(value) if isinstance(value, Iterable) else None
    if items is None or not all(isinstance(p, str) and p for p in items):
        msg = f"{name} must be a sequence of shell patterns, such as ('aiohttp/web.py:*', 'heartbeat-*'), not {value!r}"
        raise TypeError(msg)
    return items


class _Excuses:
    """Which futures a lint leaves out: the one place that decides it.

    Decided once per future (a future's site and name do not change once it is
    awaited), and forgotten when the future is done.
    """

    def __init__(self, patterns: Sequence[str], known_waits: bool) -> None:
        self.patterns = tuple(patterns)
        self.known = KNOWN_WAITS if known_waits else ()
        self.decided: dict[int, bool] = {}
        self._lines: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns or self.known)

    def forget(self, pending: set[int]) -> None:
        for gone in [fid for fid in self.decided if fid not in pending]:
            del self.decided[gone]

    def excused(self, fut: PendingFuture, awaiter: PendingFuture | None, parents: Mapping[int, int | None]) -> bool:
        """Whether to leave out ``fut`` (awaited by the task ``awaiter``, if any)."""
        decided = self.decided.get(fut.future_id)
        if decided is None:
            decided = self.decided[fut.future_id] = self._decide(fut, awaiter, parents)
        return decided

    def _decide(self, fut: PendingFuture, awaiter: PendingFuture | None, parents: Mapping[int, int | None]) -> bool:
        texts = self._texts(fut)
        if self.known and not fut.is_task:
            root_awaiter = awaiter is not None and awaiter.future_id in parents and parents[awaiter.future_id] is None
            coro = (awaiter.coro,) if awaiter is not None and awaiter.coro else ()
            for known in self.known:
                if known.root and not root_awaiter:
                    continue
                if _matches(known.pattern, coro if known.of == "awaiter" else texts):
                    return True
        if not self.patterns:
            return False
        candidates = texts + (self._texts(awaiter) if awaiter is not None else ())
        return any(_matches(pattern, candidates) for pattern in self.patterns)

    def _texts(self, fut: PendingFuture) -> tuple[str, ...]:
        texts: list[str] = []
        if fut.site is not None:
            texts.append(f"{fut.site.filename}:{fut.site.lineno} in {fut.site.function}")
            line = self._line(fut.site)
            if line:
                texts.append(line)
        if fut.name:
            texts.append(fut.name)
        return tuple(texts)

    def _line(self, site: Site) -> str:
        """The creation line's code, read here (off the loop) and kept per file."""
        lines = self._lines.get(site.filename)
        if lines is None:
            try:
                with open(site.filename, encoding="utf-8", errors="replace") as source:
                    lines = source.read().splitlines()
            except (OSError, ValueError):
                lines = []
            if len(self._lines) >= 256:
                del self._lines[next(iter(self._lines))]
            self._lines[site.filename] = lines
        return lines[site.lineno - 1].strip() if 0 < site.lineno <= len(lines) else ""


def _matches(pattern: str, texts: Iterable[str]) -> bool:
    # "aiohttp/web.py:*" means that file wherever it is installed.
    tail = None if pattern.startswith(("/", "*")) else "*/" + pattern
    return any(fnmatch.fnmatchcase(t, pattern) or (tail is not None and fnmatch.fnmatchcase(t, tail)) for t in texts)


def _seconds(name: str, value: float | None) -> int | None:
    """A threshold in nanoseconds, validated, or ``None`` (the lint is off)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        msg = f"{name} must be a positive number of seconds, such as 0.5, or None to turn the lint off; not {value!r}"
        raise ValueError(msg)
    return int(value * _NS)


class Lints:
    """The running lints of :func:`enable`; ``stop()`` them (or use ``with``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        stall_ns: int | None,
        blocked_ns: int | None,
        orphan_ns: int | None,
        interval: float,
        stall_excuses: _Excuses | None = None,
        orphan_excuses: _Excuses | None = None,
    ) -> None:
        self.loop = loop
        self.stall_ns = stall_ns
        self.blocked_ns = blocked_ns
        self.orphan_ns = orphan_ns
        self.interval = interval
        self.reported: dict[str, int] = {ev.STALLED: 0, ev.BLOCKED_LOOP: 0, ev.ORPHAN: 0}
        #: Futures left out, once each: recognised waits on purpose and excludes.
        self.excused: dict[str, int] = {ev.STALLED: 0, ev.ORPHAN: 0}
        self._stall_excuses = stall_excuses or _Excuses((), known_waits=False)
        self._orphan_excuses = orphan_excuses or _Excuses((), known_waits=False)
        self._stop = threading.Event()
        self._next_stall: dict[int, int] = {}
        self._orphans_seen: set[int] = set()
        self._failed: set[str] = set()
        # Heartbeat state, written by the loop's thread, read by the watchdog.
        self._beat_ns = 0
        self._loop_thread: int | None = None
        self._beat_period = 0.0
        self._blocked_since = 0
        self._thread = threading.Thread(target=self._run, name="tracedfuture-lints", daemon=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<tracedfuture.lints.Lints {state} reported={self.reported}>"

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _start(self) -> None:
        if self.blocked_ns is not None:
            assert self.loop is not None
            # Beat often enough that a late beat means a blocked loop, not an idle one.
            self._beat_period = self.blocked_ns / _NS / 4
            self._beat_ns = time.monotonic_ns()
            if asyncio._get_running_loop() is self.loop:
                # Started on the loop's own thread: watch from now on, so that a
                # block right after enable() (before the first beat) is seen too.
                self._loop_thread = threading.get_ident()
            self.loop.call_soon_threadsafe(self._beat)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking. Safe from any thread; the heartbeat stops at its next beat."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> Lints:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the loop's side ----------------------------------------------------------

    def _beat(self) -> None:
        """Runs on the loop: proves it came back, and books the next beat."""
        self._beat_ns = time.monotonic_ns()
        self._loop_thread = threading.get_ident()
        if not self._stop.is_set():
            assert self.loop is not None
            self.loop.call_later(self._beat_period, self._beat)

    # -- the background thread ----------------------------------------------------

    def _run(self) -> None:
        period = self._beat_period if self.blocked_ns is not None else self.interval
        period = min(period, self.interval)
        next_check = time.monotonic() + self.interval
        while not self._stop.wait(period):
            if self.blocked_ns is not None:
                self._isolated("blocked loop watchdog", self._watch)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.interval
                self._isolated("future checks", self._check)

    def _isolated(self, what: str, check: Any) -> None:
        try:
            check()
        except Exception:
            if what not in self._failed:  # once: a broken check would repeat forever
                self._failed.add(what)
                logger.exception("tracedfuture: lint %s failed; it keeps running, this is logged once", what)

    def _watch(self) -> None:
        loop = self.loop
        assert loop is not None
        assert self.blocked_ns is not None
        if loop.is_closed():
            self._stop.set()
            return
        now = time.monotonic_ns()
        beat = self._beat_ns
        if not loop.is_running() or self._loop_thread is None:
            # A stopped loop runs no callbacks: its silence is not a block.
            self._beat_ns = now
            return
        late = now - beat - int(self._beat_period * _NS)
        if late <= self.blocked_ns or self._blocked_since == beat:
            return
        self._blocked_since = beat  # one report per block
        frame = sys._current_frames().get(self._loop_thread)
        task = _running_task(loop)
        task_id = _core.future_id(task) if task is not None else None
        name = None
        if task_id is not None:
            try:
                name = task.get_name()  # a plain read; the task belongs to the loop's thread
            except Exception:
                name = None
        detail = _format_blocked(frame, task_id, name)
        RECORDER.record_lint(ev.BLOCKED_LOOP, 0, task_id=task_id, detail=detail, age_ns=late, loop=loop)
        self.reported[ev.BLOCKED_LOOP] += 1

    def _check(self) -> None:
        if self.stall_ns is None and self.orphan_ns is None:
            return
        snap = live_snapshot()
        parents = {info[0]: info[4] for info in map(_core.info, _core.live()) if info is not None}
        pending = {f.future_id for f in snap.futures}
        for gone in [fid for fid in self._next_stall if fid not in pending]:
            del self._next_stall[gone]
        self._orphans_seen &= pending
        self._stall_excuses.forget(pending)
        self._orphan_excuses.forget(pending)
        if self.stall_ns is not None:
            self._stalls(snap, parents)
        if self.orphan_ns is not None:
            self._orphans(snap, parents)

    def _stalls(self, snap: Snapshot, parents: Mapping[int, int | None]) -> None:
        assert self.stall_ns is not None
        for leaf in snap.leaves():
            age = leaf.age_ns or 0
            due = self._next_stall.get(leaf.future_id, self.stall_ns)
            if age < due:
                continue
            chain = snap.chain(leaf.future_id)
            if self._stall_excuses:
                seen = leaf.future_id in self._stall_excuses.decided
                awaiter = snap.get(chain[-2]) if len(chain) > 1 else None
                if self._stall_excuses.excused(leaf, awaiter, parents):
                    self.excused[ev.STALLED] += not seen
                    continue
            # Back-off: the same stall again at 2x, 4x, 8x... the threshold.
            while due <= age:
                due *= 2
            self._next_stall[leaf.future_id] = due
            labels = [f.label for f in map(snap.get, chain) if f is not None]
            text = f"{' -> '.join(labels)} pending {age / _NS:.2f}s"
            if leaf.site is not None:
                text += f", created at {site_text(leaf.site)}"
            innermost = chain[-2] if len(chain) > 1 else None
            if leaf.name and leaf.name.startswith("Lock#") and self._explain_on_loop(leaf, innermost, chain, text, age):
                continue
            RECORDER.record_lint(ev.STALLED, leaf.future_id, task_id=innermost, chain=chain, detail=text, age_ns=age)
            self.reported[ev.STALLED] += 1

    def _explain_on_loop(
        self, leaf: PendingFuture, task: int | None, chain: tuple[int, ...], text: str, age: int
    ) -> bool:
        """A task stalled on an ``asyncio.Lock``: whether it is in a deadlock is
        read on the loop's thread (the tasks' coroutines belong to it), and the
        stall recorded there with the deadlock's paragraph. ``False`` when the
        loop cannot be asked: the caller records it as it is."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return False

        def explain() -> None:
            detail = text
            try:
                for deadlock in _locks.deadlocks(_locks.holdings(asyncio.all_tasks(loop))):
                    if task in deadlock.task_ids:
                        detail = f"{text}\n{deadlock}"
                        break
            except Exception:  # an observer never breaks the observed
                pass
            RECORDER.record_lint(ev.STALLED, leaf.future_id, task_id=task, chain=chain, detail=detail, age_ns=age)
            self.reported[ev.STALLED] += 1

        try:
            loop.call_soon_threadsafe(explain)
        except RuntimeError:  # closed meanwhile
            return False
        return True

    def _orphans(self, snap: Snapshot, parents: Mapping[int, int | None]) -> None:
        assert self.orphan_ns is not None
        for fut in snap.futures:
            if fut.is_task or fut.awaited_by or fut.callbacks or fut.future_id in self._orphans_seen:
                continue
            age = fut.age_ns or 0
            if age < self.orphan_ns:
                continue
            self._orphans_seen.add(fut.future_id)
            if self._orphan_excuses and self._orphan_excuses.excused(fut, None, parents):
                self.excused[ev.ORPHAN] += 1
                continue
            text = f"{fut.label} pending {age / _NS:.2f}s with no callback and nobody awaiting it"
            if fut.site is not None:
                text += f", created at {site_text(fut.site)}"
            if fut.last_awaiter_id is not None:
                text += f", last awaited by #{fut.last_awaiter_id}"
            RECORDER.record_lint(ev.ORPHAN, fut.future_id, task_id=fut.last_awaiter_id, detail=text, age_ns=age)
            self.reported[ev.ORPHAN] += 1


def _running_task(loop: asyncio.AbstractEventLoop) -> Any:
    """The task running on ``loop`` now, read from another thread.

    CPython 3.11-3.13 keep the running task of each loop in one dict, shared by
    asyncio's C and Python code (``asyncio.tasks._current_tasks``); one
    ``dict.get`` is atomic under the GIL, so reading it from the watchdog cannot
    race the loop (``asyncio.current_task(loop)`` is documented for the loop's
    thread only). 3.14 keeps it in the thread state, out of reach: ``None`` there,
    and the stack still names the code.
    """
    current = getattr(asyncio.tasks, "_current_tasks", None)
    if not isinstance(current, dict):
        return None
    return current.get(loop)


def _format_blocked(frame: FrameType | None, task_id: int | None, name: str | None) -> str:
    if frame is None:
        return "the loop thread's stack is not available"
    stack = traceback.extract_stack(frame, limit=_STACK_LIMIT)
    running = "a callback" if task_id is None else f"task #{task_id} {name}" if name else f"task #{task_id}"
    # The frame just inside asyncio's Handle._run is what the loop called.
    for outer, inner in itertools.pairwise(stack):
        if outer.name == "Handle._run" or (outer.name == "_run" and outer.filename.endswith("events.py")):
            running += f", in {inner.name} ({inner.filename}:{inner.lineno})"
            break
    else:
        if stack:
            innermost = stack[-1]
            running += f", in {innermost.name} ({innermost.filename}:{innermost.lineno})"
    lines = [f"running: {running}", "loop thread stack (most recent call last):"]
    lines.extend(item.rstrip("\n") for item in stack.format())
    return "\n".join(lines)


def enable(
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    stall: float | None = 5.0,
    blocked: float | None = 0.5,
    orphan: float | None = 30.0,
    interval: float | None = None,
    stall_exclude: Iterable[str] = (),
    orphan_exclude: Iterable[str] = (),
    known_waits: bool = True,
) -> Lints:
    """Start the lints; returns a :class:`Lints` handle to ``stop()``.

    ``stall``, ``blocked`` and ``orphan`` are thresholds in seconds (``None``
    turns that lint off). ``stall_exclude`` and ``orphan_exclude`` are shell
    patterns of sites, creation lines and names that lint leaves out, and
    ``known_waits=False`` reports the waits on purpose too (see the module docs).
    ``loop`` (default: the running loop) is the loop the
    blocked-loop watchdog watches; the other lints look at every traced future
    of the process, so a second loop needs ``enable(loop2, stall=None,
    orphan=None)``. ``interval`` is how often futures are checked (default: a
    quarter of the smallest threshold, at most 1 s).

    >>> import tracedfuture.lints
    >>> tracedfuture.lints.enable(blocked=None, stall=-1)
    Traceback (most recent call last):
    ...
    ValueError: stall must be a positive number of seconds, such as 0.5, or None to turn the lint off; not -1
    """
    stall_ns = _seconds("stall", stall)
    blocked_ns = _seconds("blocked", blocked)
    orphan_ns = _seconds("orphan", orphan)
    flag: object = known_waits  # checked for callers without a type checker
    if not isinstance(flag, bool):
        msg = f"known_waits must be True or False, not {flag!r}"
        raise TypeError(msg)
    stall_excuses = _Excuses(_patterns("stall_exclude", stall_exclude), known_waits)
    orphan_excuses = _Excuses(_patterns("orphan_exclude", orphan_exclude), known_waits=False)
    if interval is None:
        thresholds = [t for t in (stall_ns, orphan_ns) if t is not None]
        interval = min(1.0, min(thresholds) / _NS / 4) if thresholds else 1.0
    else:
        _seconds("interval", interval)
    if loop is None:
        loop = asyncio._get_running_loop()  # also where a stall on a lock is explained
    if blocked_ns is not None:
        if loop is None:
            msg = (
                "the blocked-loop lint needs a loop: call enable() inside the running loop, "
                "pass enable(loop=...), or pass blocked=None"
            )
            raise RuntimeError(msg)
        if loop.is_closed():
            msg = f"cannot watch {loop!r}: it is closed"
            raise RuntimeError(msg)
    lints = Lints(loop, stall_ns, blocked_ns, orphan_ns, interval, stall_excuses, orphan_excuses)
    lints._start()
    return lints


# --- reading findings ------------------------------------------------------------------


def findings(events: Iterable[Event]) -> list[Event]:
    """The events that report a problem (:data:`FINDINGS`), in order."""
    return [e for e in events if e.kind in FINDINGS]


def describe(event: Event) -> str:
    """One finding as text for a person: what, which future, where, how old.

    >>> from tracedfuture import Event, Site
    >>> print(describe(Event("abandoned", 7, 0, site=Site("app.py", 3, "main"), age_ns=2_000_000_000, awaiter_id=4)))
    abandoned: (F) #7 collected while pending after 2.00s, created at app.py:3 in main, last awaited by #4
    """
    kind = event.kind
    age = f"{event.age_ns / _NS:.2f}s" if event.age_ns is not None else "?"
    label = ("(T)" if event.is_task else "(F)") + f" #{event.future_id}" + (f" {event.name}" if event.name else "")
    if kind == ev.STALLED:
        return f"stalled: {event.detail or label + ' pending ' + age}"
    if kind == ev.ORPHAN:
        return f"orphan: {event.detail or label + ' pending ' + age}"
    if kind == ev.BLOCKED_LOOP:
        head = f"blocked loop: the loop had not come back for {age} when the watchdog looked"
        return f"{head}\n{event.detail}" if event.detail else head
    if kind == ev.ABANDONED:
        text = f"abandoned: {label} collected while pending after {age}"
    elif kind == ev.UNRETRIEVED:
        exc = event.exc_type or "an exception"
        text = f"unretrieved: {label} was collected {age} after creation with {exc} nobody retrieved"
    else:
        return f"{kind}: {label}"
    if event.site is not None:
        text += f", created at {site_text(event.site)}"
    if event.awaiter_id is not None:
        text += f", last awaited by #{event.awaiter_id}"
    return text


def report(events: Iterable[Event]) -> str:
    """Every finding among ``events``, one :func:`describe` each, or ``""``."""
    return "\n".join(describe(e) for e in findings(events))
