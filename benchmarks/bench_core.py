"""Plain asyncio against traced asyncio, in the same run: the core's overhead.

Workloads (the core issue's):

* lifecycle: create a future, add a done callback, set its result through
  ``call_soon``, await it; 100,000 times in one task.
* tasks: 10,000 tasks, each awaiting 10 futures resolved through ``call_soon``.

Modes: ``plain`` (asyncio alone); ``hot-path`` (traced, every event recorded into
the buffer, conversion deferred until after the timed region: the cost the event
loop's thread pays); ``recorded`` (traced, every event recorded and converted to
events by the drain thread, no exporter); ``memory`` (the same, kept in a
MemoryExporter). Each mode runs ``--repeat`` times, interleaved; the best time is
kept and reported as a ratio to plain. Run: ``python benchmarks/bench_core.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import tracedfuture
from tracedfuture.exporters import MemoryExporter


async def lifecycle(n: int) -> None:
    loop = asyncio.get_running_loop()
    call_soon = loop.call_soon
    for i in range(n):
        fut = loop.create_future()
        fut.add_done_callback(id)
        call_soon(fut.set_result, i)
        await fut


async def _worker(futures: int) -> None:
    loop = asyncio.get_running_loop()
    call_soon = loop.call_soon
    for i in range(futures):
        fut = loop.create_future()
        call_soon(fut.set_result, i)
        await fut


async def many_tasks(n: int, futures: int = 10) -> None:
    await asyncio.gather(*[asyncio.create_task(_worker(futures)) for _ in range(n)])


WORKLOADS: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "lifecycle x100000": lambda: lifecycle(100_000),
    "10000 tasks x 10 futures": lambda: many_tasks(10_000),
}


def run_once(mode: str, workload: Callable[[], Coroutine[Any, Any, None]]) -> float:
    gc.collect()
    loop = asyncio.new_event_loop()
    inst = None
    if mode == "hot-path":
        inst = tracedfuture.install(loop, flush_interval=3600, buffer_size=100_000_000)
    elif mode == "recorded":
        inst = tracedfuture.install(loop)
    elif mode == "memory":
        inst = tracedfuture.install(loop, exporters=[MemoryExporter()])
    try:
        start = time.perf_counter()
        loop.run_until_complete(workload())
        if inst is not None and mode != "hot-path":
            inst.flush()  # conversion and delivery count: they are the price of tracing
        return time.perf_counter() - start
    finally:
        loop.close()
        if inst is not None:
            inst.uninstall()


RunOnce = Callable[[str, Callable[[], Coroutine[Any, Any, None]]], float]


def compare(description: str, modes: Sequence[str], run_once: RunOnce, argv: list[str] | None, repeat: int = 5) -> int:
    """The measuring loop every benchmark shares: each workload, each mode,
    ``--repeat`` times interleaved; the best time as a ratio to ``plain``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--modes", default=",".join(modes))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    chosen = args.modes.split(",")
    unknown = sorted(set(chosen) - set(modes))
    if unknown or "plain" not in chosen:
        parser.error(f"--modes must include plain and name only {', '.join(modes)}; got {args.modes!r}")
    results: dict[str, dict[str, float]] = {}
    for name, workload in WORKLOADS.items():
        times: dict[str, list[float]] = {m: [] for m in chosen}
        for _ in range(args.repeat):
            for mode in chosen:
                times[mode].append(run_once(mode, workload))
        base = min(times["plain"])
        results[name] = {m: min(t) / base for m, t in times.items()}
        if not args.json:
            cells = "  ".join(
                f"{m} {min(t) * 1e3:7.1f} ms (median {statistics.median(t) * 1e3:7.1f}) x{min(t) / base:.2f}"
                for m, t in times.items()
            )
            print(f"{name:28s} {cells}")
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "ratios": results}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return compare(__doc__.splitlines()[0], ("plain", "hot-path", "recorded", "memory"), run_once, argv)


if __name__ == "__main__":
    raise SystemExit(main())
