"""The training program of build_pgo.py: what the compiled core's profile is made of.

Run as ``python -I pgo_training.py STAGE`` on a copy of the package's sources
with the core just built with counters (``STAGE/tracedfuture``), by the Python
being built for, before setuptools or anything but the standard library is
importable: futures and tasks on an asyncio loop, the way programs make them,
under the flight recorder, sampled out, into a MemoryExporter, a trace file and
tail sampling, and the trace file read back. A failure exits non-zero; the
last line of its traceback is what the build reports.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


def main(stage: str) -> None:
    sys.path.insert(0, stage)
    import tracedfuture
    from tracedfuture.exporters import JsonLinesExporter, MemoryExporter
    from tracedfuture.flight import FlightRecorder

    if tracedfuture.IMPLEMENTATION != "c" or not tracedfuture.__file__.startswith(stage):
        msg = f"the training program runs {tracedfuture.IMPLEMENTATION} core from {tracedfuture.__file__}"
        raise RuntimeError(msg)

    async def leaf(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def worker(futures: int) -> None:
        loop = asyncio.get_running_loop()
        for i in range(futures):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, i)
            await fut

    async def failing() -> None:
        raise ValueError(stage)

    async def program(scale: int) -> None:
        loop = asyncio.get_running_loop()
        for i in range(50 * scale):  # the lifecycle: create, add_done_callback, call_soon(set_result), await
            fut = loop.create_future()
            fut.add_done_callback(id)
            loop.call_soon(fut.set_result, i)
            await fut
        await asyncio.gather(*[asyncio.create_task(worker(10)) for _ in range(20 * scale)])  # tasks alive at once
        for start in range(0, 100 * scale, 100):  # a burst, in rounds
            futures = [loop.create_future() for _ in range(100)]
            for i, fut in enumerate(futures):
                fut.set_result(start + i)
            for fut in futures:
                await fut
        for i in range(10 * scale):  # tasks one at a time, gather, failures, cancellations, primitives
            await asyncio.create_task(leaf(i))
            await asyncio.gather(leaf(1), leaf(2), leaf(3))
            results = await asyncio.gather(failing(), leaf(4), return_exceptions=True)
            assert isinstance(results[0], ValueError)
            task = asyncio.create_task(asyncio.sleep(3600))
            await asyncio.sleep(0)
            task.cancel("training")
            await asyncio.gather(task, return_exceptions=True)
            fut = loop.create_future()
            fut.add_done_callback(id)
            fut.remove_done_callback(id)
            fut.cancel()
            lock, event, queue = asyncio.Lock(), asyncio.Event(), asyncio.Queue[int]()
            async with lock:
                event.set()
            await event.wait()
            await queue.put(i)
            await queue.get()
            try:
                await asyncio.wait_for(asyncio.sleep(3600), 0.0001)
            except TimeoutError:
                pass

    trace = os.path.join(stage, "trace.jsonl")
    setups: list[tuple[list[Any], dict[str, Any], int]] = [
        ([FlightRecorder()], {}, 20),
        ([MemoryExporter()], {"sample_rate": 0.0}, 10),
        ([MemoryExporter()], {}, 5),
        ([JsonLinesExporter(trace)], {}, 5),
        ([MemoryExporter()], {"tail": True, "slow": 60.0}, 5),
    ]
    for exporters, options, scale in setups:
        factory = tracedfuture.loop_factory(base=asyncio.new_event_loop, exporters=exporters, **options)
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(program(scale))
        finally:
            factory.installation.uninstall()  # type: ignore[attr-defined]
    from tracedfuture import trace as trace_file

    if not trace_file.read(trace):
        msg = "the training trace file holds no events"
        raise RuntimeError(msg)


if __name__ == "__main__":
    main(sys.argv[1])
