"""Child process of run.py: the memory of one variant over many future lifecycles.

One variant per process, so that the peak resident set size (``VmHWM``) is that
variant's alone. The workload is the future lifecycle, run ``--futures`` times on
asyncio's loop in ``--checkpoints`` chunks; the resident set size is read after
each chunk, which shows whether it stays flat. With ``--tracemalloc`` the run is
traced by ``tracemalloc`` instead (it slows the run and adds its own memory, so
the two are never measured in the same process). The jsonl mode writes a
temporary file, removed afterwards (about 200 bytes an event). Prints one JSON
object.

Run by hand: ``python benchmarks/memory.py --variant flight --futures 1000000``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import variants
from micro import one_line
from workloads import lifecycle


def status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, choices=("plain", *variants.MODES))
    parser.add_argument("--futures", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    import tracedfuture

    result: dict[str, object] = {
        "variant": args.variant,
        "futures": args.futures,
        "implementation": getattr(tracedfuture, "IMPLEMENTATION", "python"),
    }
    try:
        session = variants.open_session(args.variant, "asyncio")
        try:
            session.loop.run_until_complete(lifecycle(1000))
            session.finish()
            gc.collect()
            result["rss_before_kib"] = status_kib("VmRSS")
            if args.tracemalloc:
                tracemalloc.start()
            chunk = max(1, args.futures // args.checkpoints)
            done, rss = 0, []
            start = time.perf_counter()
            while done < args.futures:
                step = min(chunk, args.futures - done)
                session.loop.run_until_complete(lifecycle(step))
                done += step
                rss.append((done, status_kib("VmRSS")))
            session.finish()
            result["seconds"] = time.perf_counter() - start
            if args.tracemalloc:
                current, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                result["traced_current"] = current
                result["traced_peak"] = peak
            result["rss_checkpoints_kib"] = rss
            result["rss_after_kib"] = status_kib("VmRSS")
            result["peak_rss_kib"] = status_kib("VmHWM")
            if session.recorded is not None:
                result["recorded"] = session.recorded()
            if session.stats is not None:
                result["stats"] = session.stats()
        finally:
            session.close()
    except Exception as exc:
        result["error"] = one_line(exc)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop(None)
    raise SystemExit(main())
