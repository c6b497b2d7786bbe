"""Plain asyncio against an always-on flight recorder, in the same run.

The workloads are bench_core's (imported, not copied). Modes:

* ``plain``: asyncio alone;
* ``recorded``: traced, every event recorded and converted, no exporter (the
  core's cost, for reference);
* ``flight``: traced into a :class:`tracedfuture.flight.FlightRecorder` of
  100,000 events, the way it is left on in production;
* ``flight-bytes``: the same ring also bounded by an estimate of 16 MB.

Each mode runs ``--repeat`` times, interleaved; the best time is kept and
reported as a ratio to plain. Delivery to the recorder is included (the run ends
with a flush). Run: ``python benchmarks/bench_flight.py``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench_core import compare  # type: ignore[import-not-found]

import tracedfuture
from tracedfuture.flight import FlightRecorder

MODES = ("plain", "recorded", "flight", "flight-bytes")


def run_once(mode: str, workload: Callable[[], Coroutine[Any, Any, None]]) -> float:
    gc.collect()
    loop = asyncio.new_event_loop()
    inst = None
    if mode == "recorded":
        inst = tracedfuture.install(loop)
    elif mode == "flight":
        inst = tracedfuture.install(loop, exporters=[FlightRecorder(max_events=100_000)])
    elif mode == "flight-bytes":
        inst = tracedfuture.install(loop, exporters=[FlightRecorder(max_events=100_000, max_bytes=16 << 20)])
    try:
        start = time.perf_counter()
        loop.run_until_complete(workload())
        if inst is not None:
            inst.flush()  # conversion and delivery to the ring are part of the price
        return time.perf_counter() - start
    finally:
        loop.close()
        if inst is not None:
            inst.uninstall()


def main(argv: list[str] | None = None) -> int:
    return compare(__doc__.splitlines()[0], MODES, run_once, argv)


if __name__ == "__main__":
    raise SystemExit(main())
