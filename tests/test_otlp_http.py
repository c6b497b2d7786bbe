"""The spans of OTelExporter sent with the real OTLP/HTTP exporter to a receiver on
127.0.0.1, decoded with opentelemetry-proto: parents and links survive the wire."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.proto")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

import tracedfuture
from tracedfuture import TracedFuture
from tracedfuture.exporters.otel import OTelExporter

from .otlp_receiver import OTLPReceiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def provider(receiver: OTLPReceiver) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5)))
    yield provider
    provider.shutdown()


def attribute(span: Span, key: str) -> object:
    for kv in span.attributes:
        if kv.key == key:
            return getattr(kv.value, kv.value.WhichOneof("value"))
    raise KeyError(key)


def find(spans: list[Span], key: str, value: object) -> Span:
    (span,) = [s for s in spans if any(kv.key == key for kv in s.attributes) and attribute(s, key) == value]
    return span


async def reply_later() -> int:
    reply = TracedFuture(label="reply")
    asyncio.get_running_loop().call_later(0.01, reply.set_result, 1)
    return int(await reply)


async def main(tracer: Tracer) -> int:
    with tracer.start_as_current_span("S"):
        waiter = asyncio.create_task(reply_later(), name="waiter")
        broken = TracedFuture(label="broken")
        broken.set_exception(ValueError("boom"))
        with contextlib.suppress(ValueError):
            await broken
        return await waiter


def run_traced(provider: TracerProvider, receiver: OTLPReceiver) -> list[Span]:
    assert tracedfuture.run(main(provider.get_tracer("test")), exporters=[OTelExporter(provider)]) == 1
    # OTelExporter.shutdown() force-flushed the BatchSpanProcessor: all is on the wire.
    spans = receiver.spans()
    assert receiver.errors == []
    return spans


def test_task_links_and_nesting_arrive_over_otlp_http(provider: TracerProvider, receiver: OTLPReceiver) -> None:
    spans = run_traced(provider, receiver)
    waiter = find(spans, "asyncio.task.name", "waiter")
    reply = find(spans, "asyncio.future.label", "reply")
    assert reply.parent_span_id == waiter.span_id
    assert reply.trace_id == waiter.trace_id
    assert [(link.span_id, attribute_of(link, "asyncio.link")) for link in reply.links] == [
        (waiter.span_id, "awaited_by")
    ]
    assert (reply.span_id, "awaited") in [(link.span_id, attribute_of(link, "asyncio.link")) for link in waiter.links]
    assert reply.start_time_unix_nano < reply.end_time_unix_nano
    assert attribute(reply, "asyncio.state") == "resolved"


def test_failed_future_arrives_with_status_error(provider: TracerProvider, receiver: OTLPReceiver) -> None:
    broken = find(run_traced(provider, receiver), "asyncio.future.label", "broken")
    assert broken.status.code == Status.STATUS_CODE_ERROR
    assert [event.name for event in broken.events] == ["exception"]


def test_parent_span_arrives_over_otlp_http(provider: TracerProvider, receiver: OTLPReceiver) -> None:
    spans = run_traced(provider, receiver)
    (s,) = [span for span in spans if span.name == "S"]
    assert find(spans, "asyncio.future.label", "broken").parent_span_id == s.span_id
    assert find(spans, "asyncio.task.name", "waiter").parent_span_id == s.span_id


def attribute_of(link: Span.Link, key: str) -> object:
    for kv in link.attributes:
        if kv.key == key:
            return kv.value.string_value
    raise KeyError(key)


def test_cli_otel_exporter_sends_spans_per_the_standard_environment(tmp_path: Path) -> None:
    """``tracedfuture run --exporter otel`` on an unmodified program: with no
    TracerProvider of the program's, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT decides."""
    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio\n"
        "async def main():\n"
        "    fut = asyncio.get_running_loop().create_future()\n"
        "    asyncio.get_running_loop().call_soon(fut.set_result, 1)\n"
        "    print(await fut)\n"
        "asyncio.run(main())\n"
    )
    with OTLPReceiver() as receiver:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "cli-app",
        }
        result = subprocess.run(
            [sys.executable, "-m", "tracedfuture", "run", "--exporter", "otel", str(script)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "1\n"  # the program's output, untouched
        spans = receiver.wait_for(2)
    names = {span.name for span in spans}
    assert "task main" in names
    assert any(name.startswith("future ") for name in names)
    assert not [name for name in names if "shutdown" in name]  # no root traces of asyncio.run's own
    main_span = next(span for span in spans if span.name == "task main")
    assert attribute(main_span, "code.file.path") == str(script)
    assert isinstance(attribute(main_span, "code.line.number"), int)
    services = {
        attr.value.string_value
        for request in receiver.requests
        for resource_spans in request.resource_spans
        for attr in resource_spans.resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"cli-app"}
