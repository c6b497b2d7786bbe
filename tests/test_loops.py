"""Loops people run: subclasses with their own methods, uvloop however it is made."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracedfuture
from tracedfuture import TracedFuture, TracedTask
from tracedfuture.exporters import MemoryExporter

TRACEDFUTURE_DIR = os.path.dirname(tracedfuture.__file__)
BASE_METHODS = {name: vars(asyncio.BaseEventLoop)[name] for name in ("__init__", "create_future", "create_task")}


class MyFuture(asyncio.Future[Any]):
    pass


class MyTask(asyncio.Task[Any]):
    pass


class OwnLoop(asyncio.SelectorEventLoop):
    """Its own create_future, create_task and close, none of which defers to asyncio's."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def create_future(self) -> asyncio.Future[Any]:
        self.calls.append("create_future")
        return MyFuture(loop=self)

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:  # type: ignore[override]
        self.calls.append("create_task")
        return MyTask(coro, loop=self, **kwargs)

    def close(self) -> str:  # type: ignore[override]
        self.calls.append("close")
        super().close()
        return "closed by OwnLoop"


class SuperLoop(asyncio.SelectorEventLoop):
    """Its own create_future and create_task, which add to asyncio's through super()."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[object] = []

    def create_future(self) -> asyncio.Future[Any]:
        fut = super().create_future()
        self.made.append(fut)
        return fut

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:  # type: ignore[override]
        task = super().create_task(coro, **kwargs)
        self.made.append(task)
        return task


async def _work() -> str:
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, "done")
    return await fut


def _exercise(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[Any], asyncio.Task[Any], str]:
    fut = loop.create_future()
    task = asyncio.ensure_future(_work(), loop=loop)
    result = loop.run_until_complete(task)
    fut.cancel()
    return fut, task, result


@pytest.fixture(params=["process-wide", "this loop"])
def traced(request: pytest.FixtureRequest) -> Iterator[Callable[[asyncio.AbstractEventLoop], MemoryExporter]]:
    """Trace a loop made by the test, process-wide (installed first) or by install(loop)."""
    memory = MemoryExporter()
    installations: list[tracedfuture.Installation] = []
    if request.param == "process-wide":
        installations.append(tracedfuture.install(exporters=[memory]))

    def trace(loop: asyncio.AbstractEventLoop) -> MemoryExporter:
        if request.param == "this loop":
            installations.append(tracedfuture.install(loop, exporters=[memory]))
        return memory

    yield trace
    for inst in installations:
        inst.uninstall()


def test_a_loop_subclass_own_create_future_and_create_task_are_called(
    traced: Callable[[asyncio.AbstractEventLoop], MemoryExporter],
) -> None:
    loop = OwnLoop()
    memory = traced(loop)
    fut, task, result = _exercise(loop)
    assert type(fut) is MyFuture and type(task) is MyTask and result == "done"
    assert loop.calls == ["create_future", "create_task", "create_future"]  # the last from _work
    assert loop.close() == "closed by OwnLoop"
    assert loop.calls[-1] == "close"
    # What the loop made itself is not traced, but it has an id from its creation on.
    assert tracedfuture.future_id(task) is not None
    assert not memory.futures() and not memory.tasks()


def test_a_task_a_loop_builds_itself_is_named_by_its_id_in_events() -> None:
    class TaskLoop(asyncio.SelectorEventLoop):
        def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:  # type: ignore[override]
            return MyTask(coro, loop=self, **kwargs)

    memory = MemoryExporter()
    loop = TaskLoop()
    with tracedfuture.install(loop, exporters=[memory]):
        task = loop.create_task(_work())
        task_id = tracedfuture.future_id(task)
        assert loop.run_until_complete(task) == "done"
    loop.close()
    [fut] = memory.futures()  # made by asyncio's create_future, traced
    assert type(task) is MyTask and task_id is not None
    assert [e.task_id for e in memory.for_future(fut) if e.kind == "created"] == [task_id]
    assert [e.awaiter_id for e in memory.for_future(fut) if e.kind == "awaited"] == [task_id]


def test_what_a_loop_subclass_makes_through_super_is_traced(
    traced: Callable[[asyncio.AbstractEventLoop], MemoryExporter],
) -> None:
    loop = SuperLoop()
    memory = traced(loop)
    try:
        fut, task, result = _exercise(loop)
    finally:
        loop.close()
    assert result == "done"
    assert type(fut) is TracedFuture and type(task) is TracedTask
    assert len(loop.made) == 3 and all(isinstance(made, TracedFuture | TracedTask) for made in loop.made)
    [inner] = [f for f in memory.futures() if "awaited" in memory.kinds(f)]
    assert memory.kinds(inner) == ["created", "awaited", "resolved", "callback_scheduled"]
    assert memory.tasks() == [tracedfuture.future_id(task)]


def test_super_calls_are_traced_with_a_task_factory_and_with_sampling() -> None:
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append("factory")
        return asyncio.Task(coro, loop=loop, **kwargs)

    for options in ({"sample_rate": 0.0}, {}):
        loop = SuperLoop()
        with tracedfuture.install(loop, **options):
            loop.set_task_factory(factory)
            assert loop.run_until_complete(loop.create_task(_work())) == "done"
            loop.set_task_factory(None)
            task = loop.create_task(_work())
            assert loop.run_until_complete(task) == "done"
            assert (type(task) is TracedTask) is (not options)
        loop.close()
        assert sum(isinstance(made, asyncio.Task) for made in loop.made) == 2  # both through SuperLoop
    assert made == ["factory", "factory"]


def test_a_plain_loop_with_a_task_factory_while_a_subclass_loop_is_traced() -> None:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop, **kwargs)

    subclass_loop = SuperLoop()
    with tracedfuture.install(), tracedfuture.install(subclass_loop):
        plain = asyncio.new_event_loop()  # made while BaseEventLoop.create_task is patched
        plain.set_task_factory(factory)
        task = plain.create_task(_work())
        assert plain.run_until_complete(task) == "done" and type(task) is asyncio.Task
        assert type(plain.create_future()) is TracedFuture
        plain.close()
    subclass_loop.close()


def test_wrong_calls_through_super_fail_with_asyncios_own_message() -> None:
    class ArgsLoop(asyncio.SelectorEventLoop):
        def create_future(self, *args: Any) -> asyncio.Future[Any]:
            return super().create_future(*args)

        def create_task(self, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:  # type: ignore[override]
            return super().create_task(*args, **kwargs)

    def errors() -> list[str]:
        loop = ArgsLoop()
        messages = []
        for method, args in ((loop.create_task, ()), (loop.create_task, (1, 2)), (loop.create_future, (3,))):
            try:
                method(*args)
            except TypeError as exc:
                messages.append(str(exc))
        task = loop.create_task(coro=_work())
        messages.append(f"{type(task).__name__} {loop.run_until_complete(task)}")
        loop.close()
        return messages

    plain = errors()
    with tracedfuture.install():
        traced = errors()
    assert traced == plain
    assert plain[0] == "BaseEventLoop.create_task() missing 1 required positional argument: 'coro'"


def test_asyncios_own_methods_are_restored_when_the_last_such_loop_is_untraced() -> None:
    loop = SuperLoop()
    with tracedfuture.install(loop):
        assert vars(asyncio.BaseEventLoop)["create_task"] is not BASE_METHODS["create_task"]
        assert asyncio.BaseEventLoop.create_task.__qualname__ == "BaseEventLoop.create_task"
    loop.close()
    assert {name: vars(asyncio.BaseEventLoop)[name] for name in BASE_METHODS} == BASE_METHODS


def _frames(fn: Callable[[], object]) -> list[tuple[str, str]]:
    try:
        fn()
    except BaseException as exc:
        return [(frame.filename, frame.name) for frame in traceback.extract_tb(exc.__traceback__)]
    raise AssertionError("no exception")


def test_no_tracedfuture_frame_in_tracebacks_of_a_loops_own_methods() -> None:
    class Failing(asyncio.SelectorEventLoop):
        def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:  # type: ignore[override]
            coro.close()
            raise ValueError("no tasks here")

    def scenarios(loop: asyncio.AbstractEventLoop) -> list[list[tuple[str, str]]]:
        async def close_while_running() -> None:
            loop.close()

        return [
            _frames(lambda: loop.create_task(_work())),
            _frames(lambda: loop.run_until_complete(close_while_running())),
        ]

    plain_loop = Failing()
    plain = scenarios(plain_loop)
    plain_loop.close()
    with tracedfuture.install():
        traced_loop = Failing()
        traced = scenarios(traced_loop)
        traced_loop.close()
    assert traced == plain
    assert not any(name.startswith(TRACEDFUTURE_DIR) for frames in traced for name, _ in frames)


def test_debug_mode_source_traceback_of_a_loops_own_task_is_asyncios() -> None:
    def source(loop: OwnLoop) -> list[tuple[str, str]]:
        loop.set_debug(True)
        task = loop.create_task(_work())
        loop.run_until_complete(task)
        loop.close()
        return [(entry.filename, entry.name) for entry in task._source_traceback]  # type: ignore[attr-defined]

    plain = source(OwnLoop())
    with tracedfuture.install():
        traced = source(OwnLoop())
    assert traced == plain and plain


def test_install_in_a_running_loop_that_cannot_take_attributes_warns_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    script = textwrap.dedent(
        """
        import asyncio, uvloop.loop, tracedfuture
        async def main():
            for _ in range(2):
                tracedfuture.install().uninstall()
            print("still running")
        loop = uvloop.loop.Loop()
        loop.run_until_complete(main())
        """
    )
    assert uvloop
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "still running\n"
    assert done.stderr == (
        "tracedfuture: cannot trace uvloop.loop.Loop loops: their instances take no attributes; "
        "make them through tracedfuture.loop_factory(base=...), which subclasses them\n"
    )


# --- uvloop, process-wide --------------------------------------------------------------

UVLOOP_ENTRY_POINTS = {
    "uvloop.run": "uvloop.run(main())",
    "uvloop.install": "uvloop.install()\nasyncio.run(main())",
    "policy": "asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())\nasyncio.run(main())",
    "Runner(loop_factory=uvloop.new_event_loop)": (
        "with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:\n    runner.run(main())"
    ),
    "uvicorn's loop setup": (
        "from uvicorn.config import Config\n"
        "factory = Config(app=None, loop='uvloop').get_loop_factory()\n"
        "with asyncio.Runner(loop_factory=factory) as runner:\n    runner.run(main())"
    ),
    "a subclass of uvloop.Loop": (
        "class MyLoop(uvloop.Loop):\n    pass\n"
        "with asyncio.Runner(loop_factory=MyLoop) as runner:\n    runner.run(main())"
    ),
}

UVLOOP_PROGRAM = """
import asyncio, warnings, sys
warnings.simplefilter("ignore", DeprecationWarning)  # uvloop.install() and the policy, on 3.12+
{imports}
import tracedfuture
from tracedfuture.exporters import MemoryExporter

memory = MemoryExporter()
inst = tracedfuture.install(exporters=[memory])
import uvloop

async def main():
    loop = asyncio.get_running_loop()
    assert type(loop).__module__ != "asyncio.unix_events", type(loop)
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 1)
    await asyncio.create_task(asyncio.sleep(0))
    return await fut

{entry}
inst.uninstall()
print(type(asyncio.get_event_loop_policy()).__module__, len(memory.futures()), len(memory.tasks()))
print(sorted(name for name in vars(uvloop.Loop) if not name.startswith("__")), "__init__" in vars(uvloop.Loop))
"""


@pytest.mark.parametrize("imported_first", [False, True], ids=["uvloop imported later", "uvloop imported first"])
@pytest.mark.parametrize("entry", list(UVLOOP_ENTRY_POINTS))
def test_process_wide_install_traces_uvloop_however_its_loop_is_made(entry: str, imported_first: bool) -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed")
    if "uvicorn" in entry:
        pytest.importorskip("uvicorn", reason="uvicorn is not installed")
    program = UVLOOP_PROGRAM.format(imports="import uvloop" if imported_first else "", entry=UVLOOP_ENTRY_POINTS[entry])
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    _policy, futures, tasks = done.stdout.splitlines()[0].split()
    assert int(futures) >= 1 and int(tasks) >= 2, done.stdout  # main, its child and asyncio.run's own tasks
    # uvloop.Loop is exactly as before once tracing ends.
    assert done.stdout.splitlines()[1] == "[] False"


def test_uninstall_restores_asyncio_uvloop_and_the_import_system_exactly() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    before = (list(sys.meta_path), dict(vars(asyncio.BaseEventLoop)), dict(vars(uvloop.Loop)))
    with tracedfuture.install(), tracedfuture.install():
        assert "__init__" in vars(uvloop.Loop)
        loop = uvloop.new_event_loop()
        assert isinstance(loop.create_future(), TracedFuture)
        loop.close()
    assert (list(sys.meta_path), dict(vars(asyncio.BaseEventLoop)), dict(vars(uvloop.Loop))) == before
    loop = uvloop.new_event_loop()
    assert not isinstance(loop.create_future(), TracedFuture) and "create_future" not in vars(loop)
    loop.close()


def test_uvloop_import_leaves_no_trace_of_the_import_hook(tmp_path: Path) -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed")
    program = textwrap.dedent(
        """
        import sys, tracedfuture
        inst = tracedfuture.install()
        hooked = len(sys.meta_path)
        import uvloop
        loader = type(uvloop.__loader__).__name__, type(uvloop.__spec__.loader).__name__
        inst.uninstall()
        print(loader, len(sys.meta_path) == hooked - 1)
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "('SourceFileLoader', 'SourceFileLoader') True\n"


# --- CPython's own asyncio tests with loop subclasses ------------------------------------

CPYTHON_MODULES = ("test_base_events", "test_runners", "test_events")


@pytest.mark.slow
def test_cpythons_asyncio_loop_tests_pass_under_a_process_wide_install() -> None:
    """CPython's loop tests (``test_base_events.test_create_task`` defines a
    BaseEventLoop subclass whose create_task returns its own Task subclass), run
    with every loop traced."""
    try:
        import test.test_asyncio.test_base_events  # noqa: F401
    except ImportError:
        from .conftest import require

        require(False, "CPython's test.test_asyncio package is not installed")
    modules = " ".join(f"test.test_asyncio.{name}" for name in CPYTHON_MODULES)
    script = textwrap.dedent(
        f"""
        import resource, sys, unittest, tracedfuture
        from tracedfuture.exporters import MemoryExporter
        # A test that spins while traced fills the MemoryExporter: it fails here
        # with MemoryError instead of swapping out the machine's other tests.
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
        suite = unittest.defaultTestLoader.loadTestsFromNames({modules.split()!r})
        with tracedfuture.install(exporters=[MemoryExporter()]):
            result = unittest.TextTestRunner(stream=sys.stdout, verbosity=0).run(suite)
        print("ran", result.testsRun, "failures", len(result.failures), "errors", len(result.errors))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False)
    assert done.stdout.splitlines()[-1].startswith("ran "), done.stdout + done.stderr
    summary = done.stdout.splitlines()[-1].split()
    assert int(summary[1]) > 300
    assert summary[2:] == ["failures", "0", "errors", "0"], done.stdout


def test_tracing_never_materializes_the_loops_instance_dict() -> None:
    # vars(loop) or loop.__dict__ would make every later attribute access of
    # asyncio's own code on the loop slower, on 3.11 and 3.12, for the loop's life.
    seen: list[str] = []

    class Watched(asyncio.SelectorEventLoop):
        def __getattribute__(self, name: str) -> Any:
            if name == "__dict__":
                seen.append(name)
            return super().__getattribute__(name)

    loop = Watched()
    try:
        with tracedfuture.install(loop):
            loop.run_until_complete(asyncio.sleep(0))
        with tracedfuture.install():
            tracedfuture.install(loop).uninstall()
    finally:
        loop.close()
    assert seen == []


def test_a_loop_collected_while_another_is_being_traced_does_not_deadlock(tmp_path: Path) -> None:
    """A traced loop whose class has its own create_task registers a finalizer;
    making it may run the garbage collector, and so the finalizer of another such
    loop, on the thread that is registering (it hung forever)."""
    program = tmp_path / "collect.py"
    program.write_text(
        textwrap.dedent(
            """\
            import asyncio, gc, weakref
            import tracedfuture

            class Own(asyncio.SelectorEventLoop):
                def create_task(self, coro, **kwargs):
                    return super().create_task(coro, **kwargs)

            asyncios = asyncio.BaseEventLoop.create_task
            real = weakref.finalize
            def collecting(*args, **kwargs):  # the allocation that happens to collect
                gc.collect()
                return real(*args, **kwargs)

            with tracedfuture.install():
                first = Own()
                first.close()
                first.cycle = first  # garbage that only the collector frees
                del first
                weakref.finalize = collecting
                second = Own()
                weakref.finalize = real
                print(second.run_until_complete(second.create_task(asyncio.sleep(0, "done"))))
                second.close()
            print(asyncio.BaseEventLoop.create_task is asyncios)  # the class patch is gone with both loops
            """
        )
    )
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\nTrue\n", "")


# --- uvloop, carried by its class --------------------------------------------------------
#
# A uvloop loop keeps no dict: a traced one carries nothing itself, its class
# carries its methods (_loops), and the program sees what it would untraced.


def _uvloop() -> Any:
    return pytest.importorskip("uvloop", reason="uvloop is not installed")


def _error(call: Callable[[], object]) -> tuple[str, str, list[tuple[str, str]]]:
    try:
        call()
    except BaseException as exc:
        frames = [(frame.filename, frame.name) for frame in traceback.extract_tb(exc.__traceback__)]
        return type(exc).__name__, str(exc), frames
    raise AssertionError("no exception")


def _seen_on_uvloop(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """What a program can see of a uvloop loop and of what it makes, but the
    types of traced futures and tasks; the loop is closed at the end."""
    import re

    def shown(value: object) -> str:
        return re.sub(r"0x[0-9a-f]+", "0x", repr(value))

    seen: dict[str, Any] = {"type": type(loop)}
    seen["methods"] = [shown(getattr(loop, name)) for name in ("create_future", "create_task", "close", "call_soon")]
    seen["names"] = [getattr(loop, name).__qualname__ for name in ("create_future", "create_task", "close")]
    coro = _work()
    seen["errors"] = [
        _error(lambda: loop.create_future(1)),  # type: ignore[call-arg]
        _error(loop.create_task),  # type: ignore[arg-type]
        _error(lambda: loop.create_task(coro, nme="x")),  # type: ignore[call-arg]
    ]
    coro.close()
    task = loop.create_task(_work(), name="worker")
    seen["result"] = loop.run_until_complete(task), task.get_name(), shown(task)
    loop.set_debug(True)
    fut = loop.create_future()
    debug_task = loop.create_task(_work())
    # where asyncio says they were created: this function's lines, nothing of ours
    made: list[Any] = [fut, debug_task]
    seen["created at"] = [[(entry.filename, entry.name) for entry in one._source_traceback[-2:]] for one in made]
    loop.run_until_complete(debug_task)
    fut.cancel()
    seen["closing a running loop"] = _error(lambda: loop.run_until_complete(_close_running(loop)))[:2]
    loop.close()
    seen["own attributes"] = sorted(set(vars(loop)) - {"call_soon"})  # call_soon: the reference's, see STEP_REASON
    return seen


async def _close_running(loop: asyncio.AbstractEventLoop) -> None:
    loop.close()


@pytest.mark.parametrize("sample_rate", [0.0, 1.0], ids=["sampled out", "traced"])
def test_a_traced_uvloop_loop_is_seen_as_untraced(sample_rate: float) -> None:
    uvloop = _uvloop()
    before = dict(vars(uvloop.Loop))
    plain = _seen_on_uvloop(uvloop.new_event_loop())
    memory = MemoryExporter()
    factory = tracedfuture.loop_factory(base=uvloop.new_event_loop, exporters=[memory], sample_rate=sample_rate)
    try:
        traced = _seen_on_uvloop(factory())
    finally:
        factory.installation.uninstall()  # type: ignore[attr-defined]
    assert traced == plain
    assert plain["own attributes"] == [] and plain["result"][0] == "done"
    assert not any(name.startswith(TRACEDFUTURE_DIR) for _, _, frames in traced["errors"] for name, _ in frames)
    assert (len(memory.tasks()) == len(memory.futures()) == 3) is (sample_rate == 1.0)
    assert dict(vars(uvloop.Loop)) == before  # the class carries nothing once no loop of it is traced


def test_sampled_out_on_uvloop_is_exactly_what_uvloops_own_methods_make() -> None:
    uvloop = _uvloop()
    plain = uvloop.new_event_loop()
    own = [type(plain.create_future()), type(plain.create_task(asyncio.sleep(0)))]
    plain.run_until_complete(asyncio.sleep(0))
    factory = tracedfuture.loop_factory(base=uvloop.new_event_loop, sample_rate=0.0)
    loop = factory()
    other = uvloop.new_event_loop()  # untraced, beside it, while its class carries the traced one's methods
    try:
        assert "create_future" in vars(uvloop.Loop)
        for made in (loop, other):
            fut, task = made.create_future(), made.create_task(asyncio.sleep(0))
            assert [type(fut), type(task)] == own == [asyncio.Future, asyncio.Task]
            assert tracedfuture.future_id(fut) is None
            made.run_until_complete(task)
        # bound to the loop, as uvloop's own: what the class carries wraps it
        method: Any = loop.create_future
        assert method.__self__ is loop and method.__func__.__wrapped__ is uvloop.loop.Loop.create_future
    finally:
        for made in (plain, loop, other):
            made.close()
        factory.installation.uninstall()  # type: ignore[attr-defined]


def test_a_dropped_traced_uvloop_loop_is_collected_and_its_class_restored() -> None:
    import gc
    import weakref

    uvloop = _uvloop()
    before = dict(vars(uvloop.Loop))
    factory = tracedfuture.loop_factory(base=uvloop.new_event_loop)
    try:
        loop = factory()
        assert type(loop.create_future()) is TracedFuture
        ref = weakref.ref(loop)
        del loop
        gc.collect()
        assert ref() is None  # as untraced: its hooks hold it weakly
        assert dict(vars(uvloop.Loop)) == before
    finally:
        factory.installation.uninstall()  # type: ignore[attr-defined]


def test_a_uvloop_subclass_own_create_future_and_create_task_are_called(
    traced: Callable[[asyncio.AbstractEventLoop], MemoryExporter],
) -> None:
    uvloop = _uvloop()

    class OwnUvloop(uvloop.Loop):  # type: ignore[misc, name-defined]
        def create_future(self) -> asyncio.Future[Any]:
            return MyFuture(loop=self)

        def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            return MyTask(coro, loop=self, **kwargs)

    loop = OwnUvloop()
    memory = traced(loop)
    try:
        fut, task, result = _exercise(loop)
        assert "create_future" not in vars(loop)
    finally:
        loop.close()
    assert type(fut) is MyFuture and type(task) is MyTask and result == "done"
    assert tracedfuture.future_id(task) is not None  # named by its id from its creation on
    assert not memory.futures() and not memory.tasks()
    assert vars(OwnUvloop)["create_future"] is not uvloop.Loop.create_future  # its own, still
