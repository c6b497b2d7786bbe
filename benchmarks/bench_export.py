"""Plain asyncio against traced asyncio with exporters, in the same run.

Modes (the exporters issue's):

* ``plain``: asyncio alone;
* ``recorded``: traced, every event recorded and converted, kept in memory only
  (a ``MemoryExporter``);
* ``tail``: tail-sampled (``tail=True``) structlog and OpenTelemetry export of a
  healthy workload, which keeps almost nothing;
* ``everything``: structlog and OpenTelemetry export of every event.

structlog renders JSON into ``os.devnull``; OpenTelemetry spans go through the
real SDK (``BatchSpanProcessor``) to an exporter that discards them. The time
includes delivering everything to the exporters (``Installation.flush``).
Run: ``python benchmarks/bench_export.py``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog
from bench_core import compare
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tracedfuture
from tracedfuture.exporters import MemoryExporter
from tracedfuture.exporters.otel import OTelExporter
from tracedfuture.exporters.structlog import StructlogExporter


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def configure_structlog() -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def exporters(mode: str) -> tuple[list[Any], dict[str, Any], TracerProvider | None]:
    if mode == "recorded":
        return [MemoryExporter()], {}, None
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    chosen = [StructlogExporter(), OTelExporter(tracer_provider=provider)]
    return chosen, ({"tail": True, "slow": 60.0} if mode == "tail" else {}), provider


def run_once(mode: str, workload: Callable[[], Coroutine[Any, Any, None]]) -> float:
    gc.collect()
    loop = asyncio.new_event_loop()
    inst = provider = None
    if mode != "plain":
        chosen, options, provider = exporters(mode)
        inst = tracedfuture.install(loop, exporters=chosen, **options)
    try:
        start = time.perf_counter()
        loop.run_until_complete(workload())
        if inst is not None:
            inst.flush(timeout=600)
        return time.perf_counter() - start
    finally:
        loop.close()
        if inst is not None:
            inst.uninstall()
        if provider is not None:
            provider.shutdown()


def main(argv: list[str] | None = None) -> int:
    configure_structlog()
    modes = ("plain", "recorded", "tail", "everything")
    return compare(__doc__.splitlines()[0], modes, run_once, argv, repeat=3)


if __name__ == "__main__":
    raise SystemExit(main())
