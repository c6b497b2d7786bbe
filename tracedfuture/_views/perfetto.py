"""``tracedfuture perfetto``: Chrome trace-event JSON for ui.perfetto.dev and chrome://tracing.

Mapping (the "JSON Object Format" of the Trace Event Format):

* the traced process is one ``pid``; each task is a thread (``tid``) named after it,
  with ``thread_name`` and ``thread_sort_index`` metadata so lanes keep the tree's
  order;
* a task's life and the life of each future it awaited (or created) are complete
  ``"X"`` slices on that thread. Slices on one thread must nest, so a future that
  overlaps another without nesting goes to an extra thread of the same task,
  named ``"<task> (2)"`` and sorted next to it;
* each wake-up (a future's completion scheduling the task that awaited it) is a
  flow: ``"s"`` inside the future's slice, ``"f"`` with ``"bp": "e"`` inside the
  awakened task's slice, sharing one ``id``;
* cancel requests and lints are instant ``"i"`` events; a blocked loop is an
  ``"X"`` slice on an ``event loop`` thread;
* a slice's ``args`` say what the tree says: the outcome (``caught`` for a task
  that returned after a framework caught an exception in it), the program's
  line, the exception and the line that raised it (``raised_at``, the program's;
  ``raised_via``, the innermost), who cancelled and where the task was waiting
  (``waiting_at``).

``ts`` and ``dur`` are microseconds (floats, nanosecond precision) since the first
event of the trace; the wall-clock time of that instant is in ``otherData``.
"""

from __future__ import annotations

from typing import Any

from .._core._events import Outcome
from .._fold import FutureState
from .._text import site_text
from ._model import CAUGHT, Model, view_outcome

__all__ = ["render_perfetto"]

_NS = 1 / 1000  # nanoseconds to microseconds
_EPSILON = 0.001  # one nanosecond, in microseconds


def _slice_name(record: FutureState) -> str:
    if record.is_task:
        return record.name or f"task #{record.id}"
    if record.name:
        return record.name
    return f"future at {site_text(record.site)}" if record.site is not None else "future"


def _args(model: Model, record: FutureState) -> dict[str, Any]:
    args: dict[str, Any] = {"id": record.id, "outcome": view_outcome(record), "site": site_text(record.site)}
    if record.outcome == Outcome.PENDING:
        args["outcome"] = "pending (still pending when the trace ended)"
    elif args["outcome"] == CAUGHT:
        args["outcome"] = "caught (the framework caught an exception in it: the request failed, the task returned)"
    if record.program_site is not None and record.program_site != record.site:
        args["program_line"] = site_text(record.program_site)
    if record.coro:
        args["coro"] = record.coro
    if record.is_task and record.parent_id is not None:
        args["parent"] = model.name_of(record.parent_id)
    if record.exc_type:
        args["exception"] = record.exc_type + (f": {record.exc_msg}" if record.exc_msg else "")
    raised, program = record.raise_site, record.raise_program_site
    if raised is not None or program is not None:
        args["raised_at"] = site_text(program or raised)  # the program's line first
        if program is not None and raised is not None and raised != program:
            args["raised_via"] = site_text(raised)
    if record.outcome == "cancelled":
        args["cancel_msg"] = record.msg
        args["cancelled_by"] = model.name_of(record.canceller_id) if record.canceller_id is not None else None
        if record.canceller:
            args["cancelled_in"] = record.canceller
    if record.waiting_site is not None:
        args["waiting_at"] = site_text(record.waiting_site)
    if record.value is not None:
        args["value"] = record.value
    elif record.result_type:
        args["result_type"] = record.result_type
    if record.awaits:
        args["awaited_by"] = [model.name_of(task) for task, _ in record.awaits]
    return args


def _cancel_args(
    model: Model, record: FutureState, msg: str | None, canceller_id: int | None, canceller: str | None
) -> dict[str, Any]:
    args: dict[str, Any] = {"msg": msg, "by": model.name_of(canceller_id)}
    if canceller:
        args["in"] = canceller
    if record.waiting_site is not None:  # the last request's, as the fold keeps it
        args["waiting_at"] = site_text(record.waiting_site)
    return args


class _Tracks:
    """Threads of one task, each holding properly nested slices."""

    def __init__(self) -> None:
        self.stacks: list[list[tuple[int, int]]] = []

    def place(self, start: int, end: int) -> int:
        """The index of the first track where [start, end] nests; a new one if none."""
        for index, stack in enumerate(self.stacks):
            while stack and stack[-1][1] <= start and stack[-1][0] <= start:
                stack.pop()
            if not stack or (stack[-1][0] <= start and end <= stack[-1][1]):
                stack.append((start, end))
                return index
        self.stacks.append([(start, end)])
        return len(self.stacks) - 1


def render_perfetto(model: Model) -> dict[str, Any]:
    """The trace as a trace-event JSON object (``{"traceEvents": [...], ...}``)."""
    origin = model.start_ns
    header = model.header
    pid = header.get("pid") if type(header.get("pid")) is int else 1
    argv: list[Any] = header["argv"] if isinstance(header.get("argv"), list) else []

    def us(ns: int) -> float:
        return round((ns - origin) * _NS, 3)

    members: dict[int | None, list[FutureState]] = {}
    for record in model.records.values():
        members.setdefault(model.home_task(record), []).append(record)
    lane_order: list[int | None] = list(model.task_order())
    if None in members:
        lane_order.append(None)

    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": pid,
            "tid": 0,
            "args": {"name": " ".join(map(str, argv)) or "python"},
        }
    ]
    tid_of: dict[int, int] = {}  # record id -> tid of its slice
    next_tid = 1
    for lane in lane_order:
        records = members.get(lane, [])
        task = model.records.get(lane) if lane is not None else None
        label = task.label() if task is not None else "(futures outside any task)"
        tracks = _Tracks()
        ordered = [task] if task is not None else []
        ordered += sorted((r for r in records if not r.is_task), key=lambda r: (r.start_ns, -model.end_or_trace_end(r)))
        tids: list[int] = []
        for record in ordered:
            end = model.end_or_trace_end(record)
            index = tracks.place(record.start_ns, end)
            while len(tids) <= index:
                tid = next_tid
                next_tid += 1
                tids.append(tid)
                name = label if len(tids) == 1 else f"{label} ({len(tids)})"
                events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
                events.append(
                    {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}
                )
            tid_of[record.id] = tids[index]
            events.append(
                {
                    "name": _slice_name(record),
                    "cat": "task" if record.is_task else "future",
                    "ph": "X",
                    "ts": us(record.start_ns),
                    "dur": round((end - record.start_ns) * _NS, 3),
                    "pid": pid,
                    "tid": tids[index],
                    "args": _args(model, record),
                }
            )

    flow_id = 0
    for record in model.records.values():
        source_tid = tid_of[record.id]
        end = model.end_or_trace_end(record)
        for task_id, ts in record.wakes:
            target = model.records.get(task_id)
            if target is None or task_id not in tid_of:
                continue
            flow_id += 1
            # Strictly inside both slices, so each end binds to the intended one.
            start_us = max(us(record.start_ns), us(end) - _EPSILON)
            target_end = us(model.end_or_trace_end(target))
            finish_us = min(max(us(ts) + _EPSILON, us(target.start_ns)), target_end)
            common = {"name": "wakes", "cat": "await", "id": flow_id, "pid": pid}
            events.append({**common, "ph": "s", "ts": start_us, "tid": source_tid})
            events.append({**common, "ph": "f", "bp": "e", "ts": finish_us, "tid": tid_of[task_id]})
        for ts, msg, canceller_id, canceller in record.cancel_requests:
            events.append(
                {
                    "name": "cancel requested",
                    "cat": "cancel",
                    "ph": "i",
                    "s": "t",
                    "ts": us(ts),
                    "pid": pid,
                    "tid": source_tid,
                    "args": _cancel_args(model, record, msg, canceller_id, canceller),
                }
            )
        for lint in record.lints:
            events.append(
                {
                    "name": lint.kind,
                    "cat": "lint",
                    "ph": "i",
                    "s": "t",
                    "ts": us(lint.ts_ns),
                    "pid": pid,
                    "tid": source_tid,
                    "args": {"detail": lint.detail, "age_ns": lint.age_ns},
                }
            )
    if model.loop_lints:
        loop_tid = next_tid
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": loop_tid, "args": {"name": "event loop"}})
        for lint in model.loop_lints:
            age = min(lint.age_ns or 0, lint.ts_ns - origin)  # never before the trace's first instant
            events.append(
                {
                    "name": lint.kind,
                    "cat": "lint",
                    "ph": "X",
                    "ts": us(lint.ts_ns - age),
                    "dur": round(age * _NS, 3),
                    "pid": pid,
                    "tid": loop_tid,
                    "args": {"detail": lint.detail, "task": model.name_of(lint.task_id)},
                }
            )
    wall = None
    if type(header.get("wall_anchor_ns")) is int and type(header.get("monotonic_anchor_ns")) is int:
        wall = origin - header["monotonic_anchor_ns"] + header["wall_anchor_ns"]
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "source": "tracedfuture",
            "trace": model.path,
            "wall_clock_start_ns": wall,
            "python": header.get("python"),
            "tracedfuture": header.get("tracedfuture"),
        },
    }
