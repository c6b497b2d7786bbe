"""A TracedTask's own step: asyncio's semantics, its end recorded where it happens,
and asyncio's step as the fallback where the layout of _asyncio's Task is unknown.

The compiled core steps its tasks itself (``_cfuture.STEP_REASON == ""``) on the
Pythons whose layout it verified at import; ``TRACEDFUTURE_ASYNCIO_STEP=1`` (or
``_cfuture._own_step(False)``, for a test) gives asyncio's step back, with the
hidden done callback and the loop's ``call_soon`` shadow that see the end then.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import tracedfuture
from tracedfuture.exporters import MemoryExporter

from .test_core_compat import both, normalize

try:
    from tracedfuture._core import _cfuture
except ImportError:  # no compiled core: nothing here to test
    _cfuture = None  # type: ignore[assignment]

ENDS = ("resolved", "failed", "cancelled")

compiled = pytest.mark.skipif(
    _cfuture is None or tracedfuture.IMPLEMENTATION != "c", reason="the compiled core is not in use"
)


@pytest.fixture(params=["own", "asyncio"])
def step(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each way a TracedTask is stepped: its own step, and asyncio's (the fallback)."""
    if _cfuture is None or tracedfuture.IMPLEMENTATION != "c":
        if request.param == "asyncio":
            pytest.skip("the compiled core is not in use")
        yield request.param
        return
    if request.param == "own" and _cfuture.STEP_REASON:
        pytest.skip(_cfuture.STEP_REASON)
    was = _cfuture._own_step(request.param == "own")
    try:
        yield request.param
    finally:
        _cfuture._own_step(was)


@compiled
@pytest.mark.skipif(sys.version_info[:2] not in ((3, 11), (3, 12), (3, 13)), reason="a layout known to the core")
def test_tasks_step_themselves_on_every_python_whose_layout_is_known() -> None:
    assert _cfuture.STEP_REASON == ""
    assert _cfuture._own_step() is True


@compiled
def test_the_environment_gives_asyncios_step_back() -> None:
    code = (
        "import asyncio, tracedfuture\n"
        "from tracedfuture._core import _cfuture\n"
        "from tracedfuture.exporters import MemoryExporter\n"
        "memory = MemoryExporter()\n"
        f"ENDS = {ENDS!r}\n"
        "async def work(): return 1\n"
        "async def main():\n"
        "    task = asyncio.create_task(work())\n"
        "    await task\n"
        "    return tracedfuture.future_id(task)\n"
        "fid = tracedfuture.run(main(), exporters=[memory])\n"
        "print(_cfuture.STEP_REASON, _cfuture._own_step(), [k for k in memory.kinds(fid) if k in ENDS])\n"
    )
    env = {**os.environ, "TRACEDFUTURE_ASYNCIO_STEP": "1"}
    env.pop("TRACEDFUTURE_PURE_PYTHON", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "TRACEDFUTURE_ASYNCIO_STEP is set False ['resolved']\n"


@compiled
def test_a_collected_futures_state_reads_the_same_where_the_layout_is_not_known() -> None:
    # Where asyncio's struct is verified, a collected future's final state is
    # read from its fields; elsewhere (here: TRACEDFUTURE_ASYNCIO_STEP, which
    # skips the verification) through asyncio's getters. Both say the same.
    code = (
        "import asyncio, gc, logging, tracedfuture\n"
        "from tracedfuture.exporters import MemoryExporter\n"
        "logging.disable()\n"
        "memory = MemoryExporter()\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    futures = [loop.create_future() for _ in range(5)]\n"
        "    futures[1].cancel()\n"
        "    futures[2].set_result(1)\n"
        "    futures[3].set_exception(KeyError('k'))\n"
        "    futures[4].set_exception(KeyError('k'))\n"
        "    futures[4].exception()\n"
        "    ids = [tracedfuture.future_id(f) for f in futures]\n"
        "    del futures\n"
        "    gc.collect()\n"
        "    return ids\n"
        "ids = tracedfuture.run(main(), exporters=[memory])\n"
        "print([[k for k in memory.kinds(fid) if k != 'created'] for fid in ids])\n"
    )
    env = {**os.environ}
    env.pop("TRACEDFUTURE_PURE_PYTHON", None)
    env.pop("TRACEDFUTURE_ASYNCIO_STEP", None)
    known = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    env["TRACEDFUTURE_ASYNCIO_STEP"] = "1"
    unknown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert known.stdout == unknown.stdout
    assert known.stdout == ("[['abandoned'], ['cancelled'], ['resolved'], ['failed', 'unretrieved'], ['failed']]\n"), (
        known.stdout
    )


@compiled
def test_own_step_cannot_be_forced_where_it_was_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    if _cfuture.STEP_REASON:
        with pytest.raises(RuntimeError, match="cannot step itself"):
            _cfuture._own_step(True)
    else:
        assert _cfuture._own_step(True) is True


def test_a_task_that_steps_itself_leaves_the_loops_call_soon_alone(step: str) -> None:
    async def main() -> bool:
        async def work() -> int:
            await asyncio.sleep(0)
            return 1

        await asyncio.create_task(work())
        return "call_soon" in vars(asyncio.get_running_loop())

    shadowed = tracedfuture.run(main(), exporters=[MemoryExporter()])
    # asyncio's step ends a task from C: its end is caught in the loop's call_soon
    assert shadowed is (step == "asyncio" or tracedfuture.IMPLEMENTATION == "python")


def test_the_end_of_a_task_is_recorded_in_every_way_it_can_end(step: str) -> None:
    memory = MemoryExporter()

    async def main() -> dict[str, int | None]:
        ids: dict[str, int | None] = {}

        async def work(how: str) -> int:
            await asyncio.sleep(0)
            if how == "fails":
                raise ValueError(how)
            if how == "cancels itself":
                raise asyncio.CancelledError(how)
            return 1

        async def waits() -> None:
            await asyncio.sleep(10)

        for how in ("returns", "fails", "cancels itself"):
            task = asyncio.create_task(work(how))
            ids[how] = tracedfuture.future_id(task)
            await asyncio.gather(task, return_exceptions=True)
        early = asyncio.create_task(waits())
        ids["cancelled before its first step"] = tracedfuture.future_id(early)
        early.cancel("early")
        later = asyncio.create_task(waits())
        ids["cancelled while waiting"] = tracedfuture.future_id(later)
        await asyncio.sleep(0)
        later.cancel("later")
        await asyncio.gather(early, later, return_exceptions=True)
        return ids

    ids = tracedfuture.run(main(), exporters=[memory])
    ends = {how: [kind for kind in memory.kinds(fid) if kind in ENDS] for how, fid in ids.items()}
    assert ends == {
        "returns": ["resolved"],
        "fails": ["failed"],
        "cancels itself": ["cancelled"],
        "cancelled before its first step": ["cancelled"],
        "cancelled while waiting": ["cancelled"],
    }


def test_a_task_ended_from_outside_its_step_is_recorded_when_its_step_comes(step: str) -> None:
    """asyncio.Future.cancel(task) ends a task without its step, whose next run
    then fails as asyncio's does: the end is recorded by then (or, if that step
    never comes, when the task is collected)."""
    memory = MemoryExporter()

    async def main() -> tuple[int | None, list[str]]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(type(context.get("exception")).__name__))
        fut = loop.create_future()

        async def waits() -> None:
            await fut

        task = asyncio.create_task(waits())
        fid = tracedfuture.future_id(task)
        await asyncio.sleep(0)  # it waits
        asyncio.Future.cancel(task)
        fut.set_result(None)  # its step comes, and finds it done
        await asyncio.sleep(0)
        ended = [kind for kind in memory.kinds(fid) if kind in ENDS]
        return fid, ended + errors

    fid, seen = tracedfuture.run(main(), exporters=[memory])
    assert seen == ["cancelled", "InvalidStateError"]
    assert [kind for kind in memory.kinds(fid) if kind in ENDS] == ["cancelled"]


def test_errors_of_the_step_read_exactly_as_asyncios(step: str) -> None:
    async def scenario() -> list[str]:
        out = []

        class Yields:
            def __init__(self, value: Any) -> None:
                self.value = value

            def __await__(self) -> Any:
                yield self.value

        def gen() -> Iterator[int]:
            yield 1

        other = asyncio.new_event_loop()
        foreign = other.create_future()
        foreign._asyncio_future_blocking = True
        plain_other = asyncio.Future(loop=other)
        not_blocking = asyncio.get_running_loop().create_future()

        async def awaits(what: Any) -> None:
            await Yields(what)

        async def itself() -> None:
            await asyncio.current_task()  # type: ignore[misc]

        for what in (42, gen(), foreign, plain_other, not_blocking):
            try:
                await asyncio.create_task(awaits(what))
            except RuntimeError as exc:
                out.append(normalize(str(exc)))
        try:
            await asyncio.create_task(itself())
        except RuntimeError as exc:
            out.append(normalize(str(exc)))
        other.close()
        return out

    plain, traced = both(scenario)
    assert traced == plain
    assert len(plain) == 6


def test_keyboard_interrupt_in_a_task_leaves_the_loop_and_the_task_keeps_it(step: str) -> None:
    memory = MemoryExporter()
    seen: list[Any] = []

    async def stops() -> None:
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    async def main() -> None:
        task = asyncio.create_task(stops())
        seen.append(task)
        await task

    with pytest.raises(KeyboardInterrupt), tracedfuture.install(exporters=[memory]):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    task = seen[0]
    assert isinstance(task.exception(), KeyboardInterrupt)
    assert [kind for kind in memory.kinds(tracedfuture.future_id(task)) if kind in ENDS] == ["failed"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
def test_an_eager_task_is_stepped_inside_create_task_as_asyncios(step: str) -> None:
    async def scenario() -> list[str]:
        out = []
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]

        async def quick() -> str:
            out.append(f"running, current is itself: {asyncio.current_task() is not None}")
            return "done"

        async def slow() -> str:
            await asyncio.sleep(0)
            return "later"

        task = asyncio.create_task(quick(), name="quick")
        out.append(f"after create_task: {task.done()=} {task.result()=} {task in asyncio.all_tasks()=}")
        other = asyncio.create_task(slow())
        out.append(f"{other.done()=} {other in asyncio.all_tasks()=} {normalize(repr(other))}")
        out.append(await other)
        out.append(repr(asyncio.current_task() is not None))
        return out

    plain, traced = both(scenario)
    assert traced == plain


def test_a_sampled_out_task_is_made_as_asyncios_create_task_makes_it() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()

        async def work(x: int) -> int:
            return x

        first = loop.create_task(work(1))
        named = loop.create_task(work(2), name="named", context=contextvars.copy_context())
        out = [type(first).__module__, type(first).__qualname__, normalize(first.get_name()), named.get_name()]
        out.append(str(await first + await named))
        loop.set_debug(True)
        debug = loop.create_task(work(3))
        out.append(debug._source_traceback[-1].name)  # type: ignore[attr-defined]
        out.append(str(await debug))
        return out

    plain = asyncio.run(scenario())
    traced = tracedfuture.run(scenario(), exporters=[MemoryExporter()], sample_rate=0.0)
    assert traced == plain
    assert plain[:2] == ["_asyncio", "Task"]


@compiled
def test_the_inherited_c_methods_are_the_traced_types_own_with_asyncios_functions() -> None:
    # CPython specializes a call of a C method only on an instance of exactly the
    # method's type: an inherited one, called on a TracedFuture, took the generic
    # call. The traced types hold asyncio's functions as methods of their own.
    import _asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fut.set_result(7)
        task = asyncio.current_task()
        assert task is not None
        # asyncio's methods that tracing does not override (on 3.12+, those that
        # take their defining class stay asyncio's: they are not in the dict).
        inherited = ("done", "cancelled", "result", "exception", "get_loop", "get_coro", "cancelling", "uncancel")
        for obj, base in ((fut, _asyncio.Future), (task, _asyncio.Task)):
            mirrored = [name for name in inherited if name in vars(base) and name in vars(type(obj))]
            assert {"done", "cancelled"} <= set(mirrored), mirrored
            for name in mirrored:
                method = vars(type(obj))[name]
                assert method.__objclass__ is type(obj)
                assert method.__doc__ == getattr(base, name).__doc__
        assert (fut.done(), fut.cancelled(), fut.result(), fut.exception()) == (True, False, 7, None)
        assert (task.done(), task.cancelled(), task.get_coro().__name__) == (False, False, "main")

    tracedfuture.run(main(), exporters=[MemoryExporter()])
