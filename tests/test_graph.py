"""tracedfuture.graph: the live await graph, from the loop's thread and from others."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from typing import Any

import pytest

from tracedfuture import TracedFuture
from tracedfuture.exporters import MemoryExporter
from tracedfuture.graph import (
    CANCELLING,
    FrameEntry,
    PendingFuture,
    Snapshot,
    format_snapshot,
    from_events,
    snapshot,
)


def fid(fut: asyncio.Future[Any]) -> int:
    """The id tracedfuture gave a future (its events' future_id)."""
    return int(fut._tf_id)  # type: ignore[attr-defined]


async def waits_for(fut: asyncio.Future[Any]) -> None:
    await fut


async def outer(fut: asyncio.Future[Any]) -> None:
    await waits_for(fut)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_snapshot_lists_a_pending_bare_future_with_its_site_and_age(memory: MemoryExporter) -> None:
    async def main() -> tuple[Snapshot, int]:
        fut = asyncio.get_running_loop().create_future()
        await asyncio.sleep(0.02)
        return snapshot(), fid(fut)

    snap, fut_id = asyncio.run(main())
    entry = snap.get(fut_id)
    assert entry is not None
    assert not entry.is_task
    assert entry.state == "PENDING"
    assert entry.age_ns is not None
    assert entry.age_ns >= 20_000_000
    assert entry.site is not None
    assert entry.site.filename == __file__
    assert entry.site.function.endswith("main")


def test_snapshot_leaves_out_done_futures(memory: MemoryExporter) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(1)
        assert snapshot().get(fid(fut)) is None

    asyncio.run(main())


def test_snapshot_names_the_task_awaiting_a_future_and_what_the_task_awaits(memory: MemoryExporter) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(waits_for(fut), name="waiter")
        await settle()
        snap = snapshot()
        leaf = snap.get(fid(fut))
        waiter = snap.get(fid(task))
        assert leaf is not None
        assert waiter is not None
        assert leaf.awaited_by == (fid(task),)
        assert leaf.last_awaiter_id == fid(task)
        assert waiter.awaiting == (fid(fut),)
        assert waiter.name == "waiter"
        fut.set_result(None)
        await task

    asyncio.run(main())


def test_chain_runs_from_the_outermost_task_down_to_the_leaf_future(memory: MemoryExporter) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        inner = asyncio.create_task(waits_for(fut), name="inner")
        outer_task = asyncio.create_task(waits_for(inner), name="outer")
        await settle()
        snap = snapshot()
        assert snap.chain(fid(fut)) == (fid(outer_task), fid(inner), fid(fut))
        assert (fid(outer_task), fid(inner), fid(fut)) in snap.chains()
        fut.set_result(None)
        await outer_task

    asyncio.run(main())


def test_snapshot_on_the_loop_thread_has_each_tasks_coroutine_chain(memory: MemoryExporter) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(outer(fut))
        await settle()
        snap = snapshot()
        entry = snap.get(fid(task))
        assert entry is not None
        assert snap.with_stacks
        assert [frame.function for frame in entry.call_stack] == ["outer", "waits_for"]
        assert entry.call_stack[-1].filename == __file__
        assert entry.coro == "outer"
        fut.set_result(None)
        await task

    asyncio.run(main())


def test_snapshot_from_another_thread_never_waits_for_the_loop(memory: MemoryExporter) -> None:
    # The loop is blocked in a callback while another thread takes the snapshot:
    # if the snapshot needed the loop, it would never come back.
    taken: list[Snapshot] = []

    def take() -> None:
        taken.append(snapshot())

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(waits_for(fut))
        await settle()
        thread = threading.Thread(target=take)
        thread.start()
        thread.join(timeout=5)
        assert taken, "the snapshot did not come back while the loop was busy"
        entry = taken[0].get(fid(task))
        assert entry is not None
        assert entry.awaiting == (fid(fut),)
        assert not taken[0].with_stacks
        assert entry.call_stack == ()
        fut.set_result(None)
        await task

    asyncio.run(main())


def test_a_task_asked_to_cancel_is_cancelling_until_it_ends(memory: MemoryExporter) -> None:
    async def stubborn(fut: asyncio.Future[Any]) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await fut

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(stubborn(fut))
        await settle()
        task.cancel()
        await settle()
        entry = snapshot().get(fid(task))
        assert entry is not None
        assert entry.state == CANCELLING
        fut.set_result(None)
        await task

    asyncio.run(main())


async def stubborn(fut: asyncio.Future[Any]) -> None:
    try:
        await asyncio.sleep(10)  # the line it is asked to cancel at: co_firstlineno + 2
    except asyncio.CancelledError:
        await fut


def test_a_cancelling_task_rebuilt_from_events_says_where_it_was_waiting(memory: MemoryExporter) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(stubborn(fut), name="stubborn")
        await settle()
        task.cancel()
        await settle()
        fut.set_result(None)
        await task

    asyncio.run(main())
    asked = next(e for e in memory if e.kind == "cancel_requested" and e.name == "stubborn")
    [line] = [
        line for line in format_snapshot(from_events(memory, at_ns=asked.ts_ns)).splitlines() if "stubborn" in line
    ]
    waiting = stubborn.__code__.co_firstlineno + 2
    assert "cancelling" in line, line
    assert re.search(rf"cancel requested while waiting at \S*test_graph\.py:{waiting} in stubborn", line), line


def test_tasks_awaiting_each_other_are_roots_shown_as_a_cycle() -> None:
    # Two tasks awaiting each other: nothing else awaits them, yet each is
    # awaited, so neither is a root by the usual rule. (A real pair cannot be
    # cleaned up in a test: cancelling one recurses forever in asyncio itself.)
    snap = Snapshot(
        0,
        (
            PendingFuture(1, True, "a", None, 0, "PENDING", awaited_by=(2,), awaiting=(2,)),
            PendingFuture(2, True, "b", None, 0, "PENDING", awaited_by=(1,), awaiting=(1,)),
        ),
    )
    assert [r.future_id for r in snap.roots()] == [1]
    assert format_snapshot(snap).splitlines()[1:] == [
        "└── (T) #1 a  pending 0.00s",
        "    └── (T) #2 b  pending 0.00s",
        "        └── (T) #1 a (cycle: awaits a task that awaits it)",
    ]


def test_format_snapshot_draws_tasks_and_bare_futures_as_a_tree() -> None:
    snap = Snapshot(
        10_000_000_000,
        (
            PendingFuture(
                1,
                True,
                "main",
                None,
                2_500_000_000,
                "PENDING",
                awaiting=(2,),
                coro="main",
                call_stack=(FrameEntry("/x/app.py", 10, "main"),),
            ),
            PendingFuture(2, False, None, None, 1_000_000_000, "PENDING", awaited_by=(1,)),
            PendingFuture(3, False, "lost", None, 3_000_000_000, "PENDING", last_awaiter_id=1),
        ),
    )
    assert format_snapshot(snap).splitlines() == [
        "3 pending: 1 task, 2 futures",
        "├── (T) #1 main  main()  pending 2.50s",
        "│   └── main /x/app.py:10",
        "│       └── (F) #2  pending 1.00s",
        "└── (F) #3 lost  pending 3.00s  nobody awaits it now (last awaited by #1)",
    ]


def test_format_snapshot_of_nothing_says_so() -> None:
    assert format_snapshot(Snapshot(0, ())) == "nothing pending"


def test_from_events_rebuilds_the_graph_as_it_stood_at_a_moment(memory: MemoryExporter) -> None:
    async def main() -> tuple[int, int]:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(waits_for(fut), name="waiter")
        await settle()
        fut.set_result(None)
        await task
        return fid(fut), fid(task)

    fut_id, task_id = asyncio.run(main())
    resolved = next(e for e in memory.for_future(fut_id) if e.kind == "resolved")
    before = from_events(memory, at_ns=resolved.ts_ns - 1)
    entry = before.get(fut_id)
    assert entry is not None
    assert entry.awaited_by == (task_id,)
    assert from_events(memory).get(fut_id) is None


def test_from_events_keeps_a_futures_label_as_its_name(memory: MemoryExporter) -> None:
    async def main() -> int:
        fut: TracedFuture = TracedFuture(label="db reply")
        fut.set_result(None)
        return int(fut._tf_id)

    fut_id = asyncio.run(main())
    created = memory.created(fut_id)
    assert [f.name for f in from_events(memory, at_ns=created.ts_ns) if f.future_id == fut_id] == ["db reply"]


def test_snapshot_records_are_frozen() -> None:
    entry = PendingFuture(1, False, None, None, 0, "PENDING")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.state = "CANCELLING"  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")
