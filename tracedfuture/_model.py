"""Trace events folded into one record per future or task, for the viewers.

The ``tree``, ``stats``, ``html`` and ``perfetto`` commands all start here:
:func:`load` streams a trace file through :func:`tracedfuture.trace.iter_events`
and keeps one :class:`Record` per future instead of every event, so a trace of a
million events fits in memory comfortably.

>>> model = load("trace.jsonl")  # doctest: +SKIP
>>> [r.label() for r in model.records.values() if r.outcome == FAILED]  # doctest: +SKIP
['task child-2 #6']
"""

from __future__ import annotations

import functools
import os
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _events as ev
from ._events import Event, Site
from .trace import iter_events

__all__ = [
    "ABANDONED",
    "CANCELLED",
    "FAILED",
    "OUTCOMES",
    "PENDING",
    "RESOLVED",
    "Model",
    "Record",
    "format_duration",
    "load",
    "plural",
    "printable",
    "short_path",
    "site_text",
]

# Outcomes: how a future's life ended, or that it had not ended when the trace did.
RESOLVED = "resolved"
FAILED = "failed"
CANCELLED = "cancelled"
ABANDONED = "abandoned"  # garbage-collected while still pending
PENDING = "pending"
OUTCOMES = (RESOLVED, FAILED, CANCELLED, ABANDONED, PENDING)


@dataclass(slots=True)
class Record:
    """Everything the trace says about one future or task.

    ``awaits`` lists ``(task_id, ts_ns)`` for each task that started awaiting it;
    ``wakes`` lists ``(task_id, ts_ns)`` for each task its completion woke up.
    ``creator_id`` is the task that was running when it was created, ``parent_id``
    (tasks only) the task that created it as the core recorded it.
    """

    id: int
    is_task: bool = False
    name: str | None = None
    site: Site | None = None
    coro: str | None = None
    parent_id: int | None = None
    creator_id: int | None = None
    thread_id: int | None = None
    start_ns: int = 0
    end_ns: int | None = None
    outcome: str = PENDING
    result_type: str | None = None
    value: str | None = None
    exc_type: str | None = None
    exc_msg: str | None = None
    msg: str | None = None
    canceller_id: int | None = None
    canceller: str | None = None
    cancel_requests: list[tuple[int, str | None, int | None, str | None]] = field(default_factory=list)
    awaits: list[tuple[int, int]] = field(default_factory=list)
    wakes: list[tuple[int, int]] = field(default_factory=list)
    callbacks: int = 0
    unretrieved: bool = False
    age_ns: int | None = None
    lints: list[Event] = field(default_factory=list)

    def label(self) -> str:
        """``task worker-3 #12`` or ``future #40`` (with its label, if it has one)."""
        kind = "task" if self.is_task else "future"
        return f"{kind} {self.name} #{self.id}" if self.name else f"{kind} #{self.id}"

    def lifetime_ns(self) -> int | None:
        """How long it lived; ``None`` while pending (it has no end yet)."""
        if self.outcome == ABANDONED and self.age_ns is not None:
            return self.age_ns
        if self.end_ns is None:
            return None
        return self.end_ns - self.start_ns

    def first_awaiter(self) -> int | None:
        """The first task that awaited it, if any did."""
        return self.awaits[0][0] if self.awaits else None


@dataclass
class Model:
    """A trace file as records: ``records`` is keyed by id, in order of creation."""

    path: str
    header: dict[str, Any]
    records: dict[int, Record]
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

    def end_or_trace_end(self, record: Record) -> int:
        """When a record's bar ends: its end, or the end of the trace while pending."""
        return record.end_ns if record.end_ns is not None else self.end_ns

    def home_task(self, record: Record) -> int | None:
        """The task a record is shown with: a task itself; a future's first awaiter,
        else the task that created it; None for a future outside any task."""
        if record.is_task:
            return record.id
        for candidate in (record.first_awaiter(), record.creator_id):
            if candidate is not None:
                found = self.records.get(candidate)
                if found is not None and found.is_task:
                    return candidate
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
        """How many records ended each way, keyed by outcome, in :data:`OUTCOMES` order."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for record in self.records.values():
            counts[record.outcome] += 1
        return counts


def _record_for(records: dict[int, Record], event: Event) -> Record:
    record = records.get(event.future_id)
    if record is None:
        # Sampling or a trace started mid-run can leave a future without "created".
        record = records[event.future_id] = Record(event.future_id, event.is_task, event.name, start_ns=event.ts_ns)
    return record


def _apply(records: dict[int, Record], event: Event) -> None:
    kind = event.kind
    if kind == ev.CREATED:
        record = records.get(event.future_id)
        if record is None:
            record = records[event.future_id] = Record(event.future_id)
        record.is_task = event.is_task
        record.name = event.name
        record.site = event.site
        record.coro = event.coro
        record.parent_id = event.parent_id
        record.creator_id = event.task_id
        record.thread_id = event.thread_id
        record.start_ns = event.ts_ns
        return
    record = _record_for(records, event)
    if kind == ev.AWAITED:
        if event.awaiter_id is not None:
            record.awaits.append((event.awaiter_id, event.ts_ns))
    elif kind == ev.CALLBACK_SCHEDULED:
        if event.awaiter_id is not None:
            record.wakes.append((event.awaiter_id, event.ts_ns))
    elif kind == ev.CALLBACK_ADDED:
        record.callbacks += 1
    elif kind == ev.RESOLVED:
        record.outcome, record.end_ns = RESOLVED, event.ts_ns
        record.result_type, record.value = event.result_type, event.value
    elif kind == ev.FAILED:
        record.outcome, record.end_ns = FAILED, event.ts_ns
        record.exc_type, record.exc_msg = event.exc_type, event.exc_msg
    elif kind == ev.CANCELLED:
        record.outcome, record.end_ns = CANCELLED, event.ts_ns
        record.msg, record.canceller_id, record.canceller = event.msg, event.canceller_id, event.canceller
    elif kind == ev.CANCEL_REQUESTED:
        record.cancel_requests.append((event.ts_ns, event.msg, event.canceller_id, event.canceller))
    elif kind == ev.RENAMED:
        record.name = event.name
    elif kind == ev.ABANDONED:
        record.outcome, record.end_ns, record.age_ns = ABANDONED, event.ts_ns, event.age_ns
        if record.site is None:
            record.site = event.site
    elif kind == ev.UNRETRIEVED:
        record.unretrieved = True
        if record.exc_type is None:
            record.exc_type = event.exc_type
    elif kind in ev.LINTS:
        record.lints.append(event)


def load(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> Model:
    """Read a trace file into a :class:`Model`.

    Raises ``FileNotFoundError`` and :class:`tracedfuture.trace.TraceFormatError`
    (naming the file and line) like :func:`tracedfuture.trace.read`.
    """
    name = os.fspath(path)
    records: dict[int, Record] = {}
    loop_lints: list[Event] = []
    stats: dict[str, Any] = {}
    warnings: list[str] = []
    header: dict[str, Any] = {}
    first: int | None = None
    last = 0
    for header, item in iter_events(name, progress=progress):  # noqa: B007 - the header is kept
        if not isinstance(item, Event):
            if "__truncated__" in item:
                warnings.append(
                    f"{name}:{item['__truncated__']}: last line is truncated (the process stopped); ignored"
                )
            else:
                stats.update(item)
            continue
        ts = item.ts_ns
        if first is None or ts < first:
            first = ts
        last = max(last, ts)
        if item.future_id == 0:
            loop_lints.append(item)  # blocked_loop: about the loop, not one future
        else:
            _apply(records, item)
    if first is None:
        first = last = int(header.get("monotonic_anchor_ns", 0))
    return Model(name, header, records, loop_lints, first, last, stats, warnings)


_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep


@functools.lru_cache(maxsize=4096)
def short_path(filename: str) -> str:
    """A source path as people read it: relative to the current directory when it is
    inside it, ``asyncio/tasks.py`` for the standard library, the part after
    ``site-packages/`` for installed packages, otherwise unchanged."""
    if filename.startswith(_STDLIB):
        return filename[len(_STDLIB) :]
    marker = f"site-packages{os.sep}"
    if marker in filename:
        return filename.split(marker, 1)[1]
    if os.path.isabs(filename):
        cwd = os.getcwd() + os.sep
        if filename.startswith(cwd):
            return filename[len(cwd) :]
    return filename


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``; ``many`` when adding an s is not the plural."""
    return f"{count} {singular if count == 1 else many or singular + 's'}"


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), safe to print on a terminal.

    A trace holds whatever strings the program used; printed raw, an escape
    sequence in a task name could rewrite the user's screen.

    >>> print(printable("worker\\x1b[2J"))
    worker\\x1b[2J
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def site_text(site: Site | None) -> str:
    """``app.py:12 in main`` (with :func:`short_path`), or ``(unknown site)``."""
    if site is None:
        return "(unknown site)"
    return f"{short_path(site.filename)}:{site.lineno} in {site.function}"


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_duration(ns: int | None) -> str:
    """A duration for people: ``812ns``, ``12.3us``, ``4.56ms``, ``1.23s``, ``2m03s``."""
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{_three_digits(ns / 1_000)}us"
    if ns < 1_000_000_000:
        return f"{_three_digits(ns / 1_000_000)}ms"
    if ns < 60_000_000_000:
        return f"{_three_digits(ns / 1_000_000_000)}s"
    minutes, seconds = divmod(ns // 1_000_000_000, 60)
    return f"{minutes}m{seconds:02d}s"
