"""Deadlocks explained (issue "Point at the program", B4): the futures asyncio's
primitives make are named after the primitive, the holder of each
``asyncio.Lock`` is known, and a cycle of tasks and locks is said in one paragraph.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import tracedfuture
from tests.test_seam import Traced
from tracedfuture._core._events import OP_CREATED
from tracedfuture.graph import format_snapshot, snapshot


@pytest.fixture
def traced(impl: Any) -> Iterator[Traced]:
    t = Traced(impl)
    yield t
    t.close()


def _labels(traced: Traced) -> list[tuple[str | None, str | None]]:
    """(label, maker) of each future created, in order."""
    return [(r[8], r[9]) for r in traced.ring.take() if r[0] == OP_CREATED and not r[4]]


def test_each_primitives_waiter_is_labelled_with_the_primitive_and_its_number(traced: Traced) -> None:
    async def main() -> None:
        lock, sem, event, cond, queue = (
            asyncio.Lock(),
            asyncio.BoundedSemaphore(0),
            asyncio.Event(),
            asyncio.Condition(),
            asyncio.Queue(maxsize=1),
        )
        other = asyncio.Lock()
        await lock.acquire()
        await other.acquire()
        await queue.put(0)
        waiters = [
            asyncio.ensure_future(lock.acquire()),
            asyncio.ensure_future(sem.acquire()),
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(other.acquire()),
            asyncio.ensure_future(queue.put(1)),
        ]

        async def wait_on(cond: asyncio.Condition) -> None:
            async with cond:
                await cond.wait()

        waiters.append(asyncio.ensure_future(wait_on(cond)))
        await asyncio.sleep(0)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    traced.run(main())
    labels = [label for label, _ in _labels(traced) if label is not None]
    # numbered per class, in the order first seen, for the whole process
    kinds = [label.partition("#")[0] for label in labels]
    assert kinds == ["Lock", "BoundedSemaphore", "Event", "Lock", "Queue", "Condition"]
    assert all(label.partition("#")[2].isdigit() for label in labels)
    assert int(labels[3].partition("#")[2]) == int(labels[0].partition("#")[2]) + 1


def test_the_same_primitive_keeps_its_number(traced: Traced) -> None:
    async def main() -> None:
        lock = asyncio.Lock()
        for _ in range(2):
            await lock.acquire()
            waiter = asyncio.ensure_future(lock.acquire())
            await asyncio.sleep(0)
            lock.release()
            await waiter
            lock.release()

    traced.run(main())
    labels = [label for label, _ in _labels(traced) if label is not None]
    assert len(labels) == 2 and labels[0] == labels[1] and labels[0].startswith("Lock#")


def test_a_label_given_by_the_program_and_other_futures_are_left_alone(traced: Traced) -> None:
    async def main() -> None:
        await asyncio.sleep(0.001)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)

    traced.run(main())
    assert [label for label, _ in _labels(traced)] == [None, None]


async def _worker(first: asyncio.Lock, second: asyncio.Lock, started: asyncio.Event) -> None:
    async with first:  # HOLDS
        started.set()
        await asyncio.sleep(0.01)
        async with second:  # WAITS
            pass


def _line(marker: str) -> int:
    source, start = inspect.getsourcelines(_worker)
    return start + next(i for i, text in enumerate(source) if marker in text)


async def _deadlock() -> tuple[Any, asyncio.Task[Any], asyncio.Task[Any]]:
    one, two = asyncio.Lock(), asyncio.Lock()
    a = asyncio.create_task(_worker(one, two, asyncio.Event()), name="worker-a")
    b = asyncio.create_task(_worker(two, one, asyncio.Event()), name="worker-b")
    await asyncio.sleep(0.05)
    snap = snapshot()
    a.cancel()
    b.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    return snap, a, b


def test_snapshot_knows_who_holds_each_lock_and_where_it_was_acquired() -> None:
    snap, _, _ = tracedfuture.run(_deadlock())
    held = {h.task: (h.lock, h.site.lineno) for h in snap.locks if h.held and h.site}
    waits = {h.task: (h.lock, h.site.lineno) for h in snap.locks if not h.held and h.site}
    assert held["worker-a"][1] == held["worker-b"][1] == _line("HOLDS")
    assert waits["worker-a"] == (held["worker-b"][0], _line("WAITS"))
    assert waits["worker-b"] == (held["worker-a"][0], _line("WAITS"))
    worker_a = next(f for f in snap.tasks() if f.name == "worker-a")
    assert [h.lock for h in worker_a.holds] == [held["worker-a"][0]]


def test_a_cycle_of_tasks_and_locks_is_said_in_one_paragraph() -> None:
    snap, _, _ = tracedfuture.run(_deadlock())
    assert len(snap.deadlocks) == 1
    held = {h.task: h.lock for h in snap.locks if h.held}
    text = str(snap.deadlocks[0])
    path = "tests/test_deadlocks.py"
    assert text == (
        f"deadlock: worker-a holds {held['worker-a']} (acquired at {path}:{_line('HOLDS')})"
        f" and waits for {held['worker-b']} ({path}:{_line('WAITS')}),"
        f" held by worker-b (acquired at {path}:{_line('HOLDS')}),"
        f" which waits for {held['worker-a']} ({path}:{_line('WAITS')})"
    )
    assert text in format_snapshot(snap).splitlines()[1]


def test_a_lock_waited_for_without_a_cycle_is_no_deadlock() -> None:
    async def main() -> Any:
        lock = asyncio.Lock()
        async with lock:
            waiter = asyncio.create_task(lock.acquire())
            await asyncio.sleep(0)
            snap = snapshot()
        await waiter
        lock.release()
        return snap

    snap = tracedfuture.run(main())
    assert snap.deadlocks == ()
    assert {h.held for h in snap.locks} == {True, False}


def test_snapshot_text_folds_library_frames_unless_asked() -> None:
    snap, _, _ = tracedfuture.run(_deadlock())
    folded, whole = format_snapshot(snap), format_snapshot(snap, all_frames=True)
    assert "library frames, down to Lock.acquire asyncio/locks.py" in folded
    assert "_ContextManagerMixin.__aenter__" not in folded
    assert "_ContextManagerMixin.__aenter__" in whole


def test_the_lock_futures_name_shows_in_the_tree() -> None:
    snap, _, _ = tracedfuture.run(_deadlock())
    lock_futures = [f for f in snap.futures if not f.is_task and f.name and f.name.startswith("Lock#")]
    assert len(lock_futures) == 2
