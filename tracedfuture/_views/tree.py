"""``tracedfuture tree``: the await graph as an indented tree, for a terminal.

Each task sits under the task that created it; each future sits under the first
task that awaited it (or, if no task ever did, under the task that created it).
When a task awaited something that sits elsewhere in the tree (a sibling task, a
future first awaited by another task) a ``~> awaited`` line points at it, so
every await appears once as a node and never as a copy of a subtree.

Made to be read at scale: siblings that are the same thing (same coroutine or
creation site, same outcome) collapse into one line with their count and their
lifetimes' median and maximum, their children folded together the same way
(``expand`` shows each one); ``asyncio.run``'s own shutdown tasks are left out
(``all`` shows them); tasks of several threads' loops sit under one line per
thread; and each line fits the terminal, the site kept and the free text
shortened.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .._core._events import Outcome, Site
from .._fold import FutureState
from .._text import (
    format_duration,
    is_installed,
    parse_request_name,
    plural,
    printable,
    short_path,
    site_text,
    untraced_children_note,
)
from ._model import BACKGROUND, CAUGHT, OTHER, VIEW_OUTCOMES, Model, task_groups, view_outcome

__all__ = ["TreeOptions", "find_focus", "render_tree"]

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_COLORS = {
    "resolved": "\x1b[32m",
    "failed": "\x1b[31m",
    "caught": "\x1b[31m",
    "cancelled": "\x1b[33m",
    "abandoned": "\x1b[35m",
    "pending": "\x1b[36m",
    "incomplete": "\x1b[90m",
    "lint": "\x1b[33;1m",
}


_VALUE_LIMIT = 80
_MIN_FREE = 12  # below this many columns, a free-text part is left out rather than cut
_COLLAPSE_AT = 4  # fewer identical siblings than this are shown one by one
_NAMED = 6  # background tasks named on its folded line


@dataclass(frozen=True)
class TreeOptions:
    """What to show. With no filter set every record is shown; with several, a
    record is shown if it matches any of them (plus its ancestors, dimmed).

    ``expand`` shows identical siblings one by one instead of as one line;
    ``depth`` stops that many levels down (``None``: no limit); ``all`` shows
    ``asyncio.run``'s own shutdown tasks; ``width`` is the terminal's width
    (``None``: lines are never cut); ``attribute`` names, for a future or task a
    library created, the nearest creating task of the program itself as well.
    """

    pending: bool = False
    failed: bool = False
    cancelled: bool = False
    abandoned: bool = False
    slow_ns: int | None = None
    focus: frozenset[int] = frozenset()
    color: bool = False
    unicode: bool = True
    expand: bool = False
    depth: int | None = None
    all: bool = False
    width: int | None = None
    attribute: bool = True

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


def _placement(model: Model, record: FutureState) -> int | None:
    """The id of the node a record hangs under in the tree, or None for a root."""
    if record.is_task:
        parent = record.parent_id if record.parent_id is not None else record.creator_id
        return parent if parent in model.records and parent != record.id else None
    return model.home_task(record)


def _matches(model: Model, record: FutureState, options: TreeOptions) -> bool:
    outcome = record.outcome
    if options.pending and outcome == Outcome.PENDING:
        return True
    if options.failed and (outcome == Outcome.FAILED or record.unretrieved or record.caught):
        return True
    if options.cancelled and outcome == Outcome.CANCELLED:
        return True
    if options.abandoned and outcome == Outcome.ABANDONED:
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


def _raised_text(record: FutureState) -> str | None:
    """``raised at app.py:43 in boom (via fakedb.py:4 in query)``: the program's
    line of a failure first, the innermost frame as detail."""
    program, raised = record.raise_program_site, record.raise_site
    if program is None and raised is None:
        return None
    if program is None or program == raised:
        return f"raised at {site_text(program or raised)}"
    return f"raised at {site_text(program)} (via {site_text(raised)})" if raised else f"raised at {site_text(program)}"


def _waiting_text(record: FutureState) -> str:
    """`` while waiting at app.py:33 in fetch``, or nothing."""
    return f" while waiting at {site_text(record.waiting_site)}" if record.waiting_site is not None else ""


def _clip(text: str, limit: int = _VALUE_LIMIT) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _cut_left(text: str, limit: int) -> str:
    """The end of ``text`` in ``limit`` columns: a site keeps its line and function."""
    return text if len(text) <= limit else "..." + text[len(text) - max(0, limit - 3) :]


def _user_site(model: Model, record: FutureState) -> Site | None:
    """For a record a library created, the program's own line: the one recorded
    at creation (the first frame of the program's code up the stack), else the
    site of the nearest task up its chain of creators that the program itself
    created; None when its site is the program's already, or none is known."""
    site = record.site
    if record.program_site is not None:
        return None if record.program_site == site else record.program_site
    if site is None or not is_installed(site.filename):
        return None
    seen = {record.id}
    current = record
    while len(seen) < 64:
        up = current.creator_id if not current.is_task or current.parent_id is None else current.parent_id
        if up is None or up in seen:
            return None
        seen.add(up)
        found = model.records.get(up)
        if found is None:
            return None
        if found.site is not None and not is_installed(found.site.filename):
            return found.site
        current = found
    return None


class _Part:
    """One piece of a line: its plain text, its colour, and whether it may be cut."""

    __slots__ = ("free", "style", "text")

    def __init__(self, text: str, style: str = "", free: bool = True) -> None:
        self.text = printable(text)
        self.style = style
        self.free = free


def _lifetimes(model: Model, records: list[FutureState]) -> str:
    """``p50 1.2ms, max 3.4ms`` of a group's lifetimes (the pending ones to the trace's end)."""
    values = sorted(life if (life := r.lifetime_ns()) is not None else model.end_ns - r.start_ns for r in records)
    p50 = values[max(0, math.ceil(len(values) / 2) - 1)]
    return f"p50 {format_duration(p50)}, max {format_duration(values[-1])}"


def _describe(model: Model, group: list[FutureState], placed_under: int | None, options: TreeOptions) -> list[_Part]:
    """One record, or a group of identical siblings, as the parts of one line."""
    record = group[0]
    many = len(group) > 1
    parts: list[_Part] = []
    if many:
        names = {r.name for r in group}
        kind = "tasks" if record.is_task else "futures"
        label = f"{len(group)}x {kind}" + (f" {record.name}" if len(names) == 1 and record.name else "")
        label += f" #{record.id}..#{group[-1].id}" if len(group) > 1 else ""
    else:
        label = record.label()
    if record.is_task and record.coro and (many or record.coro != record.name):
        label += f" ({record.coro})"
    parts.append(_Part(label, _BOLD if record.is_task else "", free=False))
    outcome = view_outcome(record)  # "caught": a request whose exception the framework caught
    style = _COLORS[outcome]
    if many:
        parts.append(_Part(f"{outcome} {_lifetimes(model, group)}", style, free=False))
    elif outcome == Outcome.PENDING:
        parts.append(
            _Part(f"pending {format_duration(model.end_ns - record.start_ns)}+ (to the trace's end)", style, free=False)
        )
    elif outcome == Outcome.INCOMPLETE:
        parts.append(_Part("incomplete (its history has a hole)", style, free=False))
    else:
        parts.append(_Part(f"{outcome} {format_duration(record.lifetime_ns())}", style, free=False))
        if record.incomplete:
            parts.append(_Part("(history incomplete)", _COLORS[Outcome.INCOMPLETE]))
    parts.append(_Part(f"at +{format_duration(record.start_ns - model.start_ns)}"))
    if outcome == Outcome.FAILED or record.exc_type:
        exc = record.exc_type or "exception"
        if record.exc_msg and not many:
            exc += f": {_clip(record.exc_msg)}"
        if record.unretrieved:
            exc += " (never retrieved)"
        if record.caught:
            exc += " (caught by the framework)"
        parts.append(_Part(exc, _COLORS["failed"]))
        raised = _raised_text(record) if not many else None
        if raised:
            parts.append(_Part(raised, _COLORS["failed"]))
    if not many:
        if outcome == Outcome.CANCELLED:
            msg = f"msg {_clip(record.msg)!r}" if record.msg is not None else "no msg"
            by = _canceller_text(model, record.canceller_id, record.canceller)
            parts.append(_Part(f"{msg} by {by}{_waiting_text(record)}", style))
        elif record.cancel_requests:
            _, msg_text, canceller_id, canceller = record.cancel_requests[-1]
            msg = f" msg {_clip(msg_text)!r}" if msg_text is not None else ""
            by = _canceller_text(model, canceller_id, canceller)
            parts.append(_Part(f"cancel requested{msg} by {by}{_waiting_text(record)}"))
        if record.result_type == "NoneType":
            pass
        elif record.value is not None:
            parts.append(_Part(f"-> {_clip(record.value)}"))
        elif record.result_type:
            parts.append(_Part(f"-> {record.result_type}"))
    if outcome == Outcome.ABANDONED:
        parts.append(_Part("(garbage-collected while pending)"))
    if not many:
        note = _orphaned_note(model, record)
        if note:
            parts.append(_Part(note, _COLORS["lint"]))
        woke = [task for task, _ in record.wakes if task != placed_under]
        if woke:
            parts.append(_Part("woke " + ", ".join(model.name_of(task) for task in dict.fromkeys(woke))))
        others = [task for task, _ in record.awaits if task != placed_under]
        if others:
            parts.append(_Part("awaited by " + ", ".join(model.name_of(task) for task in dict.fromkeys(others))))
    lints: dict[str, tuple[int, str]] = {}
    for member in group:
        for lint in member.lints:
            detail = (lint.detail or "").strip().splitlines()
            count, _ = lints.get(lint.kind, (0, ""))
            lints[lint.kind] = (count + 1, detail[0] if detail else "")  # the latest one's first line
    for kind, (count, first_line) in lints.items():
        times = f" x{count}" if count > 1 else ""
        parts.append(_Part(f"[{kind}{times}{': ' + _clip(first_line) if first_line else ''}]", _COLORS["lint"]))
    user = _user_site(model, record) if options.attribute else None
    if user is not None:  # the program's line, then the library's: cut first when the line is long
        parts.append(_Part(site_text(user), _DIM, free=False))
        parts.append(_Part(f"(via {site_text(record.site)})", _DIM))
    else:
        parts.append(_Part(site_text(record.site), _DIM, free=False))
    return parts


def _background_line(model: Model, tasks: list[int], under: list[int]) -> str:
    """The one line of a server's folded background: its tasks by name and what
    became of them and of the futures under them."""
    records = model.records
    folded = [records[rid] for rid in sorted(tasks)]
    names = []
    for record in folded:
        default = record.name is None or (record.name.startswith("Task-") and record.name[5:].isdigit())
        names.append(f"{record.coro or 'task'} #{record.id}" if default else f"{record.name} #{record.id}")
    counts: dict[str, int] = {}
    for record in [*folded, *(records[rid] for rid in under if not records[rid].is_task)]:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    outcomes = ", ".join(f"{counts[outcome]} {outcome}" for outcome in Outcome.ALL if counts.get(outcome))
    futures = sum(counts.values()) - len(folded)
    what = plural(len(folded), "task") + (f" and {plural(futures, 'future')}" if futures else "")
    shown = ", ".join(names[:_NAMED]) + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
    return f"background: {shown} ({what}; {outcomes}), folded: --all shows them"


def _orphaned_note(model: Model, record: FutureState) -> str | None:
    """For a future still awaited after the task that created it had finished (a
    shared future whose owner gave up: the classic request-coalescing hang)."""
    if record.is_task or record.creator_id is None or not record.awaits:
        return None
    creator = model.records.get(record.creator_id)
    if creator is None or not creator.is_task or creator.end_ns is None:
        return None
    end = model.end_or_trace_end(record)
    if creator.end_ns >= end or not any(task != creator.id for task, _ in record.awaits):
        return None
    return f"(its creator {creator.label()} had {creator.outcome} {format_duration(end - creator.end_ns)} before)"


def _fit(parts: list[_Part], room: int | None) -> list[_Part]:
    """The parts that fit in ``room`` columns: fixed parts kept (the site cut from
    its left, the label from its right, when even they do not fit), free text
    shortened or left out, last ones first."""
    if room is None:
        return parts
    sep = 2
    fixed = sum(len(p.text) for p in parts if not p.free) + sep * (sum(1 for p in parts if not p.free) - 1)
    if fixed > room:
        kept = [p for p in parts if not p.free]
        over = fixed - room
        site = kept[-1]
        if len(kept) > 1:
            cut = min(over, max(0, len(site.text) - 20))
            site.text = _cut_left(site.text, len(site.text) - cut)
            over -= cut
        for part in kept[:-1]:
            if over <= 0:
                break
            cut = min(over, max(0, len(part.text) - 12))
            if cut:
                part.text = _clip(part.text, len(part.text) - cut)
                over -= cut
        return kept
    free = room - fixed
    out: list[_Part] = []
    for part in parts:
        if not part.free:
            out.append(part)
            continue
        need = len(part.text) + sep
        if need <= free:
            out.append(part)
            free -= need
        elif free - sep >= _MIN_FREE:
            part.text = _clip(part.text, free - sep)
            out.append(part)
            free = 0
        else:
            free = 0  # keep the order: nothing after a part that did not fit
    return out


def _join(parts: list[_Part], color: bool) -> str:
    if not color:
        return "  ".join(p.text for p in parts)
    return "  ".join(f"{p.style}{p.text}{_RESET}" if p.style and p.text else p.text for p in parts)


_UNFINISHED = frozenset({Outcome.PENDING, Outcome.INCOMPLETE})


def _sibling_key(record: FutureState, context: bool) -> tuple[object, ...]:
    return (
        record.is_task,
        record.coro if record.is_task else record.name,
        record.name if record.is_task and parse_request_name(record.name) else None,
        record.site,
        record.program_site,
        view_outcome(record),
        record.exc_type,
        context,
    )


def render_tree(model: Model, options: TreeOptions) -> Iterator[str]:
    """Yield the lines of the tree, then a summary line."""
    records = model.records
    hidden: set[int] = set()
    if not options.all:
        hidden = {rid for rid, record in records.items() if record.shutdown_task}
    shutdown_hidden = len(hidden)
    placement = {record.id: _placement(model, record) for record in records.values()}
    # A server's requests come first, its background (lifespan, server loop, pool
    # keep-alive) last, folded into one line unless asked for or filtered.
    groups = task_groups(model)
    rank: dict[int, int] = {}
    background: set[int] = set()
    for number, group in enumerate(groups):
        rank.update(dict.fromkeys(group.ids, number))
        if group.kind == BACKGROUND:
            background.update(group.ids)
    other_rank = next((n for n, group in enumerate(groups) if group.kind == OTHER), len(groups))
    fold = bool(background) and not (options.all or options.filtered or options.focus)
    folded: list[int] = []
    if fold:
        folded = [rid for rid in background if rid not in hidden]
        for rid in list(placement):
            if records[rid].is_task and rid not in background and placement[rid] in background:
                placement[rid] = None  # a request a server task started: shown at the top
        hidden.update(background)
    if hidden:  # what lives only under a hidden task is hidden with it
        for rid, parent in placement.items():
            if parent in hidden and not records[rid].is_task:
                hidden.add(rid)

    children: dict[int | None, list[tuple[int, bool, int]]] = {}
    for record in sorted(records.values(), key=lambda r: r.start_ns):
        if record.id not in hidden:
            children.setdefault(placement[record.id], []).append((record.start_ns, False, record.id))
    for record in records.values():
        if record.id in hidden:
            continue
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
        matched = {rid for rid, record in records.items() if rid not in hidden and _matches(model, record, options)}
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

    def siblings(entries: list[tuple[int, bool, int]]) -> list[tuple[bool, list[int]]]:
        """Visible entries as (is_ref, ids): identical siblings in one item unless expanding."""
        items: list[tuple[bool, list[int]]] = []
        groups: dict[tuple[object, ...], list[int]] = {}
        refs: list[int] = []
        for entry in entries:
            if not visible(entry):
                continue
            _, is_ref, rid = entry
            if is_ref:
                if options.expand:
                    items.append((True, [rid]))
                elif not refs:
                    refs.append(rid)
                    items.append((True, refs))
                else:
                    refs.append(rid)
                continue
            if options.expand:
                items.append((False, [rid]))
                continue
            key = _sibling_key(records[rid], rid in context)
            if records[rid].outcome in _UNFINISHED and children.get(rid):
                # A stuck task is shown with what it waits on: grouping never
                # hides which task waits on which future.
                key = (*key, rid)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [rid]
                items.append((False, group))
            else:
                group.append(rid)
        if options.expand:
            return items
        out: list[tuple[bool, list[int]]] = []
        for item in items:  # small groups read better one by one
            if not item[0] and 1 < len(item[1]) < _COLLAPSE_AT:
                out.extend((False, [rid]) for rid in item[1])
            else:
                out.append(item)
        return out

    width = options.width
    tee, last, pipe, blank = ("├── ", "└── ", "│   ", "    ") if options.unicode else ("|-- ", "`-- ", "|   ", "    ")
    arrow = "⇢" if options.unicode else "~>"
    count = 0
    lines_out = 0

    def line_for(ids: list[int], connector: str, below: int) -> str:
        group = [records[rid] for rid in ids]
        dim = ids[0] in context
        parts = _describe(model, group, placement[ids[0]], options)
        if below:
            parts.insert(2, _Part(f"(+{plural(below, 'future or task', 'futures and tasks')} below, --depth)", _DIM))
        room = None if width is None else max(20, width - len(connector) - (2 if dim and not options.color else 0))
        parts = _fit(parts, room)
        if dim:
            text = _join(parts, color=False)
            return f"{connector}{_DIM}{text}{_RESET}" if options.color else f"{connector}({text})"
        return connector + _join(parts, options.color)

    def paint(text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if options.color and text else text

    def ref_line(ids: list[int], connector: str) -> str:
        if len(ids) == 1:
            rid = ids[0]
            record = records[rid]
            where = f"under {model.name_of(placement[rid])}" if placement[rid] is not None else "at the top level"
            text = f"{arrow} awaited {record.label()} ({record.outcome}, shown {where})"
        else:
            text = (
                f"{arrow} awaited {plural(len(ids), 'more future or task', 'more futures and tasks')} shown elsewhere"
            )
        text = printable(text)
        if width is not None:
            text = _clip(text, max(20, width - len(connector)))
        return connector + paint(text, _DIM)

    def subtree_size(ids: list[int]) -> int:
        total, todo = 0, list(ids)
        while todo:
            rid = todo.pop()
            for entry in children.get(rid, ()):
                if not entry[1] and visible(entry):
                    total += 1
                    todo.append(entry[2])
        return total

    roots = siblings(children.get(None, []))
    if groups:  # requests first, by group; the stable sort keeps each group's order of start
        roots.sort(key=lambda item: other_rank if item[0] else rank.get(item[1][0], other_rank))
    threads = {records[ids[0]].thread_id for is_ref, ids in roots if not is_ref}
    top: list[tuple[str | None, list[tuple[bool, list[int]]]]] = []
    if len(threads) > 1:
        by_thread: dict[int | None, list[tuple[bool, list[int]]]] = {}
        for item in roots:
            by_thread.setdefault(records[item[1][0]].thread_id, []).append(item)
        for number, (thread, items) in enumerate(by_thread.items(), start=1):
            tasks = sum(len(ids) for _, ids in items)
            name = f"thread {thread}" if thread is not None else "thread unknown"
            top.append(
                (f"loop {number} on {name}: {plural(tasks, 'root task or future', 'root tasks and futures')}", items)
            )
    else:
        top.append((None, roots))

    for title, items in top:
        base = ""
        if title is not None:
            yield paint(title, _BOLD)
            lines_out += 1
            base = "  "
        stack: list[tuple[bool, list[int], str, str, int]] = [
            (is_ref, ids, base, base, 1) for is_ref, ids in reversed(items)
        ]
        while stack:
            is_ref, ids, connector, prefix, depth = stack.pop()
            if is_ref:
                yield ref_line(ids, connector)
                continue
            count += len(ids)
            merged: list[tuple[int, bool, int]] = []
            for rid in ids:
                merged.extend(children.get(rid, ()))
            if len(ids) > 1:
                merged.sort(key=lambda entry: entry[0])
            if options.depth is not None and depth >= options.depth:
                yield line_for(ids, connector, subtree_size(ids))
                continue
            yield line_for(ids, connector, 0)
            kids = siblings(merged)
            for index in range(len(kids) - 1, -1, -1):
                is_last = index == len(kids) - 1
                kid_ref, kid_ids = kids[index]
                stack.append(
                    (
                        kid_ref,
                        kid_ids,
                        prefix + (last if is_last else tee),
                        prefix + (blank if is_last else pipe),
                        depth + 1,
                    )
                )

    if folded:
        line = _background_line(model, folded, [rid for rid, parent in placement.items() if parent in background])
        yield paint(_clip(line, width) if width is not None else line, _DIM)
    yield ""
    counts = dict.fromkeys(VIEW_OUTCOMES, 0)
    for record in records.values():
        counts[view_outcome(record)] += 1
    summary = ", ".join(
        f"{counts[outcome]} {outcome}" for outcome in VIEW_OUTCOMES if outcome != CAUGHT or counts[CAUGHT]
    )
    tasks = sum(1 for record in records.values() if record.is_task)
    tail = f"{count} shown"
    if shutdown_hidden:
        tail += f", {plural(shutdown_hidden, 'shutdown task')} of asyncio.run hidden (--all shows them)"
    if folded:
        tail += f", {plural(len(folded), 'background task')} folded (--all shows them)"
    yield (
        f"{plural(len(records), 'future or task', 'futures and tasks')} ({plural(tasks, 'task')}): {summary}; "
        f"{tail}; trace spans {format_duration(model.end_ns - model.start_ns)}"
    )
    dropped = model.dropped()
    if dropped:
        yield paint(
            f"the trace's stats line counts {plural(dropped, 'future')} untraced, dropped or incomplete: "
            "the counts above are lower bounds",
            _COLORS["lint"],
        )
    yield from filter(None, [untraced_children_note(model.stats)])
    for lint in model.loop_lints:
        detail = (lint.detail or "").strip().splitlines()
        where = f" while {model.name_of(lint.task_id)} ran" if lint.task_id is not None else ""
        text = f"{lint.kind} for {format_duration(lint.age_ns)}{where}" + (f": {detail[-1]}" if detail else "")
        yield paint(printable(text), _COLORS["lint"])
