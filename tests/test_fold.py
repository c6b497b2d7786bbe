"""The one fold of the event stream: what pending, finished, incomplete, awaited-by
and internal mean, once, for every reader (graph, viewers, pytest plugin, structlog)."""

from __future__ import annotations

import asyncio

from tracedfuture._core._events import Event, Outcome, Site
from tracedfuture._fold import Fold
from tracedfuture.exporters import MemoryExporter
from tracedfuture.graph import INCOMPLETE as GRAPH_INCOMPLETE
from tracedfuture.graph import from_events

ASYNCIO_SITE = Site(asyncio.__file__.replace("__init__.py", "subprocess.py"), 30, "SubprocessStreamProtocol.__init__")
USER_SITE = Site("/app/main.py", 12, "main")


def fold(*events: Event) -> Fold:
    return Fold().feed(events)


def test_a_callback_added_after_finishing_leaves_it_finished() -> None:
    state = fold(
        Event("created", 1, 1, is_task=True),
        Event("resolved", 1, 2, is_task=True),
        Event("callback_added", 1, 3, is_task=True, callback="done"),
        Event("callback_scheduled", 1, 3, is_task=True, callback="done"),
    ).states[1]
    assert state.outcome == Outcome.RESOLVED
    assert state.callbacks == []
    assert state.callbacks_added == 1


def test_awaited_by_is_who_waits_now_and_awaits_is_who_ever_did() -> None:
    state = fold(
        Event("created", 5, 1),
        Event("awaited", 5, 2, callback="Task.task_wakeup", awaiter_id=1),
        Event("awaited", 5, 3, callback="Task.task_wakeup", awaiter_id=2),
        Event("callback_removed", 5, 4, callback="Task.task_wakeup"),
    ).states[5]
    assert state.pending
    assert state.awaited_by == (2,)
    assert [task for task, _ in state.awaits] == [1, 2]


def test_a_history_without_created_is_incomplete_not_pending() -> None:
    folded = fold(Event("awaited", 7, 10, callback="Task.task_wakeup", awaiter_id=3))
    assert folded.states[7].outcome == Outcome.INCOMPLETE
    assert list(folded.pending()) == []
    assert [s.id for s in folded.unfinished()] == [7]


def test_an_incomplete_mark_makes_a_pending_future_incomplete_and_keeps_an_outcome() -> None:
    folded = fold(
        Event("created", 1, 1),
        Event("incomplete", 1, 2),
        Event("created", 2, 3),
        Event("resolved", 2, 4),
        Event("incomplete", 2, 5),
    )
    assert folded.states[1].outcome == Outcome.INCOMPLETE
    assert (folded.states[2].outcome, folded.states[2].incomplete) == (Outcome.RESOLVED, True)


def test_a_late_outcome_ends_an_incomplete_history() -> None:
    state = fold(Event("awaited", 3, 1, awaiter_id=1), Event("resolved", 3, 2)).states[3]
    assert (state.outcome, state.incomplete) == (Outcome.RESOLVED, True)


def test_abandoned_is_finished_and_keeps_its_age() -> None:
    state = fold(Event("created", 1, 1), Event("abandoned", 1, 9, age_ns=8)).states[1]
    assert (state.outcome, state.done, state.lifetime_ns()) == (Outcome.ABANDONED, True, 8)


def test_asyncios_own_futures_are_internal() -> None:
    folded = fold(Event("created", 1, 1, site=ASYNCIO_SITE), Event("created", 2, 1, site=USER_SITE))
    assert folded.states[1].internal
    assert not folded.states[2].internal


def test_the_loops_findings_are_kept_apart() -> None:
    folded = fold(Event("blocked_loop", 0, 5, age_ns=100))
    assert folded.states == {}
    assert [e.kind for e in folded.loop_lints] == ["blocked_loop"]
    assert (folded.first_ns, folded.last_ns) == (5, 5)


def test_from_events_is_the_fold(memory: MemoryExporter) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(asyncio.sleep(0)) for _ in range(3)]
        await asyncio.gather(*tasks)
        for task in tasks:
            task.add_done_callback(lambda _: None)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert [f for f in from_events(memory) if f.is_task] == []


def test_from_events_shows_incomplete_histories_as_incomplete() -> None:
    snap = from_events([Event("awaited", 7, 10, callback="Task.task_wakeup", awaiter_id=3)])
    (fut,) = snap
    assert (fut.state, fut.age_ns) == (GRAPH_INCOMPLETE, None)


def test_pending_means_created_here_and_not_finished() -> None:
    folded = fold(Event("created", 1, 1), Event("cancel_requested", 1, 2, msg="stop"))
    (state,) = folded.pending()
    assert (state.outcome, state.cancelling) == (Outcome.PENDING, True)


def test_where_a_task_waited_is_its_last_cancel_requests() -> None:
    here = Site("app.py", 33, "fetch")
    state = fold(
        Event("created", 1, 0, is_task=True),
        Event("cancel_requested", 1, 1, is_task=True, canceller="a", waiting_site=here),
        Event("cancel_requested", 1, 2, is_task=True, canceller="b"),
    ).states[1]
    assert state.waiting_site is None  # "b" cancelled it while it was not waiting: "a"'s line would mislead


def test_an_exception_a_framework_caught_leaves_the_task_resolved_with_its_raise_line() -> None:
    raised, program = Site("fakedb.py", 7, "query"), Site("app.py", 33, "fail")
    state = fold(
        Event("created", 1, 0, is_task=True),
        Event("caught", 1, 1, is_task=True, exc_type="LookupError", raise_site=raised, raise_program_site=program),
        Event("resolved", 1, 2, is_task=True, result_type="NoneType"),
    ).states[1]
    assert state.outcome == Outcome.RESOLVED and state.caught
    assert (state.exc_type, state.raise_site, state.raise_program_site) == ("LookupError", raised, program)
