"""The event vocabulary: what each lifecycle point records, and in what order."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys

import pytest

import tracedfuture
from tracedfuture import Event, TracedFuture, TracedTask
from tracedfuture.exporters import MemoryExporter
from tracedfuture.testing import capture_events


def run(coro, **options):  # type: ignore[no-untyped-def]
    memory = MemoryExporter()
    result = tracedfuture.run(coro, exporters=[memory], **options)
    return memory, result


def only(memory: MemoryExporter, kind: str, future_id: int) -> Event:
    [event] = [e for e in memory.for_future(future_id) if e.kind == kind]
    return event


def test_awaited_future_records_created_awaited_resolved_scheduled_in_order() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "the result")
        return await fut

    memory, result = run(main())
    assert result == "the result"
    [main_task] = memory.tasks()[:1]
    [fut] = memory.futures()
    assert memory.kinds(fut) == ["created", "awaited", "resolved", "callback_scheduled"]
    awaited = only(memory, "awaited", fut)
    scheduled = only(memory, "callback_scheduled", fut)
    assert awaited.awaiter_id == main_task == awaited.task_id
    assert scheduled.awaiter_id == main_task
    assert scheduled.callback == "Task.task_wakeup"
    assert only(memory, "resolved", fut).result_type == "str"


def test_every_event_has_the_documented_fields() -> None:
    async def main() -> None:
        await asyncio.sleep(0)

    memory, _ = run(main())
    for event in memory:
        assert event.kind in tracedfuture.KINDS
        assert isinstance(event.future_id, int) and event.future_id > 0
        assert isinstance(event.ts_ns, int)
        assert event.task_id is None or isinstance(event.task_id, int)


def test_timestamps_are_monotonic_per_future() -> None:
    async def main() -> None:
        for _ in range(5):
            await asyncio.sleep(0.001)

    memory, _ = run(main())
    for fid in memory.futures() + memory.tasks():
        stamps = [e.ts_ns for e in memory.for_future(fid)]
        assert stamps == sorted(stamps)


def test_future_ids_are_unique_and_never_reused() -> None:
    async def main() -> None:
        for _ in range(50):
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            del fut
            gc.collect()

    memory, _ = run(main())
    ids = [e.future_id for e in memory.of_kind("created")]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)


def test_created_names_site_task_and_thread() -> None:
    async def main() -> None:
        asyncio.get_running_loop().create_future()  # line under test

    memory, _ = run(main())
    [fut] = memory.futures()
    created = memory.created(fut)
    assert created.site is not None
    assert created.site.filename == __file__
    assert created.site.function == "test_created_names_site_task_and_thread.<locals>.main"
    assert created.task_id == memory.tasks()[0]
    assert isinstance(created.thread_id, int)


def test_created_site_skips_asyncio_frames() -> None:
    async def main() -> None:
        await asyncio.sleep(0.001)  # asyncio.sleep makes the future

    memory, _ = run(main())
    [fut] = memory.futures()
    site = memory.created(fut).site
    assert site is not None and site.filename == __file__


def test_task_created_records_coro_parent_and_name() -> None:
    async def child() -> int:
        return 1

    async def main() -> int:
        return await asyncio.create_task(child(), name="the-child")

    memory, result = run(main())
    assert result == 1
    parent, child_id = memory.tasks()[:2]
    created = memory.created(child_id)
    assert created.is_task
    assert created.coro == "test_task_created_records_coro_parent_and_name.<locals>.child"
    assert created.parent_id == parent
    # On 3.11 asyncio names the task after creating it: the rename is recorded,
    # and every later event carries the real name.
    later = [e for e in memory.for_future(child_id) if e.kind not in ("created", "renamed")]
    assert later and all(e.name == "the-child" for e in later)


def test_unnamed_tasks_are_recorded_with_the_names_get_name_gives_them_in_order() -> None:
    # 3.12+ formats an unnamed task's "Task-<n>" only when asked: the record must
    # carry the same text, and asking for it must not shift the numbering.
    async def child() -> None:
        pass

    async def main() -> list[str]:
        tasks = [asyncio.create_task(child()) for _ in range(3)]
        await asyncio.gather(*tasks)
        return [task.get_name() for task in tasks]

    memory, names = run(main())
    numbers = [int(name.removeprefix("Task-")) for name in names]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    assert [memory.created(task).name for task in memory.tasks()[1:4]] == names


def test_set_name_is_recorded_as_renamed() -> None:
    async def main() -> None:
        asyncio.current_task().set_name("renamed-main")  # type: ignore[union-attr]

    memory, _ = run(main())
    main_id = memory.tasks()[0]
    renamed = only(memory, "renamed", main_id)
    assert renamed.name == "renamed-main"


def test_second_set_result_raises_and_records_nothing() -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(1)
        with pytest.raises(asyncio.InvalidStateError):
            fut.set_result(2)
        with pytest.raises(asyncio.InvalidStateError):
            fut.set_exception(ValueError())
        assert not fut.cancel()

    memory, _ = run(main())
    [fut] = memory.futures()
    assert memory.kinds(fut) == ["created", "resolved"]


def test_failed_records_exception_type_without_its_message_by_default() -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(Boom("password=hunter2"))
        with pytest.raises(Boom):
            await fut

    memory, _ = run(main())
    failed = only(memory, "failed", memory.futures()[0])
    assert (
        failed.exc_type == f"{__name__}.test_failed_records_exception_type_without_its_message_by_default.<locals>.Boom"
    )
    assert failed.exc_msg is None
    assert all("hunter2" not in repr(e) for e in memory)


def test_capture_values_records_redacted_result_and_message() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ok = loop.create_future()
        ok.set_result({"token": "s3cret"})
        bad = loop.create_future()
        bad.set_exception(ValueError("token s3cret"))
        bad.exception()

    memory, _ = run(main(), capture_values=True, redact=lambda text: text.replace("s3cret", "***"))
    resolved, failed = memory.of_kind("resolved")[0], memory.of_kind("failed")[0]
    assert resolved.value == "{'token': '***'}"
    assert failed.exc_msg == "token ***"


def test_a_repr_that_raises_does_not_break_the_program() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    async def main() -> object:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(Hostile())
        return await fut

    memory, result = run(main(), capture_values=True)
    assert isinstance(result, Hostile)
    assert memory.of_kind("resolved")[0].value == f"<unrepresentable {Hostile.__qualname__}>"


def test_cancel_records_msg_and_canceller() -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.cancel(msg="x")

    memory, _ = run(main())
    main_id = memory.tasks()[0]
    cancelled = only(memory, "cancelled", memory.futures()[0])
    assert cancelled.msg == "x"
    assert cancelled.canceller_id == main_id
    assert cancelled.canceller is not None and "main" in cancelled.canceller


def test_cancelled_task_records_msg_and_canceller_from_its_cancel_request() -> None:
    async def sleeper() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel("shutting down")
        with pytest.raises(asyncio.CancelledError):
            await task

    memory, _ = run(main())
    main_id, sleeper_id = memory.tasks()[:2]
    requested = only(memory, "cancel_requested", sleeper_id)
    cancelled = only(memory, "cancelled", sleeper_id)
    assert requested.msg == cancelled.msg == "shutting down"
    assert requested.canceller_id == cancelled.canceller_id == main_id


def test_wait_for_timeout_names_asyncio_and_the_user_code_as_canceller() -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)

    memory, _ = run(main())
    cancelled = [e for e in memory.of_kind("cancelled") if not e.is_task]
    assert cancelled, memory.kinds()
    if sys.version_info < (3, 12):
        # 3.11's wait_for cancels from the waiting task, through _cancel_and_wait.
        expected = ("_cancel_and_wait (asyncio/tasks.py:", "<locals>.main (")
    else:
        # 3.12+'s wait_for is asyncio.timeout: its timer callback cancels.
        expected = ("Timeout._on_timeout (asyncio/timeouts.py:", "")
    assert any(
        e.canceller and all(part in e.canceller for part in expected)
        for e in memory.of_kind("cancel_requested", "cancelled")
    )


def test_task_group_cancellation_names_the_task_group() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    async def waits() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(ExceptionGroup):
            async with asyncio.TaskGroup() as group:
                group.create_task(fails())
                group.create_task(waits(), name="waiter")

    memory, _ = run(main())
    [waiter] = memory.named("waiter")
    request = only(memory, "cancel_requested", waiter)
    assert request.canceller is not None and "TaskGroup" in request.canceller
    assert memory.kinds(waiter)[-2:] == ["cancelled", "callback_scheduled"]


def test_callbacks_are_named_and_removed_ones_are_not_scheduled() -> None:
    def first(fut: asyncio.Future[int]) -> None:
        pass

    def second(fut: asyncio.Future[int], extra: int) -> None:
        pass

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(first)
        fut.add_done_callback(functools.partial(second, extra=1))
        assert fut.remove_done_callback(first) == 1
        fut.set_result(1)
        await asyncio.sleep(0)

    memory, _ = run(main())
    fut = memory.futures()[0]
    events = memory.for_future(fut)
    assert [(e.kind, e.callback) for e in events if e.callback] == [
        ("callback_added", "test_callbacks_are_named_and_removed_ones_are_not_scheduled.<locals>.first"),
        ("callback_added", "test_callbacks_are_named_and_removed_ones_are_not_scheduled.<locals>.second"),
        ("callback_removed", "test_callbacks_are_named_and_removed_ones_are_not_scheduled.<locals>.first"),
        ("callback_scheduled", "test_callbacks_are_named_and_removed_ones_are_not_scheduled.<locals>.second"),
    ]


def test_a_callback_removed_after_the_first_one_is_not_scheduled() -> None:
    # Once its first callback is removed, asyncio's _callbacks is the future's
    # own list, which the next removal changes in place.
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(print)
        fut.add_done_callback(repr)
        fut.add_done_callback(str)
        assert fut.remove_done_callback(print) == 1
        assert fut.remove_done_callback(repr) == 1
        fut.set_result(1)
        await asyncio.sleep(0)

    memory, _ = run(main())
    events = memory.for_future(memory.futures()[0])
    assert [(e.kind, e.callback) for e in events if e.callback] == [
        ("callback_added", "print"),
        ("callback_added", "repr"),
        ("callback_added", "str"),
        ("callback_removed", "print"),
        ("callback_removed", "repr"),
        ("callback_scheduled", "str"),
    ]


def test_callback_added_to_a_done_future_is_scheduled_at_once() -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(1)
        fut.add_done_callback(print)
        await asyncio.sleep(0)

    memory, _ = run(main())
    assert memory.kinds(memory.futures()[0]) == ["created", "resolved", "callback_added", "callback_scheduled"]


def test_abandoned_future_reports_site_and_age() -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        del fut
        gc.collect()

    memory, _ = run(main())
    abandoned = only(memory, "abandoned", memory.futures()[0])
    assert abandoned.site is not None and abandoned.site.filename == __file__
    assert abandoned.age_ns is not None and abandoned.age_ns >= 0


def test_unretrieved_exception_is_reported_and_asyncio_still_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(KeyError("k"))
        del fut
        gc.collect()

    memory, _ = run(main())
    unretrieved = only(memory, "unretrieved", memory.futures()[0])
    assert unretrieved.exc_type == "KeyError"
    assert "exception was never retrieved" in caplog.text


def test_task_destroyed_pending_is_abandoned_and_asyncio_still_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    async def forever() -> None:
        await asyncio.get_running_loop().create_future()

    async def main() -> None:
        asyncio.create_task(forever(), name="lost")
        await asyncio.sleep(0)

    memory = MemoryExporter()
    with tracedfuture.install(exporters=[memory]):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        del loop
        gc.collect()
    [lost] = memory.named("lost")
    assert "abandoned" in memory.kinds(lost)
    assert "Task was destroyed but it is pending!" in caplog.text


def test_task_failure_is_recorded_without_retrieving_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise ValueError("never retrieved")

    async def main() -> None:
        task = asyncio.create_task(boom())
        await asyncio.sleep(0.01)
        del task
        gc.collect()

    memory, _ = run(main())
    [boom_id] = memory.tasks()[1:2]
    assert "failed" in memory.kinds(boom_id)
    # Recording read the exception without marking it retrieved: asyncio still complains.
    assert "Task exception was never retrieved" in caplog.text
    assert "unretrieved" in memory.kinds(boom_id)


def test_capture_events_inside_a_running_loop_traces_that_loop() -> None:
    async def main() -> list[str]:
        with capture_events() as events:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
        return [e.kind for e in events]

    assert asyncio.run(main()) == ["created", "resolved"]


def test_capture_events_outside_a_loop_traces_every_loop_created_in_the_block() -> None:
    with capture_events() as events:
        asyncio.run(asyncio.sleep(0))
        asyncio.run(asyncio.sleep(0))
    assert len(events.tasks()) >= 2
    assert not isinstance(asyncio.new_event_loop().create_future(), TracedFuture)


def test_traced_future_made_directly_is_traced_on_a_traced_loop() -> None:
    async def main() -> None:
        fut = TracedFuture(label="db reply")
        fut.set_result(1)

    memory, _ = run(main())
    [fut] = memory.futures()
    assert memory.created(fut).name == "db reply"


def test_a_label_is_text() -> None:
    class Name(str):
        pass

    async def main() -> None:
        with pytest.raises(TypeError, match=r"^TracedFuture\(label=...\): label must be a str or None, not int$"):
            TracedFuture(label=1)  # type: ignore[arg-type]
        TracedFuture(label=Name("reply")).set_result(None)

    memory, _ = run(main())
    [fut] = memory.futures()
    assert memory.created(fut).name == "reply"


def test_traced_task_made_directly_is_traced() -> None:
    async def main() -> int:
        async def child() -> int:
            return 7

        return await TracedTask(child(), name="direct")

    memory, result = run(main())
    assert result == 7
    [direct] = memory.named("direct")
    assert memory.kinds(direct)[0] == "created"
    assert "resolved" in memory.kinds(direct)


def test_asyncio_timeout_names_the_timer_callback_as_canceller() -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)

    memory, _ = run(main())
    main_id = memory.tasks()[0]
    request = only(memory, "cancel_requested", main_id)
    assert request.canceller is not None and request.canceller.startswith("Timeout._on_timeout (asyncio/timeouts.py:")
    assert request.canceller_id is None  # a timer callback, not a task, cancelled it
