"""OTelExporter: one OpenTelemetry span per traced future or task.

>>> import asyncio, tracedfuture
>>> from tracedfuture.exporters.otel import OTelExporter
>>> tracedfuture.run(asyncio.sleep(0), exporters=[OTelExporter()])  # doctest: +SKIP

Spans are built after the fact, on the pipeline's drain thread, from the events
of each future: a span starts at ``created`` and ends at ``resolved``, ``failed``,
``cancelled`` or ``abandoned``, with those events' own times (``ts_ns`` is
monotonic; it is converted to wall time with an anchor taken when the exporter
is created). Spans go to the global TracerProvider unless one is given.

Span name
    ``task <coroutine qualname>`` for a task, ``future <label>`` for a labelled
    future, else ``future <function that created it>``.
Parent
    The span that was current when the future was created, captured on the
    event loop's thread by the exporter's ``capture()`` (:func:`capture_context`),
    which the core calls at creation and returns in the event's ``context``. When that span is the
    one that was already current when the creating task was created (the task
    opened no span of its own), the creating task's span, which sits under it,
    is the closer parent and is used instead; so is it when nothing was
    captured. A future created outside any task and any span is a root span.
Links
    A future's span links to the spans of the tasks that awaited it
    (``asyncio.link = "awaited_by"``) and a task's span to the futures and tasks
    it awaited (``asyncio.link = "awaited"``). Links are added while both spans
    are open with ``Span.add_link`` (OpenTelemetry API and SDK 1.23 or later);
    the SDK keeps at most 128 links per span by default (``OTEL_SPAN_LINK_COUNT_LIMIT``).
Span events
    ``awaited``, ``callback_scheduled``, ``cancel_requested`` and ``cancelled``
    (with ``asyncio.cancel.msg`` and ``asyncio.canceller``), and the lints
    ``stalled``, ``orphan`` and ``blocked_loop`` (on the running task's span)
    while the span is open; a cancel of a task says where it was waiting
    (``asyncio.cancel.waiting_at``, the program's line). A failure sets status
    ERROR and adds an ``exception`` event (``exception.type``;
    ``exception.message`` only with ``capture_values=True``;
    ``exception.stacktrace`` in Python's form, of the two frames recorded: the
    program's line where it was raised and the innermost one, ``...`` between;
    ``code.*``: the program's line where it was raised). So does an exception
    a framework caught in a task that goes on (``caught``: a request whose
    handler raised, turned into a 500 by the server; see
    ``tracedfuture.asgi``), on the task's span. A span
    cannot change once ended, so ``unretrieved`` (seen when a failed future is
    collected) and callbacks added to a finished future are not shown.
Attributes
    ``code.function.name``, ``code.file.path``, ``code.line.number``: the
    program's own line that created it (the first frame of the program's code
    up the stack, past asyncio and installed libraries; see ``app_modules``),
    else the first frame outside asyncio. These are the stable code
    conventions, replacing the deprecated ``code.function``, ``code.filepath``
    and ``code.lineno``; the constants of ``opentelemetry-semantic-conventions``
    when it has them. When a library's frame made it on the program's behalf,
    that frame is in ``tracedfuture.site.function``, ``tracedfuture.site.file``
    and ``tracedfuture.site.line``. A task named by ``tracedfuture.asgi``
    (``GET /items/{item_id}``) has ``http.request.method`` and ``http.route``,
    and its span is named ``task GET /items/{item_id}``. And ``thread.id``,
    and:

    ==============================  ===================================================
    ``asyncio.kind``                ``"task"`` or ``"future"``
    ``asyncio.future_id``           tracedfuture's id (the ``future_id`` of events)
    ``asyncio.task.name``           a task's name (updated when it is renamed)
    ``asyncio.future.label``        a future's label, when it has one
    ``asyncio.coro``                a task's coroutine qualname
    ``asyncio.creator_task_id``     the task that created it
    ``asyncio.state``               ``resolved``, ``failed``, ``cancelled``,
                                    ``abandoned`` (collected while pending) or
                                    ``pending`` (still pending at shutdown)
    ``asyncio.result_type``         the type of the result
    ``asyncio.value``               its repr (``capture_values=True`` only)
    ``asyncio.exc_type``            the exception type of a failure
    ``asyncio.cancel.msg``          the ``cancel(msg)`` message
    ``asyncio.canceller``           the function that called ``cancel()``, and where
    ``asyncio.canceller_id``        the task that called ``cancel()``
    ``asyncio.cancel.waiting_at``   where a cancelled task was waiting, ``file:line
                                    in function`` (the program's line)
    ==============================  ===================================================

``asyncio.run`` (and ``asyncio.Runner``) ends by running two tasks of its own,
``shutdown_asyncgens`` and ``shutdown_default_executor``, created outside any
task: exported, each would be a root trace of its own in Jaeger or Tempo, after
every run. They are left out, with the futures they create, unless
``OTelExporter(shutdown_tasks=True)``.

Spans of futures still pending at ``shutdown()`` end there, with
``asyncio.state = "pending"``. Memory is bounded: at most ``max_open_spans``
spans are open at once (later futures get no span, counted in
``spans_dropped``), and the span contexts of the last ``max_remembered`` ended
spans are kept to link to.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.context import Context, get_current
    from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    _msg = "tracedfuture.exporters.otel needs OpenTelemetry: pip install 'tracedfuture[otel]'"
    raise ImportError(_msg, name=exc.name) from exc

from tracedfuture._core._events import Event
from tracedfuture._core._events import is_shutdown_task as _is_shutdown_task
from tracedfuture._pipeline._sink import unicode_safe
from tracedfuture._text import parse_request_name


def _code_attributes() -> tuple[str, str, str]:
    """The stable code attribute names, from the conventions package when it has
    them (0.48b0 and later), else the same names written out."""
    try:
        from opentelemetry.semconv.attributes import code_attributes as code
    except ImportError:  # pragma: no cover - older opentelemetry-semantic-conventions
        return "code.function.name", "code.file.path", "code.line.number"
    return code.CODE_FUNCTION_NAME, code.CODE_FILE_PATH, code.CODE_LINE_NUMBER


CODE_FUNCTION_NAME, CODE_FILE_PATH, CODE_LINE_NUMBER = _code_attributes()
# The stable HTTP conventions, for a task tracedfuture.asgi named after its request.
HTTP_REQUEST_METHOD, HTTP_ROUTE = "http.request.method", "http.route"
THREAD_ID = "thread.id"  # still incubating in the conventions: no stable constant

__all__ = ["CONTEXT_FIELD", "OTelExporter", "capture_context", "is_shutdown_task", "provider_from_environment"]

#: The Event field in which the core stores, on ``created``, what the exporters'
#: ``capture()`` returned; read with ``getattr`` so that any event still exports.
CONTEXT_FIELD = "context"

_get_current_span = trace.get_current_span
_get_current_context = get_current
_TASK_LINK = {"asyncio.link": "awaited"}
_FUTURE_LINK = {"asyncio.link": "awaited_by"}
_ENDING_KINDS = {"resolved": "resolved", "failed": "failed", "cancelled": "cancelled", "abandoned": "abandoned"}
_LINT_KINDS = frozenset({"stalled", "orphan", "blocked_loop"})
_BY_TIME = operator.attrgetter("ts_ns")


def is_shutdown_task(event: Event) -> bool:
    """Whether a ``created`` event is one of ``asyncio.run``'s shutdown tasks:
    a task made outside any task, running ``<loop class>.shutdown_asyncgens`` or
    ``.shutdown_default_executor``.

    >>> from tracedfuture import Event
    >>> is_shutdown_task(Event("created", 3, 0, is_task=True, coro="BaseEventLoop.shutdown_asyncgens"))
    True
    >>> is_shutdown_task(Event("created", 4, 0, is_task=True, coro="main", task_id=None))
    False
    """
    return _is_shutdown_task(event.is_task, event.coro, event.task_id)


def capture_context() -> Context:
    """The OpenTelemetry context current on the calling thread.

    This is what the core calls, on the event loop's thread, when a future or
    task is created: the only moment the context of its creator can be seen.
    It costs one context-variable read (about 80 ns); the span in it is looked
    up later, off the loop, by the exporter.

    >>> from opentelemetry import trace
    >>> trace.get_current_span(capture_context()) is trace.INVALID_SPAN
    True
    """
    return _get_current_context()


def _context_reader() -> Callable[[], Context]:
    """:func:`capture_context` as one C call, where OpenTelemetry keeps its context
    in a context variable (its default runtime context, whose ``get_current()``
    is that variable's ``get()``): the variable's own ``get``, read once. The
    core calls it for every future the program makes, on the program's thread,
    where ``get_current()`` and the runtime context's method were two Python
    frames (a seventh of what tail sampling added to a task of ten futures;
    callgrind, 7,000 of 32,000 instructions). Any other runtime context (another
    ``OTEL_PYTHON_CONTEXT``) keeps :func:`capture_context`. The private names
    are opentelemetry-api 1.x's (``_RUNTIME_CONTEXT``, ``_current_context``),
    read here and nowhere else."""
    from opentelemetry import context as otel_context
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable.get
    return capture_context


class _Open:
    """A span being built: one live future or task."""

    __slots__ = ("captured", "context", "ending", "linked", "span")

    def __init__(self, span: Span, captured: SpanContext | None) -> None:
        self.span = span
        self.context = span.get_span_context()
        self.captured = captured
        self.linked: set[int] = set()
        self.ending: int | None = None


class OTelExporter:
    """Turns tracedfuture events into OpenTelemetry spans (see the module docs).

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> import asyncio, tracedfuture
    >>> spans = InMemorySpanExporter()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(spans))
    >>> tracedfuture.run(asyncio.sleep(0, "ok"), exporters=[OTelExporter(provider)])
    'ok'
    >>> [span.name for span in spans.get_finished_spans()]
    ['task sleep']

    ``shutdown_tasks=True`` also exports ``asyncio.run``'s two shutdown tasks,
    each a root span of its own.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        max_open_spans: int = 100_000,
        max_remembered: int = 10_000,
        shutdown_tasks: bool = False,
    ) -> None:
        for name, value in (("max_open_spans", max_open_spans), ("max_remembered", max_remembered)):
            if not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive int, not {value!r}"
                raise ValueError(msg)
        flag: object = shutdown_tasks  # checked for callers without a type checker
        if not isinstance(flag, bool):
            msg = f"shutdown_tasks must be True or False, not {flag!r}"
            raise TypeError(msg)
        if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
            msg = f"tracer_provider must be an OpenTelemetry TracerProvider, not {tracer_provider!r}"
            raise TypeError(msg)
        self._provider = tracer_provider
        self._tracer: trace.Tracer | None = None
        self._wall_ns, self._mono_ns = time.time_ns(), time.monotonic_ns()
        self._max_open = max_open_spans
        self._max_remembered = max_remembered
        self._lock = threading.Lock()
        self._open: dict[int, _Open] = {}
        self._ended: dict[int, SpanContext] = {}
        self._ending: list[int] = []
        self._shutdown_tasks = shutdown_tasks
        # Shutdown tasks left out, and the futures they created: until they end.
        self._left_out: set[int] = set()
        self.spans_started = 0
        self.spans_dropped = 0
        # The core calls an exporter's capture() when a future is created, on the
        # loop's thread, and hands the result back in the created event's context.
        self.capture: Callable[[], Context] = _context_reader()

    def __repr__(self) -> str:
        return f"<OTelExporter open={len(self._open)} started={self.spans_started} dropped={self.spans_dropped}>"

    # -- the Exporter protocol ------------------------------------------------------

    def export(self, events: Sequence[Event], /) -> None:
        with self._lock:
            if self._tracer is None:
                from tracedfuture._version import __version__

                self._tracer = trace.get_tracer("tracedfuture", __version__, tracer_provider=self._provider)
            # In time order: tail sampling releases a kept future's events before
            # those of the tasks linked to it, whose spans must exist first.
            # Protobuf encodes strings as UTF-8: a lone surrogate would lose the batch.
            for event in sorted(unicode_safe(events), key=_BY_TIME):
                handler = _HANDLERS.get(event.kind)
                if handler is not None:
                    handler(self, event)
            self._end_finished()

    def flush(self) -> None:
        """Ask the TracerProvider to export the spans ended so far (5 s at most)."""
        provider = self._provider or trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush(5000)

    def shutdown(self) -> None:
        """End the spans of futures still pending (``asyncio.state = "pending"``), then flush.

        The TracerProvider itself is left running: it belongs to the application.
        """
        now = time.time_ns()
        with self._lock:
            self._end_finished()
            for item in self._open.values():
                item.span.set_attribute("asyncio.state", "pending")
                item.span.end(end_time=now)
            self._open.clear()
            self._ended.clear()
        self.flush()

    # -- event handlers ---------------------------------------------------------------

    def _wall(self, ts_ns: int) -> int:
        return ts_ns - self._mono_ns + self._wall_ns

    def _context_of(self, future_id: int | None) -> SpanContext | None:
        if future_id is None:
            return None
        item = self._open.get(future_id)
        return item.context if item is not None else self._ended.get(future_id)

    def _created(self, event: Event) -> None:
        if event.future_id in self._open:
            return  # a repeated id: nonsense from a broken producer, ignored
        if not self._shutdown_tasks and (is_shutdown_task(event) or event.task_id in self._left_out):
            self._left_out.add(event.future_id)
            return
        if len(self._open) >= self._max_open:
            self.spans_dropped += 1
            return
        captured = _span_context(getattr(event, CONTEXT_FIELD, None))
        creator = self._open.get(event.task_id) if event.task_id is not None else None
        if creator is not None and (captured is None or captured == creator.captured):
            parent: SpanContext | None = creator.context
        else:
            parent = captured
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
        attributes: dict[str, Any] = {
            "asyncio.kind": "task" if event.is_task else "future",
            "asyncio.future_id": event.future_id,
        }
        request = parse_request_name(event.name) if event.is_task else None
        if event.is_task:
            name = f"task {event.name if request else event.coro or event.name or ''}".rstrip()
            _put(attributes, "asyncio.task.name", event.name)
            _put(attributes, "asyncio.coro", event.coro)
            if request is not None:
                attributes[HTTP_REQUEST_METHOD], attributes[HTTP_ROUTE] = request
        else:
            site_function = event.site.function if event.site is not None else None
            name = f"future {event.name or site_function or ''}".rstrip()
            _put(attributes, "asyncio.future.label", event.name)
        # code.*: the program's own line; the first frame outside asyncio (a
        # library's, maybe) in tracedfuture.site.* when it is another.
        program = event.program_site or event.site
        if program is not None:
            attributes[CODE_FUNCTION_NAME] = program.function
            attributes[CODE_FILE_PATH] = program.filename
            attributes[CODE_LINE_NUMBER] = program.lineno
        if event.site is not None and event.site != program:
            attributes["tracedfuture.site.function"] = event.site.function
            attributes["tracedfuture.site.file"] = event.site.filename
            attributes["tracedfuture.site.line"] = event.site.lineno
        _put(attributes, THREAD_ID, event.thread_id)
        _put(attributes, "asyncio.creator_task_id", event.task_id)
        assert self._tracer is not None
        span = self._tracer.start_span(name, context=context, attributes=attributes, start_time=self._wall(event.ts_ns))
        self._open[event.future_id] = _Open(span, captured)
        self.spans_started += 1

    def _awaited(self, event: Event) -> None:
        item = self._open.get(event.future_id)
        if item is None:
            return
        attributes: dict[str, Any] = {}
        _put(attributes, "asyncio.awaiter_id", event.awaiter_id)
        _put(attributes, "asyncio.callback", event.callback)
        item.span.add_event("awaited", attributes, timestamp=self._wall(event.ts_ns))
        awaiter = event.awaiter_id
        if awaiter is None or awaiter in item.linked:
            return
        item.linked.add(awaiter)
        awaiter_context = self._context_of(awaiter)
        if awaiter_context is not None:
            _add_link(item.span, awaiter_context, _FUTURE_LINK)
        task = self._open.get(awaiter)
        if task is not None and event.future_id not in task.linked:
            task.linked.add(event.future_id)
            _add_link(task.span, item.context, _TASK_LINK)

    def _span_event(self, event: Event) -> None:
        """callback_scheduled, cancel_requested and lints: a span event, nothing more."""
        future_id = event.future_id if event.future_id else event.task_id
        item = self._open.get(future_id) if future_id is not None else None
        if item is None:
            return
        attributes: dict[str, Any] = {}
        _put(attributes, "asyncio.callback", event.callback)
        _put(attributes, "asyncio.awaiter_id", event.awaiter_id)
        _put(attributes, "asyncio.cancel.msg", event.msg)
        _put(attributes, "asyncio.canceller", event.canceller)
        _put(attributes, "asyncio.canceller_id", event.canceller_id)
        if event.waiting_site is not None:
            attributes["asyncio.cancel.waiting_at"] = str(event.waiting_site)
        _put(attributes, "asyncio.age_ns", event.age_ns)
        _put(attributes, "asyncio.detail", event.detail)
        if event.chain is not None:
            attributes["asyncio.chain"] = list(event.chain)
        item.span.add_event(event.kind, attributes, timestamp=self._wall(event.ts_ns))

    def _renamed(self, event: Event) -> None:
        item = self._open.get(event.future_id)
        if item is not None and event.name is not None:
            item.span.set_attribute("asyncio.task.name" if event.is_task else "asyncio.future.label", event.name)
            request = parse_request_name(event.name) if event.is_task else None
            if request is not None:  # tracedfuture.asgi named it after its request
                item.span.set_attribute(HTTP_REQUEST_METHOD, request[0])
                item.span.set_attribute(HTTP_ROUTE, request[1])
                item.span.update_name(f"task {event.name}")

    def _ended_event(self, event: Event) -> None:
        if self._left_out:
            self._left_out.discard(event.future_id)
        item = self._open.get(event.future_id)
        if item is None or item.ending is not None:
            return
        span = item.span
        state = _ENDING_KINDS[event.kind]
        span.set_attribute("asyncio.state", state)
        if event.kind == "resolved":
            _set(span, "asyncio.result_type", event.result_type)
            _set(span, "asyncio.value", event.value)
        elif event.kind == "failed":
            self._exception(span, event)
        elif event.kind == "cancelled":
            _set(span, "asyncio.cancel.msg", event.msg)
            _set(span, "asyncio.canceller", event.canceller)
            _set(span, "asyncio.canceller_id", event.canceller_id)
            if event.waiting_site is not None:
                span.set_attribute("asyncio.cancel.waiting_at", str(event.waiting_site))
            self._span_event(event)
        else:  # abandoned
            _set(span, "asyncio.awaiter_id", event.awaiter_id)
            self._span_event(event)
        # Ended after the batch: the callback_scheduled events that follow a
        # completion (same record, same batch) still belong on this span.
        item.ending = event.ts_ns
        self._ending.append(event.future_id)

    def _caught(self, event: Event) -> None:
        """An exception a framework caught in a task that goes on (a server's
        500): the task's span fails all the same."""
        item = self._open.get(event.future_id)
        if item is not None and item.ending is None:
            self._exception(item.span, event)

    def _exception(self, span: Span, event: Event) -> None:
        """A failure on its span: the ``exception`` event of the semantic
        conventions, and status ERROR."""
        exc_type = event.exc_type or "BaseException"
        span.set_attribute("asyncio.exc_type", exc_type)
        attributes: dict[str, Any] = {"exception.type": exc_type}
        _put(attributes, "exception.message", event.exc_msg)
        stacktrace = _stacktrace(event, exc_type)
        if stacktrace is not None:
            attributes["exception.stacktrace"] = stacktrace
        program = event.raise_program_site or event.raise_site
        if program is not None:  # code.*: the program's line where it was raised
            attributes[CODE_FUNCTION_NAME] = program.function
            attributes[CODE_FILE_PATH] = program.filename
            attributes[CODE_LINE_NUMBER] = program.lineno
        span.add_event("exception", attributes, timestamp=self._wall(event.ts_ns))
        description = f"{exc_type}: {event.exc_msg}" if event.exc_msg else exc_type
        span.set_status(Status(StatusCode.ERROR, description))

    def _end_finished(self) -> None:
        for future_id in self._ending:
            item = self._open.pop(future_id, None)
            if item is None or item.ending is None:
                continue
            item.span.end(end_time=self._wall(item.ending))
            remembered = self._ended
            if len(remembered) >= self._max_remembered:
                del remembered[next(iter(remembered))]
            remembered[future_id] = item.context
        self._ending.clear()


_HANDLERS = {
    "created": OTelExporter._created,
    "awaited": OTelExporter._awaited,
    "callback_scheduled": OTelExporter._span_event,
    "cancel_requested": OTelExporter._span_event,
    "renamed": OTelExporter._renamed,
    "resolved": OTelExporter._ended_event,
    "failed": OTelExporter._ended_event,
    "cancelled": OTelExporter._ended_event,
    "abandoned": OTelExporter._ended_event,
    "caught": OTelExporter._caught,
    **dict.fromkeys(_LINT_KINDS, OTelExporter._span_event),
}


def _span_context(value: object) -> SpanContext | None:
    """The valid span context in what :func:`capture_context` returned, else ``None``.

    With several capturing exporters the core hands over a tuple of their
    captures (nested per installation): the first OpenTelemetry context wins,
    as every OTelExporter captured the same one.
    """
    if isinstance(value, Context):
        value = _get_current_span(value).get_span_context()
    if isinstance(value, SpanContext):  # before tuple: a SpanContext is a tuple
        return value if value.is_valid else None
    if isinstance(value, tuple):
        for item in value:
            found = _span_context(item)
            if found is not None:
                return found
    return None


def _stacktrace(event: Event, exc_type: str) -> str | None:
    """``exception.stacktrace`` in Python's own form, of the frames recorded:
    the program's line where it was raised, then the innermost frame (``...``
    stands for the frames between, which are not recorded); ``None`` when the
    exception was never raised (``set_exception(ValueError())``)."""
    frames = [site for site in (event.raise_program_site, event.raise_site) if site is not None]
    if not frames:
        return None
    if len(frames) == 2 and frames[0] == frames[1]:
        del frames[1]
    lines = ["Traceback (most recent call last):"]
    for index, site in enumerate(frames):
        if index:
            lines.append("  ...")
        lines.append(f'  File "{site.filename}", line {site.lineno}, in {site.function}')
    lines.append(f"{exc_type}: {event.exc_msg}" if event.exc_msg else exc_type)
    return "\n".join(lines)


def _add_link(span: Span, context: SpanContext, attributes: Mapping[str, str]) -> None:
    add_link = getattr(span, "add_link", None)  # OpenTelemetry 1.23 and later
    if add_link is not None:
        add_link(context, attributes)


def _put(attributes: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        attributes[key] = value


def _set(span: Span, key: str, value: str | int | None) -> None:
    if value is not None:
        span.set_attribute(key, value)


def provider_from_environment(*, timeout: float | None = None) -> trace.TracerProvider | None:
    """A TracerProvider configured from OpenTelemetry's standard variables, for a
    program that configures none itself (``tracedfuture run --exporter otel``).

    ``None`` when an SDK provider is already the global one (then it is used), or
    when ``OTEL_TRACES_EXPORTER`` is ``none``. Otherwise: ``otlp`` (the default)
    sends OTLP over HTTP to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4318``), ``console``
    prints spans on standard error; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` name the resource. The global provider is left
    alone, so the program can still set its own; the caller shuts this one down.

    ``timeout`` (seconds) bounds each OTLP export; the first failure prints one
    line on standard error and drops spans from then on, so that a missing
    collector neither floods the program's stderr nor delays its exit.
    """
    import os
    import sys

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return None
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"
    if kind == "none":
        return None
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif kind == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol not in ("", "http/protobuf"):
            msg = (
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported here: tracedfuture sends OTLP over "
                "HTTP; set it to http/protobuf (and the endpoint to the collector's HTTP port, 4318 by default)"
            )
            raise ValueError(msg)
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            msg = "OTLP export needs the OTLP/HTTP exporter: pip install opentelemetry-exporter-otlp-proto-http"
            raise ImportError(msg, name=exc.name) from exc
        exporter = OTLPSpanExporter(timeout=timeout)
        if timeout is not None:
            exporter = _GiveUp(exporter, timeout)
    else:
        msg = f"OTEL_TRACES_EXPORTER={kind!r} is not supported here: use otlp, console or none"
        raise ValueError(msg)
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _GiveUp(exporter: Any, timeout: float) -> Any:
    """``exporter`` that, once an export fails (no collector answered within
    ``timeout``), says so in one line on standard error and drops later spans."""
    import logging
    import sys

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    quiet = threading.local()

    def not_ours(record: logging.LogRecord) -> bool:
        if getattr(quiet, "on", False):
            quiet.last = record.getMessage()
            return False
        return True

    # The OTLP client logs every retry and failure itself; while we export, that
    # is what our one line replaces.
    client_logger = logging.getLogger(type(exporter).__module__)
    client_logger.addFilter(not_ours)

    class GiveUp(SpanExporter):
        def __init__(self) -> None:
            self.failed = False

        def export(self, spans: Any) -> Any:
            if self.failed:
                return SpanExportResult.FAILURE
            quiet.on, quiet.last = True, "no answer"
            try:
                result = exporter.export(spans)
            except Exception as exc:
                result, reason = SpanExportResult.FAILURE, repr(exc)
            else:
                reason = str(quiet.last).splitlines()[0][:200]
            finally:
                quiet.on = False
            if result is not SpanExportResult.SUCCESS:
                self.failed = True
                endpoint = getattr(exporter, "_endpoint", "the collector")
                print(
                    f"tracedfuture: OpenTelemetry: {endpoint} did not take spans within {timeout:g}s "
                    f"({reason}); dropping spans from now on (TRACEDFUTURE_OTEL_TIMEOUT sets the wait)",
                    file=sys.stderr,
                )
            return result

        def shutdown(self) -> None:
            quiet.on = True
            try:
                exporter.shutdown()
            finally:
                quiet.on = False

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(exporter.force_flush(timeout_millis))

    return GiveUp()
