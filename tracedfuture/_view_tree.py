"""``tracedfuture tree``: the await graph as an indented tree, for a terminal.

Each task sits under the task that created it; each future sits under the first
task that awaited it (or, if no task ever did, under the task that created it).
When a task awaited something that sits elsewhere in the tree (a sibling task, a
future first awaited by another task) a ``~> awaited`` line points at it, so
every await appears once as a node and never as a copy of a subtree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ._model import (
    ABANDONED,
    CANCELLED,
    FAILED,
    OUTCOMES,
    PENDING,
    Model,
    Record,
    format_duration,
    plural,
    printable,
    short_path,
    site_text,
)
from ._startup import untraced_children_note

__all__ = ["TreeOptions", "find_focus", "render_tree"]

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_COLORS = {
    "resolved": "\x1b[32m",
    "failed": "\x1b[31m",
    "cancelled": "\x1b[33m",
    "abandoned": "\x1b[35m",
    "pending": "\x1b[36m",
    "lint": "\x1b[33;1m",
}
_VALUE_LIMIT = 80


@dataclass(frozen=True)
class TreeOptions:
    """What to show. With no filter set every record is shown; with several, a
    record is shown if it matches any of them (plus its ancestors, dimmed)."""

    pending: bool = False
    failed: bool = False
    cancelled: bool = False
    abandoned: bool = False
    slow_ns: int | None = None
    focus: frozenset[int] = frozenset()
    color: bool = False
    unicode: bool = True

    @property
    def filtered(self) -> bool:
        return self.pending or self.failed or self.cancelled or self.abandoned or self.slow_ns is not None


def find_focus(model: Model, focus: str) -> frozenset[int]:
    """The ids that ``--focus`` names: a numeric id, or every task or future with that name.

    Raises ``LookupError`` with a message naming the value when nothing matches.
    """
    if focus.lstrip("#").isdigit():
        wanted = int(focus.lstrip("#"))
        if wanted in model.records:
            return frozenset({wanted})
        ids = list(model.records)
        span = f"ids go from {min(ids)} to {max(ids)}" if ids else "it has no futures at all"
        msg = f"no task or future with id {wanted} in {model.path} ({span})"
        raise LookupError(msg)
    named = frozenset(r.id for r in model.records.values() if r.name == focus)
    if not named:
        msg = f"no task or future named {focus!r} in {model.path}; give its id or its exact name"
        raise LookupError(msg)
    return named


def _placement(model: Model, record: Record) -> int | None:
    """The id of the node a record hangs under in the tree, or None for a root."""
    if record.is_task:
        parent = record.parent_id if record.parent_id is not None else record.creator_id
        return parent if parent in model.records and parent != record.id else None
    return model.home_task(record)


def _matches(model: Model, record: Record, options: TreeOptions) -> bool:
    outcome = record.outcome
    if options.pending and outcome == PENDING:
        return True
    if options.failed and (outcome == FAILED or record.unretrieved):
        return True
    if options.cancelled and outcome == CANCELLED:
        return True
    if options.abandoned and outcome == ABANDONED:
        return True
    if options.slow_ns is not None:
        lifetime = record.lifetime_ns()
        if lifetime is None:
            lifetime = model.end_ns - record.start_ns
        if lifetime >= options.slow_ns:
            return True
    return False


_CANCELLER = re.compile(r"^(?P<function>.*) \((?P<file>.+):(?P<line>\d+)\)$")


def _canceller_text(model: Model, canceller_id: int | None, canceller: str | None) -> str:
    who = model.name_of(canceller_id) if canceller_id is not None else "code outside any task"
    if canceller:
        found = _CANCELLER.match(canceller)
        if found:
            canceller = f"{found['function']} ({short_path(found['file'])}:{found['line']})"
        who += f" in {canceller}"
    return who


def _clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 3] + "..."


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, style: str = "") -> str:
        """``text`` made printable (a trace holds any string), in ``style`` when colouring."""
        text = printable(text)
        return f"{style}{text}{_RESET}" if self.color and text and style else text


def _describe(model: Model, record: Record, placed_under: int | None, paint: _Painter) -> str:
    """One record as one line (without the tree's connector)."""
    label = paint(record.label(), _BOLD if record.is_task else "")
    if record.is_task and record.coro and record.coro != record.name:
        label += paint(f" ({record.coro})")
    outcome = record.outcome
    style = _COLORS[outcome]
    lifetime = record.lifetime_ns()
    parts = [label]
    if outcome == PENDING:
        parts.append(paint(f"pending {format_duration(model.end_ns - record.start_ns)}+", style))
    else:
        parts.append(paint(f"{outcome} {format_duration(lifetime)}", style))
    parts.append(f"at +{format_duration(record.start_ns - model.start_ns)}")
    if outcome == FAILED or record.exc_type:
        exc = record.exc_type or "exception"
        if record.exc_msg:
            exc += f": {_clip(record.exc_msg)}"
        if record.unretrieved:
            exc += " (never retrieved)"
        parts.append(paint(exc, _COLORS["failed"]))
    if outcome == CANCELLED:
        msg = f"msg {_clip(record.msg)!r}" if record.msg is not None else "no msg"
        parts.append(paint(f"{msg} by {_canceller_text(model, record.canceller_id, record.canceller)}", style))
    elif record.cancel_requests:
        _, msg_text, canceller_id, canceller = record.cancel_requests[-1]
        msg = f" msg {_clip(msg_text)!r}" if msg_text is not None else ""
        parts.append(paint(f"cancel requested{msg} by {_canceller_text(model, canceller_id, canceller)}"))
    if record.result_type == "NoneType":
        pass
    elif record.value is not None:
        parts.append(paint(f"-> {_clip(record.value)}"))
    elif record.result_type:
        parts.append(paint(f"-> {record.result_type}"))
    if outcome == ABANDONED:
        parts.append("(garbage-collected while pending)")
    woke = [task for task, _ in record.wakes if task != placed_under]
    if woke:
        parts.append(paint("woke " + ", ".join(model.name_of(task) for task in dict.fromkeys(woke))))
    others = [task for task, _ in record.awaits if task != placed_under]
    if others:
        parts.append(paint("awaited by " + ", ".join(model.name_of(task) for task in dict.fromkeys(others))))
    for lint in record.lints:
        detail = (lint.detail or "").strip().splitlines()
        parts.append(paint(f"[{lint.kind}{': ' + _clip(detail[0]) if detail else ''}]", _COLORS["lint"]))
    parts.append(paint(site_text(record.site), _DIM))
    return "  ".join(parts)


def render_tree(model: Model, options: TreeOptions) -> Iterator[str]:
    """Yield the lines of the tree, then a summary line."""
    paint, plain = _Painter(options.color), _Painter(color=False)
    records = model.records
    placement = {record.id: _placement(model, record) for record in records.values()}

    children: dict[int | None, list[tuple[int, bool, int]]] = {}
    for record in sorted(records.values(), key=lambda r: r.start_ns):
        children.setdefault(placement[record.id], []).append((record.start_ns, False, record.id))
    for record in records.values():
        for awaiter, ts in record.awaits:
            if awaiter in records and placement[record.id] != awaiter:
                children.setdefault(awaiter, []).append((ts, True, record.id))
    for entries in children.values():
        entries.sort(key=lambda entry: entry[0])

    def ancestors(record_id: int) -> Iterator[int]:
        seen = {record_id}
        parent = placement[record_id]
        while parent is not None and parent not in seen:
            seen.add(parent)
            yield parent
            parent = placement[parent]

    matched: set[int] | None = None
    if options.filtered:
        matched = {rid for rid, record in records.items() if _matches(model, record, options)}
    context: set[int] = set()  # shown only to lead the eye to what matched
    allowed: set[int] | None = None
    if options.focus:
        allowed = set()
        todo = list(options.focus)
        while todo:
            rid = todo.pop()
            if rid not in allowed:
                allowed.add(rid)
                todo.extend(entry[2] for entry in children.get(rid, ()) if not entry[1])
        if matched is not None:
            matched &= allowed
        for rid in options.focus:
            for parent in ancestors(rid):
                context.add(parent)
    shown: set[int] | None = None
    if matched is not None:
        shown = set(matched)
        for rid in matched:
            shown.update(ancestors(rid))
        context |= shown - matched
    elif allowed is not None:
        shown = allowed | context

    def visible(entry: tuple[int, bool, int]) -> bool:
        _, is_ref, rid = entry
        if shown is None:
            return True
        if is_ref:  # a pointer: shown unless a filter is set and its target does not match
            return matched is None or rid in matched
        return rid in shown

    tee, last, pipe, blank = ("├── ", "└── ", "│   ", "    ") if options.unicode else ("|-- ", "`-- ", "|   ", "    ")
    arrow = "⇢" if options.unicode else "~>"
    count = 0
    roots = [entry for entry in children.get(None, []) if visible(entry)]
    stack: list[tuple[tuple[int, bool, int], str, str]] = [
        (entry, "", "") for entry in reversed(roots)
    ]  # (entry, connector, prefix for its children)
    while stack:
        entry, connector, prefix = stack.pop()
        _, is_ref, rid = entry
        record = records[rid]
        if is_ref:
            where = f"under {model.name_of(placement[rid])}" if placement[rid] is not None else "at the top level"
            yield f"{connector}{paint(f'{arrow} awaited {record.label()} ({record.outcome}, shown {where})', _DIM)}"
            continue
        count += 1
        if rid in context:  # not a match: shown dimmed, or in parentheses without colour
            line = _describe(model, record, placement[rid], plain)
            line = f"{_DIM}{line}{_RESET}" if options.color else f"({line})"
        else:
            line = _describe(model, record, placement[rid], paint)
        yield f"{connector}{line}"
        kids = [kid for kid in children.get(rid, []) if visible(kid)]
        for index in range(len(kids) - 1, -1, -1):
            is_last = index == len(kids) - 1
            stack.append((kids[index], prefix + (last if is_last else tee), prefix + (blank if is_last else pipe)))

    yield ""
    counts = model.counts()
    summary = ", ".join(f"{counts[outcome]} {outcome}" for outcome in OUTCOMES)
    tasks = sum(1 for record in records.values() if record.is_task)
    yield (
        f"{plural(len(records), 'future or task', 'futures and tasks')} ({plural(tasks, 'task')}): {summary}; "
        f"{count} shown; trace spans {format_duration(model.end_ns - model.start_ns)}"
    )
    yield from filter(None, [untraced_children_note(model.stats)])
    for lint in model.loop_lints:
        detail = (lint.detail or "").strip().splitlines()
        where = f" while {model.name_of(lint.task_id)} ran" if lint.task_id is not None else ""
        text = f"{lint.kind} for {format_duration(lint.age_ns)}{where}" + (f": {detail[-1]}" if detail else "")
        yield paint(text, _COLORS["lint"])
