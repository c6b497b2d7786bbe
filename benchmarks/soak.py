"""Soak: millions of futures through a traced loop, checking that nothing grows.

    python benchmarks/soak.py                       # 10M futures
    python benchmarks/soak.py --futures 1_000_000 --out /tmp/soak

Every loop of the process is traced (``tracedfuture.install``) into the flight
recorder (its default 100,000-event ring) and a ``JsonLinesExporter``; the
program makes futures in rounds of ``--batch``, resolving half before anyone
looks and awaiting the other half through ``asyncio.gather``, and yields to the
loop between rounds. Twenty times along the way it samples the process's
resident set size, its open file descriptors and its threads, and prints them:
the curve. At the end it uninstalls and checks that

* RSS stayed flat: the last sample is at most ``--rss-slack`` MiB above the
  first one taken after warm-up (the 5th sample);
* no file descriptor and no thread leaked (no more after than before; the
  process-wide drain thread, which outlives an installation, counts in both);
* the trace file is readable by ``tracedfuture.trace.read`` (streamed through
  ``tracedfuture.trace.iter_events``, which validates every line the same way,
  above 1M futures) and complete: each future's history starts with
  ``created`` and either ends (``resolved``) or is marked ``incomplete``; its
  stats line counts every line.

It prints the drop counters and exits 1 if a check fails. Not part of the test
suite: at 10M futures it runs for many minutes and writes gigabytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import tracedfuture
import tracedfuture.trace
from tracedfuture.exporters import JsonLinesExporter
from tracedfuture.flight import FlightRecorder

PAGE = resource.getpagesize()


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def sample(label: str, done: int, started: float) -> tuple[int, float, int, int]:
    row = (done, rss_mib(), fds(), threading.active_count())
    print(
        f"{label:>8} {done:>11,} futures  rss {row[1]:8.1f} MiB  fds {row[2]:3d}  threads {row[3]:2d}"
        f"  {time.monotonic() - started:7.1f} s",
        flush=True,
    )
    return row


async def workload(total: int, batch: int, samples: list[tuple[int, float, int, int]], started: float) -> None:
    loop = asyncio.get_running_loop()
    every = max(batch, total // 20)
    done = 0
    next_sample = every
    while done < total:
        n = min(batch, total - done)
        early = [loop.create_future() for _ in range(n // 2)]
        for i, fut in enumerate(early):
            fut.set_result(i)  # resolved before anyone looks
        late = [loop.create_future() for _ in range(n - n // 2)]
        for i, fut in enumerate(late):
            loop.call_soon(fut.set_result, i)
        await asyncio.gather(*late)
        done += n
        del early, late
        await asyncio.sleep(0)
        if done >= next_sample:
            samples.append(sample("sample", done, started))
            next_sample += every


def check_trace(path: Path, futures: int) -> tuple[list[str], dict[str, Any]]:
    """Problems found in the trace file, and its stats line."""
    problems: list[str] = []
    stats: dict[str, Any] = {}
    events = 0
    if futures <= 1_000_000:
        trace = tracedfuture.trace.read(path)
        stats, items = trace.stats, iter(trace.events)
        problems += trace.warnings
    else:

        def stream() -> Any:
            for _, item in tracedfuture.trace.iter_events(path):
                if isinstance(item, tracedfuture.Event):
                    yield item
                elif "__truncated__" in item:
                    problems.append(f"{path}:{item['__truncated__']}: truncated last line")
                else:
                    stats.update(item)

        items = stream()
    open_futures: set[int] = set()  # created, not yet ended: stays small if histories are whole
    seen_end = 0
    bad_start = 0
    for event in items:
        events += 1
        fid = event.future_id
        if event.kind == "created":
            open_futures.add(fid)
        elif fid not in open_futures and event.kind not in ("callback_scheduled", "incomplete"):
            bad_start += 1
        if event.kind in ("resolved", "failed", "cancelled", "abandoned", "incomplete"):
            if fid in open_futures:
                seen_end += 1
            open_futures.discard(fid)
    if bad_start:
        problems.append(f"{bad_start} events of futures whose history does not start with created")
    if open_futures:
        problems.append(f"{len(open_futures)} futures neither ended nor marked incomplete")
    if stats.get("events_written") != events:
        problems.append(f"stats line says {stats.get('events_written')} events, the file has {events}")
    return problems, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--futures", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="directory for the trace (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the trace file")
    parser.add_argument("--rss-slack", type=float, default=32.0, help="MiB the RSS may grow after warm-up")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="tracedfuture-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "soak.jsonl"
    started = time.monotonic()
    # The process-wide drain thread outlives an installation, to serve the next
    # one: start it before counting threads.
    tracedfuture.run(asyncio.sleep(0))
    before = sample("before", 0, started)
    recorder = FlightRecorder()
    inst = tracedfuture.install(exporters=[recorder, JsonLinesExporter(path)])
    samples: list[tuple[int, float, int, int]] = []
    try:
        asyncio.run(workload(args.futures, args.batch, samples, started))
    finally:
        inst.uninstall()
    del recorder
    after = sample("after", args.futures, started)
    stats = inst.stats()
    print("delivery:", {k: v for k, v in stats.items() if k != "exporters"})
    for exporter in stats["exporters"]:
        print("  ", exporter)

    problems: list[str] = []
    warm = samples[min(4, len(samples) - 1)] if samples else before
    peak = max(s[1] for s in samples) if samples else after[1]
    print(f"RSS after warm-up {warm[1]:.1f} MiB, peak {peak:.1f} MiB, last {samples[-1][1] if samples else 0:.1f} MiB")
    if samples and samples[-1][1] > warm[1] + args.rss_slack:
        problems.append(f"RSS grew from {warm[1]:.1f} MiB to {samples[-1][1]:.1f} MiB after warm-up")
    if after[2] > before[2]:
        problems.append(f"file descriptors: {before[2]} before, {after[2]} after")
    if after[3] > before[3]:
        problems.append(f"threads: {before[3]} before, {after[3]} after")

    size = path.stat().st_size
    print(f"trace file {path}: {size / 2**20:.1f} MiB; checking it...", flush=True)
    trace_problems, file_stats = check_trace(path, args.futures)
    problems += trace_problems
    print("stats line:", file_stats)
    print(f"checked in {time.monotonic() - started:.1f} s in all")
    if not args.keep and args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    for problem in problems:
        print("FAIL:", problem)
    if not problems:
        print("OK: flat RSS, no fd or thread leak, a complete and readable trace")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
