"""A trace file folded into one state per future or task, for the viewers.

The ``tree``, ``stats``, ``html`` and ``perfetto`` commands all start here:
:func:`load` streams a trace file through :func:`tracedfuture.trace.iter_runs`
into the one fold of the event stream (:class:`tracedfuture._fold.Fold`) and
keeps one :class:`Record` per future instead of every event, so a trace of a
million events fits in memory comfortably.

>>> model = load("trace.jsonl")  # doctest: +SKIP
>>> [r.label() for r in model.records.values() if r.outcome == FAILED]  # doctest: +SKIP
['task child-2 #6']
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .._core._events import Event, Outcome, Site
from .._fold import Fold, FutureState
from .._text import is_library, parse_request_name, site_text
from ..trace import iter_runs

__all__ = [
    "BACKGROUND",
    "CAUGHT",
    "OTHER",
    "REQUESTS",
    "VIEW_OUTCOMES",
    "Model",
    "TaskGroup",
    "framework_owned",
    "load",
    "task_groups",
    "traffic_key",
    "view_outcome",
]

REQUESTS = "requests"  # tasks named by route (tracedfuture.asgi), or many tasks of one coroutine and line
OTHER = "other"  # the program's other tasks, and futures outside any task
BACKGROUND = "background"  # tasks that live the whole run, or the framework's own

TRAFFIC_AT = 10  # this many tasks of one coroutine, created at one line, are traffic like requests


def traffic_of(keys: Iterable[str]) -> set[str]:
    """The keys (:func:`traffic_key`) that are traffic: a route, or one coroutine
    started at one line at least ``TRAFFIC_AT`` times."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return {key for key, count in counts.items() if count >= TRAFFIC_AT or parse_request_name(key) is not None}


LONG_LIVED = 0.8  # a task alive for this share of the trace lives the whole run
QUIET_NS = 10_000_000  # ...and is quiet (a lane of few events) with no more than one future per 10 ms

# A task that ended well after a framework caught an exception in it (a server's
# 500: tracedfuture.asgi saw the endpoint's exception leave the application) is
# a failure to the person reading the trace, not a healthy "resolved". The fold
# keeps its outcome (the task did return); the viewers count and colour it
# apart, as "caught", beside "failed".
CAUGHT = "caught"
VIEW_OUTCOMES = (Outcome.RESOLVED, Outcome.FAILED, CAUGHT, *Outcome.ALL[2:])


def view_outcome(record: FutureState) -> str:
    """Its outcome as the viewers count it: :data:`CAUGHT` for one that resolved
    after a framework caught an exception in it, else the fold's."""
    return CAUGHT if record.caught and record.outcome == Outcome.RESOLVED else record.outcome


@dataclass(frozen=True, slots=True)
class TaskGroup:
    """Tasks shown together: the requests of one route (``label`` is ``GET
    /items/{item_id}``), the tasks of one coroutine created at one line, the
    program's other tasks, or the background (``kind``). ``ids`` are task ids in
    the model's task order, each request followed by the tasks it started."""

    label: str
    kind: str
    ids: tuple[int, ...]


@dataclass
class Model:
    """A trace file as records: ``records`` is keyed by id, in order of creation.

    ``end_ns`` is when the trace ended: its last event, or its stats line's
    ``end_ns`` when that is later, so that what was still pending at exit gets
    its real age.
    """

    path: str
    header: dict[str, Any]
    records: dict[int, FutureState]
    loop_lints: list[Event]
    start_ns: int
    end_ns: int
    stats: dict[str, Any]
    warnings: list[str]

    def name_of(self, task_id: int | None) -> str:
        """A task's label for messages (``task main #1``), even if it is not in the trace."""
        if task_id is None:
            return "(no task)"
        record = self.records.get(task_id)
        return record.label() if record is not None else f"task #{task_id}"

    def end_or_trace_end(self, record: FutureState) -> int:
        """When a record's bar ends: its end, or the end of the trace while unfinished."""
        return record.end_ns if record.end_ns is not None else self.end_ns

    def home_task(self, record: FutureState) -> int | None:
        """The task a record is shown with: a task itself; a future's first awaiter,
        else the task that created it; None for a future outside any task."""
        if record.is_task:
            return record.id
        records = self.records
        if record.awaits:
            found = records.get(record.awaits[0][0])
            if found is not None and found.is_task:
                return found.id
        if record.creator_id is not None:
            found = records.get(record.creator_id)
            if found is not None and found.is_task:
                return found.id
        return None

    def task_order(self) -> list[int]:
        """Task ids depth-first by parent, siblings by start: related tasks sit together."""
        records = self.records
        tasks = sorted((r for r in records.values() if r.is_task), key=lambda r: r.start_ns)
        children: dict[int | None, list[int]] = {}
        for task in tasks:
            parent = task.parent_id if task.parent_id in records and task.parent_id != task.id else None
            children.setdefault(parent, []).append(task.id)
        order: list[int] = []
        seen: set[int] = set()
        stack = list(reversed(children.get(None, [])))
        while stack:
            task_id = stack.pop()
            if task_id in seen:
                continue
            seen.add(task_id)
            order.append(task_id)
            stack.extend(reversed(children.get(task_id, [])))
        order.extend(task.id for task in tasks if task.id not in seen)  # parent cycles in a corrupt trace
        return order

    def counts(self) -> dict[str, int]:
        """How many records ended each way, keyed by outcome, in :data:`Outcome.ALL` order."""
        counts = dict.fromkeys(Outcome.ALL, 0)
        for record in self.records.values():
            counts[record.outcome] += 1
        return counts

    def dropped(self) -> int:
        """How many futures the stats line says the file does not show whole:
        untraced, dropped whole or marked incomplete (0 when it says nothing)."""
        total = 0
        for key, value in self.stats.items():
            if type(value) is int and value > 0 and key.endswith("_futures") and key.startswith(_LOST):
                total += value
        return total


_LOST = ("untraced", "dropped", "incomplete")


def traffic_key(name: str | None, coro: str | None, site: Site | None, program_site: Site | None) -> str:
    """What groups a task with its like: its route, else its coroutine and the line
    that created it (the program's first). ``tracedfuture pstree`` groups a live
    process's tasks with it too."""
    if parse_request_name(name) is not None:
        return name or ""
    return f"{coro or name or 'task'} \u00b7 {site_text(program_site or site)}"


def framework_owned(site: Site | None, program_site: Site | None) -> bool:
    """Made by a library with no line of the program's up the stack (uvicorn's
    server and lifespan tasks, asyncio.run's own): a server's background, in a
    trace and in a live process alike."""
    return program_site is None and (site is None or is_library(site.filename))


def _own_key(record: FutureState) -> str:
    return traffic_key(record.name, record.coro, record.site, record.program_site)


def task_groups(model: Model) -> list[TaskGroup]:
    """A server's tasks in the order a person reads them: request groups first, the
    program's other tasks next, the background last; ``[]`` when the trace has no
    traffic (no task named by route, and no coroutine started :data:`TRAFFIC_AT`
    times from one line), so that a plain program keeps its tree order.

    A request's own subtasks stay with it. The background is what lives the whole
    run quietly (a lifespan, a server loop, a pool's keep-alive: started before
    the traffic, alive for :data:`LONG_LIVED` of the trace, with at most a future
    per :data:`QUIET_NS`) and what a framework started on its own; each task is
    judged on its own, so that a stuck request is never folded with its starter.
    """
    records = model.records
    order = model.task_order()
    own = {task_id: _own_key(records[task_id]) for task_id in order}
    traffic = traffic_of(own.values())
    if not traffic:
        return []
    homed: dict[int | None, int] = {}
    for record in records.values():
        if not record.is_task:
            home = model.home_task(record)
            homed[home] = homed.get(home, 0) + 1
    span = max(1, model.end_ns - model.start_ns)
    traffic_starts = min(records[task_id].start_ns for task_id in order if own[task_id] in traffic)
    group_of: dict[int, str] = {}
    for task_id in order:  # parents before their children
        record = records[task_id]
        parent = record.parent_id if record.parent_id != task_id else None
        inherited = group_of.get(parent) if parent is not None else None
        if inherited in traffic:  # a request's subtask stays with its request
            group_of[task_id] = inherited
        elif own[task_id] in traffic:
            group_of[task_id] = own[task_id]
        elif record.shutdown_task or framework_owned(record.site, record.program_site):
            group_of[task_id] = BACKGROUND
        else:
            life = model.end_or_trace_end(record) - record.start_ns
            quiet = homed.get(task_id, 0) <= max(8, life // QUIET_NS)
            early = record.start_ns <= traffic_starts  # started with the program, not by its traffic
            group_of[task_id] = BACKGROUND if early and quiet and life >= span * LONG_LIVED else OTHER
    members: dict[str, list[int]] = {}
    for task_id in order:
        members.setdefault(group_of[task_id], []).append(task_id)
    groups = [TaskGroup(key, REQUESTS, tuple(ids)) for key, ids in members.items() if key not in (OTHER, BACKGROUND)]
    if OTHER in members:
        groups.append(TaskGroup("other tasks", OTHER, tuple(members[OTHER])))
    if BACKGROUND in members:
        groups.append(TaskGroup("background", BACKGROUND, tuple(members[BACKGROUND])))
    return groups


def _trace_end(stats: dict[str, Any], last: int) -> int:
    """The end of the trace on its monotonic clock: its last event, or the
    ``end_ns`` of its stats line (written at shutdown) when that is later."""
    said = stats.get("end_ns")
    return said if type(said) is int and said > last else last


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off while a trace is folded: the fold makes a few
    containers per future (its state, its lists) and never a cycle, and each
    collection would walk all those made so far, finding nothing (a third of
    the time of reading 100,000 futures)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> Model:
    """Read a trace file into a :class:`Model`.

    Raises ``FileNotFoundError`` and :class:`tracedfuture.trace.TraceFormatError`
    (naming the file and line) like :func:`tracedfuture.trace.read`.
    """
    with _collector_paused():
        return _load(os.fspath(path), progress)


def _load(name: str, progress: Callable[[int, int], None] | None) -> Model:
    fold = Fold()
    apply = fold.apply
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    header: dict[str, Any] = {}
    for header, item in iter_runs(name, progress=progress):  # noqa: B007 - the header is kept
        if isinstance(item, list):
            for event in item:
                apply(event)
        elif "__truncated__" in item:
            warnings.append(
                f"{name}:{item['__truncated__']}: last line is truncated "
                "(the writer stopped mid-line: killed, crashed or out of disk space); ignored"
            )
        else:
            stats.update(item)
    if fold.first_ns is None or fold.last_ns is None:
        first = last = header.get("monotonic_anchor_ns", 0)
    else:
        first, last = fold.first_ns, fold.last_ns
    end = _trace_end(stats, last)
    return Model(name, header, fold.states, fold.loop_lints, first, end, stats, warnings)
