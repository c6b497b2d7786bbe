"""The flight recorder: the last events, always in memory, dumped when it matters.

>>> import asyncio, tracedfuture.flight
>>> recorder = tracedfuture.flight.FlightRecorder()
>>> tracedfuture.run(asyncio.sleep(0), exporters=[recorder])
>>> events = recorder.events()
>>> [e.kind for e in events if e.future_id == events[0].future_id]  # the main task
['created', 'callback_added', 'resolved', 'callback_scheduled']
>>> recorder.dump("flight.jsonl")  # doctest: +SKIP
'flight.jsonl'

A :class:`FlightRecorder` keeps the most recent past of the loops it traces as
the hot path wrote it: raw records in the installation's preallocated ring,
bounded in bytes, the oldest overwritten and counted. Nothing is converted while
the program runs, so its cost is the hot path's alone (see ``benchmarks/``).
:meth:`FlightRecorder.dump` converts the ring and writes it as a trace file that
``tracedfuture.trace.read`` and the ``tracedfuture`` command read; a future whose
beginning was overwritten starts with an ``incomplete`` event.

:func:`enable` is the one-call setup: it traces every loop of the process into a
module-level recorder and, on request, dumps it on a signal, when a loop's
exception handler is called (an exception nobody handled), and at exit::

    import signal, tracedfuture.flight
    tracedfuture.flight.enable(path="/tmp/flight.jsonl", signal=signal.SIGUSR1, at_exit=True)
    # kill -USR1 <pid>  ->  /tmp/flight.jsonl

A dump never changes what the traced program does: failures are logged through
the ``tracedfuture`` logger, never raised into the loop or a signal handler.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import signal as _signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import _files
from ._core._events import Event
from ._install import Installation, install
from ._pipeline._process import at_fork
from .trace import encode_line, event_to_json, header

__all__ = ["FlightRecorder", "current", "disable", "dump", "enable", "hook_loop"]

logger = logging.getLogger("tracedfuture")


class FlightRecorder:
    """The recent past of an installation, kept raw in its rings, converted to
    events only when someone reads or dumps it.

    A flight recorder takes no events as they happen (it is a ``raw`` exporter):
    the hot path's records stay in the installation's preallocated ring, bounded
    in bytes (``max_bytes``, default the installation's, 64 MiB: about a million
    records on the compiled core), the oldest overwritten and counted. Reading it
    (:meth:`events`, :meth:`dump`) converts what the ring holds, at most the last
    ``max_events`` events if given. Recording costs the hot path alone: nothing is
    drained, converted or copied while the program runs.

    >>> from tracedfuture.flight import FlightRecorder
    >>> FlightRecorder(max_events=0)
    Traceback (most recent call last):
    ...
    ValueError: max_events must be a positive number of events, such as 100_000, or None; not 0
    """

    __slots__ = ("__weakref__", "_child_of", "_dump_lock", "_sources", "anchor", "max_bytes", "max_events")

    raw = True

    def __init__(self, max_events: int | None = None, *, max_bytes: int | None = None) -> None:
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
        ):
            msg = f"max_events must be a positive number of events, such as 100_000, or None; not {max_events!r}"
            raise ValueError(msg)
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < _MIN_BYTES
        ):
            msg = f"max_bytes must be a number of bytes of at least {_MIN_BYTES} (or None), not {max_bytes!r}"
            raise ValueError(msg)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._sources: list[Installation] = []
        self._dump_lock = threading.Lock()
        self._child_of: int | None = None  # the parent's pid, in a child after fork()
        _RECORDERS.add(self)
        # Wall clock and monotonic clock read together, for the dump's header.
        self.anchor = (time.time_ns(), time.monotonic_ns())

    def __repr__(self) -> str:
        stats = self.stats()
        return f"<FlightRecorder {stats['records']} records held, {stats['dropped']} overwritten>"

    def after_fork(self) -> None:
        """In a child after ``fork()``: a fresh lock (a parent's thread may have
        held it); the rings were emptied by the recorder, so the child's dumps
        hold the child's events, in a file named with its pid."""
        self._dump_lock = threading.Lock()
        self.anchor = (time.time_ns(), time.monotonic_ns())
        self._child_of = os.getppid()

    def bind(self, installation: Installation) -> None:
        """Called by the installation it is passed to: the rings to read."""
        if installation not in self._sources:
            self._sources.append(installation)

    # -- reading ------------------------------------------------------------------

    def events(self, last: int | None = None) -> list[Event]:
        """The events of what the rings hold, oldest first: the last
        ``max_events`` of them, if set, or about the last ``last`` (converted from
        the newest ``last`` records only: what a console refreshing every second
        asks for, at a cost that does not grow with the ring)."""
        limit = last if last is not None else self.max_events
        events: list[Event] = []
        for source in list(self._sources):
            events.extend(source.recent_events(limit))
        if len(self._sources) > 1:
            events.sort(key=_ts)
        if limit is not None and len(events) > limit:
            del events[: len(events) - limit]
        return events

    def stats(self) -> dict[str, int]:
        """``records`` held, ``written`` in all, ``dropped`` (overwritten) records,
        and the limits."""
        rings = [route.ring for source in list(self._sources) for route in list(source._routes)]
        counts = [ring.stats() for ring in rings]
        written = sum(c["written"] for c in counts)
        dropped = sum(c["overwritten"] for c in counts)
        out = {
            "records": sum(min(c["written"] - c["overwritten"], c["capacity"]) for c in counts),
            "written": written,
            "dropped": dropped,
            "max_bytes": sum(c["capacity"] * c["record_size"] for c in counts),
        }
        if self.max_events is not None:
            out["max_events"] = self.max_events
        return out

    def clear(self) -> None:
        for source in list(self._sources):
            for route in list(source._routes):
                route.ring.clear()

    def dump(self, path: str | os.PathLike[str], *, reason: str = "on demand") -> str:
        """Write what the rings hold as a trace file and return its path.

        The file is written next to ``path`` and renamed over it, so a reader
        never sees half a dump. Its header says ``"flight": reason``; its stats
        line counts the records ``dropped`` (overwritten) before the oldest kept.

        >>> import tracedfuture.trace
        >>> recorder.dump("flight.jsonl")  # doctest: +SKIP
        >>> tracedfuture.trace.read("flight.jsonl").stats["dropped"]  # doctest: +SKIP
        0
        """
        name = os.fspath(path)
        if self._child_of is not None:
            # A forked child never writes over its parent's dump: as with trace
            # files, its own goes next to it, named with its pid.
            root, ext = os.path.splitext(name)
            name = f"{root}.{os.getpid()}{ext}"
        # Every record held, of one installation that filters nothing (what
        # `run --flight` and the console dump): written as lines straight from
        # the records, as a trace file is (100,000 futures: 4.6 s as events).
        sources = list(self._sources)
        lines = sources[0].recent_lines() if self.max_events is None and len(sources) == 1 else None
        events = self.events() if lines is None else []
        stats: dict[str, Any] = self.stats()
        stats["events_written"] = len(events) if lines is None else lines[1]
        dumps = json.dumps
        # A temporary file beside it, 0600 and exclusive, renamed over it
        # (tracedfuture._files); strings that are not valid Unicode are
        # escaped as in any trace file (trace.encode_line).
        with self._dump_lock, _files.create(name) as out:
            out.write(encode_line(header(*self.anchor, flight=reason)))
            if lines is not None:
                out.write(lines[0])
            batch: list[str] = []
            for event in events:
                batch.append(dumps(event_to_json(event), separators=(",", ":"), ensure_ascii=False))
                if len(batch) >= 4096:
                    out.write(("\n".join(batch) + "\n").encode("utf-8", "backslashreplace"))
                    batch.clear()
            if batch:
                out.write(("\n".join(batch) + "\n").encode("utf-8", "backslashreplace"))
            out.write(encode_line({"stats": stats}))
        return name

    # -- automatic dumps ----------------------------------------------------------

    def dump_quietly(self, path: str | os.PathLike[str], reason: str) -> None:
        """:meth:`dump`, with any failure logged instead of raised."""
        try:
            self.dump(path, reason=reason)
        except _files.Refused as exc:
            # One line, no traceback: it reaches the program's stderr when no
            # logging is configured.
            logger.warning("tracedfuture: not writing the flight recorder's dump to %s: %s", exc.path, exc.why)
        except Exception:
            logger.exception("tracedfuture: the flight recorder could not dump to %s", os.fspath(path))
        else:
            # info, not warning: logging's last-resort handler would print it on the
            # program's stderr, which stays the program's own.
            logger.info("tracedfuture: flight recorder dumped to %s (%s)", os.fspath(path), reason)

    def dump_in_background(self, path: str | os.PathLike[str], reason: str) -> threading.Thread:
        """Dump from a new thread: what signal handlers and the loop's exception
        handler use, so that neither waits for the disk nor takes a lock the
        interrupted code may hold."""
        thread = threading.Thread(
            target=self.dump_quietly, args=(path, reason), name="tracedfuture-flight-dump", daemon=True
        )
        thread.start()
        return thread

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by the installation when it starts tracing ``loop``: when
        :func:`enable` asked for dumps on unhandled exceptions, hook its handler."""
        state = _enabled
        if state is not None and state.recorder is self and state.on_exception and state.path is not None:
            self.hook_loop(loop, state.path)
            state.loops.add(loop)

    def hook_loop(
        self, loop: asyncio.AbstractEventLoop, path: str | os.PathLike[str], *, min_interval: float = 1.0
    ) -> None:
        """Dump to ``path`` when ``loop``'s exception handler is called (an
        exception nobody retrieved, a callback that raised), at most once every
        ``min_interval`` seconds, then call the handler that was there before,
        exactly as it would have been called.

        >>> loop = asyncio.new_event_loop()
        >>> recorder = FlightRecorder()
        >>> recorder.hook_loop(loop, "flight.jsonl")
        >>> recorder.unhook_loop(loop)
        >>> loop.get_exception_handler() is None
        True
        >>> loop.close()
        """
        previous = loop.get_exception_handler()
        if getattr(previous, "_tracedfuture_flight", None) is self:
            return  # hooked already
        last_dump = [float("-inf")]

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            try:
                now = time.monotonic()
                if now - last_dump[0] >= min_interval:
                    last_dump[0] = now
                    message = str(context.get("message", "unhandled exception"))
                    self.dump_in_background(path, f"exception handler: {message}")
            except Exception:
                logger.exception("tracedfuture: the flight recorder's exception handler failed")
            if previous is None:
                loop.default_exception_handler(context)
            else:
                previous(loop, context)

        handler._tracedfuture_flight = self  # type: ignore[attr-defined]
        handler._tracedfuture_previous = previous  # type: ignore[attr-defined]
        loop.set_exception_handler(handler)

    def unhook_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Undo :meth:`hook_loop`, if this recorder's handler is still the loop's."""
        handler = loop.get_exception_handler()
        if getattr(handler, "_tracedfuture_flight", None) is self:
            loop.set_exception_handler(handler._tracedfuture_previous)  # type: ignore[union-attr]


_MIN_BYTES = 64 * 1024
_RECORDERS: weakref.WeakSet[FlightRecorder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recorder in list(_RECORDERS):
        recorder.after_fork()


at_fork("flight", after_in_child=_after_fork_in_child)


def _ts(event: Event) -> int:
    return event.ts_ns


# --- the module-level recorder -------------------------------------------------------


class _Enabled:
    """What :func:`enable` set up, so that :func:`disable` can undo exactly that."""

    def __init__(self, recorder: FlightRecorder, installation: Installation | None, path: str | None) -> None:
        self.recorder = recorder
        self.installation = installation
        self.path = path
        self.signal: int | None = None
        self.previous_signal: Any = None
        self.loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self.at_exit: Callable[[], None] | None = None
        self.on_exception = False


_enabled: _Enabled | None = None
_enable_lock = threading.Lock()


def current() -> FlightRecorder | None:
    """The recorder set up by :func:`enable`, or ``None``."""
    state = _enabled
    return state.recorder if state is not None else None


def enable(
    max_events: int | None = None,
    *,
    max_bytes: int | None = None,
    path: str | os.PathLike[str] | None = None,
    signal: int | None = None,
    on_exception: bool = True,
    at_exit: bool = False,
    recorder: FlightRecorder | None = None,
    **options: Any,
) -> FlightRecorder:
    """Trace every loop of the process into a module-level flight recorder.

    ``path`` is where automatic dumps go (default ``tracedfuture-flight-<pid>.jsonl``
    in the working directory). ``signal`` (opt-in, such as ``signal.SIGUSR1``)
    dumps when the process receives it; this must be called from the main thread
    then, like :func:`signal.signal`. ``on_exception`` hooks the exception handler
    of the loop running in this thread, if any (call :func:`hook_loop` inside
    loops started later). ``at_exit`` dumps when the
    interpreter exits. ``recorder`` adopts a recorder already passed to
    :func:`tracedfuture.install` instead of installing a new one. Other keyword
    arguments are :func:`tracedfuture.install` options.

    >>> import tracedfuture.flight
    >>> recorder = tracedfuture.flight.enable()
    >>> tracedfuture.flight.dump("flight.jsonl")  # doctest: +SKIP
    >>> tracedfuture.flight.disable()
    """
    global _enabled
    with _enable_lock:
        if _enabled is not None:
            msg = "the flight recorder is already enabled: call tracedfuture.flight.disable() first"
            raise RuntimeError(msg)
        if signal is not None and threading.current_thread() is not threading.main_thread():
            msg = f"signal={signal!r} needs enable() to be called from the main thread, as signal.signal() does"
            raise ValueError(msg)
        if recorder is None:
            recorder = FlightRecorder(max_events, max_bytes=max_bytes)
            installation: Installation | None = install(exporters=[recorder], **options)
        elif options:
            msg = f"install options {sorted(options)} have no effect with recorder=: pass them to its install()"
            raise TypeError(msg)
        else:
            installation = None
        target = os.fspath(path) if path is not None else f"tracedfuture-flight-{os.getpid()}.jsonl"
        state = _Enabled(recorder, installation, target)
        try:
            if signal is not None:
                state.previous_signal = _signal.signal(signal, _signal_handler)
                state.signal = signal
            if on_exception:
                state.on_exception = True
                loop = asyncio._get_running_loop()
                if loop is not None:
                    recorder.hook_loop(loop, target)
                    state.loops.add(loop)
            if at_exit:

                def dump_at_exit() -> None:
                    recorder.dump_quietly(target, "at exit")

                state.at_exit = dump_at_exit
                # Registered after install()'s own handler, so it runs before it
                # (atexit is last-in, first-out), while exporters are still open.
                atexit.register(dump_at_exit)
        except BaseException:
            if state.signal is not None:
                _signal.signal(state.signal, state.previous_signal)
            if installation is not None:
                installation.uninstall()
            raise
        _enabled = state
        return recorder


def hook_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Dump the recorder set up by :func:`enable` to its path when ``loop``'s
    exception handler is called (default: the running loop). For a loop that
    started after :func:`enable`, such as ``asyncio.run``'s::

        tracedfuture.flight.enable(path="flight.jsonl")

        async def main():
            tracedfuture.flight.hook_loop()
            ...
    """
    state = _enabled
    if state is None:
        msg = "no flight recorder is enabled: call tracedfuture.flight.enable() first"
        raise RuntimeError(msg)
    if loop is None:
        loop = asyncio.get_running_loop()
    assert state.path is not None
    state.recorder.hook_loop(loop, state.path)
    state.loops.add(loop)


def _signal_handler(signum: int, frame: FrameType | None) -> None:
    state = _enabled
    if state is None:
        return
    try:
        assert state.path is not None
        state.recorder.dump_in_background(state.path, f"signal {_signal.Signals(signum).name}")
    except Exception:
        logger.exception("tracedfuture: the flight recorder's signal handler failed")
    previous = state.previous_signal
    if callable(previous):
        previous(signum, frame)


def dump(path: str | os.PathLike[str] | None = None) -> str:
    """Dump the recorder set up by :func:`enable` now, to ``path`` or its own path."""
    state = _enabled
    if state is None:
        msg = "no flight recorder is enabled: call tracedfuture.flight.enable() first"
        raise RuntimeError(msg)
    target = path if path is not None else state.path
    assert target is not None
    return state.recorder.dump(target)


def disable() -> None:
    """Undo :func:`enable`: restore the signal handler, stop tracing (if enable
    installed it), unhook the loop it hooked and forget the recorder."""
    global _enabled
    with _enable_lock:
        state = _enabled
        if state is None:
            return
        _enabled = None
        if state.signal is not None:
            _signal.signal(state.signal, state.previous_signal)
        if state.at_exit is not None:
            atexit.unregister(state.at_exit)
        for loop in list(state.loops):
            state.recorder.unhook_loop(loop)
        if state.installation is not None:
            state.installation.uninstall()
