"""Installation: one loop, process-wide, loop factories; and exact restoration."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

import tracedfuture
from tracedfuture import TracedFuture, TracedTask
from tracedfuture.exporters import MemoryExporter


def make_future_and_task(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[None], asyncio.Task[None]]:
    async def main() -> tuple[asyncio.Future[None], asyncio.Task[None]]:
        return loop.create_future(), asyncio.create_task(asyncio.sleep(0))

    fut, task = loop.run_until_complete(main())
    loop.run_until_complete(task)
    return fut, task


def test_install_on_a_loop_traces_only_that_loop(loop: asyncio.AbstractEventLoop) -> None:
    other = asyncio.new_event_loop()
    try:
        with tracedfuture.install(loop):
            fut, task = make_future_and_task(loop)
            other_fut, other_task = make_future_and_task(other)
        assert type(fut) is TracedFuture
        assert type(task) is TracedTask
        assert not isinstance(other_fut, TracedFuture) and not isinstance(other_task, TracedTask)
    finally:
        other.close()


def test_uninstall_restores_the_loop_exactly(loop: asyncio.AbstractEventLoop) -> None:
    before = dict(vars(loop))
    inst = tracedfuture.install(loop)
    assert vars(loop) != before
    inst.uninstall()
    assert vars(loop) == before
    fut, task = make_future_and_task(loop)
    assert type(fut) is asyncio.Future and type(task) is asyncio.Task


def test_uninstall_keeps_instance_attributes_the_user_had_set(loop: asyncio.AbstractEventLoop) -> None:
    def my_create_future() -> asyncio.Future[None]:
        return asyncio.Future(loop=loop)

    loop.create_future = my_create_future  # type: ignore[method-assign]
    with tracedfuture.install(loop):
        assert isinstance(loop.create_future(), TracedFuture)
    assert loop.create_future is my_create_future


def test_installation_is_a_context_manager_and_uninstall_is_idempotent(loop: asyncio.AbstractEventLoop) -> None:
    with tracedfuture.install(loop) as inst:
        assert "installed" in repr(inst)
    inst.uninstall()
    assert "uninstalled" in repr(inst)


def test_process_wide_install_traces_every_way_of_making_a_loop() -> None:
    memory = MemoryExporter()
    made = []
    with tracedfuture.install(exporters=[memory]):
        asyncio.run(asyncio.sleep(0))
        with asyncio.Runner() as runner:
            runner.run(asyncio.sleep(0))
        for loop in (
            asyncio.new_event_loop(),
            asyncio.SelectorEventLoop(),
            asyncio.DefaultEventLoopPolicy().new_event_loop(),
        ):
            made.append(isinstance(loop.create_future(), TracedFuture))
            loop.close()
    assert made == [True, True, True]
    assert len(memory.tasks()) >= 2
    assert asyncio.BaseEventLoop.__init__.__module__ == "asyncio.base_events"


def test_process_wide_install_traces_the_running_loop() -> None:
    async def main() -> bool:
        with tracedfuture.install():
            traced = isinstance(asyncio.get_running_loop().create_future(), TracedFuture)
        untraced = not isinstance(asyncio.get_running_loop().create_future(), TracedFuture)
        return traced and untraced

    assert asyncio.run(main())


def test_two_installations_on_one_loop_both_receive_its_events(loop: asyncio.AbstractEventLoop) -> None:
    first, second = MemoryExporter(), MemoryExporter()
    with tracedfuture.install(loop, exporters=[first]):
        with tracedfuture.install(loop, exporters=[second]):
            make_future_and_task(loop)
        make_future_and_task(loop)
    assert len(first.futures()) == 2
    assert len(second.futures()) == 1


def test_run_is_a_drop_in_for_asyncio_run() -> None:
    async def main() -> str:
        return "ok"

    async def fails() -> None:
        raise KeyError("k")

    assert tracedfuture.run(main()) == "ok"
    with pytest.raises(KeyError):
        tracedfuture.run(fails())
    assert tracedfuture.run(main(), debug=True) == "ok"


def test_loop_factory_for_runner() -> None:
    memory = MemoryExporter()
    factory = tracedfuture.loop_factory(exporters=[memory])
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(asyncio.sleep(0, "done")) == "done"
    factory.installation.uninstall()  # type: ignore[attr-defined]
    assert memory.tasks()


def test_loop_factory_traces_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    memory = MemoryExporter()
    factory = tracedfuture.loop_factory(base=uvloop.new_event_loop, exporters=[memory])

    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        task = asyncio.create_task(_await(fut))
        await asyncio.sleep(0)  # the task is now waiting on fut
        loop.call_soon(fut.set_result, "uv")
        return await task

    async def _await(fut: asyncio.Future[str]) -> str:
        return await fut

    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(main()) == "uv"
        assert isinstance(runner.get_loop(), uvloop.Loop)
    factory.installation.uninstall()  # type: ignore[attr-defined]
    [fut] = memory.futures()
    assert memory.kinds(fut) == ["created", "awaited", "resolved", "callback_scheduled"]


def test_unknown_option_names_itself_and_the_fix() -> None:
    expected = r"unknown tracedfuture option 'capture_value': did you mean 'capture_values'\?"
    with pytest.raises(TypeError, match=expected):
        tracedfuture.install(capture_value=True)
    with pytest.raises(ValueError, match=r"sample_rate must be between 0\.0 and 1\.0"):
        tracedfuture.install(sample_rate=2)
    with pytest.raises(TypeError, match="needs an export"):
        tracedfuture.install(exporters=[object()])
    assert asyncio.BaseEventLoop.__init__.__module__ == "asyncio.base_events"


def test_a_raising_exporter_changes_nothing_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def export(self, events: object) -> None:
            raise RuntimeError("exporter is down")

    async def main() -> int:
        total = 0
        for i in range(20):
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(fut.set_result, i)
            total += await fut
        return total

    factory = tracedfuture.loop_factory(exporters=[Broken()], flush_interval=0.001, max_failures=3)
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(main()) == sum(range(20))
    inst = factory.installation  # type: ignore[attr-defined]
    inst.flush()
    stats = inst.stats()["exporters"][0]
    assert stats["failures"] >= 1
    assert caplog.text.count("failed in export()") == 1  # reported once
    inst.uninstall()


def test_events_recorded_in_other_threads_are_kept() -> None:
    memory = MemoryExporter()

    def worker(n: int) -> None:
        async def main() -> None:
            for _ in range(50):
                fut = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_soon(fut.set_result, n)
                await fut

        asyncio.run(main())

    with tracedfuture.install(exporters=[memory]):
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    futures = memory.futures()
    assert len(futures) == 200
    for fid in futures:
        assert memory.kinds(fid) == ["created", "awaited", "resolved", "callback_scheduled"]


def test_threadsafe_resolution_wrap_future_and_executor() -> None:
    memory = MemoryExporter()

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, "from thread")).start()
        results: list[object] = [await fut]
        results.append(await loop.run_in_executor(None, sum, [1, 2, 3]))
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            results.append(await asyncio.wrap_future(pool.submit(pow, 2, 5)))
        return results

    assert tracedfuture.run(main(), exporters=[memory]) == ["from thread", 6, 32]
    futures = memory.futures()
    assert len(futures) >= 3
    assert all("resolved" in memory.kinds(fid) for fid in futures)


def test_import_tracedfuture_needs_only_the_standard_library() -> None:
    import subprocess

    code = (
        "import sys, tracedfuture, tracedfuture.exporters, tracedfuture.testing, tracedfuture.trace\n"
        "third = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'structlog', 'opentelemetry', 'uvloop', 'pytest', 'google'})\n"
        "print(third)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("base", ["asyncio", "uvloop"])
def test_sampled_out_futures_and_tasks_are_exactly_the_loops_own(base: str) -> None:
    """Head sampling leaves a future or task untouched: asyncio's own type (or the
    loop's), no subtype; and a loop with no traced task keeps its own call_soon."""
    make: Any = asyncio.new_event_loop
    if base == "uvloop":
        make = pytest.importorskip("uvloop", reason="uvloop is not installed").new_event_loop
    plain = make()
    own_types = make_future_and_task(plain)
    plain.close()
    memory = MemoryExporter()
    factory = tracedfuture.loop_factory(base=make, exporters=[memory], sample_rate=0.0)
    loop = factory()
    try:
        fut, task = make_future_and_task(loop)
        assert (type(fut), type(task)) == (type(own_types[0]), type(own_types[1]))
        assert "call_soon" not in vars(loop)
    finally:
        loop.close()
        factory.installation.uninstall()  # type: ignore[attr-defined]
    assert len(memory) == 0


def test_a_loops_call_soon_is_shadowed_from_its_first_task_asyncio_steps_and_restored_after(
    loop: asyncio.AbstractEventLoop,
) -> None:
    from tracedfuture._core import STEP_REASON

    with tracedfuture.install(loop):
        assert "call_soon" not in vars(loop)
        loop.run_until_complete(_nothing())
        # a task that steps itself records its end there: the loop's call_soon is left alone
        assert ("call_soon" in vars(loop)) is bool(STEP_REASON)
    assert "call_soon" not in vars(loop)


async def _nothing() -> None:
    pass
