"""The pytest plugin, run on real test files through pytester."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

DEADLOCK = """
import asyncio

async def wait_for_other(other):
    await other

async def main():
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    a = asyncio.create_task(wait_for_other(second), name="a")
    b = asyncio.create_task(wait_for_other(first), name="b")
    await asyncio.sleep(0.01)
    assert first.done(), "deadlock"

def test_deadlock():
    asyncio.run(main())
"""

PASSING_BUT_LEAKY = """
import asyncio

async def main():
    asyncio.get_running_loop().create_future()  # nobody will ever resolve it
    asyncio.create_task(asyncio.sleep(10), name="forgotten")
    await asyncio.sleep(0)

def test_leaky():
    asyncio.run(main())
"""

CLEAN = """
import asyncio

async def main():
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, 1)
    return await fut

def test_clean():
    assert asyncio.run(main()) == 1
"""


def test_the_plugin_is_off_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEADLOCK)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*- tracedfuture -*")
    result.stdout.no_fnmatch_line("tracedfuture: tracing each test*")


def test_a_failing_test_reports_the_pending_await_graph(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEADLOCK)
    result = pytester.runpytest("--tracedfuture")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- tracedfuture -*",
            "pending await graph when asyncio began cancelling the tasks left behind:",
            "*pending: 2 tasks, 2 futures",
            "├── (T) #* a  wait_for_other()  pending *s  created at test_a_failing_test_*.py:9 in main",
            "│   └── (F) #*  pending *s  created at test_a_failing_test_*.py:8 in main",
            "└── (T) #* b  wait_for_other()  pending *s  created at test_a_failing_test_*.py:10 in main",
            "    └── (F) #*  pending *s  created at test_a_failing_test_*.py:8 in main",
        ]
    )


def test_a_failing_test_reports_its_last_events(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEADLOCK)
    pytester.makeini("[pytest]\ntracedfuture = true\ntracedfuture_last_events = 5\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["last 5 of * events (asyncio.run's shutdown tasks left out):", "  +* ms  (*) #* *"])


def test_the_last_events_leave_out_asyncio_runs_shutdown_tasks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEADLOCK)
    result = pytester.runpytest("--tracedfuture", "-o", "tracedfuture_last_events=200")
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*shutdown_asyncgens*")
    result.stdout.fnmatch_lines(["*(T) #* Task-*  failed AssertionError"])


def test_a_test_that_times_out_reports_what_the_timeout_cancelled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        async def fetch(reply):
            await reply

        async def main():
            reply = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(fetch(reply), timeout=0.01)

        def test_times_out():
            asyncio.run(main())
        """
    )
    result = pytester.runpytest("--tracedfuture")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- tracedfuture -*",
            "pending await graph just before the timeout fired:",
            "*pending: 2 tasks, 2 futures",
            "*── (T) #* Task-*  fetch()  pending *s  created at test_a_test_that_times_out_*.py:8 in main*",
            "*   └── (F) #*  pending *s  created at test_a_test_that_times_out_*.py:7 in main",
        ]
    )


def test_strict_mode_fails_a_passing_test_that_leaves_futures_pending(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PASSING_BUT_LEAKY)
    result = pytester.runpytest("--tracedfuture-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "tracedfuture strict mode: the test passed but left this behind",
            "  left pending: (T) #* forgotten, created at test_strict_mode_*.py:5 in main",
            "  abandoned: (F) #* collected while pending after *s, created at test_strict_mode_*.py:4 in main",
        ]
    )


def test_strict_mode_reports_an_exception_nobody_retrieved(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        async def main():
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(ValueError("lost"))

        def test_lost():
            asyncio.run(main())
        """
    )
    result = pytester.runpytest("-o", "tracedfuture_strict=true")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["  unretrieved: (F) #* was collected * with ValueError nobody retrieved, created at *"]
    )


def test_strict_mode_passes_a_test_that_cleans_up(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLEAN)
    result = pytester.runpytest("--tracedfuture-strict")
    result.assert_outcomes(passed=1)


def test_without_strict_mode_a_leaky_test_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PASSING_BUT_LEAKY)
    result = pytester.runpytest("--tracedfuture")
    result.assert_outcomes(passed=1)


def test_the_fixture_gives_the_tests_events_with_the_plugin_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        CLEAN
        + """
def test_events(tracedfuture_events):
    asyncio.run(main())
    assert tracedfuture_events.kinds(tracedfuture_events.futures()[0]) == [
        "created", "awaited", "resolved", "callback_scheduled"
    ]
"""
    )
    result = pytester.runpytest("--tracedfuture")
    result.assert_outcomes(passed=2)


def test_the_fixture_traces_its_test_with_the_plugin_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        def test_events(tracedfuture_events):
            asyncio.run(asyncio.sleep(0))
            assert tracedfuture_events.kinds()[0] == "created"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_the_report_header_says_the_plugin_is_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLEAN)
    result = pytester.runpytest("--tracedfuture-strict")
    result.stdout.fnmatch_lines(["tracedfuture: tracing each test (strict)"])


def test_a_bad_last_events_setting_names_the_value(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntracedfuture = true\ntracedfuture_last_events = many\n")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*tracedfuture_last_events must be a number of events >= 0, such as 30, not 'many'*"])


def test_an_interrupted_test_prints_what_it_was_waiting_for(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        async def main():
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, fut.set_exception, KeyboardInterrupt())
            await fut  # as if Ctrl-C stopped a hung test here

        def test_hangs():
            asyncio.run(main())
        """
    )
    result = pytester.runpytest_subprocess("--tracedfuture")
    result.stdout.fnmatch_lines(["tracedfuture: *::test_hangs was interrupted", "pending await graph *"])


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    found = [ep.value for ep in entry_points(group="pytest11") if ep.name == "tracedfuture"]
    assert found == ["tracedfuture.pytest_plugin"]


def test_importing_the_plugin_starts_nothing() -> None:
    program = (
        "import threading, asyncio, tracedfuture.pytest_plugin, tracedfuture._install as i;"
        "assert threading.active_count() == 1, threading.enumerate();"
        "assert not i._process_wide"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
