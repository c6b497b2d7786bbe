"""What the control socket costs a traced program: idle, and while a console refreshes.

The workloads are ``workloads.py``'s (imported, not copied): the future
lifecycle and many tasks, each at ``--scale`` times its default size, run
``ROUNDS`` times in a row per measurement, so that a measurement spans a few
refreshes.
Modes:

* ``plain``: asyncio alone;
* ``flight``: the flight recorder (``tracedfuture.flight.enable()``), which
  ``--console`` turns on: the baseline of the two below;
* ``console``: ``tracedfuture._control.server.start()``, nobody connected;
* ``console-1s``: the same, with a client in another process asking for a
  snapshot (with coroutine stacks) and the lints every second, as
  ``tracedfuture top`` does.

Each mode runs ``--repeat`` times, interleaved; the best time is reported as a
ratio to plain. Run: ``python benchmarks/bench_console.py [--repeat N] [--scale S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from workloads import WORKLOADS, sized  # type: ignore[import-not-found]

import tracedfuture.flight
from tracedfuture._control import server as _control

MODES = ("plain", "flight", "console", "console-1s")
ROUNDS = 2

CLIENT = """\
import sys, time
from tracedfuture._control.server import ControlError, connect
with connect(sys.argv[1], timeout=60) as client:
    print("connected", flush=True)
    try:
        while True:
            client.request("snapshot")
            client.request("lints")
            time.sleep(1.0)
    except ControlError:
        pass  # the benchmark stopped the server
"""


def run_once(mode: str, workload: Callable[[], Coroutine[Any, Any, None]]) -> float:
    """One measurement: ``ROUNDS`` runs of ``workload`` in ``mode``, in seconds."""
    gc.collect()
    client = None
    if mode == "flight":
        tracedfuture.flight.enable()
    elif mode.startswith("console"):
        path = _control.start()
        if mode == "console-1s":
            client = subprocess.Popen([sys.executable, "-c", CLIENT, path], stdout=subprocess.PIPE, text=True)
            assert client.stdout is not None
            client.stdout.readline()
    loop = asyncio.new_event_loop()
    try:
        start = time.perf_counter()
        for _ in range(ROUNDS):
            loop.run_until_complete(workload())
        if mode != "plain":
            recorder = tracedfuture.flight.current()
            assert recorder is not None
            recorder.events()  # delivery to the ring is part of the price
        return time.perf_counter() - start
    finally:
        loop.close()
        if client is not None:
            client.terminate()
            client.wait()
        if mode.startswith("console"):
            _control.stop()
        if mode != "plain":
            tracedfuture.flight.disable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="measurements per mode, interleaved (best kept)")
    parser.add_argument("--scale", type=float, default=1.0, help="workload sizes, times their defaults")
    args = parser.parse_args(argv)
    for name in ("lifecycle", "many"):
        work = WORKLOADS[name]
        n = sized(name, args.scale)
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.repeat):
            for mode in MODES:
                times[mode].append(run_once(mode, lambda work=work, n=n: work.run(n)))
        base = min(times["plain"])
        cells = "  ".join(
            f"{mode} {min(t) * 1e3:7.1f} ms (median {statistics.median(t) * 1e3:7.1f}) x{min(t) / base:.2f}"
            for mode, t in times.items()
        )
        print(f"{work.label(n):28s} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
