"""How a loop gets traced: ``install``, ``run``, ``loop_factory``.

A traced loop has three instance attributes that shadow its class's methods:
``create_future`` (returns a TracedFuture), ``create_task`` (builds a TracedTask
the way asyncio's own ``create_task`` builds a Task, or defers to a task factory
the user has set, untouched) and ``close`` (records tasks that ended in the last
iteration, then flushes). The hooks behind them (``_loops.hooks_of``, the
``__self__`` of ``create_future``) name the installations that receive the
loop's events. Removing the attributes restores the loop exactly:
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
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from ._core import RecordBatch, _frames, _loops
from ._core._events import Event
from ._core._seam import LoopHooksLike
from ._pipeline._convert import Converter, redacted
from ._pipeline._drain import DEFAULT_MAX_BYTES, RECORDER, Route
from ._pipeline._hooks import resolve
from ._pipeline._lines import make_lines
from ._pipeline._sink import Sink
from .options import check_install

if TYPE_CHECKING:
    from .options import Options

__all__ = ["Installation", "install", "loop_factory", "run"]

_T = TypeVar("_T")

logger = logging.getLogger("tracedfuture")


def _drain_at_close(inst: Installation) -> None:
    """What a traced loop's ``close()`` does for each of its installations: hand
    the exporters what it recorded, waiting for another drain at most
    ``export_timeout`` (and not at all while the interpreter finalizes: see
    ``Recorder.drain``)."""
    RECORDER.drain(only=inst, timeout=inst.export_timeout)


_loops.set_close_hook(_drain_at_close)


class Installation:
    """What :func:`install` returns: the traced loops, their exporters, the stats.

    ``anchor`` is ``(wall_ns, monotonic_ns)`` taken together at installation, so
    that ``wall = event.ts_ns - anchor[1] + anchor[0]``.

    An installation is the pipeline's :class:`~tracedfuture._pipeline._drain.Consumer`:
    the drain hands it its routes' raw records, and it samples (tail), converts,
    filters and delivers them itself, with its own options. Exporters that set
    ``raw = True`` (the flight recorder) take no events: they read the recent
    window of the installation's rings when they need it (:meth:`recent_events`).
    """

    def __init__(self, exporters: Iterable[Any], values: Mapping[str, Any]) -> None:
        # values: every option, checked (options.check_install). The Options
        # dataclass is made only when someone asks (.options): the start-up hook
        # makes none.
        exporters = list(exporters)
        hooks = [resolve(exporter) for exporter in exporters]  # the protocol, read once
        for hook in hooks:
            if hook.export is None and not hook.raw:
                msg = f"{hook.exporter!r} is not an exporter: it needs an export(events) method"
                raise TypeError(msg)
        self._values = dict(values)
        self._settings = options = SimpleNamespace(**values)
        self._options: Options | None = None
        self.exporters = tuple(exporters)
        self.anchor = (time.time_ns(), time.monotonic_ns())
        self.events_delivered = 0
        raw = [hook for hook in hooks if hook.raw]
        events = [hook for hook in hooks if not hook.raw]
        threaded = sum(not hook.inline for hook in events)
        queue_bytes = options.max_memory // max(1, threaded)
        self._hooks = hooks
        self._filter = bool(
            options.include_modules or options.exclude_modules or options.include_names or options.exclude_names
        )
        # Every exporter's queue holds raw records: what it cannot take is shed
        # before anything is converted.
        self._sinks = [self._sink(hook, options, queue_bytes) for hook in events]
        # The pipeline's Consumer protocol.
        self.streaming = bool(self._sinks)
        self.history = bool(raw)  # a flight recorder reads the rings' window
        self.max_bytes = _ring_bytes(options.max_bytes, [hook.max_bytes for hook in raw])
        self.flush_interval = options.flush_interval
        self.export_timeout = options.export_timeout
        self._tail = _tail_sampling(int(options.slow * 1e9)) if options.tail else None
        captures = [hook.capture for hook in hooks if hook.capture is not None]
        self.capture: Callable[[], object] | None = _combine(captures)
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._routes: list[Route] = []  # every route this installation was part of, for recent_events()
        self._process_wide = False
        self._installed = True
        self._shut_down = False
        RECORDER.activate(self)
        for hook in raw:
            if hook.bind is not None:
                hook.bind(self)

    def __repr__(self) -> str:
        scope = "process-wide" if self._process_wide else f"{len(self._loops)} loop(s)"
        state = "installed" if self._installed else "uninstalled"
        return f"<tracedfuture.Installation {state} {scope} exporters={len(self.exporters)}>"

    def _sink(self, hook: Any, options: SimpleNamespace, queue_bytes: int) -> Sink:
        """An exporter's queue. Its thread writes trace-file lines (an exporter
        with ``export_lines``, unless a filter must see events) or makes its
        events (a converter and a filter of its own): only the one it uses is made."""
        if hook.export_lines is not None and not self._filter:
            lines = make_lines(capture_values=options.capture_values, redact=options.redact)
            return Sink(
                hook, max_failures=options.max_failures, max_bytes=queue_bytes, statistics=self._counters, lines=lines
            )
        from ._pipeline._delivery import Events  # events and filters: not a trace file's way

        events = Events(
            capture_values=options.capture_values,
            redact=options.redact,
            include_modules=options.include_modules,
            exclude_modules=options.exclude_modules,
            include_names=options.include_names,
            exclude_names=options.exclude_names,
        )
        return Sink(
            hook, max_failures=options.max_failures, max_bytes=queue_bytes, statistics=self._counters, events=events
        )

    @property
    def options(self) -> Options:
        """This installation's options (:class:`tracedfuture.Options`)."""
        if self._options is None:
            from .options import Options

            self._options = Options.of_checked(self._values)
        return self._options

    def redact(self, value: str) -> str:
        """``value`` through this installation's ``redact`` option."""
        return redacted(self._settings.redact, value)

    def _attached(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tell the exporters that have an ``attach(loop)`` method that a loop is
        traced now (the flight recorder hooks its exception handler)."""
        for hook in self._hooks:
            if hook.attach is not None:
                try:
                    hook.attach(loop)
                except Exception:
                    logger.exception("tracedfuture: exporter %r failed in attach()", hook.exporter)

    def _joined(self, route: Route) -> None:
        if route not in self._routes:
            self._routes.append(route)

    # -- the pipeline's Consumer protocol -----------------------------------------------

    def consume(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Called by the drain with this installation's raw records, in order."""
        if not self._installed:
            return
        if self._tail is not None:
            records = self._tail.feed(records, time.monotonic_ns())
        self._submit_records(records)

    def takes_nothing(self) -> bool:
        """Every exporter's queue is full (or disabled): the drain may leave the
        records in the ring rather than take them to be shed here. Tail sampling
        keeps its own state: it is always fed."""
        return self._tail is None and bool(self._sinks) and all(sink.full() for sink in self._sinks)

    def consume_lint(self, record: tuple[Any, ...]) -> None:
        if self._installed and self.streaming:
            self._submit_records([record])

    def wait_exporters(self, deadline: float, only: object = None) -> bool:
        sinks = [sink for sink in self._sinks if only is None or sink.exporter is only]
        waits = [sink.wait_handled(deadline) for sink in sinks]  # every sink, one deadline
        return all(waits)

    def close_exporters(self, deadline: float) -> None:
        """Deliver what is left, flush and shut the exporters down, all of them at
        once and by ``deadline``; one still busy then is abandoned (reported once)."""
        if self._shut_down:
            return
        self._shut_down = True
        late: list[tuple[Any, ...]] = []
        if self._tail is not None:
            late = self._tail.flush(time.monotonic_ns())
        self._submit_records(late)
        for sink in self._sinks:
            sink.begin_close()
        for sink in self._sinks:
            sink.finish_close(deadline)

    @property
    def tail_forgotten(self) -> int:
        """Futures tail sampling dropped whole: never converted, never exported."""
        return self._tail.forgotten if self._tail is not None else 0

    def after_fork_in_child(self) -> None:
        """The child of a fork starts afresh: nothing of the parent's history is
        held, sampled or converted again here."""
        if self._tail is not None:
            self._tail = _tail_sampling(self._tail.slow_ns)

    # -- reading -------------------------------------------------------------------------

    def _submit_records(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Raw records to every exporter's queue: shed there, if need be,
        before anything is converted."""
        if not records:
            return
        self.events_delivered += len(records)  # records: events are made past the queues
        for sink in self._sinks:
            sink.submit(records)

    def recent_events(self, limit: int | None = None) -> list[Event]:
        """The events of the records still held in this installation's rings (the
        newest ``limit`` records of each, if given), oldest first, converted now:
        what a flight recorder dumps. A future whose first records were
        overwritten starts with an ``incomplete`` event."""
        windows = [route.ring.window(limit) for route in list(self._routes)]
        records = [record for window in windows for record in window]
        if len(windows) > 1:
            records.sort(key=_ts)
        options = self._settings
        converter = Converter(capture_values=options.capture_values, redact=options.redact, partial=True)
        events = converter.convert(records)
        if self._filter:
            from ._pipeline._delivery import Filter

            events = Filter(
                options.include_modules,
                options.exclude_modules,
                options.include_names,
                options.exclude_names,
            ).apply(events)
        return events

    def recent_lines(self) -> tuple[bytes, int] | None:
        """:meth:`recent_events` (every record held) as trace-file lines and
        their count, written from the raw records (``_pipeline._lines``) with no
        ``Event`` in between; None when this installation filters futures (its
        events then go through the filter)."""
        if self._filter:
            return None
        windows = [route.ring.window() for route in list(self._routes)]
        records = [record for window in windows for record in window]
        if len(windows) > 1:
            records.sort(key=_ts)
        options = self._settings
        writer = make_lines(capture_values=options.capture_values, redact=options.redact, partial=True)
        return writer.lines(RecordBatch(records))

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every event recorded so far and wait until each exporter has
        taken it (at most ``timeout`` seconds in all, default ``export_timeout``);
        then call the exporters' ``flush()``. Returns False on a timeout."""
        deadline = time.monotonic() + (self._settings.export_timeout if timeout is None else timeout)
        RECORDER.drain(only=self, everything=True)  # a stuck exporter's route too: counted
        flushed = [sink.flush(deadline) for sink in self._sinks]  # every sink, one deadline
        if all(flushed):
            # The queues are empty: a ring that the drain thread held while they
            # were full (it may have done so during this flush) traces again now,
            # not only once it has refused a new future.
            RECORDER.drain(only=self)
        return all(flushed)

    def stats(self) -> dict[str, Any]:
        """Counters: records handed to the exporters' queues (``events_delivered``),
        futures left untraced, records dropped or overwritten in this
        installation's rings, futures dropped whole by tail sampling, and per
        exporter: exported (events), dropped (records), failures, disabled."""
        return {
            "events_delivered": self.events_delivered,
            **self._counters(),
            "exporters": [sink.stats() for sink in self._sinks],
        }

    def _counters(self) -> dict[str, int]:
        """The counters of this installation's rings and tail sampling: part of
        :meth:`stats`, and what each exporter's ``shutdown(stats)`` is given."""
        return {**RECORDER.counters(self._routes), "tail_forgotten_futures": self.tail_forgotten}

    def uninstall(self) -> None:
        """Stop tracing and restore every loop (and asyncio) exactly as before.

        Delivers what was recorded, then flushes and shuts down the exporters,
        waiting at most ``export_timeout`` for them.
        """
        if not self._installed or self._shut_down:
            return
        deadline = time.monotonic() + self._settings.export_timeout
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


def _ring_bytes(max_bytes: int, asked: list[int | None]) -> int:
    """The ring size an installation asks for: its ``max_bytes`` option, else
    what its flight recorders asked for, else the default."""
    if max_bytes != DEFAULT_MAX_BYTES:
        return max_bytes
    sizes = [size for size in asked if size]
    return max(sizes) if sizes else DEFAULT_MAX_BYTES


def _tail_sampling(slow_ns: int) -> Any:
    """A tail-sampling policy (``_pipeline._tail``), imported only by an
    installation that asks for one: the start-up hook's usual trace does not."""
    from ._pipeline._tail import make_tail

    return make_tail(slow_ns)


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
    hooks: LoopHooksLike | None = _loops.hooks_of(loop)
    if hooks is None:
        hooks = _loops.hook_loop(loop)
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
        max(i._settings.sample_rate for i in installations),
        _combine([i.capture for i in installations if i.capture is not None]),
        any(i._settings.capture_values for i in installations),
    )


def _detach(loop: asyncio.AbstractEventLoop, inst: Installation) -> None:
    hooks: LoopHooksLike | None = _loops.hooks_of(loop)
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
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    exporters: Iterable[Any] = (),
    **options: Any,
) -> Installation:
    """Trace ``loop``, or, without one, the running loop and every loop created later.

    >>> import asyncio, tracedfuture
    >>> from tracedfuture.exporters import MemoryExporter
    >>> memory = MemoryExporter()
    >>> with tracedfuture.install(exporters=[memory]):
    ...     asyncio.run(asyncio.sleep(0))
    >>> main = memory.tasks()[0]
    >>> memory.kinds(main)
    ['created', 'callback_added', 'resolved', 'callback_scheduled']

    ``asyncio.run`` awaits the main task through a done callback, added when it
    starts and scheduled when the task ends; its own shutdown steps are tasks too:

    >>> [memory.created(task).coro for task in memory.tasks()]
    ['sleep', 'BaseEventLoop.shutdown_asyncgens', 'BaseEventLoop.shutdown_default_executor']

    Options are listed in :class:`Options`; an unknown one raises ``TypeError``.
    ``app_modules`` (``("myservice",)``) names top-level packages whose files are
    the program's own even where they are installed: every future's program line
    is looked for in them too (process-wide; by default the program is every file
    outside the standard library, ``site-packages`` and tracedfuture).
    """
    checked = check_install(options)
    if checked["app_modules"]:
        _frames.set_app_modules(checked["app_modules"])
    inst = Installation(exporters, checked)
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
    inst = Installation(exporters, check_install(options))
    make = base or asyncio.new_event_loop
    subclasses: dict[type, type] = {}

    def factory() -> asyncio.AbstractEventLoop:
        loop = make()
        if _loops.untraceable(loop) is not None:
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


# Public under tracedfuture (tracedfuture/__init__.py): reprs, docs and pickles
# name the package.
for _public in (Installation, install, loop_factory, run):
    _public.__module__ = "tracedfuture"
del _public
