"""How a loop gets traced: ``install``, ``run``, ``loop_factory``.

A traced loop has three instance attributes that shadow its class's methods:
``create_future`` (returns a TracedFuture), ``create_task`` (builds a TracedTask
the way asyncio's own ``create_task`` builds a Task, or defers to a task factory
the user has set, untouched) and ``close`` (records tasks that ended in the last
iteration, then flushes). ``_tracedfuture_hooks`` holds them and names the
installations that receive the loop's events. Removing the attributes restores the loop exactly:
nothing else about it is changed, and ``get_task_factory()`` /
``set_task_factory()`` keep meaning what they mean without tracedfuture.

A loop class's own ``create_future`` / ``create_task`` / ``close`` are kept and
called (``_loops`` says how).

Process-wide installation also wraps ``asyncio.BaseEventLoop.__init__`` and
``uvloop.Loop.__init__`` (``_loops``), so every loop created afterwards is traced
however it is made (``asyncio.run``, ``asyncio.Runner``, ``new_event_loop()``, a
policy, a direct constructor, ``uvloop.run``).
"""

from __future__ import annotations

import asyncio
import difflib
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from . import _loops
from ._delivery import Filter, Sink, TailSampler
from ._events import Event
from ._future import LoopHooks
from ._pipeline import RECORDER

__all__ = ["Installation", "Options", "install", "loop_factory", "run"]

_T = TypeVar("_T")

_HOOKS = _loops.HOOKS


@dataclass(frozen=True)
class Options:
    """Options accepted by :func:`install`, :func:`run` and :func:`loop_factory`.

    capture_values
        Record a truncated ``repr()`` of results and the message of exceptions
        (off: only type names are recorded).
    redact
        Called with each captured value string before it leaves the recorder;
        returns the text to keep. Only used with ``capture_values``.
    buffer_size
        Raw records held before new futures are handed out untraced (counted).
    flush_interval
        Seconds between two deliveries to exporters.
    max_failures
        Consecutive failures after which an exporter is disabled.
    export_timeout
        Seconds ``uninstall()`` and ``flush()`` wait for each exporter to take
        what was queued for it, before giving up on it (reported).
    sample_rate
        Head sampling: the fraction of futures and tasks traced, decided at
        creation; the others are plain asyncio objects and cost nothing.
    tail
        Tail sampling: keep a future's events only if it failed, was cancelled,
        abandoned, left an exception unretrieved or lived longer than ``slow``,
        together with the futures and tasks linked to it (its awaiters, the
        futures its tasks awaited, its parent task).
    slow
        Seconds: the lifetime above which a future is kept by tail sampling.
    include_modules, exclude_modules
        Module name prefixes (``"myapp.db"``) matched against the module that
        created the future: only / never trace those.
    include_names, exclude_names
        Shell patterns (``"worker-*"``) matched against task names and future
        labels.
    """

    capture_values: bool = False
    redact: Callable[[str], str] | None = None
    buffer_size: int = 1_000_000
    flush_interval: float = 0.1
    max_failures: int = 10
    export_timeout: float = 10.0
    sample_rate: float = 1.0
    tail: bool = False
    slow: float = 1.0
    include_modules: tuple[str, ...] = ()
    exclude_modules: tuple[str, ...] = ()
    include_names: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Options:
        known = {f.name for f in fields(cls)}
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                msg = f"unknown tracedfuture option {key!r}: {hint}valid options are {', '.join(sorted(known))}"
                raise TypeError(msg)
        opts = cls(**options)
        if opts.buffer_size < 1:
            msg = f"buffer_size must be a positive number of records, not {opts.buffer_size!r}"
            raise ValueError(msg)
        if not opts.flush_interval > 0:
            msg = f"flush_interval must be a positive number of seconds, not {opts.flush_interval!r}"
            raise ValueError(msg)
        if not 0.0 <= opts.sample_rate <= 1.0:
            msg = f"sample_rate must be between 0.0 and 1.0, not {opts.sample_rate!r}"
            raise ValueError(msg)
        if not opts.slow >= 0:
            msg = f"slow must be a number of seconds >= 0, not {opts.slow!r}"
            raise ValueError(msg)
        for name in ("include_modules", "exclude_modules", "include_names", "exclude_names"):
            value = getattr(opts, name)
            if isinstance(value, str):
                msg = f"{name} must be a sequence of strings, such as ({value!r},), not a single string"
                raise TypeError(msg)
            object.__setattr__(opts, name, tuple(value))
        redact: object = opts.redact
        if redact is not None and not callable(redact):
            msg = f"redact must be a callable taking and returning a str, not {redact!r}"
            raise TypeError(msg)
        return opts


class Installation:
    """What :func:`install` returns: the traced loops, their exporters, the stats.

    ``anchor`` is ``(wall_ns, monotonic_ns)`` taken together at installation, so
    that ``wall = event.ts_ns - anchor[1] + anchor[0]``.
    """

    def __init__(self, exporters: Iterable[Any], options: Options) -> None:
        exporters = list(exporters)
        for exporter in exporters:
            if not callable(getattr(exporter, "export", None)):
                msg = f"{exporter!r} is not an exporter: it needs an export(events) method"
                raise TypeError(msg)
        self.options = options
        self.exporters = tuple(exporters)
        self.anchor = (time.time_ns(), time.monotonic_ns())
        self.events_delivered = 0
        self._sinks = [Sink(e, max_failures=options.max_failures) for e in exporters]
        self._filter = Filter(
            options.include_modules, options.exclude_modules, options.include_names, options.exclude_names
        )
        self._tail = TailSampler(int(options.slow * 1e9)) if options.tail else None
        captures = [c for c in (getattr(e, "capture", None) for e in exporters) if callable(c)]
        self.capture: Callable[[], object] | None = _combine(captures)
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._process_wide = False
        self._installed = True
        self._shut_down = False
        RECORDER.activate(self)

    def __repr__(self) -> str:
        scope = "process-wide" if self._process_wide else f"{len(self._loops)} loop(s)"
        state = "installed" if self._installed else "uninstalled"
        return f"<tracedfuture.Installation {state} {scope} exporters={len(self._sinks)}>"

    def redact(self, value: str) -> str:
        redact = self.options.redact
        if redact is None:
            return value
        try:
            return str(redact(value))
        except Exception:
            return "<redaction failed>"

    def _attached(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tell the exporters that have an ``attach(loop)`` method that a loop is
        traced now (the flight recorder hooks its exception handler)."""
        for sink in self._sinks:
            sink.call("attach", loop)

    def _deliver(self, events: list[Event]) -> None:
        """Called by the drain thread with this installation's events, in order."""
        if self._filter:
            events = self._filter.apply(events)
        if self._tail is not None:
            events = self._tail.apply(events)
        self._submit(events)

    def _submit(self, events: list[Event]) -> None:
        if not events:
            return
        self.events_delivered += len(events)
        for sink in self._sinks:
            sink.submit(events)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every event recorded so far and wait until each exporter has
        taken it (at most ``timeout`` seconds, default ``export_timeout``);
        then call the exporters' ``flush()``. Returns False on a timeout."""
        RECORDER.drain()
        done = self._wait_sinks(self.options.export_timeout if timeout is None else timeout)
        for sink in self._sinks:
            sink.call("flush")
        return done

    def _wait_sinks(self, timeout: float | None, only: object = None) -> bool:
        sinks = [s for s in self._sinks if only is None or s.exporter is only]
        waits = [sink.wait(timeout) for sink in sinks]  # every sink, no short cut
        return all(waits)

    def _shutdown_exporters(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        late: list[Event] = []
        if self._filter:
            late += self._filter.flush()
        if self._tail is not None:
            late += self._tail.flush()
        self._submit(late)
        for sink in self._sinks:
            sink.close(self.options.export_timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: events delivered, futures left untraced or dropped by tail
        sampling, and per exporter: exported, dropped, failures, disabled."""
        return {
            "events_delivered": self.events_delivered,
            **RECORDER.counters(),
            "tail_dropped_futures": self._tail.dropped_futures if self._tail is not None else 0,
            "exporters": [sink.stats() for sink in self._sinks],
        }

    def uninstall(self) -> None:
        """Stop tracing and restore every loop (and asyncio) exactly as before.

        Delivers what was recorded, then flushes and shuts down the exporters.
        """
        if not self._installed or self._shut_down:
            return
        if self._process_wide:
            with _patch_lock:
                _process_wide.remove(self)
                if not _process_wide:
                    _unpatch_base_init()
        for loop in list(self._loops):
            _detach(loop, self)
        RECORDER.deactivate(self)  # delivers what is buffered, while still installed
        self._installed = False
        self._shutdown_exporters()

    def __enter__(self) -> Installation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()


def _combine(captures: list[Callable[[], object]]) -> Callable[[], object] | None:
    if not captures:
        return None
    if len(captures) == 1:
        return captures[0]
    return lambda: tuple(capture() for capture in captures)


# --- per loop ------------------------------------------------------------------------


def _attach(loop: asyncio.AbstractEventLoop, inst: Installation) -> None:
    hooks: LoopHooks | None = getattr(loop, _HOOKS, None)
    if hooks is None:
        hooks = _loops.hook_loop(loop)
    if inst not in hooks.installations:
        _retarget(hooks, (*hooks.installations, inst))
    if loop not in inst._loops:
        inst._loops.add(loop)
        inst._attached(loop)


def _retarget(hooks: LoopHooks, installations: tuple[Installation, ...]) -> None:
    """Point a loop's hooks at a new set of installations."""
    hooks.installations = installations
    hooks.route = RECORDER.route(installations) if installations else 0
    hooks.sample_rate = max((i.options.sample_rate for i in installations), default=1.0)
    hooks.capture = _combine([i.capture for i in installations if i.capture is not None])


def _detach(loop: asyncio.AbstractEventLoop, inst: Installation) -> None:
    hooks: LoopHooks | None = getattr(loop, _HOOKS, None)
    if hooks is None or inst not in hooks.installations:
        return
    _retarget(hooks, tuple(i for i in hooks.installations if i is not inst))
    if not hooks.installations:
        _loops.unhook_loop(loop)


# --- process-wide --------------------------------------------------------------------

_process_wide: list[Installation] = []
_patch_lock = threading.Lock()


def _new_loop(loop: asyncio.AbstractEventLoop) -> None:
    for inst in list(_process_wide):
        _attach(loop, inst)


def _patch_base_init() -> None:
    """See every loop made from now on: asyncio's (``BaseEventLoop.__init__``) and
    uvloop's, imported or not yet (``_loops.patch_construction``)."""
    _loops.patch_construction(_new_loop)


def _unpatch_base_init() -> None:
    _loops.unpatch_construction()


# --- public API ----------------------------------------------------------------------


def install(
    loop: asyncio.AbstractEventLoop | None = None, *, exporters: Iterable[Any] = (), **options: Any
) -> Installation:
    """Trace ``loop``, or, without one, the running loop and every loop created later.

    >>> import asyncio, tracedfuture
    >>> from tracedfuture.exporters import MemoryExporter
    >>> memory = MemoryExporter()
    >>> with tracedfuture.install(exporters=[memory]):
    ...     asyncio.run(asyncio.sleep(0))
    >>> memory.kinds()[:2]
    ['created', 'resolved']

    Options are listed in :class:`Options`; an unknown one raises ``TypeError``.
    """
    inst = Installation(exporters, Options.parse(options))
    try:
        if loop is not None:
            _attach(loop, inst)
            return inst
        inst._process_wide = True
        with _patch_lock:
            _process_wide.append(inst)
            _patch_base_init()
        running = asyncio._get_running_loop()
        if running is not None:
            reason = _loops.untraceable(running)
            if reason is None:
                _attach(running, inst)
            else:
                _loops.warn_once(running, reason)
    except BaseException:
        inst.uninstall()
        raise
    return inst


def loop_factory(
    *, base: Callable[[], asyncio.AbstractEventLoop] | None = None, exporters: Iterable[Any] = (), **options: Any
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory for ``asyncio.Runner(loop_factory=...)`` (and 3.12's
    ``asyncio.run(loop_factory=...)``) whose loops are traced.

    ``base`` makes the untraced loop (default ``asyncio.new_event_loop``;
    ``uvloop.new_event_loop`` traces uvloop). A loop type whose instances cannot
    take attributes (a compiled class used directly, such as ``uvloop.loop.Loop``)
    is subclassed. All loops made by one factory share one :class:`Installation`,
    available as ``factory.installation``.
    """
    inst = Installation(exporters, Options.parse(options))
    make = base or asyncio.new_event_loop
    subclasses: dict[type, type] = {}

    def factory() -> asyncio.AbstractEventLoop:
        loop = make()
        if not hasattr(loop, "__dict__"):
            cls = type(loop)
            loop.close()
            sub = subclasses.get(cls)
            if sub is None:
                sub = subclasses[cls] = type(cls.__name__, (cls,), {"__module__": cls.__module__})
            loop = sub()
        _attach(loop, inst)
        return loop

    factory.installation = inst  # type: ignore[attr-defined]
    return factory


def run(
    main: Coroutine[Any, Any, _T], *, debug: bool | None = None, exporters: Iterable[Any] = (), **options: Any
) -> _T:
    """Like :func:`asyncio.run`, with the loop traced.

    >>> import asyncio, tracedfuture
    >>> async def main():
    ...     return 42
    >>> tracedfuture.run(main())
    42
    """
    factory = loop_factory(exporters=exporters, **options)
    inst: Installation = factory.installation  # type: ignore[attr-defined]
    try:
        with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
            return runner.run(main)
    finally:
        inst.uninstall()
