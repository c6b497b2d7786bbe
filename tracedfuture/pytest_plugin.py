"""The tracedfuture pytest plugin: trace each test, explain the ones that fail.

Installed with tracedfuture (the ``pytest11`` entry point) and off until asked::

    pytest --tracedfuture                 # or, in the ini file: tracedfuture = true
    pytest --tracedfuture-strict          # or: tracedfuture_strict = true

When on, each test runs with every event loop it creates traced. When a test
fails (an assertion, an exception, a timeout), its report gets a ``tracedfuture``
section: the await graph of what was still pending when it failed, the findings
(stalled, abandoned, unretrieved...), and the last events. Strict mode also fails
tests that pass but leave futures or tasks pending, abandon futures or leave an
exception nobody retrieved.

The ``tracedfuture_events`` fixture gives a test its events (a
:class:`~tracedfuture.exporters.MemoryExporter`); it works with the plugin off too,
tracing that test alone::

    def test_worker_cancels_its_reply(tracedfuture_events):
        asyncio.run(worker())
        assert "cancelled" in tracedfuture_events.kinds()

Turned off, the plugin registers its options and does nothing else: no loop is
traced and no thread started. Loading it imports the ``tracedfuture`` package
(standard library only, asyncio included), a few tens of milliseconds once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .exporters import MemoryExporter

__all__ = ["pytest_addoption", "pytest_configure", "tracedfuture_events"]

_PLUGIN_NAME = "tracedfuture-tracer"
_LAST_EVENTS = 30


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tracedfuture", "asyncio futures and tasks, traced (tracedfuture)")
    group.addoption(
        "--tracedfuture",
        action="store_true",
        default=None,
        help="trace every test's event loops; explain failures with the pending await graph and the last events",
    )
    group.addoption(
        "--tracedfuture-strict",
        action="store_true",
        default=None,
        help="with --tracedfuture: also fail tests that leave futures pending, abandon them or lose an exception",
    )
    parser.addini("tracedfuture", type="bool", default=False, help="turn the tracedfuture plugin on")
    parser.addini(
        "tracedfuture_strict", type="bool", default=False, help="turn on tracedfuture's strict mode (implies it is on)"
    )
    parser.addini(
        "tracedfuture_last_events",
        default=str(_LAST_EVENTS),
        help=f"how many of the last events a failing test's report shows (default {_LAST_EVENTS})",
    )


def pytest_configure(config: pytest.Config) -> None:
    strict = bool(config.getoption("tracedfuture_strict") or config.getini("tracedfuture_strict"))
    if not (strict or config.getoption("tracedfuture") or config.getini("tracedfuture")):
        return
    raw = config.getini("tracedfuture_last_events")
    last = int(raw) if str(raw).strip().isdigit() else -1
    if last < 0:
        msg = f"tracedfuture_last_events must be a number of events >= 0, such as {_LAST_EVENTS}, not {raw!r}"
        raise pytest.UsageError(msg)
    config.pluginmanager.register(_Tracer(strict, last), _PLUGIN_NAME)


@pytest.fixture
def tracedfuture_events(request: pytest.FixtureRequest) -> Iterator[MemoryExporter]:
    """The events of this test's futures and tasks, up to date whenever read.

    With the plugin on, every loop of the test is traced already; with it off,
    requesting this fixture traces the loops this test creates.
    """
    tracer = request.config.pluginmanager.get_plugin(_PLUGIN_NAME)
    memory = tracer.memory(request.node) if isinstance(tracer, _Tracer) else None
    if memory is not None:
        yield memory
        return
    from .testing import capture_events

    with capture_events() as captured:
        yield captured


class _Tracer:
    """The plugin when it is on: one process-wide installation per test."""

    def __init__(self, strict: bool, last_events: int) -> None:
        self.strict = strict
        self.last_events = last_events
        self._running: dict[str, tuple[Any, MemoryExporter]] = {}
        # Tests whose call phase is under way: a report made meanwhile is a
        # subtest's (unittest's subTest, pytest's subtests fixture), and the
        # test's own task is still running then, not left behind.
        self._calling: set[str] = set()

    def memory(self, item: pytest.Item) -> MemoryExporter | None:
        running = self._running.get(item.nodeid)
        return running[1] if running is not None else None

    def pytest_report_header(self) -> str:
        return f"tracedfuture: tracing each test{' (strict)' if self.strict else ''}"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        from ._install import install

        memory = _creator_memory()
        installation = install(exporters=[memory])
        self._running[item.nodeid] = (installation, memory)
        try:
            outcome = yield
            excinfo = outcome.excinfo
            if excinfo is not None and issubclass(excinfo[0], KeyboardInterrupt):
                # A hung test stopped with Ctrl-C gets no report: say what it awaited.
                terminal = item.config.pluginmanager.get_plugin("terminalreporter")
                if terminal is not None:
                    text = _explain(memory, self.last_events)
                    terminal.write_line(f"\ntracedfuture: {item.nodeid} was interrupted\n{text}")
        finally:
            del self._running[item.nodeid]
            installation.uninstall()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        self._calling.add(item.nodeid)
        try:
            yield
        finally:
            self._calling.discard(item.nodeid)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        memory = self.memory(item)
        if memory is None:
            return
        subtest = item.nodeid in self._calling
        if self.strict and report.when == "call" and report.passed and not subtest:
            problems = _leftovers(memory)
            if problems:
                report.outcome = "failed"
                report.longrepr = (
                    "tracedfuture strict mode: the test passed but left this behind\n"
                    + "\n".join(f"  {p}" for p in problems)
                    + "\n(without --tracedfuture-strict / tracedfuture_strict, this is allowed)"
                )
        if report.failed:
            timed_out = call.excinfo is not None and call.excinfo.errisinstance(TimeoutError)
            report.sections.append(("tracedfuture", _explain(memory, self.last_events, timed_out)))


# --- who made each future ----------------------------------------------------------------

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _creator_memory() -> MemoryExporter:
    """A MemoryExporter that also captures, for each new future, the file of the
    code that called ``create_future``: a creation site is the first frame outside
    asyncio, which hides asyncio's own futures behind the user's line that led to
    them (a subprocess protocol's ``_stdin_closed`` behind ``create_subprocess_exec``).
    It lands in each ``created`` event's ``context``; only strict mode reads it."""
    from .exporters import MemoryExporter

    class CreatorMemory(MemoryExporter):
        def capture(self) -> str | None:
            frame: FrameType | None = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(_OWN_DIR):
                frame = frame.f_back
            return frame.f_code.co_filename if frame is not None else None

    return CreatorMemory()


# --- what goes in a report --------------------------------------------------------------


_CASCADE_NS = 5_000_000


def _cancelled_by(event: Any, prefixes: tuple[str, ...]) -> bool:
    return event.kind in ("cancel_requested", "cancelled") and (event.canceller or "").startswith(prefixes)


def _cleanup_start(events: list[Any]) -> int | None:
    """When asyncio.run / asyncio.Runner began cancelling the tasks left behind
    (``asyncio.runners._cancel_all_tasks``): the await graph just before it is
    the one the test failed with. (Cancelling a task cancels the future it
    awaits first, so the first such event may be that future's ``cancelled``.)"""
    for event in events:
        if _cancelled_by(event, ("_cancel_all_tasks ",)):
            return int(event.ts_ns) - 1
    return None


def _last_timeout_start(events: list[Any]) -> int | None:
    """For a test that failed with TimeoutError: when the timeout fired, taken as
    the first of the last burst of cancellations before asyncio's own cleanup.
    One timeout cancels a chain of tasks and futures within microseconds, through
    ``wait_for``, ``asyncio.timeout``, ``gather``...: the canceller varies, the
    burst does not."""
    times = [
        int(e.ts_ns)
        for e in events
        if e.kind in ("cancel_requested", "cancelled") and not _cancelled_by(e, ("_cancel_all_tasks ",))
    ]
    if not times:
        return None
    start = len(times) - 1
    while start > 0 and times[start] - times[start - 1] < _CASCADE_NS:
        start -= 1
    return times[start] - 1


def _explain(memory: MemoryExporter, last: int, timed_out: bool = False) -> str:
    from .graph import format_snapshot, from_events
    from .lints import report

    events = list(memory)
    moment = _last_timeout_start(events) if timed_out else None
    if moment is not None:
        when = "just before the timeout fired"
    else:
        moment = _cleanup_start(events)
        when = "when asyncio began cancelling the tasks left behind" if moment is not None else "at the end of the test"
    parts = [f"pending await graph {when}:", format_snapshot(from_events(events, moment))]
    found = report(events)
    if found:
        parts += ["", "findings:", found]
    # asyncio.run's own housekeeping tasks, after the test's code ended, would
    # push the events that matter out of the last ones shown.
    from ._core._events import is_shutdown_task

    housekeeping = {
        e.future_id for e in events if e.kind == "created" and is_shutdown_task(e.is_task, e.coro, e.task_id)
    }
    relevant = [e for e in events if e.future_id not in housekeeping]
    if last and relevant:
        shown = relevant[-last:]
        parts += ["", f"last {len(shown)} of {len(events)} events (asyncio.run's shutdown tasks left out):"]
        t0 = events[0].ts_ns
        parts += [_format_event(e, t0) for e in shown]
    return "\n".join(parts)


def _leftovers(memory: MemoryExporter) -> list[str]:
    """What a strict test must not leave: futures pending when it ended (or when
    asyncio cancelled the leftovers for it), abandoned ones, lost exceptions.

    One fold decides (``tracedfuture._fold``): a future that finished is finished,
    whatever callbacks it was given afterwards. asyncio's own futures (created by
    asyncio's code, such as a subprocess protocol's ``_stdin_closed`` when stdin is
    not a pipe) are asyncio's business, not the test's: they never fail it. Nor
    are the futures of a loop another thread is still running (a server started
    by a session fixture): they are in flight, not left behind; a thread that
    ended with futures pending did leave them.
    """
    import gc
    import threading

    from ._fold import Fold
    from ._text import site_text
    from .lints import describe

    gc.collect()  # a future in a reference cycle is only found abandoned when collected
    events = list(memory)
    problems: list[str] = []
    moment = _cleanup_start(events)
    made_by = {e.future_id: e.context for e in events if e.kind == "created" and isinstance(e.context, str)}
    final = Fold().feed(events)
    folds = ([Fold().feed(events, moment)] if moment is not None else []) + [final]
    seen: set[int] = set()
    running = set(sys._current_frames()) - {threading.get_ident()}
    for fold in folds:
        for state in fold.pending():
            if state.id in seen or _internal(final, state.id, made_by) or state.thread_id in running:
                continue
            seen.add(state.id)
            label = ("(T)" if state.is_task else "(F)") + f" #{state.id}" + (f" {state.name}" if state.name else "")
            where = f", created at {site_text(state.site)}" if state.site is not None else ""
            problems.append(f"left pending: {label}{where}")
    problems += [
        describe(e)
        for e in events
        if e.kind in ("abandoned", "unretrieved") and not _internal(final, e.future_id, made_by)
    ]
    return problems


def _internal(fold: Any, future_id: int, made_by: dict[int, str]) -> bool:
    """Made by asyncio's own code: its site is asyncio's, or (a bare future) the
    code that called ``create_future`` was."""
    from ._text import is_asyncio

    state = fold.states.get(future_id)
    if state is None:
        return False
    if state.internal:
        return True
    creator = made_by.get(future_id)
    return not state.is_task and creator is not None and is_asyncio(creator)


def _format_event(event: Any, t0: int) -> str:
    from ._text import site_text

    label = ("(T)" if event.is_task else "(F)") + f" #{event.future_id}" + (f" {event.name}" if event.name else "")
    if not event.future_id:
        label = "loop"
    text = f"  +{(event.ts_ns - t0) / 1e6:9.3f} ms  {label}  {event.kind}"
    kind = event.kind
    if kind == "created" and event.site is not None:
        text += f" at {site_text(event.site)}"
    elif kind in ("awaited", "callback_scheduled") and event.awaiter_id is not None:
        text += f" (task #{event.awaiter_id})"
    elif kind in ("callback_added", "callback_removed", "callback_scheduled"):
        text += f" {event.callback}"
    elif kind in ("cancel_requested", "cancelled"):
        if event.canceller:
            text += f" by {event.canceller}"
        if event.waiting_site is not None:
            text += f" while waiting at {site_text(event.waiting_site)}"
        if event.msg:
            text += f" msg={event.msg!r}"
    elif kind in ("failed", "caught"):
        text += f" {event.exc_type}" + (f": {event.exc_msg}" if event.exc_msg else "")
        raised = event.raise_program_site or event.raise_site
        if raised is not None:
            text += f" raised at {site_text(raised)}"
    elif kind in ("stalled", "orphan", "blocked_loop") and event.detail:
        text += f" {event.detail.splitlines()[0]}"
    elif kind in ("abandoned", "unretrieved") and event.site is not None:
        text += f" (created at {site_text(event.site)})"
    return text
