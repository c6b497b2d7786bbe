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

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench_core import WORKLOADS  # type: ignore[import-not-found]

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown or "plain" not in modes:
        parser.error(f"--modes must include plain and name only {', '.join(MODES)}; got {args.modes!r}")
    results: dict[str, dict[str, float]] = {}
    for name, workload in WORKLOADS.items():
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for mode in modes:
                times[mode].append(run_once(mode, workload))
        base = min(times["plain"])
        results[name] = {m: min(times[m]) / base for m in modes}
        if not args.json:
            cells = "  ".join(
                f"{m} {min(t) * 1e3:7.1f} ms (median {statistics.median(t) * 1e3:7.1f}) x{min(t) / base:.2f}"
                for m, t in times.items()
            )
            print(f"{name:28s} {cells}")
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "ratios": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
