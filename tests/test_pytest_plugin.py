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
    result.stdout.fnmatch_lines(["*(T) #* Task-*  failed AssertionError raised at test_*.py:* in main"])


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


# --- one fold: what strict mode calls pending is what every viewer calls pending ------------

FINISHED_THEN_CALLBACKS = """
import asyncio
import pytest

async def work(n):
    await asyncio.sleep(0)
    return n

async def main(n):
    tasks = [asyncio.create_task(work(i)) for i in range(n)]
    results = await asyncio.gather(*tasks)
    seen = []
    for task in tasks:
        task.add_done_callback(seen.append)  # finished already: run at once, stays finished
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    fut.add_done_callback(seen.append)
    await asyncio.sleep(0)
    assert len(seen) == n + 1
    return results

@pytest.mark.parametrize("n", range(1, 31))
def test_gather_then_callbacks(n):
    assert asyncio.run(main(n)) == list(range(n))
"""


def test_strict_mode_passes_tests_that_add_callbacks_to_finished_tasks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FINISHED_THEN_CALLBACKS)
    plain = pytester.runpytest_subprocess()
    plain.assert_outcomes(passed=30)
    traced = pytester.runpytest_subprocess("--tracedfuture", "--tracedfuture-strict")
    traced.assert_outcomes(passed=30)


SUBPROCESS_STDIN_NOT_A_PIPE = """
import asyncio
import sys

async def main():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out

def test_child_prints():
    assert asyncio.run(main()).strip() == b"child"
"""


def test_strict_mode_does_not_blame_asyncios_own_futures_on_the_test(pytester: pytest.Pytester) -> None:
    # asyncio's SubprocessStreamProtocol makes a _stdin_closed future that is never
    # resolved when stdin is not a pipe: asyncio's business, not the test's.
    pytester.makepyfile(SUBPROCESS_STDIN_NOT_A_PIPE)
    result = pytester.runpytest_subprocess("--tracedfuture-strict")
    result.assert_outcomes(passed=1)


def test_strict_mode_still_fails_the_tests_own_abandoned_future(pytester: pytest.Pytester) -> None:
    # The other side of the one above: a future the test itself made and dropped.
    leaky = PASSING_BUT_LEAKY.replace("main", "leak")  # two test files' worth in one: no name clash
    pytester.makepyfile(leaky + SUBPROCESS_STDIN_NOT_A_PIPE)
    result = pytester.runpytest_subprocess("--tracedfuture-strict")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.no_fnmatch_line("*asyncio/subprocess.py*")


SUBTESTS = """
import asyncio
import unittest

class Case(unittest.IsolatedAsyncioTestCase):
    async def test_subtest(self):
        for i in range(3):
            with self.subTest(i=i):
                await asyncio.sleep(0)
                self.assertEqual(i, i)

def test_subtests_fixture(subtests):
    async def main():
        for i in range(3):
            with subtests.test(i=i):
                await asyncio.sleep(0)
    asyncio.run(main())
"""


def test_strict_mode_passes_passing_subtests_of_both_idioms(pytester: pytest.Pytester) -> None:
    # unittest's subTest in an IsolatedAsyncioTestCase and pytest's subtests fixture
    # both make a report while the test's own task is still running: not a leftover.
    pytester.makepyfile(SUBTESTS)
    result = pytester.runpytest("--tracedfuture", "--tracedfuture-strict")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*left behind*")


def test_strict_mode_still_fails_a_test_whose_subtest_leaves_a_task_pending(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        def test_leaky_subtest(subtests):
            async def main():
                with subtests.test(i=0):
                    asyncio.create_task(asyncio.sleep(10), name="forgotten")
                    await asyncio.sleep(0)
            asyncio.run(main())
        """
    )
    result = pytester.runpytest("--tracedfuture", "--tracedfuture-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*left pending: (T) #* forgotten*"])


def test_strict_mode_leaves_out_the_tasks_of_a_loop_another_thread_still_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import threading

        import pytest

        @pytest.fixture(scope="module")
        def server():
            started, stop = threading.Event(), threading.Event()

            async def serve():
                started.set()
                while not stop.is_set():
                    await asyncio.sleep(0.005)

            thread = threading.Thread(target=asyncio.run, args=(serve(),))
            thread.start()
            started.wait()
            yield
            stop.set()
            thread.join()

        def test_uses_the_server(server, subtests):
            with subtests.test(i=0):
                asyncio.run(asyncio.sleep(0.02))
            asyncio.run(asyncio.sleep(0.02))
        """
    )
    result = pytester.runpytest("--tracedfuture", "--tracedfuture-strict")
    result.assert_outcomes(passed=1)


def test_strict_mode_fails_a_test_whose_thread_ended_with_a_task_pending(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import threading

        def test_thread_leaves_a_task():
            async def main():
                asyncio.create_task(asyncio.sleep(10), name="forgotten-in-thread")
                await asyncio.sleep(0)

            def run():
                loop = asyncio.new_event_loop()
                loop.run_until_complete(main())  # never closed, never cancelled

            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
        """
    )
    result = pytester.runpytest("--tracedfuture", "--tracedfuture-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the test passed but left this behind*", "*forgotten-in-thread*"])
