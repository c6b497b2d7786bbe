"""Between the hot path and the exporters: sampling, filters, isolation, bounds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import tracedfuture
from tracedfuture import Event, TracedFuture
from tracedfuture._pipeline._drain import RECORDER
from tracedfuture._pipeline._sink import RECORD_BYTES
from tracedfuture.exporters import MemoryExporter
from tracedfuture.trace import read


async def resolve_many(n: int) -> int:
    loop = asyncio.get_running_loop()
    total = 0
    for i in range(n):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        total += await fut
    return total


def test_sample_rate_zero_hands_out_plain_asyncio_objects() -> None:
    memory = MemoryExporter()

    async def main() -> tuple[type, type]:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        return type(fut), type(task)

    assert tracedfuture.run(main(), exporters=[memory], sample_rate=0.0) == (asyncio.Future, asyncio.Task)
    assert len(memory) == 0


def test_sample_rate_traces_about_that_fraction() -> None:
    memory = MemoryExporter()
    assert tracedfuture.run(resolve_many(2000), exporters=[memory], sample_rate=0.25) == sum(range(2000))
    traced = len(memory.futures())
    assert 300 < traced < 700  # 500 expected; far outside only once in ~10^20 runs
    for fid in memory.futures()[:50]:
        assert memory.kinds(fid) == ["created", "awaited", "resolved", "callback_scheduled"]


def test_tail_sampling_keeps_failures_with_their_awaiting_task_and_drops_healthy_futures() -> None:
    memory = MemoryExporter()

    async def fails() -> None:
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_exception, ValueError("bad"))
        await fut

    async def main() -> None:
        await resolve_many(100)
        with pytest.raises(ValueError):
            await asyncio.create_task(fails(), name="failing")

    tracedfuture.run(main(), exporters=[memory], tail=True, slow=60)
    [failing] = memory.named("failing")
    failed_futures = [e.future_id for e in memory.of_kind("failed") if not e.is_task]
    assert len(failed_futures) == 1
    assert memory.kinds(failed_futures[0])[0] == "created"
    assert "failed" in memory.kinds(failing)
    # The healthy futures of resolve_many are not kept.
    assert len(memory.futures()) == 1


def test_tail_sampling_keeps_slow_futures() -> None:
    memory = MemoryExporter()

    async def main() -> None:
        await asyncio.sleep(0.05)  # slow
        await resolve_many(20)  # fast

    tracedfuture.run(main(), exporters=[memory], tail=True, slow=0.03)
    sites = [memory.created(fid).site for fid in memory.futures()]
    assert len(sites) == 1
    assert sites[0] is not None and sites[0].function == "test_tail_sampling_keeps_slow_futures.<locals>.main"


def test_tail_sampling_keeps_futures_still_pending_after_slow() -> None:
    memory = MemoryExporter()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stuck = loop.create_future()
        await asyncio.sleep(0.05)
        stuck.cancel()  # cancelled: kept for that too, but it was already kept as pending

    tracedfuture.run(main(), exporters=[memory], tail=True, slow=0.02)
    assert any(memory.kinds(fid)[:1] == ["created"] for fid in memory.futures())


def test_include_modules_keeps_only_futures_created_there() -> None:
    memory = MemoryExporter()

    async def main() -> None:
        await resolve_many(3)  # created in this module
        await asyncio.sleep(0.001)  # asyncio's future, created in this module too
        await asyncio.get_running_loop().run_in_executor(None, int)  # created in asyncio

    tracedfuture.run(main(), exporters=[memory], include_modules=["json"])
    assert memory.futures() == []
    memory = MemoryExporter()
    tracedfuture.run(main(), exporters=[memory], include_modules=[__name__])
    assert len(memory.futures()) >= 4
    assert all(memory.created(fid).site.filename == __file__ for fid in memory.futures())  # type: ignore[union-attr]


def test_name_filters_see_the_name_a_task_is_given_at_creation() -> None:
    memory = MemoryExporter()

    async def main() -> None:
        await asyncio.gather(
            asyncio.create_task(asyncio.sleep(0), name="worker-1"),
            asyncio.create_task(asyncio.sleep(0), name="worker-2"),
            asyncio.create_task(asyncio.sleep(0), name="janitor"),
        )

    tracedfuture.run(main(), exporters=[memory], include_names=["worker-*"])
    # On 3.11, "created" carries the name asyncio gave first; the task's last name decides.
    assert {memory.for_future(fid)[-1].name for fid in memory.tasks()} == {"worker-1", "worker-2"}
    with pytest.raises(TypeError, match="include_names must be a sequence of strings"):
        tracedfuture.install(include_names="worker-*")


class Slow:
    def __init__(self) -> None:
        self.batches = 0

    def export(self, events: Sequence[Event]) -> None:
        self.batches += 1
        time.sleep(1.0)


class Raising:
    def export(self, events: Sequence[Event]) -> None:
        raise OSError("collector unreachable")


class Nonsense:
    def export(self, events: Sequence[Event]) -> object:
        return object()

    def flush(self) -> str:
        return "not a bool"


async def worst_delay_while_working() -> tuple[int, float]:
    """Resolve futures for ~0.5 s while measuring how late a 1 ms timer fires."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    deadline = loop.time() + 0.5
    total = 0
    while loop.time() < deadline:
        expected = loop.time() + 0.001
        await asyncio.sleep(0.001)
        worst = max(worst, loop.time() - expected)
        total += await resolve_many(50)
    return total % 7, worst


@pytest.mark.parametrize("exporter", [Slow(), Raising(), Nonsense()], ids=["slow", "raising", "nonsense"])
def test_a_bad_exporter_changes_nothing_and_stalls_nothing(exporter: object, caplog: pytest.LogCaptureFixture) -> None:
    plain_result, plain_worst = asyncio.run(worst_delay_while_working())
    factory = tracedfuture.loop_factory(exporters=[exporter], flush_interval=0.01, export_timeout=2.0)
    with asyncio.Runner(loop_factory=factory) as runner:
        traced_result, traced_worst = runner.run(worst_delay_while_working())
    inst = factory.installation  # type: ignore[attr-defined]
    started = time.monotonic()
    inst.uninstall()
    assert time.monotonic() - started < 10  # a stuck exporter is abandoned, not waited on forever
    assert traced_result == plain_result
    # The loop's worst timer lateness stays small whatever the exporter does
    # (printed for the record; the bound is generous for a shared CI machine).
    name = type(exporter).__name__
    print(f"worst 1 ms timer lateness: plain {plain_worst * 1e3:.1f} ms, with {name} {traced_worst * 1e3:.1f} ms")
    assert traced_worst < 0.25
    stats = inst.stats()["exporters"][0]
    if isinstance(exporter, Raising):
        assert stats["failures"] >= 1
        assert caplog.text.count("failed in export()") == 1
    if isinstance(exporter, Slow):
        assert stats["exported"] < inst.stats()["events_delivered"]


def test_a_full_exporter_queue_drops_batches_and_counts_them() -> None:
    exporter = Slow()
    factory = tracedfuture.loop_factory(exporters=[exporter], flush_interval=0.001, export_timeout=0.1)
    inst = factory.installation  # type: ignore[attr-defined]
    inst._sinks[0].max_bytes = 20 * RECORD_BYTES  # a tiny queue, to fill it quickly

    async def main() -> None:
        for _ in range(100):
            await resolve_many(5)
            await asyncio.sleep(0.002)  # the drain thread delivers a batch now and then

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
        inst.flush(timeout=0.1)
        assert inst.stats()["exporters"][0]["dropped"] > 0
    finally:
        inst.uninstall()


def test_a_full_buffer_hands_out_untraced_futures_and_counts_them() -> None:
    memory = MemoryExporter()
    # The smallest ring (64 KiB, some 400 to 600 records): new futures are refused
    # past 7/8 of it, which leaves each admitted future (4 records here, one at a
    # time) room for its whole history.
    factory = tracedfuture.loop_factory(exporters=[memory], max_bytes=64 << 10, flush_interval=60)
    inst = factory.installation  # type: ignore[attr-defined]
    before = inst.stats()["untraced_futures"]
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            assert runner.run(resolve_many(2000)) == sum(range(2000))
        assert inst.stats()["untraced_futures"] > before
        # Every future that was traced has its whole history, or says it has not.
        assert memory.futures()
        for fid in memory.futures():
            kinds = memory.kinds(fid)
            assert kinds == ["created", "awaited", "resolved", "callback_scheduled"] or "incomplete" in kinds, kinds
    finally:
        inst.uninstall()


def test_exporter_capture_hook_result_is_on_created_events() -> None:
    class Capturing(MemoryExporter):
        def capture(self) -> object:
            return ("captured", asyncio.current_task() is not None)

    memory = Capturing()

    async def main() -> None:
        asyncio.get_running_loop().create_future()
        TracedFuture()

    tracedfuture.run(main(), exporters=[memory])
    contexts = [memory.created(fid).context for fid in memory.futures()]
    assert contexts == [("captured", True), ("captured", True)]


def test_a_raising_capture_hook_does_not_break_future_creation() -> None:
    class Broken(MemoryExporter):
        def capture(self) -> object:
            raise RuntimeError("no context")

    memory = Broken()

    async def main() -> int:
        return await resolve_many(3)

    assert tracedfuture.run(main(), exporters=[memory]) == 3
    assert [memory.created(fid).context for fid in memory.futures()] == [None, None, None]


def test_interpreter_exit_flushes_everything(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, tracedfuture
            from tracedfuture.exporters import JsonLinesExporter

            tracedfuture.install(exporters=[JsonLinesExporter({str(trace)!r})], flush_interval=60)

            async def main():
                for i in range(500):
                    fut = asyncio.get_running_loop().create_future()
                    asyncio.get_running_loop().call_soon(fut.set_result, i)
                    await fut

            asyncio.run(main())
            """
        )
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    result = read(trace)
    futures = {e.future_id for e in result.events if e.kind == "created" and not e.is_task}
    assert len(futures) == 500
    assert sum(1 for e in result.events if e.kind == "resolved" and not e.is_task) == 500
    assert result.stats["events_written"] == len(result.events)


def test_tail_sampling_never_converts_healthy_futures() -> None:
    memory = MemoryExporter()
    factory = tracedfuture.loop_factory(exporters=[memory], tail=True, slow=60)
    inst = factory.installation  # type: ignore[attr-defined]

    async def main() -> None:
        for _ in range(30):
            await resolve_many(500)

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    inst.uninstall()
    assert memory.futures() == []
    # 15,000 healthy futures, held raw and forgotten: none was ever an event.
    assert inst.stats()["tail_forgotten_futures"] >= 15_000 - 10_000
    assert inst.stats()["events_delivered"] == 0


def test_tail_sampling_releases_a_cancelled_future_with_the_task_awaiting_it_and_that_tasks_parent() -> None:
    memory = MemoryExporter()

    async def leaf() -> None:
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.cancel, "gave up")
        await fut

    async def middle() -> None:
        await resolve_many(10)  # healthy futures of the same task
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(leaf(), name="leaf")

    async def main() -> None:
        await asyncio.create_task(middle(), name="middle")

    tracedfuture.run(main(), exporters=[memory], tail=True, slow=60)
    [cancelled] = [e.future_id for e in memory.of_kind("cancelled") if not e.is_task]
    kinds = memory.kinds(cancelled)
    assert kinds[0] == "created"
    assert "awaited" in kinds
    cancel = memory.of_kind("cancelled")[0]
    assert cancel.msg == "gave up"
    [leaf_task] = memory.named("leaf")
    assert memory.kinds(leaf_task)[0] == "created"
    assert memory.kinds(leaf_task)[-2:] == ["cancelled", "callback_scheduled"]
    # the healthy futures resolve_many made are not there
    assert len(memory.futures()) == 1


def test_an_inline_exporter_runs_on_the_drain_thread_and_is_still_isolated(caplog: pytest.LogCaptureFixture) -> None:
    import threading

    class InlineRaising:
        inline = True

        def __init__(self) -> None:
            self.threads: set[str] = set()

        def export(self, events: Sequence[Event]) -> None:
            self.threads.add(threading.current_thread().name)
            raise RuntimeError("inline exporter is broken")

    async def main() -> int:
        total = 0
        for _ in range(20):
            total += await resolve_many(10)
            await asyncio.sleep(0.005)  # the drain thread delivers meanwhile
        return total

    exporter = InlineRaising()
    factory = tracedfuture.loop_factory(exporters=[exporter], flush_interval=0.001)
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(main()) == 20 * sum(range(10))
    inst = factory.installation  # type: ignore[attr-defined]
    inst.uninstall()
    assert inst.stats()["exporters"][0]["failures"] >= 1
    assert caplog.text.count("failed in export()") == 1
    # Called by whoever drains: the drain thread while the loop runs (and the thread
    # that closes the loop or uninstalls, for what is left), never a thread of its own.
    assert "tracedfuture-drain" in exporter.threads
    assert not any(name.startswith("tracedfuture-export-") for name in exporter.threads), exporter.threads


def test_a_shorter_flush_interval_applies_at_once_after_a_long_one() -> None:
    slow_inst = tracedfuture.install(asyncio.new_event_loop(), flush_interval=60)
    try:
        time.sleep(0.05)  # the drain thread is now waiting out 60 s
        seen: list[Event] = []

        class Collect:
            inline = True

            def export(self, events: Sequence[Event]) -> None:
                seen.extend(events)

        loop = asyncio.new_event_loop()
        with tracedfuture.install(loop, exporters=[Collect()], flush_interval=0.01):
            loop.run_until_complete(resolve_many(5))
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)  # no flush(): the drain thread must deliver by itself
            assert seen, "the new 0.01 s interval did not wake the drain thread"
        loop.close()
    finally:
        slow_inst.uninstall()


class _Gate(threading.Event):
    """A stuck exporter's gate, which also tells when the exporter waits at it:
    its sink's thread has taken its first batch, and what the queue holds from
    then on stays there (else a thread slow to start takes it later, and the
    room that frees lets the drain take the ring again)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def test_a_route_whose_exporters_are_all_stuck_is_left_in_its_ring() -> None:
    """A stuck exporter: once its queue is full, the drain takes nothing more
    (no copy, no shedding per record) and holds the ring: no new future is
    traced; at uninstall what was left is taken and counted where it is
    dropped."""
    gate = _Gate()

    class Blocked:
        def export(self, events: Sequence[Event]) -> None:
            gate.wait()

    factory = tracedfuture.loop_factory(
        exporters=[Blocked()], max_memory=1 << 20, max_bytes=256 * 1024, flush_interval=60, export_timeout=0.2
    )
    inst = factory.installation  # type: ignore[attr-defined]
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            # Runs of some 1,200 records, below the 7/8 of the ring (1,500 to 1,900
            # records) that wakes the drain thread: each is taken whole, here,
            # and the one left in the ring once the queue is full is made of new
            # futures. (A run that overfilled the ring was partly taken by the
            # drain thread while it went on, and what it left could fit the
            # queue's reserve for the futures already queued.)
            for _ in range(10):  # fills the queue
                runner.run(resolve_many(300))
                RECORDER.drain(only=inst)
                assert gate.waiting.wait(10)  # the exporter holds its first batch: the queue is the rest
            RECORDER.drain(only=inst)  # full: nothing taken from it from now on
            shed = inst.stats()["exporters"][0]["dropped"]
            for _ in range(20):
                runner.run(resolve_many(500))
                RECORDER.drain(only=inst)
            stats = inst.stats()
            assert stats["exporters"][0]["dropped"] == shed  # nothing more taken to be shed
            assert stats["untraced_futures"] > 0  # the ring was held: new futures were left untraced
    finally:
        inst.uninstall()
        gate.set()
    assert inst.stats()["exporters"][0]["dropped"] > shed  # at uninstall, the ring's records were counted


def test_a_full_queue_holds_the_ring_until_it_has_room_again() -> None:
    """While every exporter's queue is full, new futures go untraced at once
    (long before the ring itself would refuse them); the queued futures' later
    records wait in the ring; once the exporter takes its queue, the drain
    takes the ring again and new futures are traced: whole histories, none cut."""
    gate = _Gate()
    seen: list[Event] = []

    class Blocked:
        def export(self, events: Sequence[Event]) -> None:
            gate.wait()
            seen.extend(events)

    factory = tracedfuture.loop_factory(
        exporters=[Blocked()], max_memory=1 << 20, max_bytes=64 << 20, flush_interval=60, export_timeout=5
    )
    inst = factory.installation  # type: ignore[attr-defined]
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            for _ in range(1_000):  # the queue (1 MiB) fills within some 10 rounds
                runner.run(resolve_many(500))
                RECORDER.drain(only=inst)
                assert gate.waiting.wait(10)  # the exporter holds its first batch: the queue is the rest
                if inst.stats()["untraced_futures"]:
                    break
            else:
                pytest.fail(f"the ring was never held: {inst.stats()}")
            ring = RECORDER.routes_of(inst)[0].ring
            assert ring.stats()["written"] - ring.stats()["taken"] < ring.capacity // 8  # far from full
            runner.run(resolve_many(500))
            untraced = inst.stats()["untraced_futures"]
            assert untraced >= 500  # held: every new future
            gate.set()
            assert inst.flush(timeout=30)
            runner.run(resolve_many(500))  # room again: traced
            assert inst.stats()["untraced_futures"] == untraced
            assert inst.flush(timeout=30)
    finally:
        inst.uninstall()
        gate.set()
    ids = {e.future_id for e in seen if e.kind == "created"}
    assert ids and ids == {e.future_id for e in seen if e.kind == "resolved"}  # whole histories
    assert not any(e.kind == "collected" and e.incomplete for e in seen)


def _held_until(gate: _Gate) -> tuple[Any, Any]:
    """(a loop factory, its installation) whose only exporter blocks until
    ``gate`` is set: a 1 MiB queue, drained only when the drain is woken or
    asked (flush_interval is a minute)."""

    class Blocked:
        def export(self, events: Sequence[Event]) -> None:
            gate.wait()

    factory = tracedfuture.loop_factory(
        exporters=[Blocked()], max_memory=1 << 20, max_bytes=64 << 20, flush_interval=60, export_timeout=5
    )
    return factory, factory.installation  # type: ignore[attr-defined]


def _run_until_held(runner: asyncio.Runner, inst: Any, gate: _Gate) -> None:
    while not inst.stats()["untraced_futures"]:
        runner.run(resolve_many(500))
        RECORDER.drain(only=inst)
        assert gate.waiting.wait(10)  # the exporter holds its first batch: the queue is the rest


def test_a_queue_with_room_again_wakes_the_drain() -> None:
    """A held ring is taken again as soon as the exporter has emptied its full
    queue, not at the next flush_interval (a minute here) nor only once the ring
    has refused a future: the records that waited in it go out."""
    gate = _Gate()
    factory, inst = _held_until(gate)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            waiting = runner.get_loop().create_future()  # traced: its result is recorded while the ring is held
            _run_until_held(runner, inst, gate)
            ring = RECORDER.routes_of(inst)[0].ring
            waiting.set_result(None)
            assert ring.stats()["written"] > ring.stats()["taken"]
            gate.set()
            deadline = time.monotonic() + 10
            while ring.stats()["written"] > ring.stats()["taken"] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ring.stats()["written"] == ring.stats()["taken"]
    finally:
        inst.uninstall()
        gate.set()


def test_a_flush_leaves_no_ring_held_behind_it() -> None:
    """The drain thread may hold the ring while flush() waits (the queue is still
    full at that moment); once flush() returns True the queues are empty, and
    the next future is traced, not refused for a queue that has room."""
    gate = _Gate()
    factory, inst = _held_until(gate)
    sink = inst._sinks[0]
    flush = sink.flush

    def flush_after_the_drain_thread(deadline: float | None) -> bool:
        RECORDER.drain(only=inst)  # what the drain thread does if it wakes now: holds the ring
        gate.set()
        return flush(deadline)

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            _run_until_held(runner, inst, gate)
            sink.flush = flush_after_the_drain_thread
            assert inst.flush(timeout=30)
            untraced = inst.stats()["untraced_futures"]
            runner.run(resolve_many(10))
            assert inst.stats()["untraced_futures"] == untraced
    finally:
        inst.uninstall()
        gate.set()
