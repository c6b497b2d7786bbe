"""How a loop gets traced: ``install``, ``run``, ``loop_factory``.

A traced loop has three instance attributes that shadow its class's methods:
``create_future`` (returns a TracedFuture), ``create_task`` (builds a TracedTask
the way asyncio's own ``create_task`` builds a Task, or defers to a task factory
the user has set, untouched) and ``close`` (records tasks that ended in the last
iteration, then flushes). ``_tracedfuture_hooks`` holds them and names the
installations that receive the loop's events. Removing the attributes restores the loop exactly:
nothing else about it is changed, and ``get_task_factory()`` /
``set_task_factory()`` keep meaning what they mean without tracedfuture.

Process-wide installation also wraps ``asyncio.BaseEventLoop.__init__``, so every
loop created afterwards is traced however it is made (``asyncio.run``,
``asyncio.Runner``, ``new_event_loop()``, a policy, a direct constructor).
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import threading
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from . import _core
from ._convert import Converter
from ._core import LoopHooks, flush_pending_completions
from ._delivery import Filter, Sink
from ._events import Event
from ._pipeline import DEFAULT_MAX_BYTES, RECORDER, Route
from ._tail import TailPolicy

__all__ = ["Installation", "Options", "install", "loop_factory", "run"]

_T = TypeVar("_T")

logger = logging.getLogger("tracedfuture")

_HOOKS = "_tracedfuture_hooks"
_SAVED = "_tracedfuture_saved"
_PATCHED = ("create_future", "create_task", "close")


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

    An installation is the pipeline's :class:`~tracedfuture._pipeline.Consumer`:
    the drain hands it its routes' raw records, and it samples (tail), converts,
    filters and delivers them itself, with its own options. Exporters that set
    ``raw = True`` (the flight recorder) take no events: they read the recent
    window of the installation's rings when they need it (:meth:`recent_events`).
    """

    def __init__(self, exporters: Iterable[Any], options: Options) -> None:
        exporters = list(exporters)
        for exporter in exporters:
            if not callable(getattr(exporter, "export", None)) and getattr(exporter, "raw", False) is not True:
                msg = f"{exporter!r} is not an exporter: it needs an export(events) method"
                raise TypeError(msg)
        self.options = options
        self.exporters = tuple(exporters)
        self.anchor = (time.time_ns(), time.monotonic_ns())
        self.events_delivered = 0
        raw = [e for e in exporters if getattr(e, "raw", False) is True]
        self._sinks = [Sink(e, max_failures=options.max_failures) for e in exporters if e not in raw]
        # The pipeline's Consumer protocol.
        self.streaming = bool(self._sinks)
        self.max_bytes = _ring_bytes(options, [getattr(e, "max_bytes", None) for e in raw])
        self.flush_interval = options.flush_interval
        self.export_timeout = options.export_timeout
        self._filter = Filter(
            options.include_modules, options.exclude_modules, options.include_names, options.exclude_names
        )
        self._tail = TailPolicy(int(options.slow * 1e9)) if options.tail else None
        self._converter = Converter(capture_values=options.capture_values, redact=options.redact)
        captures = [c for c in (getattr(e, "capture", None) for e in exporters) if callable(c)]
        self.capture: Callable[[], object] | None = _combine(captures)
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._routes: list[Route] = []  # every route this installation was part of, for recent_events()
        self._process_wide = False
        self._installed = True
        self._shut_down = False
        RECORDER.activate(self)
        for exporter in raw:
            bind = getattr(exporter, "bind", None)
            if callable(bind):
                bind(self)

    def __repr__(self) -> str:
        scope = "process-wide" if self._process_wide else f"{len(self._loops)} loop(s)"
        state = "installed" if self._installed else "uninstalled"
        return f"<tracedfuture.Installation {state} {scope} exporters={len(self.exporters)}>"

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
        for exporter in self.exporters:
            attach = getattr(exporter, "attach", None)
            if callable(attach):
                try:
                    attach(loop)
                except Exception:
                    logger.exception("tracedfuture: exporter %r failed in attach()", exporter)

    def _joined(self, route: Route) -> None:
        if route not in self._routes:
            self._routes.append(route)

    # -- the pipeline's Consumer protocol -----------------------------------------------

    def consume(self, records: list[tuple[Any, ...]]) -> None:
        """Called by the drain with this installation's raw records, in order."""
        if not self._installed:
            return
        if self._tail is not None:
            records = self._tail.feed(records, time.monotonic_ns())
        events = self._converter.convert(records)
        if self._filter:
            events = self._filter.apply(events)
        self._submit(events)

    def consume_lint(self, record: tuple[Any, ...]) -> None:
        if self._installed and self.streaming:
            self._submit(self._converter.convert([record]))

    def wait_exporters(self, deadline: float, only: object = None) -> bool:
        done = True
        for sink in self._sinks:
            if only is None or sink.exporter is only:
                done = sink.wait(max(0.0, deadline - time.monotonic())) and done  # every sink, no short cut
        return done

    def close_exporters(self, deadline: float) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        late: list[tuple[Any, ...]] = []
        if self._tail is not None:
            late = self._tail.flush(time.monotonic_ns())
        events = self._converter.convert(late)
        if self._filter:
            events = self._filter.apply(events) + self._filter.flush()
        self._submit(events)
        for sink in self._sinks:
            sink.close(max(0.0, deadline - time.monotonic()))

    # -- reading -------------------------------------------------------------------------

    def _submit(self, events: list[Event]) -> None:
        if not events:
            return
        self.events_delivered += len(events)
        for sink in self._sinks:
            sink.submit(events)

    def recent_events(self) -> list[Event]:
        """The events of the records still held in this installation's rings, oldest
        first, converted now: what a flight recorder dumps. A future whose first
        records were overwritten starts with an ``incomplete`` event."""
        windows = [route.ring.window() for route in list(self._routes)]
        records = [record for window in windows for record in window]
        if len(windows) > 1:
            records.sort(key=_ts)
        converter = Converter(capture_values=self.options.capture_values, redact=self.options.redact, partial=True)
        events = converter.convert(records)
        if self._filter:
            events = Filter(
                self.options.include_modules,
                self.options.exclude_modules,
                self.options.include_names,
                self.options.exclude_names,
            ).apply(events)
        return events

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every event recorded so far and wait until each exporter has
        taken it (at most ``timeout`` seconds in all, default ``export_timeout``);
        then call the exporters' ``flush()``. Returns False on a timeout."""
        deadline = time.monotonic() + (self.options.export_timeout if timeout is None else timeout)
        RECORDER.drain(only=self)
        done = self.wait_exporters(deadline)
        for sink in self._sinks:
            sink.call("flush")
        return done

    def stats(self) -> dict[str, Any]:
        """Counters: events delivered, futures left untraced, records dropped or
        overwritten in this installation's rings, futures dropped whole by tail
        sampling, and per exporter: exported, dropped, failures, disabled."""
        return {
            "events_delivered": self.events_delivered,
            **RECORDER.counters(self._routes),
            "tail_dropped_futures": self._tail.forgotten if self._tail is not None else 0,
            "exporters": [sink.stats() for sink in self._sinks],
        }

    def uninstall(self) -> None:
        """Stop tracing and restore every loop (and asyncio) exactly as before.

        Delivers what was recorded, then flushes and shuts down the exporters,
        waiting at most ``export_timeout`` for them.
        """
        if not self._installed or self._shut_down:
            return
        deadline = time.monotonic() + self.options.export_timeout
        if self._process_wide:
            with _patch_lock:
                _process_wide.remove(self)
                if not _process_wide:
                    _unpatch_base_init()
        for loop in list(self._loops):
            _detach(loop, self)
        RECORDER.deactivate(self)  # delivers what is buffered, while still installed
        self._installed = False
        self.close_exporters(deadline)

    def __enter__(self) -> Installation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()


def _ring_bytes(options: Options, asked: list[int | None]) -> int:
    """The ring size an installation asks for: its ``max_bytes`` option, else the
    older ``buffer_size`` (records) when that was given, else what its flight
    recorders asked for, else the default."""
    max_bytes = getattr(options, "max_bytes", None)
    if max_bytes and max_bytes != DEFAULT_MAX_BYTES:
        return int(max_bytes)
    if options.buffer_size != Options.buffer_size:
        return int(options.buffer_size * _core.Ring.record_size)
    sizes = [size for size in asked if size]
    return max(sizes) if sizes else DEFAULT_MAX_BYTES


def _ts(record: tuple[Any, ...]) -> int:
    return record[2]  # type: ignore[no-any-return]


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
        try:
            namespace = vars(loop)
        except TypeError:
            msg = (
                f"cannot trace {type(loop).__qualname__}: its instances have no __dict__; "
                "create it through tracedfuture.loop_factory(base=...), which subclasses it"
            )
            raise TypeError(msg) from None
        saved = {name: namespace[name] for name in _PATCHED if name in namespace}
        hooks = LoopHooks(loop)
        base_close = loop.close
        namespace[_SAVED] = saved
        namespace[_HOOKS] = hooks
        namespace["create_future"] = hooks.create_future
        namespace["create_task"] = hooks.create_task
        namespace["close"] = types.MethodType(_traced_close(base_close), loop)
    if inst not in hooks.installations:
        _retarget(hooks, (*hooks.installations, inst))
    if loop not in inst._loops:
        inst._loops.add(loop)
        inst._attached(loop)


def _retarget(hooks: Any, installations: tuple[Installation, ...]) -> None:
    """Point a loop's hooks at a new set of installations: their route's ring and
    their settings, and nobody else's."""
    hooks.installations = installations
    route = RECORDER.route(installations)
    if route is None:
        hooks.bind(None, 0, 1.0, None, False)
        return
    for inst in installations:
        inst._joined(route)
    hooks.bind(
        route.ring,
        route.key,
        max(i.options.sample_rate for i in installations),
        _combine([i.capture for i in installations if i.capture is not None]),
        any(i.options.capture_values for i in installations),
    )


def _detach(loop: asyncio.AbstractEventLoop, inst: Installation) -> None:
    hooks: LoopHooks | None = getattr(loop, _HOOKS, None)
    if hooks is None or inst not in hooks.installations:
        return
    _retarget(hooks, tuple(i for i in hooks.installations if i is not inst))
    if hooks.installations:
        return
    namespace = vars(loop)
    saved = namespace.pop(_SAVED, {})
    del namespace[_HOOKS]
    for name in _PATCHED:
        namespace.pop(name, None)
    namespace.update(saved)


def _traced_close(base_close: Callable[[], None]) -> Callable[[asyncio.AbstractEventLoop], None]:
    def close(loop: asyncio.AbstractEventLoop) -> None:
        if not loop.is_running():
            flush_pending_completions(loop)
        base_close()
        # To the exporters' queues; a slow exporter must not stall close().
        hooks = getattr(loop, _HOOKS, None)
        for inst in getattr(hooks, "installations", ()):
            RECORDER.drain(only=inst)

    return close


# --- process-wide --------------------------------------------------------------------

_process_wide: list[Installation] = []
_base_init: Callable[..., None] | None = None
_patch_lock = threading.Lock()


def _patch_base_init() -> None:
    global _base_init
    if _base_init is not None:
        return
    original = asyncio.BaseEventLoop.__init__
    _base_init = original

    @functools.wraps(original)
    def __init__(self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for inst in list(_process_wide):
            _attach(self, inst)

    asyncio.BaseEventLoop.__init__ = __init__  # type: ignore[method-assign,assignment]


def _unpatch_base_init() -> None:
    global _base_init
    if _base_init is not None:
        asyncio.BaseEventLoop.__init__ = _base_init  # type: ignore[method-assign]
        _base_init = None


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
            _attach(running, inst)
    except BaseException:
        inst.uninstall()
        raise
    return inst


def loop_factory(
    *, base: Callable[[], asyncio.AbstractEventLoop] | None = None, exporters: Iterable[Any] = (), **options: Any
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory for ``asyncio.Runner(loop_factory=...)`` (and 3.12's
    ``asyncio.run(loop_factory=...)``) whose loops are traced.

    ``base`` makes the untraced loop (default ``asyncio.new_event_loop``). A loop
    type whose instances cannot take attributes, such as uvloop's, is subclassed:
    ``loop_factory(base=uvloop.new_event_loop)`` traces uvloop. All loops made by
    one factory share one :class:`Installation`, available as ``factory.installation``.
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
