"""The ways a workload is run: plain, tracedfuture's modes, and the peers.

``open_session(variant, loop_name)`` returns a :class:`Session`: a fresh loop set
up for the variant, ``finish()`` (called inside the timing, after the workload:
delivering what was recorded is part of the price) and ``close()`` (outside it).
``recorded()`` says how much the variant saw (events, spans, tasks), so that a
mode which silently traced nothing is reported instead of being timed as free.

Modes (tracedfuture, ``tracedfuture.loop_factory(base=...)`` on either loop):

* ``sampled-out``: installed, ``sample_rate=0.0``, a MemoryExporter attached;
* ``flight``: a ``tracedfuture.flight.FlightRecorder()`` with its defaults;
* ``tail``: ``tail=True`` with the structlog and OpenTelemetry exporters (real
  structlog rendering JSON to ``os.devnull``; the real OTel SDK, a
  ``BatchSpanProcessor`` into an ``InMemorySpanExporter``) on a healthy workload;
* ``memory``: every event into a ``MemoryExporter``;
* ``jsonl``: every event to a JSON-lines trace file (a temporary file);
* ``noop``: every event to an exporter whose ``export`` does nothing (on its own
  thread, as any exporter): what delivering events costs by itself;
* ``stuck``: every event to an exporter whose ``export`` never returns: its
  queue fills and sheds raw records; ``finish()`` drains but waits for nothing.

Peers:

* ``debug``: asyncio debug mode (``loop.set_debug(True)``, slow-callback warnings
  off so that nothing is printed);
* ``otel-asyncio``: ``opentelemetry-instrumentation-asyncio`` tracing the
  workloads' coroutines (``OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE``), with
  the real SDK's tracer and meter providers. It wraps ``asyncio.create_task``,
  ``ensure_future``, ``gather`` and friends only: ``loop.create_future()`` and
  the futures a task awaits are invisible to it;
* ``aiomonitor``: aiomonitor's task factory (``Monitor(hook_task_factory=True)``)
  with its termination and cancellation queues consumed by a thread of their own,
  as ``Monitor.start()`` sets them up, but without its telnet and web servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from workloads import TRACED_COROUTINES

MODES = ("sampled-out", "flight", "tail", "memory", "jsonl", "noop", "stuck")
PEERS = ("debug", "otel-asyncio", "aiomonitor")
VARIANTS = ("plain", *MODES, *PEERS)

# What each peer can see of a workload (None: everything it hooks).
BLIND = {
    ("otel-asyncio", "lifecycle"): "sees no futures: only create_task/ensure_future/gather and friends",
    ("aiomonitor", "lifecycle"): "sees no futures: only tasks made through the task factory",
    ("otel-asyncio", "burst"): "sees no futures: only create_task/ensure_future/gather and friends",
    ("aiomonitor", "burst"): "sees no futures: only tasks made through the task factory",
}


def base_loop(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    msg = f"unknown loop {name!r}: use asyncio or uvloop"
    raise ValueError(msg)


class Session:
    """One run of one variant: a loop, and what to do inside and after the timing."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._finish: list[Callable[[], object]] = []
        self._close: list[Callable[[], object]] = [loop.close]
        self.recorded: Callable[[], int] | None = None
        self.installation: Any = None
        self.stats: Callable[[], dict[str, Any]] | None = None

    def finish(self) -> None:
        for step in self._finish:
            step()

    def close(self) -> None:
        errors: list[BaseException] = []
        for step in self._close:
            try:
                step()
            except Exception as exc:  # every step runs; the first error is reported
                errors.append(exc)
        if errors:
            raise errors[0]


_structlog_configured = False


def _configure_structlog() -> None:
    global _structlog_configured
    if _structlog_configured:
        return
    _structlog_configured = True
    import structlog

    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def _span_pipeline() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    # A queue that holds a whole run: the SDK would otherwise drop spans, cheaply.
    provider.add_span_processor(BatchSpanProcessor(spans, max_queue_size=1_000_000))
    return provider, spans


class _NoOp:
    """An exporter that takes every batch and does nothing with it."""

    def export(self, events: Any) -> None:
        pass


class _Stuck:
    """An exporter whose export() blocks until the session closes."""

    def __init__(self) -> None:
        self._gate = threading.Event()

    def export(self, events: Any) -> None:
        self._gate.wait()

    def release(self) -> None:
        self._gate.set()


def _drain(inst: Any) -> None:
    from tracedfuture._pipeline._drain import RECORDER

    RECORDER.drain(only=inst)


def _traced(session_loop: Callable[[], asyncio.AbstractEventLoop], exporters: list[Any], **options: Any) -> Session:
    import tracedfuture

    factory = tracedfuture.loop_factory(base=session_loop, exporters=exporters, **options)
    inst = factory.installation  # type: ignore[attr-defined]
    try:
        session = Session(factory())
    except BaseException:
        inst.uninstall()
        raise
    session.installation = inst
    session._finish.append(lambda: inst.flush(timeout=600))
    session._close.append(inst.uninstall)
    return session


def open_session(variant: str, loop_name: str) -> Session:
    make = base_loop(loop_name)
    if variant == "plain":
        return Session(make())
    if variant in MODES:
        return _open_mode(variant, make)
    if variant == "debug":
        session = Session(make())
        session.loop.set_debug(True)
        session.loop.slow_callback_duration = 3600.0
        return session
    if variant == "otel-asyncio":
        return _open_otel_asyncio(make)
    if variant == "aiomonitor":
        return _open_aiomonitor(make)
    msg = f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}"
    raise ValueError(msg)


def _flight_count(recorder: Any) -> int:
    """What a flight recorder took in: raw records written to its rings (a
    recorder that converts at dump), or events received (one that converts as
    it goes)."""
    stats = recorder.stats()
    return int(stats.get("written", stats.get("received", 0)))


def _open_mode(variant: str, make: Callable[[], asyncio.AbstractEventLoop]) -> Session:
    from tracedfuture.exporters import JsonLinesExporter, MemoryExporter
    from tracedfuture.flight import FlightRecorder

    if variant == "sampled-out":
        memory = MemoryExporter()
        session = _traced(make, [memory], sample_rate=0.0)
        session.recorded = lambda: len(memory)
        return session
    if variant == "flight":
        recorder = FlightRecorder()
        session = _traced(make, [recorder])
        session.recorded = lambda: _flight_count(recorder)
        session.stats = recorder.stats
        return session
    if variant == "noop":
        session = _traced(make, [_NoOp()])
        session.recorded = lambda: int(session.installation.stats()["events_delivered"])
        return session
    if variant == "stuck":
        stuck = _Stuck()
        session = _traced(make, [stuck], export_timeout=0.1)
        session._finish[:] = [lambda: _drain(session.installation)]
        session._close.insert(0, stuck.release)
        session.recorded = lambda: int(session.installation.stats()["events_delivered"])
        return session
    if variant == "memory":
        memory = MemoryExporter()
        session = _traced(make, [memory])
        session.recorded = lambda: len(memory)
        return session
    if variant == "jsonl":
        folder = tempfile.mkdtemp(prefix="tracedfuture-bench-")
        jsonl = JsonLinesExporter(os.path.join(folder, "trace.jsonl"))
        try:
            session = _traced(make, [jsonl])
        except BaseException:
            jsonl.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        session.recorded = lambda: jsonl.events_written
        session._close.append(lambda: shutil.rmtree(folder, ignore_errors=True))
        return session
    assert variant == "tail"
    from tracedfuture.exporters.otel import OTelExporter
    from tracedfuture.exporters.structlog import StructlogExporter

    _configure_structlog()
    provider, _spans = _span_pipeline()
    otel = OTelExporter(tracer_provider=provider)
    try:
        session = _traced(make, [StructlogExporter(), otel], tail=True, slow=60.0)
    except BaseException:
        provider.shutdown()
        raise
    session._finish.append(provider.force_flush)
    session._close.append(provider.shutdown)
    # A healthy workload keeps (almost) nothing: what tail sampling weighed is
    # what the core recorded, counted by the installation.
    session.recorded = lambda: int(session.installation.stats().get("records", 0))
    return session


def _open_otel_asyncio(make: Callable[[], asyncio.AbstractEventLoop]) -> Session:
    from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    os.environ["OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE"] = TRACED_COROUTINES
    provider, spans = _span_pipeline()
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor = AsyncioInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=meters)
    try:
        session = Session(make())
    except BaseException:
        instrumentor.uninstrument()
        raise
    session._finish.append(provider.force_flush)
    session._close += [instrumentor.uninstrument, provider.shutdown, meters.shutdown]
    session.recorded = lambda: len(spans.get_finished_spans())
    return session


class _MonitorQueues:
    """aiomonitor's consumer side without its servers: what ``Monitor.start()``
    runs in its UI thread (aiomonitor 0.7's ``_ui_main_async``), less the telnet
    and web servers. It reads private attributes: the only way to use the task
    factory as aiomonitor installs it without opening ports."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            msg = f"aiomonitor's queues did not start: {self._error!r}"
            raise RuntimeError(msg)

    async def _main(self) -> None:
        import janus

        monitor = self.monitor
        try:
            monitor._termination_info_queue = janus.Queue()
            monitor._cancellation_chain_queue = janus.Queue()
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            consumers = [
                asyncio.create_task(monitor._ui_handle_termination_updates()),
                asyncio.create_task(monitor._ui_handle_cancellation_updates()),
            ]
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._ready.set()
        await self._stop
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    def drained(self) -> None:
        """Wait until the consumer has taken every termination record."""
        queue = self.monitor._termination_info_queue.sync_q
        deadline = time.monotonic() + 600
        while queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.0005)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(30)


def _task_factory_for(loop: asyncio.AbstractEventLoop, factory: Callable[..., Any]) -> Callable[..., Any]:
    """``factory``, or a wrapper that drops the ``eager_start`` keyword a loop passes
    it when the factory does not take one. uvloop 0.22+ on 3.13 passes
    ``eager_start=`` to every task factory; aiomonitor 0.7's has no such parameter,
    so every task would fail. Only that pair pays the wrapper's call."""
    takes = inspect.signature(factory).parameters
    if sys.version_info < (3, 13) or "eager_start" in takes or any(p.kind is p.VAR_KEYWORD for p in takes.values()):
        return factory
    if "eager_start" not in inspect.signature(loop.create_task).parameters:
        return factory

    def without_eager_start(loop: Any, coro: Any, *, eager_start: Any = None, **kwargs: Any) -> Any:
        if eager_start is not None:
            kwargs["eager_start"] = eager_start  # let the factory say it cannot
        return factory(loop, coro, **kwargs)

    return without_eager_start


def _open_aiomonitor(make: Callable[[], asyncio.AbstractEventLoop]) -> Session:
    import aiomonitor

    loop = make()
    try:
        monitor = aiomonitor.Monitor(loop, hook_task_factory=True)
        queues = _MonitorQueues(monitor)
    except BaseException:
        loop.close()
        raise
    loop.set_task_factory(_task_factory_for(loop, monitor._create_task))
    session = Session(loop)
    session._finish.append(queues.drained)
    session._close.insert(0, lambda: loop.set_task_factory(None))
    session._close.append(queues.stop)
    session.recorded = lambda: len(monitor._terminated_tasks) + len(monitor._terminated_history)
    return session
