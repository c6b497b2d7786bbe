"""Indistinguishable from asyncio: reprs, task factories, errors, debug mode."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import traceback
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import tracedfuture
from tracedfuture import TracedFuture, TracedTask
from tracedfuture.exporters import MemoryExporter


def both(scenario: Callable[[], Coroutine[Any, Any, list[str]]]) -> tuple[list[str], list[str]]:
    """Run a scenario on a plain loop and on a traced loop; return both results."""
    plain = asyncio.run(scenario())
    traced = tracedfuture.run(scenario(), exporters=[MemoryExporter()])
    return plain, traced


def normalize(text: str) -> str:
    # Task numbers and addresses differ between two runs of the same program.
    text = re.sub(r"Task-\d+", "Task-N", text)
    return re.sub(r"0x[0-9a-f]+", "0x...", text)


def test_future_reprs_are_asyncios() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        out = []
        fut = loop.create_future()
        out.append(repr(fut))
        fut.add_done_callback(print)
        out.append(repr(fut))
        fut.set_result("x" * 100)
        out.append(repr(fut))
        failed = loop.create_future()
        failed.set_exception(ValueError("boom"))
        out.append(repr(failed))
        failed.exception()
        cancelled = loop.create_future()
        cancelled.cancel()
        out.append(repr(cancelled))
        out.append(type(fut).__name__)
        return out

    plain, traced = both(scenario)
    assert traced == plain
    assert traced[0] == "<Future pending>"


def test_task_reprs_are_asyncios() -> None:
    async def scenario() -> list[str]:
        async def work() -> None:
            await asyncio.sleep(0.01)

        out = []
        task = asyncio.create_task(work(), name="worker")
        out.append(repr(task))
        await asyncio.sleep(0)
        out.append(repr(task))
        task.add_done_callback(print)
        out.append(repr(task))
        await task
        out.append(repr(task))
        out.append(repr(asyncio.current_task()))
        return out

    plain, traced = both(scenario)
    assert [normalize(t) for t in traced] == [normalize(p) for p in plain]
    assert "wait_for=<Future pending cb=[Task.task_wakeup()]>" in traced[1]


def test_a_task_waiting_on_a_future_wakes_up_exactly_like_asyncio() -> None:
    # The compiled core hands a task waiting on a traced future a wakeup of its
    # own (asyncio's, without fut.result() looked up by name): what the program
    # sees of it and what the coroutine gets back must be asyncio's.
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        out: list[str] = []

        async def wait(fut: asyncio.Future[Any]) -> str:
            try:
                return f"result {await fut!r}"
            except BaseException as exc:
                frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
                return f"{type(exc).__name__} {exc.args!r} {frames} context={type(exc.__context__).__name__}"

        def fail(fut: asyncio.Future[Any]) -> None:
            fut.set_exception(ValueError("boom"))

        for outcome in ("result", "exception", "cancel", "cancel_msg", "task"):
            fut: asyncio.Future[Any] = (
                asyncio.ensure_future(asyncio.sleep(0, "slept")) if outcome == "task" else loop.create_future()
            )
            waiter = asyncio.create_task(wait(fut))
            await asyncio.sleep(0)
            cbs = fut._callbacks or []
            out.append(repr(fut))
            out.append(repr([(type(cb).__name__, cb.__qualname__, cb.__self__ is waiter) for cb, _ in cbs]))
            if outcome == "result":
                fut.set_result(42)
            elif outcome == "exception":
                fail(fut)
            elif outcome == "cancel":
                fut.cancel()
            elif outcome == "cancel_msg":
                fut.cancel("why")
            out.append(await waiter)
            out.append(repr(fut))
        return out

    plain, traced = both(scenario)
    assert [normalize(t) for t in traced] == [normalize(p) for p in plain]
    assert "[('builtin_function_or_method', 'Task.task_wakeup', True)]" in traced
    assert "result 42" in traced


def test_hidden_completion_callback_is_not_visible() -> None:
    async def scenario() -> list[str]:
        task = asyncio.create_task(asyncio.sleep(0))
        callbacks = task._callbacks
        removed = task.remove_done_callback(print)
        await task
        return [repr(callbacks), str(removed)]

    plain, traced = both(scenario)
    assert traced == plain == ["None", "0"]


def test_done_callbacks_run_in_registration_order() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []
        task = asyncio.create_task(asyncio.sleep(0))
        for n in range(3):
            task.add_done_callback(lambda _, n=n: order.append(f"task cb {n}"))
        fut = asyncio.get_running_loop().create_future()
        for n in range(3):
            fut.add_done_callback(lambda _, n=n: order.append(f"fut cb {n}"))
        asyncio.get_running_loop().call_soon(order.append, "call_soon")
        fut.set_result(None)
        await task
        await asyncio.sleep(0)
        return order

    plain, traced = both(scenario)
    assert traced == plain


def test_user_task_factory_is_seen_and_used_untouched() -> None:
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def child() -> int:
        return 3

    async def main() -> tuple[Any, int, str]:
        loop = asyncio.get_running_loop()
        before = loop.get_task_factory()
        loop.set_task_factory(factory)
        task = asyncio.create_task(child(), name="made-by-user")
        seen = loop.get_task_factory()
        result = await task
        loop.set_task_factory(None)
        return (before, seen is factory, result), type(task) is asyncio.Task, task.get_name()  # type: ignore[return-value]

    (before, seen_is_factory, result), plain_task, name = tracedfuture.run(main())  # type: ignore[misc]
    assert before is None and seen_is_factory and result == 3
    assert plain_task and name == "made-by-user"
    assert made == ["test_user_task_factory_is_seen_and_used_untouched.<locals>.child"]


def test_task_factory_set_before_install_is_chained() -> None:
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append("factory")
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop = asyncio.new_event_loop()
    try:
        loop.set_task_factory(factory)
        with tracedfuture.install(loop):
            assert loop.get_task_factory() is factory
            loop.run_until_complete(loop.create_task(asyncio.sleep(0)))
        assert loop.get_task_factory() is factory
    finally:
        loop.close()
    assert made == ["factory"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
def test_eager_task_factory_gives_traced_eager_tasks() -> None:
    memory = MemoryExporter()

    async def child() -> int:
        return 5  # finishes in its first (eager) step

    async def main() -> int:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        task = asyncio.create_task(child(), name="eager")
        assert task.done()
        return await task

    assert tracedfuture.run(main(), exporters=[memory]) == 5
    [eager] = memory.named("eager")
    assert memory.kinds(eager)[0] == "created"
    assert "resolved" in memory.kinds(eager)


def test_set_result_on_a_traced_task_fails_like_asyncio() -> None:
    async def main() -> list[str]:
        task = asyncio.create_task(asyncio.sleep(0))
        errors = []
        for call in (lambda: task.set_result(1), lambda: task.set_exception(ValueError())):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        await task
        return errors

    plain = asyncio.run(main())
    traced = tracedfuture.run(main())
    assert (
        traced
        == plain
        == ["Task does not support set_result operation", "Task does not support set_exception operation"]
    )


def test_traced_future_methods_called_on_a_task_behave_like_asyncios() -> None:
    # CPython's tests call Future.set_result(task, ...): no zero-argument super() trap.
    async def main() -> tuple[object, object]:
        async def forever() -> None:
            await asyncio.sleep(10)

        plain_task = asyncio.Task(forever())
        traced_task = TracedTask(forever())
        await asyncio.sleep(0)
        asyncio.Future.set_result(plain_task, "forced")
        TracedFuture.set_result(traced_task, "forced")
        outcome = (plain_task.done(), traced_task.done())
        for task in (plain_task, traced_task):
            task.cancel()
        await asyncio.sleep(0)
        return outcome, (TracedFuture.cancel(traced_task), asyncio.Future.cancel(plain_task))

    with tracedfuture.install():
        assert asyncio.run(main()) == ((True, True), (False, False))


DEBUG_PROGRAM = """
import asyncio, contextlib, gc, sys, traceback
import tracedfuture

async def forever():
    await asyncio.get_running_loop().create_future()

async def main():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    print(repr(fut))
    print("".join(traceback.format_list(fut._source_traceback)))
    task = asyncio.create_task(asyncio.sleep(0))
    print(repr(task))
    print("".join(traceback.format_list(task._source_traceback)))
    await task
    print(repr(task))
    failed = loop.create_future()
    failed.set_exception(ValueError("nobody looks at me"))
    print(repr(failed))
    del failed
    # A collection between the coroutine and its task would put the task first in
    # the final collection, and its repr would say "running" instead of "done"
    # (plain asyncio too): tracing allocates, so the program fixes the phase.
    gc.collect()
    asyncio.create_task(forever(), name="left behind")
    await asyncio.sleep(0)

def run():
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    loop.run_until_complete(main())
    loop.close()
    del loop
    gc.collect()

traced = sys.argv[1] == "traced"
with (tracedfuture.install() if traced else contextlib.nullcontext()):
    run()
"""


def test_debug_mode_output_is_exactly_asyncios(tmp_path: Path) -> None:
    """repr, _source_traceback, "Task was destroyed but it is pending!" and
    "exception was never retrieved", frames included, compared whole."""
    program = tmp_path / "debug_program.py"
    program.write_text(DEBUG_PROGRAM)
    outputs = []
    for mode in ("plain", "traced"):
        result = subprocess.run(
            [sys.executable, str(program), mode], capture_output=True, text=True, timeout=120, check=True
        )
        outputs.append(re.sub(r"0x[0-9a-f]+", "0x...", result.stdout + "\n--- stderr ---\n" + result.stderr))
    plain, traced = outputs
    assert "base_events.py" in plain and "Task was destroyed but it is pending!" in plain
    assert "exception was never retrieved" in plain
    assert traced == plain


def test_create_task_on_a_closed_loop_fails_exactly_like_asyncio(tmp_path: Path) -> None:
    """asyncio's own check (``loop._check_closed()``), message and frames."""
    program = tmp_path / "closed.py"
    program.write_text(
        "import asyncio, contextlib, sys, tracedfuture\n"
        "class Loop(asyncio.SelectorEventLoop):\n"
        "    def is_closed(self):\n"
        "        return False  # a loop whose is_closed() differs: asyncio reads _closed\n"
        "async def nothing():\n"
        "    pass\n"
        "loop = Loop()\n"
        "with (tracedfuture.install(loop) if sys.argv[1] == 'traced' else contextlib.nullcontext()):\n"
        "    task = loop.create_task(nothing())\n"
        "    print(loop.run_until_complete(task))\n"
        "    loop.close()\n"
        "    loop.create_task(nothing())\n"
    )
    outputs = []
    for mode in ("plain", "traced"):
        result = subprocess.run(
            [sys.executable, str(program), mode], capture_output=True, text=True, timeout=120, check=False
        )
        outputs.append((result.returncode, result.stdout, re.sub(r"0x[0-9a-f]+", "0x...", result.stderr)))
    assert outputs[0][1] == "None\n"
    assert "RuntimeError: Event loop is closed" in outputs[0][2]
    assert outputs[1] == outputs[0]


def test_asyncio_future_made_directly_is_not_traced_but_works() -> None:
    memory = MemoryExporter()

    async def main() -> int:
        fut: asyncio.Future[int] = asyncio.Future()
        asyncio.get_running_loop().call_soon(fut.set_result, 9)
        return await fut

    assert tracedfuture.run(main(), exporters=[memory]) == 9
    assert memory.futures() == []


def test_wrong_calls_fail_with_asyncios_own_errors() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        errors = []

        async def nothing() -> None:
            pass

        unawaited = nothing()
        calls: list[Callable[[], object]] = [
            fut.add_done_callback,
            lambda: fut.add_done_callback(print, *range(9)),  # type: ignore[call-arg]
            fut.set_result,
            lambda: fut.cancel(1, 2),  # type: ignore[call-arg]
            lambda: loop.create_task(unawaited, bogus=1),  # type: ignore[call-arg]
            lambda: loop.create_task(1),  # type: ignore[arg-type]
        ]
        for call in calls:
            try:
                call()
            except TypeError as exc:
                errors.append(str(exc))
            else:
                errors.append("no error")
        unawaited.close()
        await asyncio.sleep(0)
        return errors

    plain, traced = both(scenario)
    assert traced == plain
    assert "no error" not in plain


def test_a_finished_task_lives_as_long_as_the_program_keeps_it() -> None:
    """asyncio frees a finished task that has no done callbacks as soon as the
    program drops it, and logs "Task exception was never retrieved" right then:
    the completion observer must not hold it in the ready queue an iteration longer."""

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        loop.set_exception_handler(lambda _, context: order.append(context["message"]))

        async def fails() -> None:
            raise ValueError("nobody looked")

        task = asyncio.create_task(fails())
        await asyncio.sleep(0)  # it has run and failed
        order.append(f"{task.done()=}, {len(loop._ready)=}")  # type: ignore[attr-defined]
        freed = weakref.ref(task, lambda _: order.append("freed"))
        del task
        order.append(f"dropped, {freed() is None=}")
        await asyncio.sleep(0)
        order.append("one iteration later")
        return order

    plain, traced = both(scenario)
    assert traced == plain
    assert plain[1:] == ["Task exception was never retrieved", "freed", "dropped, freed() is None=True", plain[-1]]


def test_the_end_of_a_task_is_recorded_when_it_ends() -> None:
    memory = MemoryExporter()

    async def main() -> list[str]:
        seen = []

        async def work() -> int:
            return 1

        task = asyncio.create_task(work())
        await asyncio.sleep(0)  # the task's only step ran, and nothing is queued for it
        seen.append(",".join(event.kind for event in memory.for_future(tracedfuture.future_id(task))))
        return seen

    assert tracedfuture.run(main(), exporters=[memory]) == ["created,resolved"]


class CallSoonLoop(asyncio.SelectorEventLoop):
    """Its own call_soon, which notes every callback it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled: list[str] = []

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        self.scheduled.append(getattr(callback, "__name__", type(callback).__name__))
        return super().call_soon(callback, *args, context=context)


def test_a_loops_own_call_soon_is_given_what_asyncio_gives_it() -> None:
    def scheduled(loop: CallSoonLoop) -> list[str]:
        async def main() -> None:
            await asyncio.gather(*(asyncio.sleep(0) for _ in range(3)))
            task = asyncio.create_task(asyncio.sleep(0))
            task.add_done_callback(lambda _: None)
            await task

        loop.run_until_complete(main())
        loop.close()
        return loop.scheduled

    plain = scheduled(CallSoonLoop())
    loop = CallSoonLoop()
    with tracedfuture.install(loop, exporters=[MemoryExporter()]):
        traced = scheduled(loop)
    assert traced == plain and "<lambda>" in plain


def test_call_soon_fails_and_records_its_source_exactly_like_asyncio() -> None:
    """Wrong calls and a closed loop give asyncio's errors with asyncio's frames;
    in debug mode a handle's source traceback ends at its caller."""

    def outcome(loop: asyncio.AbstractEventLoop) -> list[object]:
        loop.set_debug(True)
        handle = loop.call_soon(print)
        source = [(entry.filename, entry.name) for entry in handle._source_traceback]  # type: ignore[attr-defined]
        handle.cancel()
        out: list[object] = [source]
        loop.close()
        wrong_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((), {}), ((print,), {"bogus": 1}), ((print,), {})]
        for args, kwargs in wrong_calls:
            try:
                loop.call_soon(*args, **kwargs)
            except (TypeError, RuntimeError) as exc:
                frames = [(entry.filename, entry.name) for entry in traceback.extract_tb(exc.__traceback__)]
                out.append((type(exc).__name__, str(exc), frames[1:]))
        return out

    plain = outcome(asyncio.new_event_loop())
    loop = asyncio.new_event_loop()
    with tracedfuture.install(loop, exporters=[MemoryExporter()]):
        traced = outcome(loop)
    assert traced == plain
    assert len(plain) == 4 and plain[-1][:2] == ("RuntimeError", "Event loop is closed")  # type: ignore[index]


def test_call_soon_is_looked_up_as_the_loop_would_look_it_up() -> None:
    """An attribute the program set on the loop before tracing is called (and
    restored after), and a class patched while the loop is traced is obeyed."""
    calls: list[str] = []
    asyncio_call_soon = asyncio.BaseEventLoop.call_soon

    def on_the_class(self: Any, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        calls.append("class")
        return asyncio_call_soon(self, callback, *args, context=context)

    own = asyncio.new_event_loop()

    def on_the_instance(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        calls.append("instance")
        return asyncio_call_soon(own, callback, *args, context=context)

    own.call_soon = on_the_instance  # type: ignore[method-assign]
    with tracedfuture.install(own, exporters=[MemoryExporter()]):
        own.run_until_complete(asyncio.sleep(0))
    assert calls and set(calls) == {"instance"}
    assert own.call_soon is on_the_instance
    own.close()

    calls.clear()
    loop = asyncio.new_event_loop()
    with tracedfuture.install(loop, exporters=[MemoryExporter()]):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncio.BaseEventLoop, "call_soon", on_the_class)
            loop.run_until_complete(asyncio.sleep(0))
            assert calls and set(calls) == {"class"}
        calls.clear()
        loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert calls == []


def test_errors_of_future_and_task_methods_show_asyncios_frames_only() -> None:
    """A wrong call or a second set_result on a traced future fails from the same
    frames as on asyncio's own (no frame of tracedfuture's in the traceback)."""

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fut.set_result(1)
        task = asyncio.create_task(asyncio.sleep(0))
        calls: list[Callable[[], object]] = [
            lambda: fut.set_result(2),
            lambda: fut.set_exception(ValueError()),
            fut.add_done_callback,  # type: ignore[list-item]
            fut.remove_done_callback,  # type: ignore[list-item]
            lambda: fut.cancel(1, 2),  # type: ignore[call-arg]
            lambda: task.cancel(1, 2),  # type: ignore[call-arg]
            task.set_name,  # type: ignore[list-item]
        ]
        out = []
        for call in calls:
            try:
                call()
            except Exception as exc:
                frames = traceback.extract_tb(exc.__traceback__)
                out.append(f"{type(exc).__name__}: {[(Path(f.filename).name, f.name) for f in frames]}")
        await task
        return out

    plain, traced = both(scenario)
    assert traced == plain
    assert len(plain) == 7


def test_traced_futures_and_tasks_in_cycles_are_collected_as_asyncios_are() -> None:
    # The collector finds a cycle through a traced future, a traced task, or a
    # subclass of either and the subclass itself (whose instances must visit it).
    import gc

    async def main() -> list[weakref.ref[Any]]:
        loop = asyncio.get_running_loop()
        refs: list[weakref.ref[Any]] = []
        fut = loop.create_future()
        assert isinstance(fut, TracedFuture)
        box = [fut]
        fut.add_done_callback(box.append)  # fut -> its callbacks -> box -> fut
        refs.append(weakref.ref(fut))
        task = loop.create_task(asyncio.sleep(0))
        assert isinstance(task, TracedTask)
        await task
        task.cycle = task  # type: ignore[attr-defined]
        refs.append(weakref.ref(task))

        class Sub(TracedFuture):  # type: ignore[misc]
            pass

        sub = Sub(loop=loop)
        Sub.keep = sub  # type: ignore[attr-defined]  # the class -> its instance -> the class
        refs += [weakref.ref(sub), weakref.ref(Sub)]

        class SubTask(TracedTask):  # type: ignore[misc]
            pass

        sub_task = SubTask(asyncio.sleep(0), loop=loop)
        await sub_task
        SubTask.keep = sub_task  # type: ignore[attr-defined]
        refs += [weakref.ref(sub_task), weakref.ref(SubTask)]
        del fut, box, task, sub, Sub, sub_task, SubTask
        return refs

    refs = tracedfuture.run(main(), exporters=[MemoryExporter()])
    gc.collect()
    assert [ref() for ref in refs] == [None] * 6
