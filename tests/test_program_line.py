"""The program's own line: where in the program a future was made and a failure
raised, past the libraries it called (issue "Point at the program").

A small client library is laid out in a ``site-packages`` folder on ``sys.path``;
the program awaits three queries through it at known lines.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_seam import Traced
from tracedfuture._core import _frames
from tracedfuture._core._events import OP_CREATED, OP_FAILED
from tracedfuture._pipeline._convert import Converter, site_of

FAKEDB = """\
import asyncio


def _answer(fut, sql):
    if sql == "boom":
        try:
            raise ValueError(sql)
        except ValueError as exc:
            fut.set_exception(exc)
    else:
        fut.set_result(sql)


async def query(sql):
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(_answer, fut, sql)
    return await fut


async def checked(sql):
    if sql == "bad":
        raise KeyError(sql)
    return sql
"""

APP = """\
import fakedb


async def main():
    await fakedb.query("a")
    await fakedb.query("b")
    try:
        await fakedb.query("boom")
    except ValueError:
        pass


async def fails():
    await fakedb.checked("bad")
"""


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Any]:
    library = tmp_path / "lib" / "site-packages"
    (library / "fakedb").mkdir(parents=True)
    (library / "fakedb" / "__init__.py").write_text(FAKEDB)
    (tmp_path / "app_under_test.py").write_text(APP)
    sys.path[:0] = [str(library), str(tmp_path)]
    try:
        yield importlib.import_module("app_under_test")
    finally:
        sys.path.remove(str(library))
        sys.path.remove(str(tmp_path))
        for name in ("app_under_test", "fakedb"):
            sys.modules.pop(name, None)


@pytest.fixture
def traced(impl: Any) -> Iterator[Traced]:
    t = Traced(impl)
    yield t
    t.close()


def _lines(traced: Traced, op: int) -> list[tuple[Any, ...]]:
    return [r for r in traced.ring.take() if r[0] == op]


def test_a_future_a_library_made_names_the_programs_line_and_the_librarys(traced: Traced, program: Any) -> None:
    traced.run(program.main())
    made = [r for r in _lines(traced, OP_CREATED) if not r[4]]
    sites = [site_of(r[5], r[6]) for r in made]
    program_sites = [site_of(r[12], r[13]) for r in made]
    assert [(s.function, s.lineno) for s in sites if s is not None] == [("query", 16)] * 3
    assert all("site-packages" in s.filename for s in sites if s is not None)
    assert [(s.filename.endswith("app_under_test.py"), s.lineno) for s in program_sites if s is not None] == [
        (True, 5),
        (True, 6),
        (True, 8),
    ]


def test_the_program_made_it_itself_then_both_lines_are_the_same(traced: Traced) -> None:
    async def main() -> None:
        asyncio.get_running_loop().create_future().cancel()

    traced.run(main())
    [made] = [r for r in _lines(traced, OP_CREATED) if not r[4]]
    assert made[5] is made[12] and made[6] == made[13]
    assert made[5].co_name == "main"


def test_a_failure_records_where_it_was_raised_and_the_programs_innermost_line(traced: Traced, program: Any) -> None:
    task = traced.loop.create_task(program.fails())
    with pytest.raises(KeyError):
        traced.run(task)
    [failed] = [r for r in _lines(traced, OP_FAILED) if r[1] == traced.impl.future_id(task)]
    raised, in_program = site_of(failed[6], failed[7]), site_of(failed[8], failed[9])
    assert raised is not None and raised.function == "checked" and raised.lineno == 23
    assert in_program is not None and in_program.function == "fails" and in_program.lineno == 14


def test_a_failure_set_without_being_raised_has_no_raise_site(traced: Traced) -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(ValueError("never raised"))
        fut.exception()

    traced.run(main())
    [failed] = _lines(traced, OP_FAILED)
    assert failed[6:] == (None, 0, None, 0)


def test_events_carry_the_programs_line_first_and_the_raise_sites(traced: Traced, program: Any) -> None:
    task = traced.loop.create_task(program.fails())
    with pytest.raises(KeyError):
        traced.run(task)
    events = Converter().convert(traced.ring.take())
    created = next(e for e in events if e.kind == "created" and e.future_id == traced.impl.future_id(task))
    assert created.program_site == created.site  # the test made the task: its line is the program's
    failed = next(e for e in events if e.kind == "failed")
    assert failed.raise_site is not None and failed.raise_site.lineno == 23
    assert failed.raise_program_site is not None and failed.raise_program_site.lineno == 14


def test_app_modules_count_an_installed_package_as_the_program(traced: Traced, program: Any) -> None:
    _frames.set_app_modules(("fakedb",))
    try:
        traced.run(program.main())
    finally:
        _frames.set_app_modules(())
    made = [r for r in _lines(traced, OP_CREATED) if not r[4]]
    program_sites = [site_of(r[12], r[13]) for r in made]
    assert [(s.function, s.lineno) for s in program_sites if s is not None] == [("query", 16)] * 3


def test_app_modules_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"app_modules: no module named 'no_such_module_here'"):
        _frames.set_app_modules(("no_such_module_here",))


def test_stats_groups_by_the_programs_line_with_the_librarys_beside_it() -> None:
    from tracedfuture._views.stats import SiteStats, _site_cell

    program, library = _site("/app/app.py", 7, "main"), _site("/v/lib/python3.11/site-packages/db.py", 4, "query")
    assert _site_cell(SiteStats(program, library)) == "/app/app.py:7 in main (via db.py:4 in query)"


def _site(filename: str, line: int, function: str) -> Any:
    from tracedfuture._core._events import Site

    return Site(filename, line, function)


def test_snapshot_text_names_the_programs_line_then_the_librarys() -> None:
    from tracedfuture.graph import PendingFuture, _describe

    fut = PendingFuture(
        future_id=3,
        is_task=False,
        name=None,
        site=_site("/v/lib/python3.11/site-packages/db.py", 4, "query"),
        age_ns=None,
        state="PENDING",
        program_site=_site("/app/app.py", 7, "main"),
    )
    assert "created at /app/app.py:7 in main (via db.py:4 in query)" in _describe(fut)


def test_install_takes_app_modules(program: Any) -> None:
    import tracedfuture

    loop = asyncio.new_event_loop()
    try:
        with tracedfuture.install(loop, app_modules=("fakedb",)):
            assert _frames.classify(program.main.__code__) == _frames.PROGRAM
            fakedb = sys.modules["fakedb"]
            assert _frames.classify(fakedb.query.__code__) == _frames.PROGRAM
    finally:
        _frames.set_app_modules(())
        loop.close()


# --- who cancelled, in the program's terms ---------------------------------------------

CANCELS = """\
import asyncio


async def fetch():
    await asyncio.sleep(10)


async def boom():
    await asyncio.sleep(0)
    raise ValueError("no")


async def with_timeout():
    try:
        async with asyncio.timeout(0.01):
            await fetch()
    except TimeoutError:
        pass


async def nested_timeout(lock):
    try:
        async with asyncio.timeout(0.01):
            async with lock:
                await fetch()
    except TimeoutError:
        pass


async def with_wait_for():
    try:
        await asyncio.wait_for(fetch(), 0.01)
    except TimeoutError:
        pass


async def with_taskgroup():
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fetch())
            tg.create_task(boom())
    except* ValueError:
        pass
"""


@pytest.fixture
def cancels(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "cancels_under_test.py").write_text(CANCELS)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("cancels_under_test")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cancels_under_test", None)


def _cancellers(traced: Traced) -> set[str]:
    events = Converter().convert(traced.ring.take())
    return {e.canceller for e in events if e.kind == "cancelled" and e.canceller}


@pytest.mark.parametrize(
    ("function", "line"),
    [("with_timeout", 15), ("with_wait_for", 32), ("with_taskgroup", 39)],
)
def test_a_cancel_by_a_timeout_or_taskgroup_names_the_program_line_that_set_it_up(
    traced: Traced, cancels: Any, function: str, line: int
) -> None:
    traced.run(getattr(cancels, function)())
    found = _cancellers(traced)
    assert found, "something was cancelled"
    assert all(text.endswith(f"in {function} ({cancels.__file__}:{line})") for text in found), found


def test_the_timeout_named_is_the_async_with_that_holds_it_not_an_inner_one(traced: Traced, cancels: Any) -> None:
    async def main() -> None:
        await cancels.nested_timeout(asyncio.Lock())

    traced.run(main())
    found = _cancellers(traced)
    assert found and all(text.endswith(f"in nested_timeout ({cancels.__file__}:23)") for text in found), found


def test_the_frame_running_the_loop_is_never_named_as_the_canceller(impl: Any, cancels: Any) -> None:
    # uvloop calls callbacks from C: the Python frame right above a timeout's
    # callback is the one that runs the loop (uvicorn's asyncio_run), which
    # cancelled nothing.
    uvloop = pytest.importorskip("uvloop")
    import tracedfuture
    from tracedfuture.exporters import MemoryExporter

    loop = uvloop.new_event_loop()
    memory = MemoryExporter()
    with tracedfuture.install(loop, exporters=[memory]):
        loop.run_until_complete(cancels.with_timeout())
    loop.close()
    found = {e.canceller for e in memory if e.kind in ("cancelled", "cancel_requested") and e.canceller}
    assert found and all(text.endswith("in with_timeout (" + cancels.__file__ + ":15)") for text in found), found


# --- where the cancelled task was waiting ------------------------------------------------


def _waiting(traced: Traced) -> dict[str, Any]:
    events = Converter().convert(traced.ring.take())
    return {e.name: e.waiting_site for e in events if e.kind == "cancel_requested" and e.name}


@pytest.mark.parametrize("function", ["with_timeout", "with_taskgroup"])
def test_a_cancelled_task_names_the_program_line_where_it_was_waiting(
    traced: Traced, cancels: Any, function: str
) -> None:
    traced.run(traced.loop.create_task(getattr(cancels, function)(), name="cancelled"))
    waiting = {(site.filename, site.lineno, site.function) for site in _waiting(traced).values() if site is not None}
    # the task in fetch(); a TaskGroup's own task waits for its tasks at the end of its async with
    assert (cancels.__file__, 5, "fetch") in waiting
    assert waiting <= {(cancels.__file__, 5, "fetch"), (cancels.__file__, 39, "with_taskgroup")}, waiting


def test_the_cancelled_event_of_a_task_carries_where_it_was_waiting(traced: Traced, cancels: Any) -> None:
    async def main() -> None:
        task = asyncio.get_running_loop().create_task(cancels.fetch(), name="fetcher")
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    traced.run(main())
    events = Converter().convert(traced.ring.take())
    [cancelled] = [e for e in events if e.kind == "cancelled" and e.name == "fetcher"]
    assert cancelled.waiting_site is not None and cancelled.waiting_site.lineno == 5


def test_a_task_cancelled_before_it_ran_or_by_itself_names_no_waiting_line(traced: Traced, cancels: Any) -> None:
    async def itself() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await asyncio.sleep(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        never_ran = loop.create_task(cancels.fetch(), name="never-ran")
        never_ran.cancel()
        await asyncio.gather(never_ran, loop.create_task(itself(), name="itself"), return_exceptions=True)

    traced.run(main())
    assert _waiting(traced) == {"never-ran": None, "itself": None}


# --- an exception a framework caught -----------------------------------------------------


def test_caught_records_the_exception_and_where_it_was_raised_and_the_task_goes_on(
    traced: Traced, program: Any
) -> None:
    async def handler() -> str:
        try:
            await program.fails()
        except KeyError as exc:
            recorded.append(traced.impl.caught(asyncio.current_task(), exc))
        return "500"

    recorded: list[bool] = []

    traced.bind(capture_values=True)
    task = traced.loop.create_task(handler())
    assert traced.run(task) == "500"
    assert recorded == [True]
    fid = traced.impl.future_id(task)
    events = [e for e in Converter(capture_values=True).convert(traced.ring.take()) if e.future_id == fid]
    kinds = [e.kind for e in events]
    assert "resolved" in kinds and "failed" not in kinds
    assert kinds.index("caught") < kinds.index("resolved")
    [caught] = [e for e in events if e.kind == "caught"]
    assert caught.exc_type == "KeyError" and caught.exc_msg is not None
    assert caught.raise_site is not None and (caught.raise_site.function, caught.raise_site.lineno) == ("checked", 23)
    assert caught.raise_program_site is not None and caught.raise_program_site.lineno == 14


def test_caught_records_no_message_without_capture_values_and_nothing_for_an_untraced_task(traced: Traced) -> None:
    async def handler() -> None:
        assert traced.impl.caught(asyncio.current_task(), ValueError("secret"))

    traced.run(traced.loop.create_task(handler()))
    [caught] = [e for e in Converter().convert(traced.ring.take()) if e.kind == "caught"]
    assert caught.exc_type == "ValueError" and caught.exc_msg is None and caught.raise_site is None

    async def untraced() -> bool:
        return bool(traced.impl.caught(asyncio.current_task(), ValueError("x")))

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(untraced()) is False
    finally:
        loop.close()
    assert traced.impl.caught(object(), ValueError("x")) is False


def test_an_installed_packages_console_script_is_not_the_program() -> None:
    # `tracedfuture run .venv/bin/uvicorn app:app`: the launcher pip wrote runs
    # uvicorn's code; the program is the app, not `.venv/bin/uvicorn:8 in <module>`.
    launcher = compile("main()", os.path.join(sysconfig.get_path("scripts"), "uvicorn"), "exec")
    assert _frames.classify(launcher) == _frames.LIBRARY
    own = compile("main()", os.path.join(os.getcwd(), "bin", "serve.py"), "exec")
    assert _frames.classify(own) == _frames.PROGRAM  # a project's own bin/ is the program's


def test_the_environments_paths_are_sysconfigs_without_its_build_configuration() -> None:
    # _frames expands the default scheme's templates itself (sysconfig would load
    # the whole build configuration first): the same strings as sysconfig's.
    names = tuple(sysconfig.get_paths())
    assert _frames._install_paths(names) == [sysconfig.get_paths()[name] for name in names]
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    assert _frames._install_paths(("scripts",), base) == [sysconfig.get_path("scripts", vars=base)]
    assert sysconfig.get_paths()["stdlib"] + os.sep == _frames.STDLIB_DIR


@pytest.mark.parametrize(
    "name",
    [
        "/usr/lib/python3.12/asyncio/tasks.py",
        "C:\\Python312\\Lib\\python3\\x.py",
        "/venv/lib/python3.11/site-packages/aiohttp/web.py",
        "/usr/lib/python3/dist-packages/x.py",
        "/app/site-packages-like/x.py",
        "/home/me/python3-projects/app.py",
        "/app/main.py",
    ],
)
def test_the_path_patterns_answer_as_their_regular_expressions(name: str) -> None:
    import re

    for pattern in (_frames.OTHER_STDLIB, _frames.PACKAGES):
        regex = re.compile(pattern.pattern)
        for method in ("match", "search"):
            ours, theirs = getattr(pattern, method)(name), getattr(regex, method)(name)
            assert (ours and ours.span()) == (theirs and theirs.span())
