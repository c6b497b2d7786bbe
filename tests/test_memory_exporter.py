"""MemoryExporter: reading it delivers what was recorded, and waits for nothing else."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Sequence

import pytest

import tracedfuture
from tracedfuture import Event
from tracedfuture.exporters import MemoryExporter


class _Stuck:
    """An exporter that blocks in export() until released (a collector that hangs)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, events: Sequence[Event], /) -> None:
        self.entered.set()
        self.release.wait(60)


def test_reading_sees_what_already_happened_without_an_explicit_flush() -> None:
    memory = MemoryExporter()
    loop = asyncio.new_event_loop()
    try:
        with tracedfuture.install(loop, exporters=[memory]):
            loop.run_until_complete(asyncio.sleep(0))
            assert "created" in memory.kinds()
            assert len(memory) == len(list(memory))
    finally:
        loop.close()


def test_a_read_does_not_wait_for_another_installations_stuck_exporter() -> None:
    stuck = _Stuck()
    memory = MemoryExporter()
    slow_loop, loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    slow = tracedfuture.install(slow_loop, exporters=[stuck], export_timeout=30)
    mine = tracedfuture.install(loop, exporters=[memory])
    try:
        slow_loop.run_until_complete(asyncio.sleep(0))
        flusher = threading.Thread(target=slow.flush, daemon=True)
        flusher.start()  # delivers to the stuck exporter, which blocks
        assert stuck.entered.wait(30)
        slow_loop.run_until_complete(asyncio.sleep(0))  # more for it, queued behind the block
        loop.run_until_complete(asyncio.sleep(0, "mine"))

        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(len(memory)), daemon=True)
        reader.start()
        # The old read waited 10 s for every exporter of every installation;
        # this one waits for no exporter but itself, so it ends while the other
        # is still blocked (the bound is a hang detector, not a speed check).
        reader.join(8)
        assert not reader.is_alive()
        assert not stuck.release.is_set()
        assert seen
        assert seen[0] > 0
        assert len(memory.tasks()) == 1  # this loop's task, none of the other loop's
    finally:
        stuck.release.set()
        mine.uninstall()
        slow.uninstall()
        loop.close()
        slow_loop.close()


def test_two_memory_exporters_of_two_installations_each_get_their_own_loops_events() -> None:
    first, second = MemoryExporter(), MemoryExporter()
    loop1, loop2 = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        with tracedfuture.install(loop1, exporters=[first]), tracedfuture.install(loop2, exporters=[second]):
            loop1.run_until_complete(asyncio.sleep(0))
            assert len(first.tasks()) == 1
            assert second.tasks() == []
    finally:
        loop1.close()
        loop2.close()


def test_kept_events_cost_the_collector_nothing() -> None:
    # Event is a tuple subclass, which the collector never untracks by itself: the
    # compiled core untracks an event of atoms (and its Site) as it makes it, so
    # that a program keeping a million events does not traverse them at every
    # collection. An event that holds a tracked object (a context) stays tracked.
    if tracedfuture.IMPLEMENTATION != "c":
        pytest.skip("the pure-Python reference makes events in Python, tracked as Python makes them")
    memory = MemoryExporter()

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, 1)
        await fut

    tracedfuture.run(main(), exporters=[memory])
    events = list(memory)
    assert events
    assert not [e for e in events if gc.is_tracked(e)]
    assert not [e.site for e in events if e.site is not None and gc.is_tracked(e.site)]
