"""``tracedfuture html``: one self-contained HTML file with a timeline of the trace.

The page has one lane per task (the task's own life on the lane's top row, the
futures it awaited or created below, packed into rows), arrows from a future to
the task its completion woke, zoom, pan, search and a details panel. It is drawn
on a canvas from typed arrays, so 100,000 futures stay interactive.

A server's trace opens on its traffic (:func:`tracedfuture._views._model.task_groups`):
one group of lanes per route (or per coroutine started many times from one line),
the groups with failures and cancellations first, a big group folded into a
summary lane (its requests packed into a few rows, each request's failed,
cancelled or pending futures drawn on its row), the background (lifespan, server
loop, pool keep-alive) folded last. A site is shown as the program's line first,
the library's line as detail.

A request whose exception the framework caught (the server answered 500, see
:mod:`tracedfuture.asgi`) is an outcome of its own on the page, ``caught``, red
like a failure: its task ended well, its request did not. A cancelled task's
details say where in the program it was waiting.

Failures of the exception types a user calls expected (``--expected-exceptions
EOFError,ConnectionResetError``: normal control flow, such as websockets' close)
are an outcome of their own on the page, ``expected``, drawn and counted apart.
The page, its script and its style are package data (``tracedfuture/_views/_report/``).

Safety: the trace is embedded as JSON inside ``<script type="application/json">``
with ``<``, ``>``, ``&``, U+2028 and U+2029 written as ``\\uXXXX`` escapes, so no
string from a trace can close the script element or start a tag; the page's
script only ever puts trace strings into the DOM with ``textContent``; and a
Content-Security-Policy forbids every network request and every script but the
page's own.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import html
import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

from .._core._events import Outcome, Site
from .._fold import FutureState
from .._text import parse_request_name, site_text
from ._model import BACKGROUND, CAUGHT, OTHER, VIEW_OUTCOMES, Model, TaskGroup, task_groups, view_outcome

__all__ = ["EXPECTED", "MAX_ROWS", "PAGE_OUTCOMES", "embed_json", "lanes_and_rows", "render_html", "report_data"]

EXPECTED = "expected"  # a failure with an exception type the user said is normal
PAGE_OUTCOMES = (*VIEW_OUTCOMES, EXPECTED)

MAX_ROWS = 8  # future rows per lane; past it futures overlap on the last row
SUMMARY_ROWS = 4  # rows of a folded group's summary lane
OPEN_AT = 6  # a group of requests with at most this many lanes opens unfolded
# Outcomes that make a group come first, worst first; a group has the rank of its worst bar.
_PROBLEMS = (Outcome.FAILED, CAUGHT, Outcome.CANCELLED, Outcome.PENDING, Outcome.ABANDONED, Outcome.INCOMPLETE)

# What embed_json rewrites: enough that the JSON can never contain a tag, an
# entity or "</script>", nor a line separator that old JavaScript parsers reject.
_JSON_ESCAPES = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def embed_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` at all.

    >>> embed_json({"name": "</script>"})
    '{"name":"\\\\u003c/script\\\\u003e"}'
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _JSON_ESCAPES:  # str.replace is C-fast; str.translate is not
        text = text.replace(raw, escaped)
    return text


def lanes_and_rows(model: Model) -> tuple[list[int | None], dict[int, tuple[int, int]]]:
    """``(lane task ids, {record id: (lane index, row)})``.

    Row 0 of a lane is its task; futures are packed greedily into rows 1 to
    :data:`MAX_ROWS` so that bars in one row never overlap (until the last row).
    Lanes are in the model's task order, or a server's in the order of its
    groups, each group's lanes together.
    """
    return _lanes_and_rows(model, task_groups(model))


def _lanes_and_rows(model: Model, groups: list[TaskGroup]) -> tuple[list[int | None], dict[int, tuple[int, int]]]:
    lanes: list[int | None] = [task for group in groups for task in group.ids] if groups else list(model.task_order())
    index: dict[int | None, int] = {task: i for i, task in enumerate(lanes)}
    members: dict[int | None, list[FutureState]] = {}
    for record in model.records.values():
        if not record.is_task:
            members.setdefault(model.home_task(record), []).append(record)
    if None in members:
        index[None] = len(lanes)
        lanes.append(None)
    placed: dict[int, tuple[int, int]] = {task: (index[task], 0) for task in lanes if task is not None}
    trace_end = model.end_ns
    for task, futures in members.items():
        futures.sort(key=lambda r: r.start_ns)
        row_ends: list[int] = []
        lane = index[task]
        for record in futures:
            end = trace_end if record.end_ns is None else record.end_ns
            start = record.start_ns
            row = -1
            for r, row_end in enumerate(row_ends):
                if row_end <= start:
                    row = r
                    break
            if row < 0:
                if len(row_ends) < MAX_ROWS:
                    row = len(row_ends)
                    row_ends.append(0)
                else:
                    row = min(range(MAX_ROWS), key=row_ends.__getitem__)
            row_ends[row] = max(row_ends[row], end)
            placed[record.id] = (lane, row + 1)
    return lanes, placed


class _Strings:
    """A string table: the page stores each distinct string once."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self.index: dict[str, int] = {}

    def __call__(self, text: str | None) -> int:
        if text is None:
            return -1
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.table)
            self.table.append(text)
        return found


_RARE = ("coro", "value", "exc_type", "exc_msg", "msg", "canceller", "canceller_id")


def _details(record: FutureState, origin: int) -> dict[str, Any] | None:
    """The rarely present fields of one record, for the details panel (None: none)."""
    out: dict[str, Any] | None = None
    for key in _RARE:
        value = getattr(record, key)
        if value is not None:
            if out is None:
                out = {}
            out[key] = value
    if record.raise_site is not None or record.raise_program_site is not None:
        out = out or {}
        out["raised"] = _program_first(record.raise_program_site, record.raise_site)
    if record.caught:
        out = out or {}
        out["caught"] = True
    if record.waiting_site is not None:
        out = out or {}
        out["waiting"] = site_text(record.waiting_site)
    if not (record.is_task or record.unretrieved or record.cancel_requests or record.lints):
        return out
    out = out or {}
    if record.is_task and record.parent_id is not None:
        out["parent_id"] = record.parent_id
    if record.unretrieved:
        out["unretrieved"] = True
    if record.cancel_requests:
        out["cancel_requests"] = [[ts - origin, msg, by_id, by] for ts, msg, by_id, by in record.cancel_requests]
    if record.lints:
        out["lints"] = [{"kind": lint.kind, "detail": lint.detail, "age_ns": lint.age_ns} for lint in record.lints]
    return out or None


def _program_first(program: Site | None, site: Site | None) -> list[str]:
    """``[the program's line, the library's line]``, the second ``""`` when it is
    the same line (or unknown), the first the library's when the program's is unknown."""
    if program is None or program == site:
        return [site_text(site) if site is not None else "(unknown site)", ""]
    return [site_text(program), site_text(site) if site is not None else ""]


def _is_expected(exc_type: str | None, expected: frozenset[str]) -> bool:
    """``ConnectionResetError`` names ``ConnectionResetError``; ``IncompleteReadError``
    also names ``asyncio.exceptions.IncompleteReadError`` (types are recorded with
    their module, builtins without)."""
    if not exc_type or not expected:
        return False
    return exc_type in expected or exc_type.rsplit(".", 1)[-1] in expected


def report_data(model: Model, expected_exceptions: Iterable[str] = ()) -> dict[str, Any]:
    """Everything the page draws, as columns of numbers plus a string table.

    Times are nanoseconds since the first event of the trace. Bars are sorted by
    lane, row and start, which the page relies on for culling and hit-testing.
    A task that ended after a framework caught an exception in it has the
    outcome ``"caught"``; a failure (or a caught exception) whose exception type
    is in ``expected_exceptions`` has the outcome ``"expected"``.
    """
    expected = frozenset(expected_exceptions)
    groups = task_groups(model)
    lanes, placed = _lanes_and_rows(model, groups)
    strings = _Strings()
    origin = model.start_ns
    outcome_code = {outcome: i for i, outcome in enumerate(PAGE_OUTCOMES)}
    expected_code = outcome_code[EXPECTED]
    counts = dict.fromkeys(PAGE_OUTCOMES, 0)
    order = sorted(model.records.values(), key=lambda r: (*placed[r.id], r.start_ns))
    bar_of = {record.id: i for i, record in enumerate(order)}
    names = (
        *("id", "lane", "row", "start", "end", "outcome", "task"),
        *("name", "site", "site_full", "result", "creator", "program"),
    )
    columns: dict[str, list[Any]] = {key: [] for key in names}
    ids, lane_col, row_col, starts, ends, outcomes, task_col = (columns[key] for key in names[:7])
    name_col, site_col, full_col, result_col, creator_col, program_col = (columns[key] for key in names[7:])
    programs: dict[tuple[Site | None, Site | None], int] = {}  # the program's line, when not the site itself
    details: dict[str, dict[str, Any]] = {}
    awaits: list[int] = []  # flattened (bar, task id, ts)
    wakes: list[int] = []  # flattened (bar, task id, ts)
    sites: dict[Site | None, tuple[int, int]] = {None: (-1, -1)}  # a site's (short, full) string indices
    trace_end = model.end_ns
    unhappy = {outcome_code[Outcome.FAILED], outcome_code[CAUGHT]}
    for i, record in enumerate(order):
        lane, row = placed[record.id]
        ids.append(record.id)
        lane_col.append(lane)
        row_col.append(row)
        starts.append(record.start_ns - origin)
        end = record.end_ns
        ends.append((trace_end if end is None else end) - origin)
        code = outcome_code[view_outcome(record)]
        if code in unhappy and _is_expected(record.exc_type, expected):
            code = expected_code
        counts[PAGE_OUTCOMES[code]] += 1
        outcomes.append(code)
        task_col.append(1 if record.is_task else 0)
        name_col.append(strings(record.name))
        site = record.site
        found = sites.get(site)
        if found is None:
            assert site is not None
            found = sites[site] = (strings(site_text(site)), strings(str(site)))
        site_col.append(found[0])
        full_col.append(found[1])
        program = record.program_site
        if program is None or program == site:
            program_col.append(-1)
        else:
            known = programs.get((program, site))
            if known is None:
                known = programs[program, site] = strings(site_text(program))
            program_col.append(known)
        result_col.append(strings(record.result_type))
        creator = record.creator_id
        creator_col.append(-1 if creator is None else creator)
        extra = _details(record, origin)
        if extra:
            details[str(i)] = extra
        for task, ts in record.awaits:
            awaits += (i, task, ts - origin)
        for task, ts in record.wakes:
            wakes += (i, task, ts - origin)
    lane_info = []
    for lane_task in lanes:
        if lane_task is None:
            lane_info.append({"task": None, "bar": -1, "label": "(futures outside any task)"})
        else:
            task_record = model.records[lane_task]
            text = f"{task_record.name or 'task'} #{lane_task}"
            if task_record.caught:
                text += f" \u00b7 caught {task_record.exc_type or 'exception'}"
            if task_record.coro and task_record.coro != task_record.name:
                text += f" \u00b7 {task_record.coro}"
            lane_info.append({"task": lane_task, "bar": bar_of[lane_task], "label": text})
    group_info = _groups(model, groups, lanes, columns, strings)
    header = model.header
    wall_start = None
    if isinstance(header.get("wall_anchor_ns"), int) and isinstance(header.get("monotonic_anchor_ns"), int):
        wall_ns = model.start_ns - header["monotonic_anchor_ns"] + header["wall_anchor_ns"]
        try:
            wall_start = datetime.datetime.fromtimestamp(wall_ns / 1e9, tz=datetime.UTC).isoformat()
        except (OverflowError, OSError, ValueError):  # anchors from another epoch: leave the wall clock out
            wall_start = None
    loop_lints = [
        {"kind": e.kind, "ts": e.ts_ns - origin, "age_ns": e.age_ns, "task_id": e.task_id, "detail": e.detail}
        for e in model.loop_lints
    ]
    return {
        "meta": {
            "path": model.path,
            "argv": [str(arg) for arg in header.get("argv", [])] if isinstance(header.get("argv"), list) else [],
            "pid": header.get("pid"),
            "python": header.get("python"),
            "tracedfuture": header.get("tracedfuture"),
            "wall_start": wall_start,
            "duration": model.end_ns - origin,
            "counts": counts,
            "outcomes": list(PAGE_OUTCOMES),
            "expected_exceptions": sorted(expected),
            "not_shown_whole": model.dropped(),
            "pending_code": PAGE_OUTCOMES.index(Outcome.PENDING),
            "max_rows": MAX_ROWS,
            "warnings": model.warnings,
        },
        "strings": strings.table,
        "lanes": lane_info,
        "groups": group_info,
        "bars": columns,
        "details": details,
        "awaits": awaits,
        "wakes": wakes,
        "loop_lints": loop_lints,
    }


def _pack(row_ends: list[int], first: int, last: int) -> int:
    """The summary row for a bar from ``first`` to ``last``: the first row free by
    then, a new one, or past :data:`SUMMARY_ROWS` the one that frees first."""
    for r, row_end in enumerate(row_ends):
        if row_end <= first:
            row_ends[r] = last
            return r
    if len(row_ends) < SUMMARY_ROWS:
        row_ends.append(last)
        return len(row_ends) - 1
    r = min(range(SUMMARY_ROWS), key=row_ends.__getitem__)
    row_ends[r] = max(row_ends[r], last)
    return r


def _groups(
    model: Model,
    groups: list[TaskGroup],
    lanes: list[int | None],
    bars: dict[str, list[Any]],
    strings: _Strings,
) -> list[dict[str, Any]]:
    """The page's groups of lanes: the worst first among the requests, then the
    program's other tasks, then the background; each with its lanes, whether it
    opens unfolded, and its summary lane (``sum``: flattened ``(bar, row)``, each
    task's bar and its lane's unfinished or unhappy futures on the task's row)."""
    if not groups:
        return []
    lane_of: dict[int | None, int] = {task: i for i, task in enumerate(lanes)}
    if None in lane_of and not any(group.kind == OTHER for group in groups):
        # futures outside any task have a lane of their own: a group of their own, before the background
        loose = TaskGroup("futures outside any task", OTHER, ())
        groups = [g for g in groups if g.kind != BACKGROUND] + [loose] + [g for g in groups if g.kind == BACKGROUND]
    lane_bars: list[list[int]] = [[] for _ in lanes]
    for i, lane in enumerate(bars["lane"]):
        lane_bars[lane].append(i)
    outcome_code = {outcome: i for i, outcome in enumerate(PAGE_OUTCOMES)}
    problem_codes = {outcome_code[outcome]: rank for rank, outcome in enumerate(_PROBLEMS)}
    outcomes, starts, ends, is_task = bars["outcome"], bars["start"], bars["end"], bars["task"]
    out: list[dict[str, Any]] = []
    for group in groups:
        members = [lane_of[task] for task in group.ids]
        if group.kind == OTHER and None in lane_of:
            members.append(lane_of[None])
        counts = [0] * len(PAGE_OUTCOMES)
        rank = len(_PROBLEMS)
        summary: list[int] = []
        row_ends: list[int] = []

        for lane in members:
            own = lane_bars[lane]
            task_bar = own[0] if own and is_task[own[0]] else -1
            row = _pack(row_ends, starts[task_bar], ends[task_bar]) if task_bar >= 0 else -1
            if task_bar >= 0:
                summary += (task_bar, row)
            for i in own:
                code = outcomes[i]
                counts[code] += 1
                problem = problem_codes.get(code)
                if problem is None:
                    continue
                rank = min(rank, problem)
                if i != task_bar:
                    summary += (i, row if row >= 0 else _pack(row_ends, starts[i], ends[i]))
        first = model.records[group.ids[0]] if group.ids else None
        out.append(
            {
                "label": group.label,
                "kind": group.kind,
                "unit": "request" if parse_request_name(group.label) else "task",
                "lanes": members,
                "tasks": len(group.ids),
                "counts": counts,
                "rank": rank,
                "open": group.kind == OTHER or (group.kind != BACKGROUND and len(members) <= OPEN_AT),
                "rows": max(1, len(row_ends)),
                "sum": summary,
                "site": strings(
                    " \u00b7 via ".join(filter(None, _program_first(first.program_site, first.site)))
                    if first is not None
                    else None
                ),
            }
        )
    requests = [g for g in out if g["kind"] not in (OTHER, BACKGROUND)]
    requests.sort(key=lambda g: g["rank"])  # stable: groups of equal rank keep the order of their first task
    return requests + [g for g in out if g["kind"] in (OTHER, BACKGROUND)]


@functools.cache
def _page() -> tuple[str, str, str]:
    """The page, its script and its style, read once from the package's data."""
    folder = resources.files("tracedfuture._views") / "_report"
    return tuple(  # type: ignore[return-value]
        (folder / name).read_text(encoding="utf-8") for name in ("page.html", "report.js", "report.css")
    )


def render_html(model: Model, expected_exceptions: Iterable[str] = ()) -> str:
    """The report page as a string (UTF-8 text, about 170 bytes per future)."""
    page, script, style = _page()
    values = {
        "TITLE": html.escape(f"tracedfuture: {model.path}"),
        "DATA": embed_json(report_data(model, expected_exceptions)),
        "SCRIPT": script,
        "SCRIPT_HASH": base64.b64encode(hashlib.sha256(script.encode()).digest()).decode(),
        "STYLE": style,
    }
    # One pass, so that a trace string containing "%%SCRIPT%%" stays text.
    return re.sub(r"%%(TITLE|DATA|SCRIPT|SCRIPT_HASH|STYLE)%%", lambda found: values[found[1]], page)
