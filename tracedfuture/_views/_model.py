"""A trace file folded into one state per future or task, for the viewers.

The ``tree``, ``stats``, ``html`` and ``perfetto`` commands all start here:
:func:`load` streams a trace file through :func:`tracedfuture.trace.iter_events`
into the one fold of the event stream (:class:`tracedfuture._fold.Fold`) and
keeps one :class:`Record` per future instead of every event, so a trace of a
million events fits in memory comfortably.

>>> model = load("trace.jsonl")  # doctest: +SKIP
>>> [r.label() for r in model.records.values() if r.outcome == FAILED]  # doctest: +SKIP
['task child-2 #6']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core._events import Event, Outcome
from .._fold import Fold, FutureState
from ..trace import iter_events

__all__ = ["Model", "load"]


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


def _trace_end(stats: dict[str, Any], last: int) -> int:
    """The end of the trace on its monotonic clock: its last event, or the
    ``end_ns`` of its stats line (written at shutdown) when that is later."""
    said = stats.get("end_ns")
    return said if type(said) is int and said > last else last


def load(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> Model:
    """Read a trace file into a :class:`Model`.

    Raises ``FileNotFoundError`` and :class:`tracedfuture.trace.TraceFormatError`
    (naming the file and line) like :func:`tracedfuture.trace.read`.
    """
    name = os.fspath(path)
    fold = Fold()
    apply = fold.apply
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    header: dict[str, Any] = {}
    for header, item in iter_events(name, progress=progress):  # noqa: B007 - the header is kept
        if isinstance(item, Event):
            apply(item)
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
