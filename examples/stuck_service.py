"""A service that is stuck right now, and stays stuck: the moment to attach.

Two account workers each hold a "lock" (a future they will resolve when done)
and wait for the other's before releasing their own, the deadlock of
examples/debug_deadlock.py. Meanwhile a request handler waits for the result of
a transfer that will never come, and a heartbeat keeps ticking, so the loop
itself is healthy: nothing crashes, nothing logs, a request just never answers.

It has no tracing code at all. Start it with the control socket and look::

    tracedfuture run --console examples/stuck_service.py &
    tracedfuture pstree $!
    tracedfuture ps $!
    tracedfuture dump $! -o stuck.jsonl && tracedfuture tree stuck.jsonl
    tracedfuture top $!

It runs until interrupted, or for ``SECONDS`` if given.
"""

from __future__ import annotations

import asyncio
import sys


async def transfer(name: str, mine: asyncio.Future[str], theirs: asyncio.Future[str]) -> str:
    """Take the other side's lock, then release ours: the classic lock-order bug."""
    await theirs  # waits for the other worker, who waits for us
    mine.set_result(name)  # never reached
    return name


async def handle_request(done: asyncio.Future[str]) -> str:
    """A request that waits for the transfer to finish."""
    return await asyncio.shield(done)


async def heartbeat(beats: list[int]) -> None:
    while True:
        await asyncio.sleep(0.2)
        beats.append(len(beats))


async def main(seconds: float | None) -> None:
    loop = asyncio.get_running_loop()
    lock_a: asyncio.Future[str] = loop.create_future()
    lock_b: asyncio.Future[str] = loop.create_future()
    worker_a = asyncio.create_task(transfer("a", lock_a, lock_b), name="worker-a")
    worker_b = asyncio.create_task(transfer("b", lock_b, lock_a), name="worker-b")
    request = asyncio.create_task(handle_request(worker_a), name="request-17")
    beats: list[int] = []
    ticker = asyncio.create_task(heartbeat(beats), name="heartbeat")
    print("stuck_service: serving", flush=True)
    try:
        if seconds is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(seconds)
    finally:
        for task in (request, worker_a, worker_b, ticker):
            task.cancel()
        await asyncio.gather(request, worker_a, worker_b, ticker, return_exceptions=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else None))
    except KeyboardInterrupt:
        pass
