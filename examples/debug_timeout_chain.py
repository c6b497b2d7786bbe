"""A task cancelled by a timeout deep in its call chain, and what tracedfuture shows.

A request handler calls a service, which calls a database client with a 0.2 s
``asyncio.timeout``; the database's reply never comes. The handler's task ends
with ``TimeoutError``, and the traceback alone does not say what was awaited when
the timeout fired, nor who cancelled what. The program prints the stall lint
(the awaiting chain, while it was stuck), the cancellations with their canceller
(the timeout's line in the program, and where the request was waiting),
and the await graph just before the timeout fired, rebuilt from the flight
recorder's dump.

Run from the repository root::

    python examples/debug_timeout_chain.py [FLIGHT_DUMP]    # default: timeout-flight.jsonl

docs/debugging-a-hang.md walks through its output.
"""

from __future__ import annotations

import asyncio
import sys

import tracedfuture.flight
import tracedfuture.lints
import tracedfuture.trace
from tracedfuture.graph import format_snapshot, from_events


async def query(sql: str) -> str:
    """The database client: sends the query and waits for the reply."""
    reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    # ... the reply would be set by the protocol's data_received(); it never is.
    return await reply


async def load_user(user_id: int) -> str:
    async with asyncio.timeout(0.2):  # the timeout, deep in the chain
        return await query(f"SELECT name FROM users WHERE id = {user_id}")


async def handle_request(user_id: int) -> str:
    return await load_user(user_id)


async def main(dump_path: str) -> None:
    with tracedfuture.lints.enable(stall=0.1, blocked=None, orphan=None):
        request = asyncio.create_task(handle_request(42), name="request-42")
        try:
            await request
        except TimeoutError:
            print(f"{request.get_name()} ended with TimeoutError\n")

    dump = tracedfuture.trace.read(tracedfuture.flight.dump(dump_path))
    events = dump.events

    print("== 1. the stall lint, while it was stuck ==")
    print(tracedfuture.lints.report(events))

    print("\n== 2. who cancelled what ==")
    for event in events:
        if event.kind in ("cancel_requested", "cancelled"):
            what = f"(T) #{event.future_id} {event.name}" if event.is_task else f"(F) #{event.future_id}"
            waiting = f" while waiting at {event.waiting_site}" if event.waiting_site else ""
            print(f"{event.kind:16s} {what:18s} by {event.canceller}{waiting}")

    print("\n== 3. the await graph just before the timeout fired, from the flight dump ==")
    fired = next(e.ts_ns for e in events if e.kind in ("cancel_requested", "cancelled"))
    print(format_snapshot(from_events(events, fired - 1)))


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "timeout-flight.jsonl"
    tracedfuture.flight.enable(max_events=10_000, path=path)
    try:
        asyncio.run(main(path))
    finally:
        tracedfuture.flight.disable()
