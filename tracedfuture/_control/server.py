"""The control socket: ask a running process what its futures are doing.

>>> import tracedfuture._control.server as control
>>> path = control.start()  # doctest: +SKIP
>>> path  # doctest: +SKIP
'/run/user/1000/tracedfuture/4242.sock'

:func:`start` is opt-in (``tracedfuture run --console``, ``TRACEDFUTURE_CONSOLE=1``).
It listens on a Unix domain socket file named by the process id, in a directory
private to the user: ``$XDG_RUNTIME_DIR/tracedfuture/<pid>.sock`` when
``XDG_RUNTIME_DIR`` is a directory of this user's with mode 0700, else
``/tmp/tracedfuture-<uid>/<pid>.sock``. The directory is 0700, the socket 0600,
and every connection's peer credentials (``SO_PEERCRED``) must be this user's or
root's. A thread of its own serves it, so it answers while the loop is blocked.
It also enables the flight recorder when none is, so that there is a history to
read and dump. The socket is removed at exit; a forked child does not serve its
parent's socket (it may call :func:`start` for its own).

It runs no code it is sent: the requests are a fixed set, in a versioned protocol
of JSON lines, documented in docs/cli.md ("The control protocol"):
``hello``, ``snapshot``, ``events``, ``lints``, ``counters``, ``dump`` and, only
when started with ``allow_cancel=True``, ``cancel``.

How a snapshot reads coroutine stacks safely: a task's coroutine chain is read
only on its loop's thread, by a callback handed to ``loop.call_soon_threadsafe``
(any loop, uvloop included; each traced loop of each thread is asked). The
server thread waits at most half a second for it. A loop that does not answer
is reported as blocked, with its thread's current stack (``sys._current_frames``,
which any thread may read) instead of its tasks' coroutine stacks; a late answer
is ignored. Everything else comes from the recorder's state, which is
thread-safe. ``cancel`` runs ``task.cancel()`` on the task's loop the same way.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .. import _core, _files, _locks
from .._core import _events as ev
from .._core import future_id
from .._core._events import Event, Site
from .._pipeline._drain import RECORDER
from .._pipeline._process import at_fork
from ..graph import Snapshot, _coroutine_chain, live_snapshot, site_text
from .client import PROTOCOL, Client, ControlError, _not_private, _pid_alive, connect, socket_dir
from .client import line as _line

__all__ = [
    "PROTOCOL",
    "REQUESTS",
    "Client",
    "ConsoleOff",
    "ControlError",
    "connect",
    "current",
    "socket_dir",
    "socket_path",
    "start",
    "stop",
]

logger = logging.getLogger("tracedfuture")

REQUESTS = ("hello", "snapshot", "events", "lints", "counters", "dump", "cancel")

_MAX_LINE = 65_536
_MAX_DEPTH = 32  # requests are flat objects: anything deeper is not one
_MAX_CONNECTIONS = 16  # each listener has its own: TCP clients never crowd out the Unix socket
_AUTH_TIMEOUT = 2.0  # a TCP client has this long to send its token
# The token as a TCP client sends it: token_urlsafe's alphabet needs no JSON escape.
_TOKEN = re.compile(rb'"token"\s*:\s*"([^"\\]{0,256})"')
_LOOP_TIMEOUT = 0.5
_SEND_TIMEOUT = 10.0
_MAX_EVENTS = 10_000
# How far back a snapshot looks for each task's last wakeup: about 1 ms of work.
_WOKE_SCAN = 5_000
_NS = 1_000_000_000


# --- where sockets live -----------------------------------------------------------------


def socket_path(pid: int | None = None) -> str:
    """Where the process ``pid`` (default: this one) of this user listens."""
    return os.path.join(socket_dir(), f"{os.getpid() if pid is None else pid}.sock")


class ConsoleOff(RuntimeError):
    """The console's private directory cannot be had; the message says why and the fix."""


def _make_private_dir(path: str) -> None:
    uid = os.geteuid()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    problem = _not_private(path, uid)
    if problem is not None:
        msg = (
            f"{path} {problem}: the console needs a directory of its own (uid {uid}, mode 0700, not a symlink); "
            "remove it, or set XDG_RUNTIME_DIR to a private directory"
        )
        raise ConsoleOff(msg)


def _remove_stale(directory: str) -> None:
    """Sockets and token files left by processes that died without cleaning up."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            stem, _, suffix = name.partition(".")
            if suffix in ("sock", "tcp") and stem.isdigit() and not _pid_alive(int(stem)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


# --- what the server knows of loops --------------------------------------------------------


class _Loops:
    """The loops that run traced futures: found through the futures themselves
    (``_core.live()``, each one's ``get_loop()``, a plain attribute read that any
    thread may do), so every traced loop is seen, whichever installation traces
    it. A loop's thread is learned when it answers a request; until then, from
    the ``created`` event of one of its futures in the flight recorder."""

    def __init__(self) -> None:
        self.threads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
        self.lock = threading.Lock()

    def live_loops(self) -> list[tuple[asyncio.AbstractEventLoop, int]]:
        members: dict[asyncio.AbstractEventLoop, list[int]] = {}
        for obj in _core.live():
            try:
                loop = obj.get_loop()
            except Exception:
                continue
            fid = future_id(obj)
            if fid:
                members.setdefault(loop, []).append(fid)
        out = []
        for loop, fids in members.items():
            if loop.is_closed():
                continue
            with self.lock:
                thread = self.threads.get(loop, 0)
            if not thread:
                thread = _creating_thread(set(fids))
                if thread:  # looked up once: the ring may have to be read whole
                    self.answered(loop, thread)
            out.append((loop, thread))
        return out

    def answered(self, loop: asyncio.AbstractEventLoop, thread: int) -> None:
        with self.lock:
            self.threads[loop] = thread


def _creating_thread(fids: set[int]) -> int:
    """The thread that made one of these futures, from the flight recorder."""
    from .. import flight

    recorder = flight.current()
    if recorder is None:
        return 0
    found = _recent(recorder, 1, lambda event: event[_KIND] == ev.CREATED and event[_FID] in fids)
    return (found[0].thread_id or 0) if found else 0


class _Reply:
    """A loop-side answer: set on the loop's thread, read by the server thread."""

    __slots__ = ("done", "error", "result", "thread")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: str | None = None
        self.thread = 0


def _on_loop(loop: asyncio.AbstractEventLoop, work: Callable[[asyncio.AbstractEventLoop], Any]) -> _Reply | None:
    """Run ``work(loop)`` on the loop's thread; the reply is filled in there."""
    reply = _Reply()

    def run() -> None:
        try:
            reply.result = work(loop)
        except Exception as exc:  # never into the loop's exception handler
            reply.error = f"{type(exc).__name__}: {exc}"
        reply.thread = threading.get_ident()
        reply.done.set()

    if not loop.is_running():
        return None
    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:  # closed meanwhile
        return None
    return reply


_Stacks = dict[int, tuple[str | None, list[dict[str, Any]]]]


def _task_stacks(loop: asyncio.AbstractEventLoop) -> tuple[_Stacks, tuple[_locks.Holding, ...]]:
    """On the loop's thread: each traced task's coroutine and its chain of frames,
    and who holds and waits for each ``asyncio.Lock``."""
    out: _Stacks = {}
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        fid = future_id(task)
        if not fid:
            continue
        coro = task.get_coro()
        frames = [{"file": f.filename, "line": f.lineno, "function": f.function} for f in _coroutine_chain(coro)]
        out[fid] = (getattr(coro, "__qualname__", None), frames)
    return out, _locks.holdings(tasks)


def _ping(loop: asyncio.AbstractEventLoop) -> tuple[_Stacks, tuple[_locks.Holding, ...]]:
    """On the loop's thread: nothing, but that the loop came back to run it."""
    return {}, ()


def _cancel_on_loop(task_id: int, msg: str | None) -> Callable[[asyncio.AbstractEventLoop], bool | None]:
    def work(loop: asyncio.AbstractEventLoop) -> bool | None:
        for task in asyncio.all_tasks(loop):
            if future_id(task) == task_id:
                return task.cancel(msg)
        return None

    return work


def _thread_stack(thread: int) -> list[dict[str, Any]]:
    frame = sys._current_frames().get(thread)
    if frame is None:
        return []
    return [{"file": f.filename, "line": f.lineno or 0, "function": f.name} for f in traceback.extract_stack(frame)]


def _thread_name(thread: int) -> str | None:
    for candidate in threading.enumerate():
        if candidate.ident == thread:
            return candidate.name
    return None


def _recent(recorder: Any, limit: int, keep: Callable[[Sequence[Any]], bool], scan: int | None = None) -> list[Event]:
    """The newest ``limit`` events of the flight recorder that ``keep`` accepts,
    oldest first, looking at the newest ``scan`` events at most (all by default).

    ``keep`` sees each event as a tuple in :class:`Event`'s field order (see
    ``_F``). The flight recorder converts only the newest ``scan`` records of its
    ring, so a request costs what it looks at, not the ring's size.
    """
    try:
        events = recorder.events(last=scan)  # tracedfuture's FlightRecorder: only the newest records converted
    except TypeError:
        events = recorder.events()
    taken = list(itertools.islice(reversed(events), scan))
    out: list[Event] = []
    for item in taken:
        if keep(item):
            out.append(item if isinstance(item, Event) else _expand(item))
            if len(out) >= limit:
                break
    out.reverse()
    return out


_F = {name: index for index, name in enumerate(Event._fields)}
_KIND, _FID, _TS, _TASK, _AWAITER, _SITE_INDEX = (
    _F["kind"],
    _F["future_id"],
    _F["ts_ns"],
    _F["task_id"],
    _F["awaiter_id"],
    _F["site"],
)


def _creators() -> dict[int, int | None]:
    """future id -> the task that created it, for every live traced future and task."""
    out: dict[int, int | None] = {}
    for obj in _core.live():
        info = _core.info(obj)
        if info is not None:
            out[info[0]] = info[4]
    return out


def _expand(item: tuple[Any, ...]) -> Event:
    site = item[_SITE_INDEX]
    if site is None or isinstance(site, Site):
        return Event._make(item)
    values = list(item)
    values[_SITE_INDEX] = Site(*site)
    return Event._make(values)


def _last_wakeups(recorder: Any, scan: int) -> dict[int, int]:
    """When each task was last handed to the loop to run (its wakeup scheduled),
    from the newest ``scan`` events: ``{task_id: ts_ns}``."""
    woke: dict[int, int] = {}

    def keep(event: Sequence[Any]) -> bool:
        if event[_KIND] == ev.CALLBACK_SCHEDULED and event[_AWAITER] is not None:
            woke.setdefault(event[_AWAITER], event[_TS])
        return False

    _recent(recorder, 1, keep, scan)
    return woke


# --- the requests --------------------------------------------------------------------------


def _site_json(site: Any) -> dict[str, Any] | None:
    if site is None:
        return None
    return {"file": site.filename, "line": site.lineno, "function": site.function}


def _event_json(event: Event) -> dict[str, Any]:
    from ..trace import event_to_json

    return event_to_json(event)


class _Handler:
    """The fixed set of requests, and what each one reads."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.queued: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reply | None] = weakref.WeakKeyDictionary()

    def hello(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.server.greeting()

    def snapshot(self, request: dict[str, Any]) -> dict[str, Any]:
        want_stacks = request.get("stacks", True) is not False
        loops = self.server.watcher.live_loops()
        # Without stacks, each loop is still pinged (an empty callback), to tell
        # a blocked loop from a live one.
        asked = [(loop, thread, self._ask_stacks(loop, want_stacks)) for loop, thread in loops]
        snap = live_snapshot()
        now = snap.taken_ns
        wall = time.time_ns()
        parents = _creators()
        from .. import flight

        recorder = flight.current()
        want_woke = recorder is not None and request.get("woke", True) is not False
        woke = _last_wakeups(recorder, _WOKE_SCAN) if want_woke else {}
        deadline = time.monotonic() + _LOOP_TIMEOUT
        stacks: _Stacks = {}
        holdings: list[_locks.Holding] = []
        task_thread: dict[int, int] = {}
        loop_info = []
        for loop, attached_thread, reply in asked:
            thread = attached_thread
            info: dict[str, Any] = {"class": type(loop).__qualname__, "running": loop.is_running()}
            if reply is not None and reply.done.wait(max(0.0, deadline - time.monotonic())):
                thread = reply.thread
                self.server.watcher.answered(loop, thread)
                info["answered"] = True
                if reply.error is not None:
                    info["error"] = reply.error
                else:
                    stacks.update(reply.result[0])
                    holdings.extend(reply.result[1])
                    task_thread.update(dict.fromkeys(reply.result[0], thread))
            else:
                info["answered"] = False
                if info["running"]:
                    # The loop did not come back within the timeout: say where its thread is.
                    info["blocked_stack"] = _thread_stack(thread)
            info["thread_id"] = thread
            info["thread_name"] = _thread_name(thread)
            loop_info.append(info)
        futures = []
        for fut in snap:
            coro, frames = stacks.get(fut.future_id, (fut.coro, []))
            futures.append(
                {
                    "id": fut.future_id,
                    "task": fut.is_task,
                    "name": fut.name,
                    "state": fut.state,
                    "age_ns": fut.age_ns,
                    "site": _site_json(fut.site),
                    "program_site": _site_json(fut.program_site),
                    "holds": [
                        {"lock": h.lock, "site": _site_json(h.site)}
                        for h in holdings
                        if h.held and h.task_id == fut.future_id
                    ],
                    "awaited_by": list(fut.awaited_by),
                    "awaiting": list(fut.awaiting),
                    "callbacks": list(fut.callbacks),
                    "last_awaiter_id": fut.last_awaiter_id,
                    "parent_id": parents.get(fut.future_id),
                    "coro": coro,
                    "stack": frames,
                    "thread_id": task_thread.get(fut.future_id),
                    "woke_ns": now - woke[fut.future_id] if fut.future_id in woke else None,
                }
            )
        return {
            "taken_ns": now,
            "wall_ns": wall,
            "with_stacks": bool(stacks),
            "loops": loop_info,
            "futures": futures,
            "deadlocks": [str(d) for d in _locks.deadlocks(holdings)],
        }

    def _ask_stacks(self, loop: asyncio.AbstractEventLoop, stacks: bool = True) -> _Reply | None:
        """A request for ``loop``'s stacks; while a blocked loop has not run the
        last one, the same one: a console refreshing a blocked loop every second
        must not pile callbacks up in its queue."""
        with self.lock:
            queued = self.queued.get(loop)
            if queued is not None and not queued.done.is_set():
                return queued
            reply = self.queued[loop] = _on_loop(loop, _task_stacks if stacks else _ping)
            return reply

    def events(self, request: dict[str, Any]) -> dict[str, Any]:
        recorder = self.server.recorder()
        limit = _int(request, "limit", 200, 1, _MAX_EVENTS)
        fid = request.get("future_id")
        if fid is not None and (isinstance(fid, bool) or not isinstance(fid, int)):
            msg = f"future_id must be an integer id, not {fid!r}"
            raise ValueError(msg)
        kinds = request.get("kinds")
        if kinds is not None and (not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds)):
            msg = f"kinds must be a list of event kinds, such as ['created', 'cancelled'], not {kinds!r}"
            raise ValueError(msg)

        scan = None if request.get("scan") is None else _int(request, "scan", 0, 1, 10_000_000)

        def keep(event: Sequence[Any]) -> bool:
            if fid is not None and fid not in (event[_FID], event[_TASK], event[_AWAITER]):
                return False
            return kinds is None or event[_KIND] in kinds

        chosen = _recent(recorder, limit, keep, scan)
        return {"events": [_event_json(e) for e in chosen], "stats": recorder.stats()}

    def lints(self, request: dict[str, Any]) -> dict[str, Any]:
        from ..lints import FINDINGS, describe

        stall = _seconds(request, "stall", 5.0)
        orphan = _seconds(request, "orphan", 30.0)
        recorder = self.server.recorder()
        limit = _int(request, "limit", 100, 1, _MAX_EVENTS)
        recorded = _recent(recorder, limit, lambda event: event[_KIND] in FINDINGS)
        current = _current_findings(live_snapshot(), _creators(), int(stall * _NS), int(orphan * _NS))
        return {
            "recorded": [
                {"kind": e.kind, "future_id": e.future_id, "ts_ns": e.ts_ns, "age_ns": e.age_ns, "text": describe(e)}
                for e in recorded
            ],
            "current": current,
            "thresholds": {"stall": stall, "orphan": orphan},
        }

    def counters(self, request: dict[str, Any]) -> dict[str, Any]:
        recorder = self.server.recorder()
        return {
            "recorder": RECORDER.counters(),
            "flight": recorder.stats(),
            "control": dict(self.server.counts),
            "loops": len(self.server.watcher.live_loops()),
            "uptime_s": round(time.monotonic() - self.server.started, 3),
        }

    def dump(self, request: dict[str, Any]) -> dict[str, Any]:
        """``to: "flight"``: the process writes its flight recorder's own path.
        Otherwise the reply streams the trace file (see :meth:`_Server.reply`)."""
        from .. import flight

        where = request.get("to")
        if where == "flight":
            return {"path": os.path.abspath(flight.dump())}
        if where is not None:
            msg = f"dump's 'to' may only be 'flight' (the recorder's own path), not {where!r}"
            raise ValueError(msg)
        raise _Stream(self.server.recorder())

    def cancel(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.server.allow_cancel:
            msg = (
                "cancel is not allowed: the process was started without allow-cancel "
                "('tracedfuture run --console=allow-cancel')"
            )
            raise PermissionError(msg)
        task_id = request.get("id")
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
            msg = f"cancel needs 'id', a task id such as 4, not {task_id!r}"
            raise ValueError(msg)
        cancel_msg = request.get("msg")
        if cancel_msg is not None and not isinstance(cancel_msg, str):
            msg = f"msg must be a string, not {cancel_msg!r}"
            raise ValueError(msg)
        loops = self.server.watcher.live_loops()
        replies = [r for r in (_on_loop(loop, _cancel_on_loop(task_id, cancel_msg)) for loop, _ in loops) if r]
        deadline = time.monotonic() + 2.0
        blocked = 0
        for reply in replies:
            if not reply.done.wait(max(0.0, deadline - time.monotonic())):
                blocked += 1
                continue
            if reply.result is not None:
                return {"id": task_id, "cancelled": bool(reply.result)}
        if blocked:
            msg = f"task #{task_id} not found yet: {blocked} loop(s) did not answer (blocked?); the cancel stays queued"
            raise LookupError(msg)
        msg = f"no pending task #{task_id} on a traced running loop"
        raise LookupError(msg)


class _Stream(Exception):
    """A dump streamed after its reply line."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder


def _int(request: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{name} must be an integer from {low} to {high}, not {value!r}"
        raise ValueError(msg)
    return value


def _seconds(request: dict[str, Any], name: str, default: float) -> float:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        msg = f"{name} must be a positive number of seconds, such as 5, not {value!r}"
        raise ValueError(msg)
    return float(value)


def _current_findings(
    snap: Snapshot, parents: dict[int, int | None], stall_ns: int, orphan_ns: int
) -> list[dict[str, Any]]:
    """What the lints would say now: leaves pending past ``stall`` while a task
    awaits them, futures nobody awaits past ``orphan``. Waits on purpose (a
    server's lifespan, its main loop: ``lints.KNOWN_WAITS``) are no stall, as
    for the stall lint."""
    from ..lints import waits_on_purpose

    out: list[dict[str, Any]] = []
    on_purpose: frozenset[int] | None = None
    for leaf in snap.leaves():
        age = leaf.age_ns or 0
        if age < stall_ns:
            continue
        if on_purpose is None:  # only when something is old enough: it reads source lines
            on_purpose = waits_on_purpose(snap, parents)
        if leaf.future_id in on_purpose:
            continue
        chain = snap.chain(leaf.future_id)
        labels = [f.label for f in map(snap.get, chain) if f is not None]
        text = f"stalled: {' -> '.join(labels)} pending {age / _NS:.2f}s"
        if leaf.site is not None:
            text += f", created at {site_text(leaf.site)}"
        out.append({"kind": ev.STALLED, "future_id": leaf.future_id, "chain": list(chain), "age_ns": age, "text": text})
    for fut in snap:
        age = fut.age_ns or 0
        if fut.is_task or fut.awaited_by or fut.callbacks or age < orphan_ns:
            continue
        text = f"orphan: {fut.label} pending {age / _NS:.2f}s with no callback and nobody awaiting it"
        if fut.site is not None:
            text += f", created at {site_text(fut.site)}"
        out.append(
            {"kind": ev.ORPHAN, "future_id": fut.future_id, "chain": [fut.future_id], "age_ns": age, "text": text}
        )
    return out


# --- the server ---------------------------------------------------------------------------


def _peer_uid(conn: socket.socket) -> int | None:
    """The connecting process's uid, or ``None`` where the system cannot tell
    (then the directory's permissions are the only check)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _Server:
    def __init__(
        self,
        path: str,
        listener: socket.socket,
        watcher: _Loops,
        allow_cancel: bool,
        tcp: tuple[socket.socket, str, str] | None,
    ) -> None:
        self.path = path
        self.pid = os.getpid()
        self.listener = listener
        self.watcher = watcher
        self.allow_cancel = allow_cancel
        self.tcp = tcp
        self.started = time.monotonic()
        self.counts = {"connections": 0, "requests": 0, "refused": 0}
        self.connections: set[socket.socket] = set()
        self.tcp_connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.handler = _Handler(self)
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, name="tracedfuture-control", daemon=True)

    def recorder(self) -> Any:
        from .. import flight

        recorder = flight.current()
        if recorder is None:
            msg = "no flight recorder is enabled (tracedfuture.flight.disable() was called)"
            raise LookupError(msg)
        return recorder

    def greeting(self) -> dict[str, Any]:
        from .._version import __version__

        return {
            "version": PROTOCOL,
            "server": "tracedfuture-control",
            "pid": self.pid,
            "argv": list(sys.argv),
            "python": sys.version.split()[0],
            "tracedfuture": __version__,
            "allow_cancel": self.allow_cancel,
            "requests": [r for r in REQUESTS if r != "cancel" or self.allow_cancel],
        }

    # -- accepting -----------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._accept_loop()
        except Exception:  # never a traceback on the program's stderr
            if not self.stopping:
                logger.exception("tracedfuture: the control socket stopped serving")

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ, False)
            selector.register(self.wake_r, selectors.EVENT_READ, None)
            if self.tcp is not None:
                selector.register(self.tcp[0], selectors.EVENT_READ, True)
            while not self.stopping:
                for key, _ in selector.select():
                    if key.data is None or self.stopping:
                        return
                    try:
                        conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    self._admit(conn, tcp=bool(key.data))

    def _admit(self, conn: socket.socket, *, tcp: bool) -> None:
        try:
            if not tcp:
                uid = _peer_uid(conn)
                owner = os.geteuid()
                if uid is not None and uid not in (owner, 0):
                    self.counts["refused"] += 1
                    self._refuse(
                        conn, f"permission denied: uid {uid} is neither this process's user (uid {owner}) nor root"
                    )
                    return
            with self.lock:
                pool = self.tcp_connections if tcp else self.connections
                if len(pool) >= _MAX_CONNECTIONS:
                    self.counts["refused"] += 1
                    self._refuse(conn, f"too many connections (at most {_MAX_CONNECTIONS}); close one and retry")
                    return
                pool.add(conn)
                self.counts["connections"] += 1
            thread = threading.Thread(
                target=self._converse, args=(conn, tcp), name="tracedfuture-control-client", daemon=True
            )
            thread.start()
        except Exception:
            logger.exception("tracedfuture: the control socket could not admit a connection")
            with contextlib.suppress(OSError):
                conn.close()

    def _refuse(self, conn: socket.socket, error: str) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(_line({"version": PROTOCOL, "ok": False, "error": error}))
        with contextlib.suppress(OSError):
            conn.close()

    # -- one connection ------------------------------------------------------------

    def _converse(self, conn: socket.socket, tcp: bool) -> None:
        authenticated = not tcp
        try:
            with conn, conn.makefile("rb") as reader:
                if authenticated:
                    self._send(conn, self.greeting())
                else:
                    self._send(conn, {"version": PROTOCOL, "server": "tracedfuture-control", "auth": "token"})
                while not self.stopping:
                    # A console may idle between requests; a TCP client that has
                    # not shown its token may not.
                    conn.settimeout(None if authenticated else _AUTH_TIMEOUT)
                    raw = reader.readline(_MAX_LINE + 1)
                    if not raw:
                        return
                    if not authenticated:
                        # The token first, on bytes, before anything is parsed.
                        if not self._token_ok(raw):
                            self.counts["refused"] += 1
                            self._send(conn, _error(None, "permission denied: a valid 'token' is required over TCP"))
                            return
                        authenticated = True
                    if len(raw) > _MAX_LINE:
                        self._send(conn, _error(None, f"request longer than {_MAX_LINE} bytes"))
                        return
                    request, problem = _parse(raw)
                    self.counts["requests"] += 1
                    if problem is not None:
                        self._send(conn, _error(request.get("request") if request else None, problem))
                        continue
                    assert request is not None
                    self._answer(conn, request)
        except OSError:
            return  # the client went away, or sent no token in time
        except Exception as exc:  # one line: a client's input never puts a traceback on the program's stderr
            logger.warning("tracedfuture: the control socket failed while serving a client: %r", exc)
        finally:
            with self.lock:
                self.connections.discard(conn)
                self.tcp_connections.discard(conn)

    def _token_ok(self, raw: bytes) -> bool:
        assert self.tcp is not None
        found = _TOKEN.search(raw[:_MAX_LINE])
        return found is not None and hmac.compare_digest(found.group(1), self.tcp[2].encode())

    def _answer(self, conn: socket.socket, request: dict[str, Any]) -> None:
        name = request["request"]
        try:
            result = getattr(self.handler, name)(request)
        except _Stream as stream:
            self._stream_dump(conn, stream.recorder)
            return
        except (ValueError, LookupError, PermissionError, RuntimeError, OSError) as exc:
            self._send(conn, _error(name, str(exc)))
            return
        except Exception as exc:
            logger.warning("tracedfuture: the control request %r failed: %r", name, exc)
            self._send(conn, _error(name, f"internal error: {type(exc).__name__}: {exc}"))
            return
        self._send(conn, {"version": PROTOCOL, "ok": True, "request": name, "result": result})

    def _stream_dump(self, conn: socket.socket, recorder: Any) -> None:
        """The reply line says how many lines follow; then the trace file, as the
        recorder wrote it, from a 0600 file in the private directory."""
        tmp = os.path.join(os.path.dirname(self.path), f"{self.pid}.{threading.get_ident()}.dump")
        try:
            recorder.dump(tmp, reason="control socket")
            with open(tmp, "rb") as source:
                lines = sum(1 for _ in source)
                size = source.tell()
                source.seek(0)
                self._send(
                    conn,
                    {"version": PROTOCOL, "ok": True, "request": "dump", "result": {"lines": lines, "bytes": size}},
                )
                conn.settimeout(_SEND_TIMEOUT)
                while chunk := source.read(1 << 16):
                    conn.sendall(chunk)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _send(self, conn: socket.socket, message: dict[str, Any]) -> None:
        conn.settimeout(_SEND_TIMEOUT)  # a client that stops reading cannot hold a thread forever
        conn.sendall(_line(message))

    # -- ending --------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and remove the socket (this process's own server)."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self.wake_w.send(b"x")
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(1.0)
        with self.lock:
            connections = [*self.connections, *self.tcp_connections]
        self._close_fds(connections)
        for path in (self.path, self.path.removesuffix(".sock") + ".tcp"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def forget_in_child(self) -> None:
        """After fork(), in the child: close the inherited descriptors and nothing
        more. No wake-up (the socket pair is shared with the parent, whose thread
        would stop), no shutdown (it would end the parent's connections), no lock
        (a parent thread may have held it at fork time), no unlink."""
        self.stopping = True
        self._close_fds([*self.connections, *self.tcp_connections])

    def _close_fds(self, connections: list[socket.socket]) -> None:
        sockets = [self.listener, *([self.tcp[0]] if self.tcp else []), *connections, self.wake_r, self.wake_w]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _error(name: Any, error: str) -> dict[str, Any]:
    out: dict[str, Any] = {"version": PROTOCOL, "ok": False, "error": error}
    if isinstance(name, str):
        out["request"] = name
    return out


def _depth(raw: bytes) -> int:
    """How deep the JSON in ``raw`` nests (brackets inside strings not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A request, and what is wrong with it (``None`` when nothing)."""
    if _depth(raw) > _MAX_DEPTH:
        return None, f"a request nests at most {_MAX_DEPTH} levels deep"
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not a JSON line: {exc}"
    except RecursionError:
        return None, f"a request nests at most {_MAX_DEPTH} levels deep"
    if not isinstance(request, dict):
        return None, 'a request is a JSON object, such as {"version": 1, "request": "snapshot"}'
    version = request.get("version")
    if version != PROTOCOL:
        return request, f"protocol version {version!r} is not spoken here: this process speaks version {PROTOCOL}"
    name = request.get("request")
    if name not in REQUESTS:
        return request, f"unknown request {name!r}: one of {', '.join(REQUESTS)}"
    return request, None


# --- start and stop ------------------------------------------------------------------------

_server: _Server | None = None
_start_lock = threading.Lock()
_fork_hooked = False


def current() -> str | None:
    """The path this process listens on, or ``None``."""
    server = _server
    return server.path if server is not None else None


def start(*, allow_cancel: bool = False, tcp: int | None = None) -> str:
    """Serve this process's control socket; returns its path.

    Enables the flight recorder (``tracedfuture.flight.enable()``) if none is.
    ``allow_cancel`` permits the ``cancel`` request. ``tcp`` (off by default) also
    listens on 127.0.0.1 at that port (0: any free one); TCP clients must send the
    token written, with the port, to ``<pid>.tcp`` (mode 0600) beside the socket.
    Calling it again returns the same path.

    >>> import tracedfuture._control.server as control
    >>> control.start(tcp=-1)
    Traceback (most recent call last):
    ...
    ValueError: tcp must be a port number from 0 to 65535 (0: any free port), or None for no TCP; not -1
    """
    global _server, _fork_hooked
    if tcp is not None and (isinstance(tcp, bool) or not isinstance(tcp, int) or not 0 <= tcp <= 65535):
        msg = f"tcp must be a port number from 0 to 65535 (0: any free port), or None for no TCP; not {tcp!r}"
        raise ValueError(msg)
    with _start_lock:
        if _server is not None and _server.pid == os.getpid():
            return _server.path
        from .. import flight

        directory = socket_dir()
        _make_private_dir(directory)
        _remove_stale(directory)
        path = os.path.join(directory, f"{os.getpid()}.sock")
        if len(os.fsencode(path)) >= 108:
            msg = f"tracedfuture console: the socket path {path} is too long for a Unix socket (108 bytes at most)"
            raise RuntimeError(msg)
        if flight.current() is None:
            # Only a ring to read and dump on request: no dump files written
            # behind the user's back when an exception handler runs.
            flight.enable(path=os.path.abspath(f"tracedfuture-flight-{os.getpid()}.jsonl"), on_exception=False)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tcp_listener: tuple[socket.socket, str, str] | None = None
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # ours: a socket of a dead process whose pid we now have
            # Not os.umask(): it is process-wide, and another thread may be creating
            # files right now. Until the chmod, the 0700 directory keeps others out.
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(_MAX_CONNECTIONS)
            if tcp is not None:
                tcp_listener = _listen_tcp(tcp, path)
        except BaseException:
            listener.close()
            raise
        server = _Server(path, listener, _Loops(), allow_cancel, tcp_listener)
        server.thread.start()
        _server = server
        atexit.register(_at_exit)
        if not _fork_hooked:
            at_fork("control", after_in_child=_after_fork_in_child)
            _fork_hooked = True
        return path


def _listen_tcp(port: int, path: str) -> tuple[socket.socket, str, str]:
    token = secrets.token_urlsafe(24)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(_MAX_CONNECTIONS)
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        token_file = path.removesuffix(".sock") + ".tcp"
        with _files.create(token_file) as out:
            out.write(json.dumps({"address": address, "token": token}).encode())
    except BaseException:
        sock.close()
        raise
    return sock, address, token


def stop() -> None:
    """Stop serving and remove the socket (the flight recorder stays enabled)."""
    global _server
    with _start_lock:
        server, _server = _server, None
    if server is None or server.pid != os.getpid():
        return
    atexit.unregister(_at_exit)
    server.close()


def _at_exit() -> None:
    server = _server
    if server is not None and server.pid == os.getpid():
        server.close()


def _after_fork_in_child() -> None:
    """The child has the parent's sockets but not its thread: close them, keep the
    parent's file (it is the parent's to remove)."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.forget_in_child()
