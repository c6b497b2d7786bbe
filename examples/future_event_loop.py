"""Waiting for a future with run_until_complete (PyMOTW "Producing Results
Asynchronously", asyncio_future_event_loop.py), for today's asyncio, traced.

The seed called ``asyncio.get_event_loop()`` outside a running loop and built the
future with ``asyncio.Future()``; both are deprecated (3.10+) and the latter is not
traceable. Here the loop is created explicitly and the future comes from
``loop.create_future()``, as asyncio's documentation recommends.
"""

from __future__ import annotations

import asyncio

from _show import print_lifecycle

import tracedfuture
from tracedfuture.exporters import MemoryExporter


def mark_done(future: asyncio.Future[str], result: str) -> None:
    print(f"setting future result to {result!r}")
    future.set_result(result)


def main() -> None:
    memory = MemoryExporter()
    event_loop = asyncio.new_event_loop()
    with tracedfuture.install(event_loop, exporters=[memory]):
        try:
            all_done = event_loop.create_future()
            print("scheduling mark_done")
            event_loop.call_soon(mark_done, all_done, "the result")

            print("entering event loop")
            result = event_loop.run_until_complete(all_done)
            print(f"returned result: {result!r}")
        finally:
            print("closing event loop")
            event_loop.close()

        print(f"future result: {all_done.result()!r}")
        print_lifecycle(memory, memory.futures())


if __name__ == "__main__":
    main()
