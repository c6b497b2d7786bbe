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
import functools
import threading
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from ._delivery import Filter, Sink, TailSampler
from ._events import Event
from ._future import LoopHooks, flush_pending_completions
from ._options import Options
from ._pipeline import RECORDER

__all__ = ["Installation", "Options", "install", "loop_factory", "run"]

_T = TypeVar("_T")

_HOOKS = "_tracedfuture_hooks"
_SAVED = "_tracedfuture_saved"
_PATCHED = ("create_future", "create_task", "close")


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
        RECORDER.drain()  # to the exporters' queues; a slow exporter must not stall close()

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
    >>> main = memory.tasks()[0]
    >>> memory.kinds(main)
    ['created', 'callback_added', 'resolved', 'callback_scheduled']

    ``asyncio.run`` awaits the main task through a done callback, added when it
    starts and scheduled when the task ends; its own shutdown steps are tasks too:

    >>> [memory.created(task).coro for task in memory.tasks()]
    ['sleep', 'BaseEventLoop.shutdown_asyncgens', 'BaseEventLoop.shutdown_default_executor']

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
