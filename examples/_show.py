"""Printing a future's lifecycle events, shared by the examples."""

from __future__ import annotations

from collections.abc import Iterable

from tracedfuture import Event


def describe(event: Event, names: dict[int, str]) -> str:
    """One line for one event, naming tasks rather than numbering them."""
    who = f" by {names.get(event.task_id, f'task {event.task_id}')}" if event.task_id else ""
    if event.kind == "awaited":
        who = ""
    extra = []
    if event.kind == "created" and event.site is not None:
        extra.append(f"at {event.site.function} line {event.site.lineno}")
    if event.callback and event.kind != "awaited":
        extra.append(event.callback)
    if event.awaiter_id is not None:
        extra.append(f"awaiter {names.get(event.awaiter_id, event.awaiter_id)}")
    if event.result_type:
        extra.append(f"result type {event.result_type}")
    if event.msg is not None:
        extra.append(f"msg {event.msg!r}")
    return f"  {event.kind:<18}{who} {' '.join(extra)}".rstrip()


def print_lifecycle(events: Iterable[Event], future_ids: Iterable[int]) -> None:
    events = list(events)
    names = {e.future_id: e.name for e in events if e.is_task and e.name}
    for fid in future_ids:
        print(f"lifecycle of future {fid}:")
        for event in events:
            if event.future_id == fid:
                print(describe(event, names))
