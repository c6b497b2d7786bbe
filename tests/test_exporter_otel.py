"""OTelExporter with the real OpenTelemetry SDK and its InMemorySpanExporter."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import context as otel_context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanContext, StatusCode, TraceFlags, get_current_span

import tracedfuture
from tracedfuture import Event, Site, TracedFuture
from tracedfuture.exporters.otel import OTelExporter, capture_context


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider


def by_label(spans: Sequence[ReadableSpan], label: str) -> ReadableSpan:
    (span,) = [s for s in spans if (s.attributes or {}).get("asyncio.future.label") == label]
    return span


def by_task(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if (s.attributes or {}).get("asyncio.task.name") == name]
    return span


async def wait_for_reply() -> int:
    reply = TracedFuture(label="reply")
    asyncio.get_running_loop().call_later(0.02, reply.set_result, 7)
    return int(await reply)


def test_future_created_inside_a_span_has_that_span_as_parent(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    # Needs the core's half: only the loop's thread, at creation, sees the current
    # OpenTelemetry context; it calls OTelExporter.capture() and hands the result
    # over in the created event's context field.
    tracer = provider.get_tracer("test")

    async def main() -> None:
        with tracer.start_as_current_span("S"):
            fut = TracedFuture(label="inside S")
            fut.set_result(None)

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    finished = spans.get_finished_spans()
    (parent,) = [s for s in finished if s.name == "S"]
    child = by_label(finished, "inside S")
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


def test_captured_context_becomes_the_parent(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    # The exporter's half of the parentage, fed an event that carries a captured context.
    parent = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    created = Event("created", 1, time.monotonic_ns(), name="captured", context=parent)
    exporter = OTelExporter(provider)
    exporter.export([created, Event("resolved", 1, time.monotonic_ns())])
    span = by_label(spans.get_finished_spans(), "captured")
    assert span.parent == parent
    assert span.context.trace_id == 0x1234


def test_every_capturing_exporter_sees_the_parent(spans: InMemorySpanExporter) -> None:
    # Two capturing exporters: the core hands each a tuple of both captures.
    other = InMemorySpanExporter()
    providers = [TracerProvider(), TracerProvider()]
    for provider, memory in zip(providers, (spans, other), strict=True):
        provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = providers[0].get_tracer("test")

    async def main() -> int:
        with tracer.start_as_current_span("S") as s:
            TracedFuture(label="inside S").cancel()
            return s.get_span_context().span_id

    span_id = tracedfuture.run(main(), exporters=[OTelExporter(p) for p in providers])
    for memory in (spans, other):
        parent = by_label(memory.get_finished_spans(), "inside S").parent
        assert parent is not None
        assert parent.span_id == span_id


def test_capture_context_returns_the_current_context(provider: TracerProvider) -> None:
    assert get_current_span(capture_context()) is INVALID_SPAN
    with provider.get_tracer("test").start_as_current_span("S") as span:
        assert get_current_span(capture_context()) is span


def test_exporter_capture_reads_what_capture_context_reads(provider: TracerProvider) -> None:
    capture = OTelExporter(provider).capture
    assert capture() is capture_context()
    with provider.get_tracer("test").start_as_current_span("S") as span:
        assert capture() is capture_context()
        assert get_current_span(capture()) is span


def test_exporter_capture_is_one_c_call_with_the_default_runtime_context() -> None:
    # The core calls it on the program's thread for every future: no Python frame.
    capture = OTelExporter().capture
    assert not inspect.isfunction(capture)
    assert capture.__self__ is otel_context._RUNTIME_CONTEXT._current_context  # type: ignore[attr-defined]


def test_exporter_capture_follows_another_runtime_context(monkeypatch: pytest.MonkeyPatch) -> None:
    class Elsewhere(ContextVarsRuntimeContext):
        pass

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", Elsewhere())
    assert OTelExporter().capture is capture_context


def test_future_nests_under_the_task_that_created_it(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    async def main() -> int:
        return await asyncio.create_task(wait_for_reply(), name="waiter")

    assert tracedfuture.run(main(), exporters=[OTelExporter(provider)]) == 7
    finished = spans.get_finished_spans()
    waiter = by_task(finished, "waiter")
    reply = by_label(finished, "reply")
    assert reply.parent is not None
    assert reply.parent.span_id == waiter.context.span_id
    assert waiter.name == "task wait_for_reply"
    assert reply.name == "future reply"


def test_task_that_awaited_a_future_links_to_it(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    async def main() -> int:
        return await asyncio.create_task(wait_for_reply(), name="waiter")

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    finished = spans.get_finished_spans()
    waiter = by_task(finished, "waiter")
    reply = by_label(finished, "reply")
    (main_span,) = [s for s in finished if s.name.endswith(".<locals>.main")]
    assert {(link.context.span_id, (link.attributes or {})["asyncio.link"]) for link in waiter.links} == {
        (reply.context.span_id, "awaited"),
        (main_span.context.span_id, "awaited_by"),  # main awaited the waiter task
    }
    assert [(link.context.span_id, dict(link.attributes or {})) for link in reply.links] == [
        (waiter.context.span_id, {"asyncio.link": "awaited_by"})
    ]
    assert [e.name for e in reply.events] == ["awaited", "callback_scheduled"]


def test_tail_sampling_keeps_parent_and_links_of_a_failure(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    # Tail sampling releases the failed future's events before its task's.
    async def fail() -> None:
        broken = TracedFuture(label="broken")
        asyncio.get_running_loop().call_soon(broken.set_exception, ValueError("boom"))
        await broken

    async def main() -> None:
        await asyncio.gather(*(wait_for_reply() for _ in range(20)))
        with contextlib.suppress(ValueError):
            await asyncio.create_task(fail(), name="failing")

    tracedfuture.run(main(), exporters=[OTelExporter(provider)], tail=True, slow=5)
    finished = spans.get_finished_spans()
    assert not [s for s in finished if (s.attributes or {}).get("asyncio.future.label") == "reply"]
    failing = by_task(finished, "failing")
    broken = by_label(finished, "broken")
    assert broken.parent is not None
    assert broken.parent.span_id == failing.context.span_id
    assert broken.context.span_id in [link.context.span_id for link in failing.links]
    assert broken.status.status_code is StatusCode.ERROR


def test_spans_have_the_real_start_and_end_times(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    before = time.time_ns()
    tracedfuture.run(wait_for_reply(), exporters=[OTelExporter(provider)])
    after = time.time_ns()
    reply = by_label(spans.get_finished_spans(), "reply")
    assert reply.start_time is not None
    assert reply.end_time is not None
    assert before <= reply.start_time < reply.end_time <= after
    assert 15_000_000 <= reply.end_time - reply.start_time < 2_000_000_000


def test_cancel_msg_shows_as_a_span_event(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    async def main() -> None:
        TracedFuture(label="obsolete").cancel("no longer needed")

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    span = by_label(spans.get_finished_spans(), "obsolete")
    (event,) = [e for e in span.events if e.name == "cancelled"]
    assert event.attributes is not None
    assert event.attributes["asyncio.cancel.msg"] == "no longer needed"
    assert f".<locals>.main ({__file__}:" in str(event.attributes["asyncio.canceller"])
    assert span.attributes is not None
    assert span.attributes["asyncio.state"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET


def test_cancelled_task_records_the_request_and_the_cancellation(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    async def main() -> None:
        sleeper = asyncio.create_task(asyncio.sleep(10), name="sleeper")
        await asyncio.sleep(0)
        sleeper.cancel("shutting down")
        with contextlib.suppress(asyncio.CancelledError):
            await sleeper

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    sleeper = by_task(spans.get_finished_spans(), "sleeper")
    names = [e.name for e in sleeper.events]
    assert names[0] == "cancel_requested"
    assert "cancelled" in names
    assert sleeper.attributes is not None
    assert sleeper.attributes["asyncio.cancel.msg"] == "shutting down"


def test_failed_future_has_status_error_and_an_exception_event(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    async def main() -> None:
        broken = TracedFuture(label="broken")
        broken.set_exception(ValueError("boom"))
        with contextlib.suppress(ValueError):
            await broken

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    span = by_label(spans.get_finished_spans(), "broken")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert dict(event.attributes or {}) == {"exception.type": "ValueError"}


def test_failure_message_is_exported_with_capture_values(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    async def main() -> None:
        broken = TracedFuture(label="broken")
        broken.set_exception(ValueError("boom"))
        with contextlib.suppress(ValueError):
            await broken

    tracedfuture.run(main(), exporters=[OTelExporter(provider)], capture_values=True)
    span = by_label(spans.get_finished_spans(), "broken")
    assert span.status.description == "ValueError: boom"


def test_semantic_convention_and_asyncio_attributes(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    async def main() -> int:
        return await asyncio.create_task(wait_for_reply(), name="waiter")

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    finished = spans.get_finished_spans()
    reply = dict(by_label(finished, "reply").attributes or {})
    waiter = dict(by_task(finished, "waiter").attributes or {})
    assert reply["code.function.name"] == "wait_for_reply"  # a qualname
    assert reply["code.file.path"] == __file__
    assert isinstance(reply["code.line.number"], int)
    for deprecated in ("code.function", "code.filepath", "code.lineno"):
        assert deprecated not in reply
        assert deprecated not in waiter
    assert isinstance(reply["thread.id"], int)
    assert reply["asyncio.kind"] == "future"
    assert reply["asyncio.state"] == "resolved"
    assert reply["asyncio.result_type"] == "int"
    assert reply["asyncio.creator_task_id"] == waiter["asyncio.future_id"]
    assert waiter["asyncio.kind"] == "task"
    assert waiter["asyncio.coro"] == "wait_for_reply"
    assert str(waiter["code.function.name"]).endswith(".<locals>.main")


def test_code_attributes_are_the_conventions_package_names() -> None:
    from opentelemetry.semconv.attributes import code_attributes

    from tracedfuture.exporters import otel

    assert otel.CODE_FILE_PATH == code_attributes.CODE_FILE_PATH == "code.file.path"
    assert otel.CODE_FUNCTION_NAME == code_attributes.CODE_FUNCTION_NAME == "code.function.name"
    assert otel.CODE_LINE_NUMBER == code_attributes.CODE_LINE_NUMBER == "code.line.number"


async def uses_the_default_executor() -> int:
    # Makes asyncio.run's shutdown_default_executor create a future of its own.
    return await asyncio.get_running_loop().run_in_executor(None, int, "5")


def test_asyncio_runs_shutdown_tasks_are_not_exported_as_root_traces(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    with tracedfuture.install(exporters=[OTelExporter(provider)]):
        assert asyncio.run(uses_the_default_executor()) == 5
    finished = spans.get_finished_spans()
    names = [span.name for span in finished]
    assert "task uses_the_default_executor" in names
    assert not [name for name in names if "shutdown" in name]
    functions = {(span.attributes or {}).get("code.function.name") for span in finished}
    assert not [f for f in functions if str(f).startswith("BaseEventLoop.shutdown")]  # nor the futures they made
    roots = [span.name for span in finished if span.parent is None]
    assert roots == ["task uses_the_default_executor"]


def test_shutdown_tasks_true_exports_them_with_their_futures(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    with tracedfuture.install(exporters=[OTelExporter(provider, shutdown_tasks=True)]):
        asyncio.run(uses_the_default_executor())
    finished = spans.get_finished_spans()
    roots = sorted(span.name for span in finished if span.parent is None)
    assert roots == [
        "task BaseEventLoop.shutdown_asyncgens",
        "task BaseEventLoop.shutdown_default_executor",
        "task uses_the_default_executor",
    ]
    (executor_task,) = [s for s in finished if s.name == "task BaseEventLoop.shutdown_default_executor"]
    children = [s for s in finished if s.parent is not None and s.parent.span_id == executor_task.context.span_id]
    assert children
    assert all(s.name.startswith("future ") for s in children)


def test_a_task_of_the_program_named_like_a_shutdown_step_is_still_exported(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    class Service:
        async def shutdown_asyncgens(self) -> None:
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.create_task(Service().shutdown_asyncgens())

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    names = [span.name for span in spans.get_finished_spans()]
    assert [name for name in names if name.endswith("Service.shutdown_asyncgens")]  # made inside a task


def test_shutdown_tasks_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"^shutdown_tasks must be True or False, not 'yes'$"):
        OTelExporter(shutdown_tasks="yes")  # type: ignore[arg-type]


def test_pending_futures_end_at_shutdown_with_state_pending(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    keep = []

    async def main() -> None:
        keep.append(TracedFuture(label="never done"))

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    span = by_label(spans.get_finished_spans(), "never done")
    assert span.attributes is not None
    assert span.attributes["asyncio.state"] == "pending"


def test_nonsense_events_are_ignored(provider: TracerProvider, spans: InMemorySpanExporter) -> None:
    exporter = OTelExporter(provider)
    exporter.export(
        [
            Event("resolved", 5, 10),  # never created
            Event("awaited", 6, 10, awaiter_id=99),
            Event("created", 7, 10, site=Site("x.py", 1, "f")),
            Event("created", 7, 11),  # the same id twice
            Event("blocked_loop", 0, 12, age_ns=1),
            Event("unretrieved", 7, 13),
            Event("failed", 7, 14),
            Event("failed", 7, 15),
        ]
    )
    exporter.shutdown()
    (span,) = spans.get_finished_spans()
    assert span.name == "future f"
    assert span.status.status_code is StatusCode.ERROR


def test_spans_past_max_open_spans_are_dropped_and_counted(provider: TracerProvider) -> None:
    exporter = OTelExporter(provider, max_open_spans=2)
    exporter.export([Event("created", fid, 10) for fid in (1, 2, 3)])
    assert (exporter.spans_started, exporter.spans_dropped) == (2, 1)
    exporter.shutdown()


@pytest.mark.parametrize("value", [0, -1, "10"])
def test_bad_limits_name_the_value(value: object) -> None:
    with pytest.raises(ValueError, match=f"max_open_spans must be a positive int, not {value!r}"):
        OTelExporter(max_open_spans=value)  # type: ignore[arg-type]


def test_without_opentelemetry_the_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import tracedfuture.exporters.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "pip install 'tracedfuture[otel]'" in out.stdout


def _raise_boom() -> None:
    raise ValueError("boom")


def test_a_raised_failure_says_where_in_its_exception_event(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    async def failing() -> None:
        _raise_boom()

    async def main() -> None:
        with contextlib.suppress(ValueError):
            await asyncio.create_task(failing(), name="failing")

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    span = by_task(spans.get_finished_spans(), "failing")
    (event,) = [e for e in span.events if e.name == "exception"]
    attributes = dict(event.attributes or {})
    assert attributes["code.function.name"] == "_raise_boom"
    stack = str(attributes["exception.stacktrace"]).splitlines()
    assert stack[0] == "Traceback (most recent call last):" and stack[-1] == "ValueError"
    assert stack[1].endswith(f"line {_raise_boom.__code__.co_firstlineno + 1}, in _raise_boom")


def test_an_exception_a_framework_caught_fails_the_tasks_span(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    from tracedfuture._core import caught

    async def handler() -> str:
        try:
            _raise_boom()
        except ValueError as exc:
            caught(asyncio.current_task(), exc)
        return "500"

    async def main() -> None:
        await asyncio.create_task(handler(), name="GET /boom")

    tracedfuture.run(main(), exporters=[OTelExporter(provider)], capture_values=True)
    span = by_task(spans.get_finished_spans(), "GET /boom")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    assert (span.attributes or {})["asyncio.state"] == "resolved"  # the task itself ended well
    (event,) = [e for e in span.events if e.name == "exception"]
    assert (event.attributes or {})["exception.message"] == "boom"


def test_a_cancelled_tasks_span_says_where_it_was_waiting(
    provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    async def sleeper() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(sleeper(), name="sleeper")
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    tracedfuture.run(main(), exporters=[OTelExporter(provider)])
    span = by_task(spans.get_finished_spans(), "sleeper")
    waiting = f"in {sleeper.__qualname__}"
    assert str((span.attributes or {})["asyncio.cancel.waiting_at"]).endswith(waiting)
    (request,) = [e for e in span.events if e.name == "cancel_requested"]
    assert str((request.attributes or {})["asyncio.cancel.waiting_at"]).endswith(waiting)
