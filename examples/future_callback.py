"""Future callbacks (PyMOTW asyncio_future_callback.py), for today's asyncio, traced.

Callbacks run in the order they were registered; ``functools.partial`` passes
them extra arguments. The trace shows both callbacks added, then scheduled when
the result is set.
"""

from __future__ import annotations

import asyncio
import functools

from _show import print_lifecycle

import tracedfuture
from tracedfuture.exporters import MemoryExporter


def callback(future: asyncio.Future[str], n: int) -> None:
    print(f"{n}: future done: {future.result()}")


async def register_callbacks(all_done: asyncio.Future[str]) -> None:
    print("registering callbacks on future")
    all_done.add_done_callback(functools.partial(callback, n=1))
    all_done.add_done_callback(functools.partial(callback, n=2))


async def main() -> None:
    all_done = asyncio.get_running_loop().create_future()
    await register_callbacks(all_done)
    print("setting result of future")
    all_done.set_result("the result")
    await asyncio.sleep(0)  # let the callbacks run before the loop closes


if __name__ == "__main__":
    memory = MemoryExporter()
    tracedfuture.run(main(), exporters=[memory])
    print_lifecycle(memory, memory.futures())
