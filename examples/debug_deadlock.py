"""A deadlock through two futures, and what tracedfuture shows about it.

Two workers each hold a "lock" (a future they will resolve when done) and wait
for the other's before releasing their own: neither ever moves. The program
waits 0.5 s for them, then prints what was pending, the lints recorded meanwhile
and the flight recorder's dump, cancels the workers and ends.

Run from the repository root::

    python examples/debug_deadlock.py [FLIGHT_DUMP]    # default: deadlock-flight.jsonl

docs/debugging-a-hang.md walks through its output.
"""

from __future__ import annotations

import asyncio
import sys

import tracedfuture.flight
import tracedfuture.lints
import tracedfuture.trace
from tracedfuture.graph import format_snapshot, from_events, snapshot


async def transfer(name: str, mine: asyncio.Future[str], theirs: asyncio.Future[str]) -> None:
    """Take the other side's lock, then release ours: the classic lock-order bug."""
    await theirs  # waits for the other worker, who waits for us
    mine.set_result(name)  # never reached


async def main(dump_path: str) -> None:
    loop = asyncio.get_running_loop()
    lock_a: asyncio.Future[str] = loop.create_future()
    lock_b: asyncio.Future[str] = loop.create_future()
    workers = [
        asyncio.create_task(transfer("a", lock_a, lock_b), name="worker-a"),
        asyncio.create_task(transfer("b", lock_b, lock_a), name="worker-b"),
    ]
    with tracedfuture.lints.enable(stall=0.1, blocked=0.5, orphan=None):
        _, pending = await asyncio.wait(workers, timeout=0.5)
    if not pending:
        return

    print("== 1. snapshot: what is pending, taken on the loop's thread ==")
    print(format_snapshot(snapshot()))

    print("\n== 2. lints recorded while the program waited ==")
    print(tracedfuture.lints.report(tracedfuture.flight.current().events()))  # type: ignore[union-attr]

    print("\n== 3. the flight recorder's dump, read back ==")
    dump = tracedfuture.trace.read(tracedfuture.flight.dump(dump_path))
    print(f"{dump.path}: {len(dump.events)} events, {dump.stats['dropped']} dropped, reason {dump.header['flight']!r}")
    print(format_snapshot(from_events(dump.events)))

    for worker in pending:
        worker.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "deadlock-flight.jsonl"
    tracedfuture.flight.enable(max_events=10_000, path=path)
    try:
        asyncio.run(main(path))
    finally:
        tracedfuture.flight.disable()
