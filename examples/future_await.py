"""Awaiting a future (PyMOTW asyncio_future_await.py), for today's asyncio, traced.

The seed passed the loop around and built the future with ``asyncio.Future()``;
here ``asyncio.run`` owns the loop (through ``tracedfuture.run``) and the future
comes from ``loop.create_future()``.
"""

from __future__ import annotations

import asyncio

from _show import print_lifecycle

import tracedfuture
from tracedfuture.exporters import MemoryExporter


def mark_done(future: asyncio.Future[str], result: str) -> None:
    print(f"setting future result to {result!r}")
    future.set_result(result)


async def main() -> None:
    loop = asyncio.get_running_loop()
    all_done = loop.create_future()

    print("scheduling mark_done")
    loop.call_soon(mark_done, all_done, "the result")

    result = await all_done
    print(f"returned result: {result!r}")


if __name__ == "__main__":
    memory = MemoryExporter()
    tracedfuture.run(main(), exporters=[memory])
    print_lifecycle(memory, memory.futures())
