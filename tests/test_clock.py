"""A record's timestamp reads time.monotonic_ns(), whatever the hot path read.

The compiled core records raw TSC ticks where the TSC is sound (``CLOCK ==
"tsc"``) and converts them as records leave the ring; the reference reads
``time.monotonic_ns()``. Either way, what every reader sees (take, take_batch,
window, info) is monotonic nanoseconds: between the readings taken around the
event, in order, and across a flight recorder's window read long after.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest


def _bracketed(impl: Any, streaming: bool) -> tuple[Any, list[tuple[int, int, Any]]]:
    """Futures made between two monotonic readings, some rounds apart in time."""
    loop = asyncio.new_event_loop()
    ring = impl.Ring(1 << 22, streaming=streaming)
    hooks = impl.LoopHooks(loop)
    hooks.bind(ring, 1, 1.0, None, False)
    made: list[tuple[int, int, Any]] = []

    async def main() -> None:
        for i in range(60):
            before = time.monotonic_ns()
            fut = hooks.create_future()
            after = time.monotonic_ns()
            fut.set_result(i)
            await fut
            made.append((before, after, fut))
            if i % 20 == 0:
                await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return ring, made


def _created_ts(records: Any) -> dict[int, int]:
    return {record[1]: record[2] for record in records if record[0] == 0}


@pytest.mark.parametrize("read", ["take", "take_batch", "window"])
def test_records_read_monotonic_nanoseconds(impl: Any, read: str) -> None:
    ring, made = _bracketed(impl, streaming=read != "window")
    created = _created_ts(getattr(ring, read)())
    for before, after, fut in made:
        assert before <= created[impl.future_id(fut)] <= after
    stamps = list(created.values())
    assert stamps == sorted(stamps)


def test_a_window_read_twice_and_late_reads_the_same_times(impl: Any) -> None:
    ring, made = _bracketed(impl, streaming=False)
    first = _created_ts(ring.window())
    time.sleep(0.05)
    later = _created_ts(ring.window())
    # a later read converts through more sync points: the same times within a
    # microsecond (the error of reading the two clocks together)
    assert first.keys() == later.keys()
    assert max(abs(first[fid] - later[fid]) for fid in first) < 1_000
    for before, after, fut in made:
        assert before <= later[impl.future_id(fut)] <= after


def test_info_reads_the_creation_time_in_monotonic_nanoseconds(impl: Any) -> None:
    _, made = _bracketed(impl, streaming=True)
    for before, after, fut in made:
        assert before <= impl.info(fut)[1] <= after


def test_the_pure_reference_reads_the_monotonic_clock() -> None:
    from tracedfuture._core import _future

    assert _future.CLOCK == "monotonic"


def test_tracedfuture_clock_monotonic_opts_out_of_the_tsc() -> None:
    pytest.importorskip("tracedfuture._core._cfuture")
    program = (
        "import asyncio, time, tracedfuture\n"
        "from tracedfuture._core import _cfuture, future_id\n"
        "from tracedfuture.exporters import MemoryExporter\n"
        "memory = MemoryExporter()\n"
        "async def main():\n"
        "    before = time.monotonic_ns(); fut = asyncio.get_running_loop().create_future()\n"
        "    after = time.monotonic_ns(); fut.set_result(1); await fut\n"
        "    return before, after, future_id(fut)\n"
        "with tracedfuture.install(exporters=[memory]):\n"
        "    before, after, fid = asyncio.run(main())\n"
        "[ts] = [e.ts_ns for e in memory if e.kind == 'created' and e.future_id == fid]\n"
        "print(_cfuture.CLOCK, before <= ts <= after)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDFUTURE_")}
    for clock in ("monotonic", ""):
        done = subprocess.run(
            [sys.executable, "-c", program],
            env={**env, "TRACEDFUTURE_CLOCK": clock},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        name, inside = done.stdout.split()
        assert inside == "True"
        if clock:
            assert name == "monotonic"
        else:
            assert name in ("tsc", "monotonic")
