"""Instruction counts per lifecycle, plain asyncio against each implementation of
the seam, under callgrind (stable on a loaded machine, unlike wall time).

    python benchmarks/callgrind_seam.py [c|python ...]    # needs valgrind

Each workload runs once with n=0 and once with n=N inside one process under
``valgrind --tool=callgrind``; (I(N) - I(0)) / N is the cost of one lifecycle,
start-up excluded. Modes: plain asyncio; installed but sampled out
(``sample_rate=0``); flight recorder, i.e. a ring only (``Ring(streaming=False)``
bound to the loop's hooks, nothing converted). ``tasks10k`` is one round of
10,000 tasks each awaiting 10 futures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

N = {"lifecycle": 3_000, "tasks10k": 1}
if os.environ.get("CALLGRIND_SEAM_QUICK"):
    N = {"lifecycle": 3_000}

CHILD = r"""
import asyncio, sys
mode, impl_name, workload, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import importlib
impl = importlib.import_module("tracedfuture._core._cfuture" if impl_name == "c" else "tracedfuture._core._future")

def traced_loop():
    loop = asyncio.new_event_loop()
    if mode == "plain":
        return loop
    hooks = impl.LoopHooks(loop)
    ring = impl.Ring(64 * 1024 * 1024, streaming=False)
    hooks.bind(ring, 1, 0.0 if mode == "sampled_out" else 1.0, None, False)
    # setattr, never vars(loop): materializing the loop's instance dict would slow
    # asyncio's own code on it (see tracedfuture/_core/_loops.py)
    for name in ("create_future", "create_task"):
        setattr(loop, name, getattr(hooks, name))
    # as _loops does: call_soon is shadowed with the loop's first traced task
    hooks.call_soon_on_first_task = hooks.call_soon
    return loop

async def lifecycle(n):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        fut = loop.create_future()
        fut.add_done_callback(lambda f: None)
        loop.call_soon(fut.set_result, 1)
        await fut

async def nothing():
    pass

async def task(n):
    for _ in range(n):
        await asyncio.create_task(nothing())

async def worker(loop):
    for _ in range(10):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut

async def tasks10k(n):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        await asyncio.gather(*[worker(loop) for _ in range(10_000)])

loop = traced_loop()
loop.run_until_complete({"lifecycle": lifecycle, "task": task, "tasks10k": tasks10k}[workload](n))
loop.close()
"""


def instructions(args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", CHILD, *args],
            capture_output=True,
            text=True,
            check=True,
        )
        match = re.search(r"Collected : (\d+)", result.stderr)
        if match is None:
            raise SystemExit(result.stderr[-2000:])
        return int(match.group(1))


def main() -> None:
    impls = sys.argv[1:] or ["c", "python"]
    print(f"Python {sys.version.split()[0]}; instructions per unit, (I(N) - I(0)) / N", flush=True)
    runs = ([] if os.environ.get("CALLGRIND_SEAM_QUICK") else [("plain", "python")]) + [
        (mode, impl) for impl in impls for mode in ("sampled_out", "flight")
    ]
    plain: dict[str, float] = {}
    for mode, impl in runs:
        start = instructions([mode, impl, "lifecycle", "0"])  # start-up, the same for every workload
        label = "plain asyncio" if mode == "plain" else f"{impl} {mode}"
        for workload, n in N.items():
            if mode == "sampled_out" and workload != "lifecycle":
                continue
            cost = (instructions([mode, impl, workload, str(n)]) - start) / n
            base = plain.setdefault(workload, cost)
            print(f"{workload:10} {label:22} {cost:14,.0f}  {cost / base:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
