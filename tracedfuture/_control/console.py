"""What ``tracedfuture ps``, ``pstree`` and ``top`` show of a running process.

The plain views (:func:`format_ps`, :func:`format_pstree`) use only the standard
library; the live console (:func:`run_top`) needs ``rich``, behind the
``[console]`` extra, imported only when it starts. All of them read the control
socket's replies (see ``tracedfuture._control.server``), never the process itself.

A server opens on its traffic, as ``tracedfuture tree`` does (:func:`task_groups`):
its requests first, the program's other tasks next, the framework's background
(uvicorn's lifespan and server loop, what waits on purpose) folded into one line;
``--all`` (``a`` in ``top``) shows it.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _files
from .._core._events import Site
from .._text import plural, printable
from .._views._model import BACKGROUND, OTHER, TaskGroup, framework_owned, traffic_key, traffic_of
from ..graph import Deadlock, FrameEntry, Holding, PendingFuture, Snapshot, format_snapshot, site_text

__all__ = [
    "COLUMNS",
    "Row",
    "clean",
    "format_lints",
    "format_ps",
    "format_pstree",
    "rows",
    "run_top",
    "task_groups",
    "to_snapshot",
]

INSTALL = "pip install 'tracedfuture[console]'"


# --- from replies to views ---------------------------------------------------------------


def clean(value: Any) -> Any:
    r"""A reply with every string in it made safe for a terminal (``_text.printable``):
    a task name, a file name, anything the process sent.

    >>> clean({"name": "evil\x1b]0;PWNED\x07", "ids": [1]})
    {'name': 'evil\\x1b]0;PWNED\\x07', 'ids': [1]}
    """
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


def _site(data: dict[str, Any] | None) -> Site | None:
    if not data:
        return None
    return Site(str(data["file"]), int(data["line"]), str(data["function"]))


def to_snapshot(result: dict[str, Any]) -> Snapshot:
    """A ``snapshot`` reply as a :class:`tracedfuture.graph.Snapshot`."""
    futures = tuple(
        PendingFuture(
            future_id=f["id"],
            is_task=f["task"],
            name=f["name"],
            site=_site(f["site"]),
            age_ns=f["age_ns"],
            state=f["state"],
            awaited_by=tuple(f["awaited_by"]),
            awaiting=tuple(f["awaiting"]),
            callbacks=tuple(f["callbacks"]),
            last_awaiter_id=f["last_awaiter_id"],
            coro=f["coro"],
            call_stack=tuple(FrameEntry(s["file"], s["line"], s["function"]) for s in f["stack"]),
            program_site=_site(f.get("program_site")),
            holds=tuple(
                Holding(h["lock"], f["id"], f["name"] or "", True, _site(h.get("site"))) for h in f.get("holds", ())
            ),
        )
        for f in result["futures"]
    )
    deadlocks = tuple(Deadlock((), text) for text in result.get("deadlocks", ()))
    return Snapshot(result["taken_ns"], futures, with_stacks=bool(result.get("with_stacks")), deadlocks=deadlocks)


def task_groups(result: dict[str, Any], keep: frozenset[int] = frozenset()) -> list[TaskGroup]:
    """A live server's pending tasks in the order a person reads them, with the
    notions ``tracedfuture tree`` orders a trace by (:mod:`tracedfuture._views._model`):
    request groups first (a route named by :mod:`tracedfuture.asgi`, or one
    coroutine pending :data:`TRAFFIC_AT` times from one line), each request's
    subtasks with it; the program's other tasks next; the background last: what
    a framework started on its own (:func:`framework_owned`) and what waits on
    purpose (:func:`tracedfuture.lints.waits_on_purpose`: uvicorn's lifespan
    and server loop, aiohttp's keep-alive...). A task that holds a lock, or that
    ``keep`` names (a finding's chain), is never background. ``[]`` when nothing
    pending is traffic, so that a plain program keeps its order.
    """
    from ..lints import waits_on_purpose  # the known waits: one table, in lints

    tasks = [f for f in result["futures"] if f["task"]]
    own = {f["id"]: traffic_key(f["name"], f["coro"], _site(f["site"]), _site(f.get("program_site"))) for f in tasks}
    traffic = traffic_of(own.values())
    if not traffic:
        return []
    parents: dict[int, int | None] = {f["id"]: f.get("parent_id") for f in tasks}
    on_purpose = waits_on_purpose(to_snapshot(result), parents)  # leaves and the tasks waiting on them
    group_of: dict[int, str] = {}
    for fut in tasks:  # in order of creation: parents before their children
        task_id, parent = fut["id"], parents[fut["id"]]
        inherited = group_of.get(parent) if parent is not None else None
        if inherited in traffic:  # a request's subtask stays with its request
            group_of[task_id] = inherited
        elif own[task_id] in traffic:
            group_of[task_id] = own[task_id]
        elif fut.get("holds") or task_id in keep:
            group_of[task_id] = OTHER
        elif task_id in on_purpose or framework_owned(_site(fut["site"]), _site(fut.get("program_site"))):
            group_of[task_id] = BACKGROUND
        else:
            group_of[task_id] = OTHER
    members: dict[str, list[int]] = {}
    for fut in tasks:
        members.setdefault(group_of[fut["id"]], []).append(fut["id"])
    groups = [TaskGroup(key, "requests", tuple(ids)) for key, ids in members.items() if key not in (OTHER, BACKGROUND)]
    if OTHER in members:
        groups.append(TaskGroup("other tasks", OTHER, tuple(members[OTHER])))
    if BACKGROUND in members:
        groups.append(TaskGroup("background", BACKGROUND, tuple(members[BACKGROUND])))
    return groups


def _ranks(groups: list[TaskGroup]) -> tuple[dict[int, int], int, frozenset[int]]:
    """Each task's group number, the number of the program's other tasks (for
    what no group holds: bare futures), and the background's tasks."""
    rank = {task_id: number for number, group in enumerate(groups) for task_id in group.ids}
    other = next((number for number, group in enumerate(groups) if group.kind == OTHER), len(groups))
    background = frozenset(task_id for group in groups if group.kind == BACKGROUND for task_id in group.ids)
    return rank, other, background


def _background_line(index: dict[int, dict[str, Any]], folded: Sequence[int], futures: int, verb: str) -> str:
    """``background: Server.serve() #1, LifespanOn.main() #2 (2 tasks, 2 futures
    pending), folded: --all shows them``."""
    names = []
    for task_id in folded:
        fut = index[task_id]
        name, coro = fut["name"], fut["coro"]
        default = not name or (name.startswith("Task-") and name[5:].isdigit())
        names.append(f"{coro}() #{task_id}" if default and coro else f"{name or 'task'} #{task_id}")
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    what = plural(len(folded), "task") + (f", {plural(futures, 'future')}" if futures else "")
    return f"background: {shown} ({what} pending), {verb}: --all shows them"


def _where(fut: dict[str, Any]) -> str:
    """The program's line that made it, then the library's via it when they differ."""
    site, program = _site(fut["site"]), _site(fut.get("program_site"))
    if program is not None and program != site:
        return site_text(program) + (f" (via {site_text(site)})" if site is not None else "")
    return site_text(site) if site is not None else "?"


def _age(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _label(fut: dict[str, Any] | None, fid: int) -> str:
    if fut is None:
        return f"#{fid}"
    kind = "(T)" if fut["task"] else "(F)"
    return f"{kind} #{fid} {fut['name']}" if fut["name"] else f"{kind} #{fid}"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the task table; ``sort_keys`` in :data:`COLUMNS` order."""

    future_id: int
    name: str
    state: str
    age_ns: int | None
    woke_ns: int | None
    awaits: str
    site: str
    is_task: bool
    lint: bool

    def cells(self) -> tuple[str, ...]:
        return (
            str(self.future_id),
            self.name,
            self.state.lower(),
            _age(self.age_ns),
            _age(self.woke_ns),
            self.awaits,
            self.site,
        )

    def sort_key(self, column: int) -> Any:
        key = (self.future_id, self.name, self.state, self.age_ns or -1, self.woke_ns or -1, self.awaits, self.site)
        return key[column]


COLUMNS = ("id", "name", "state", "age", "woke", "awaits", "site")


def rows(result: dict[str, Any], flagged: frozenset[int] = frozenset(), *, futures: bool = False) -> list[Row]:
    """The task table of a ``snapshot`` reply (bare futures too, if asked);
    ``flagged`` holds the ids a lint names, to highlight."""
    index = {f["id"]: f for f in result["futures"]}
    out = []
    for fut in result["futures"]:
        if not fut["task"] and not futures:
            continue
        awaits = ", ".join(_leafward(index, fut["id"])) or "-"
        if not fut["task"] and not fut["awaited_by"] and not fut["callbacks"]:
            awaits = "(nobody awaits it)"
        name = fut["name"] or ""
        if fut["coro"]:
            name = f"{name} {fut['coro']}()" if name else f"{fut['coro']}()"
        if not fut["task"]:
            name = name or "(future)"
        out.append(
            Row(
                future_id=fut["id"],
                name=name,
                state=fut["state"],
                age_ns=fut["age_ns"],
                woke_ns=fut.get("woke_ns"),
                awaits=awaits,
                site=_where(fut),
                is_task=fut["task"],
                lint=fut["id"] in flagged,
            )
        )
    return out


def _leafward(index: dict[int, dict[str, Any]], fid: int) -> list[str]:
    """What ``fid`` awaits: each awaited future's label, and the leaf below it
    when the awaited one is itself a task waiting on something."""
    out = []
    for child in index[fid]["awaiting"]:
        text = _label(index.get(child), child)
        leaf, seen = child, {fid, child}
        while leaf in index and index[leaf]["awaiting"]:
            nxt = index[leaf]["awaiting"][0]
            if nxt in seen:
                break
            seen.add(nxt)
            leaf = nxt
        if leaf != child:
            text += f" -> {_label(index.get(leaf), leaf)}"
        out.append(text)
    return out


def flagged_ids(lints: dict[str, Any] | None) -> frozenset[int]:
    """Every id in a chain that a current finding names."""
    if not lints:
        return frozenset()
    return frozenset(fid for finding in lints.get("current", ()) for fid in finding.get("chain", ()))


def format_ps(result: dict[str, Any], lints: dict[str, Any] | None = None, *, all_tasks: bool = False) -> str:
    """The task table as plain text: ``tracedfuture ps``; a server's requests
    first and its background left out, unless ``all_tasks`` (see :func:`task_groups`)."""
    result, lints = clean(result), clean(lints)
    flagged = flagged_ids(lints)
    table = rows(result, flagged)
    groups = task_groups(result, flagged)
    left_out: list[int] = []
    if groups:
        rank, other, background = _ranks(groups)
        table.sort(key=lambda row: rank.get(row.future_id, other))  # stable: each group in order of creation
        if not all_tasks:
            left_out = [row.future_id for row in table if row.future_id in background]
            table = [row for row in table if row.future_id not in background]
    header = tuple(c.upper() for c in COLUMNS)
    cells = [header, *(row.cells() for row in table)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + "  " + line[-1] for line in cells]
    for i, row in enumerate(table, start=1):
        if row.lint:
            lines[i] = "! " + lines[i]
        else:
            lines[i] = "  " + lines[i]
    lines[0] = "  " + lines[0]
    tasks = len(table) + len(left_out)
    bare = sum(1 for f in result["futures"] if not f["task"])
    lines.append("")
    lines.append(f"{tasks} pending task{'s' if tasks != 1 else ''}, {bare} pending future{'s' if bare != 1 else ''}")
    if left_out:
        index = {f["id"]: f for f in result["futures"]}
        lines.append(_background_line(index, left_out, 0, "not listed"))
    lines.extend(_loop_notes(result))
    lines.extend(result.get("deadlocks", ()))
    if lints and lints.get("current"):
        lines.append("! = named by a finding:")
        lines.extend(f"  {finding['text']}" for finding in lints["current"])
    return "\n".join(lines)


def format_pstree(result: dict[str, Any], *, all_frames: bool = False, all_tasks: bool = False) -> str:
    """The await tree with bare futures, ages and sites: ``tracedfuture pstree``;
    library frames folded unless ``all_frames``; a server's requests first and
    its background folded into one line unless ``all_tasks`` (see :func:`task_groups`)."""
    result = clean(result)
    snap = to_snapshot(result)
    groups = task_groups(result)
    roots: list[PendingFuture] | None = None
    folded: list[PendingFuture] = []
    if groups:
        rank, other, background = _ranks(groups)
        roots = sorted(snap.roots(), key=lambda fut: rank.get(fut.future_id, other))
        if not all_tasks:
            folded = [fut for fut in roots if fut.future_id in background]
            roots = [fut for fut in roots if fut.future_id not in background]
    lines = [format_snapshot(snap, all_frames=all_frames, roots=roots)]
    if folded:
        index = {f["id"]: f for f in result["futures"]}
        shown = {fid for fut in roots or () for fid in _subtree(snap, fut.future_id)}
        under = {fid for fut in folded for fid in _subtree(snap, fut.future_id)} - shown
        futures = sum(1 for fid in under if fid in index and not index[fid]["task"])
        tasks = [fid for fid in sorted(under) if fid in index and index[fid]["task"]]
        lines.append(_background_line(index, tasks, futures, "folded"))
    lines.extend(_loop_notes(result))
    return "\n".join(lines)


def _subtree(snap: Snapshot, root: int) -> set[int]:
    """``root`` and everything it awaits, down to the leaves."""
    index = {fut.future_id: fut for fut in snap.futures}
    seen, todo = {root}, [root]
    while todo:
        fut = index.get(todo.pop())
        for child in fut.awaiting if fut is not None else ():
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _loop_notes(result: dict[str, Any]) -> Iterator[str]:
    for loop in result.get("loops", ()):
        if loop.get("answered") or not loop.get("running"):
            continue
        thread = loop.get("thread_name") or loop.get("thread_id")
        yield f"loop {loop['class']} in thread {thread} did not answer within 0.5 s: it is blocked, here:"
        for frame in loop.get("blocked_stack", ())[-12:]:
            yield f"    {frame['function']} {_short(frame['file'])}:{frame['line']}"


def _short(filename: str) -> str:
    return site_text(Site(filename, 0, "")).rsplit(":", 1)[0]


def format_lints(lints: dict[str, Any]) -> str:
    lints = clean(lints)
    lines = [f["text"] for f in lints.get("current", ())]
    recorded = lints.get("recorded", ())
    if recorded:
        lines.append(f"recorded ({len(recorded)}, newest last):")
        lines.extend(f"  {item['text'].splitlines()[0]}" for item in recorded[-10:])
    return "\n".join(lines) if lines else "no findings"


# --- the live console ----------------------------------------------------------------------

_KEYS = {
    "\x1b[A": "up",
    "\x1bOA": "up",
    "\x1b[B": "down",
    "\x1bOB": "down",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\x1b[H": "home",
    "\x1b[F": "end",
    "\r": "enter",
    "\n": "enter",
    "\x7f": "backspace",
    "\x08": "backspace",
    "\x1b": "escape",
}


def _split_keys(data: str) -> Iterator[str]:
    i = 0
    while i < len(data):
        for seq in sorted(_KEYS, key=len, reverse=True):
            if data.startswith(seq, i):
                yield _KEYS[seq]
                i += len(seq)
                break
        else:
            if data[i] == "\x1b" and data[i + 1 : i + 2] == "[":  # an unknown sequence: skip it
                j = i + 2
                while j < len(data) and not data[j].isalpha() and data[j] != "~":
                    j += 1
                i = j + 1
                continue
            yield data[i]
            i += 1


class _Console:
    """The state of ``tracedfuture top``: what was fetched, what is shown."""

    def __init__(self, client: Any, target: str, interval: float) -> None:
        self.client = client
        self.target = target
        self.interval = interval
        self.hello: dict[str, Any] = clean(client.hello)
        self.snap: dict[str, Any] | None = None
        self.lints: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.events_for: int | None = None
        self.events_at = 0.0
        self.lints_at = 0.0
        self.fetched_at = 0.0
        self.sort_column = 3  # age
        self.reverse = True
        self.filter = ""
        self.typing: str | None = None  # the filter being typed
        self.selected = 0
        self.detail: int | None = None
        self.paused = False
        self.show_futures = False
        self.show_all = False  # a server's background too
        self.groups: list[TaskGroup] = []  # of the last snapshot, with its lints
        self.show_lints = True
        self.confirm: int | None = None  # a task id waiting for y/n
        self.message = ""
        self.exited: str | None = None
        self.quit = False
        self.refresh_now = False  # fetch at once (the detail view needs stacks)

    def done(self) -> bool:
        return self.quit

    # -- fetching ------------------------------------------------------------------

    def _ask(self, name: str, **params: Any) -> dict[str, Any] | None:
        from .server import ControlError

        if self.exited is not None:
            return None
        try:
            result: dict[str, Any] = clean(self.client.request(name, **params))
        except ControlError as exc:
            text = printable(str(exc))
            if "closed the connection" in text or "connection lost" in text:
                self.exited = f"process {self.hello.get('pid')} exited or closed the connection"
            else:
                self.message = text
            return None
        return result

    def refresh(self, now: float) -> None:
        if self.paused or self.exited is not None:
            return
        # The table needs no coroutine stacks (each costs the loop's thread a walk
        # of every task); the detail view does.
        snap = self._ask("snapshot", stacks=self.detail is not None)
        if snap is not None:
            self.snap = snap
            self.fetched_at = now
        if now - self.lints_at >= 2 * self.interval:
            lints = self._ask("lints")
            if lints is not None:
                self.lints = lints
            self.lints_at = now
        if snap is not None:
            self.groups = task_groups(snap, flagged_ids(self.lints))
        if self.detail is not None and (self.events_for != self.detail or now - self.events_at >= 5):
            reply = self._ask("events", future_id=self.detail, limit=30)
            if reply is not None:
                self.events = reply["events"]
                self.events_for = self.detail
            self.events_at = now

    # -- the table -----------------------------------------------------------------

    def visible(self) -> list[Row]:
        if self.snap is None:
            return []
        table = rows(self.snap, flagged_ids(self.lints), futures=self.show_futures)
        needle = (self.typing if self.typing is not None else self.filter).lower()
        if needle:
            table = [r for r in table if needle in r.name.lower() or needle in r.site.lower()]
        table.sort(key=lambda r: (r.sort_key(self.sort_column), r.future_id), reverse=self.reverse)
        if self.groups:  # a server: its requests first, each group sorted by the column
            rank, other, background = _ranks(self.groups)
            if not self.show_all:
                table = [r for r in table if r.future_id not in background]
            table.sort(key=lambda r: rank.get(r.future_id, other))
        return table

    def folded(self) -> int:
        """How many of a server's background tasks the table leaves out (``a`` shows them)."""
        if self.show_all or not self.groups:
            return 0
        return len(_ranks(self.groups)[2])

    def selected_row(self, table: Sequence[Row]) -> Row | None:
        if not table:
            return None
        self.selected = max(0, min(self.selected, len(table) - 1))
        return table[self.selected]

    # -- keys ----------------------------------------------------------------------

    def key(self, key: str, page: int) -> None:
        if self.typing is not None:
            self._type(key)
            return
        if self.confirm is not None:
            task_id, self.confirm = self.confirm, None
            if key in ("y", "Y"):
                reply = self._ask("cancel", id=task_id, msg="cancelled from tracedfuture top")
                if reply is not None:
                    self.message = f"task #{task_id}: cancel() returned {reply['cancelled']}"
            else:
                self.message = "cancel: not confirmed"
            return
        table = self.visible()
        if key == "q":
            self.quit = True
        elif key in ("escape", "backspace") and self.detail is not None:
            self.detail = None
        elif key in ("down", "j"):
            self.selected += 1
        elif key in ("up", "k"):
            self.selected = max(0, self.selected - 1)
        elif key == "pgdn":
            self.selected += page
        elif key == "pgup":
            self.selected = max(0, self.selected - page)
        elif key == "home":
            self.selected = 0
        elif key == "end":
            self.selected = max(0, len(table) - 1)
        elif key in "1234567" and len(key) == 1:
            column = int(key) - 1
            self.reverse = not self.reverse if column == self.sort_column else column in (3, 4)
            self.sort_column = column
        elif key in ("s", ">"):
            self.sort_column = (self.sort_column + 1) % len(COLUMNS)
        elif key in ("r", "<"):
            self.reverse = not self.reverse
        elif key == "/":
            self.typing = self.filter
        elif key == "enter":
            row = self.selected_row(table)
            if row is not None:
                self.detail = row.future_id
                self.events_for = None
                self.refresh_now = True
        elif key == "p":
            self.paused = not self.paused
            self.message = "paused: the view is frozen" if self.paused else "resumed"
        elif key == "f":
            self.show_futures = not self.show_futures
        elif key == "a":
            self.show_all = not self.show_all
        elif key == "l":
            self.show_lints = not self.show_lints
        elif key == "d":
            self._dump()
        elif key == "c":
            self._ask_cancel(table)

    def _type(self, key: str) -> None:
        assert self.typing is not None
        if key == "enter":
            self.filter, self.typing = self.typing, None
            self.selected = 0
        elif key == "escape":
            self.typing = None
        elif key == "backspace":
            self.typing = self.typing[:-1]
        elif len(key) == 1 and key.isprintable():
            self.typing += key

    def _dump(self) -> None:
        from .server import ControlError

        if self.exited is not None:
            self.message = "dump: the process has exited"
            return
        # The name from the integer pid (the client checked it is the one asked
        # for) and the time, never from the server's text.
        path = f"tracedfuture-dump-{int(self.hello.get('pid', 0))}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        try:
            with _files.create(path) as out:
                lines, _ = self.client.dump(out)
        except (OSError, ControlError) as exc:
            self.message = f"dump failed: {exc}"
            return
        self.message = f"dumped the flight recorder to {path} ({lines} lines): tracedfuture tree {path}"

    def _ask_cancel(self, table: Sequence[Row]) -> None:
        target = self.detail
        if target is None:
            row = self.selected_row(table)
            target = row.future_id if row is not None and row.is_task else None
        if target is None:
            self.message = "cancel: select a task first"
        elif not self.hello.get("allow_cancel"):
            self.message = "cancel is not allowed: start the process with 'tracedfuture run --console=allow-cancel'"
        else:
            self.confirm = target


def _render(console: _Console, height: int) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    hello = console.hello
    pid = hello.get("pid")
    argv = " ".join(hello.get("argv", ()))
    head = Text()
    head.append(f"tracedfuture top  pid {pid}  ", style="bold")
    head.append(argv[:80])
    snap = console.snap
    if snap is not None:
        tasks = sum(1 for f in snap["futures"] if f["task"])
        head.append(f"  |  {tasks} tasks, {len(snap['futures']) - tasks} futures pending")
        if console.folded():
            head.append(f"  |  {plural(console.folded(), 'background task')} folded (a shows them)")
        blocked = [loop for loop in snap.get("loops", ()) if loop.get("running") and not loop.get("answered")]
        if blocked:
            head.append(f"  |  {len(blocked)} loop(s) BLOCKED", style="bold red")
    state = Text()
    if console.exited is not None:
        state.append(f"{console.exited}; showing the last snapshot. q quits.", style="bold red")
    elif console.paused:
        state.append("PAUSED (p resumes)", style="bold yellow")
    sort = f"sort: {COLUMNS[console.sort_column]} {'desc' if console.reverse else 'asc'}"
    filt = console.typing if console.typing is not None else console.filter
    info = Text(f"{sort}   filter: {filt or '-'}" + ("_" if console.typing is not None else ""), style="dim")
    parts: list[Any] = [head, info, state] if state else [head, info]
    lints_lines = _lint_lines(console) if console.show_lints and console.detail is None else []
    if snap is not None and console.detail is None:
        lints_lines = list(snap.get("deadlocks", ())) + lints_lines
    footer = Text(
        "q quit  ↑↓ select  enter detail  esc back  1-7/s sort  r reverse  / filter  f futures  "
        "a all  l lints  p pause  d dump" + ("  c cancel" if hello.get("allow_cancel") else ""),
        style="reverse",
    )
    message = Text(console.message, style="bold") if console.message else None
    if console.confirm is not None:
        message = Text(f"cancel task #{console.confirm}? y/n", style="bold red reverse")
    room = height - len(parts) - 2 - (len(lints_lines) + 2 if lints_lines else 0) - (1 if message else 0) - 1
    if console.detail is not None:
        parts.append(_detail(console, max(5, room + 2)))
    else:
        table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
        for i, name in enumerate(COLUMNS):
            marker = (" ▼" if console.reverse else " ▲") if i == console.sort_column else ""
            header = f"{i + 1}:{name}{marker}"
            fixed = _WIDTHS[i]
            if fixed:
                table.add_column(header, no_wrap=True, overflow="ellipsis", width=max(fixed, len(header)))
            else:
                table.add_column(header, no_wrap=True, overflow="ellipsis", ratio=_RATIOS[i])
        visible = console.visible()
        console.selected_row(visible)
        rows_room = max(1, room)
        start = max(0, min(console.selected - rows_room // 2, len(visible) - rows_room))
        for index, row in enumerate(visible[start : start + rows_room], start=start):
            style = "reverse" if index == console.selected else ""
            if row.lint:
                style += " bold red"
            table.add_row(*row.cells(), style=style.strip() or None)
        if not visible:
            table.add_row("", "(nothing pending)" if console.snap is not None else "(waiting for a snapshot)")
        parts.append(table)
    if lints_lines:
        parts.append(Panel(Text("\n".join(lints_lines)), title="lints", title_align="left", border_style="red"))
    if message is not None:
        parts.append(message)
    parts.append(footer)
    return Group(*parts)


# id, state, age and woke are short: a fixed width; the others share the rest.
_WIDTHS = (6, 0, 10, 8, 8, 0, 0)
_RATIOS = (0, 3, 0, 0, 0, 4, 5)


def _lint_lines(console: _Console) -> list[str]:
    lints = console.lints
    if not lints:
        return []
    lines = [item["text"] for item in lints.get("current", ())][:6]
    for item in lints.get("recorded", ())[-3:]:
        lines.append("recorded " + item["text"].splitlines()[0])
    return lines


def _detail(console: _Console, height: int) -> Any:
    from rich.text import Text

    fid = console.detail
    snap = console.snap or {"futures": []}
    index = {f["id"]: f for f in snap["futures"]}
    fut = index.get(fid) if fid is not None else None
    text = Text()
    if fut is None:
        text.append(f"#{fid} is no longer pending (it finished, or was collected). esc goes back.\n", style="bold")
    else:
        text.append(_label(fut, fut["id"]), style="bold")
        if fut["coro"]:
            text.append(f"  {fut['coro']}()")
        text.append(f"  {fut['state'].lower()} {_age(fut['age_ns'])}")
        if fut.get("woke_ns") is not None:
            text.append(f"  woke {_age(fut['woke_ns'])} ago")
        text.append(f"\ncreated at {_where(fut)}")
        for held in fut.get("holds", ()):
            where = _site(held.get("site"))
            text.append(f"\nholds {held['lock']}" + (f" (acquired at {site_text(where)})" if where else ""))
        parent = fut.get("parent_id")
        if parent:
            alive = index.get(parent)
            state = "still pending" if alive is not None else "no longer pending"
            text.append(f" by {_label(alive, parent)} ({state})")
        text.append("\n\nawait chain, down to the leaf future:\n", style="bold")
        for depth, (child, label) in enumerate(_chain_down(index, fut["id"])):
            item = index.get(child)
            where = _site(item["site"]) if item else None
            age = _age(item["age_ns"]) if item else "?"
            text.append(f"{'  ' * depth}└─ {label}  {age}  {site_text(where) if where else ''}\n")
        if fut["awaited_by"]:
            text.append("awaited by: " + ", ".join(_label(index.get(a), a) for a in fut["awaited_by"]) + "\n")
        if fut["callbacks"]:
            text.append("callbacks: " + ", ".join(fut["callbacks"]) + "\n")
        text.append("\ncoroutine stack (outermost first):\n", style="bold")
        for frame in fut["stack"] or ():
            text.append(f"  {frame['function']} {_short(frame['file'])}:{frame['line']}\n")
        if not fut["stack"]:
            text.append("  (none: a bare future, or its loop did not answer)\n")
    text.append("\nrecent events:\n", style="bold")
    for event in console.events[-max(3, height - text.plain.count("\n") - 2) :]:
        ago = ""
        if console.snap is not None:
            ago = f"-{_age(console.snap['taken_ns'] - event['ts_ns'])}"
        extra = " ".join(
            f"{k}={event[k]}"
            for k in ("awaiter_id", "callback", "msg", "result_type", "exc_type", "name")
            if k in event
        )
        text.append(f"  {ago:>9} #{event['future_id']} {event['kind']} {extra}\n")
    return text


def _chain_down(index: dict[int, dict[str, Any]], fid: int) -> list[tuple[int, str]]:
    out = []
    seen = {fid}
    current = fid
    while current in index and index[current]["awaiting"]:
        nxt = index[current]["awaiting"][0]
        if nxt in seen:
            out.append((nxt, _label(index.get(nxt), nxt) + " (cycle)"))
            break
        seen.add(nxt)
        out.append((nxt, _label(index.get(nxt), nxt)))
        current = nxt
    return out


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_top(client: Any, target: str, *, interval: float = 1.0, stdin: Any = None) -> int:
    """The live console; returns when ``q`` is pressed."""
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        msg = f"the live console needs rich: {INSTALL}"
        raise ImportError(msg) from None
    stdin = sys.stdin if stdin is None else stdin
    fd = stdin.fileno()
    state = _Console(client, target, interval)
    screen = Console()
    read: Callable[[float], str] = _reader(fd)
    with _cbreak(fd), Live(console=screen, screen=True, auto_refresh=False, transient=True) as live:
        next_refresh = 0.0
        while not state.done():
            now = time.monotonic()
            if now >= next_refresh or state.refresh_now:
                state.refresh_now = False
                state.refresh(now)
                next_refresh = now + interval
            height = screen.size.height
            live.update(_render(state, height), refresh=True)
            data = read(max(0.0, min(0.25, next_refresh - time.monotonic())))
            for key in _split_keys(data):
                state.message = "" if state.confirm is None else state.message
                state.key(key, page=max(1, height - 10))
                if state.done():
                    break
    return 0


def _reader(fd: int) -> Callable[[float], str]:
    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return ""
        data = os.read(fd, 256)
        if not data:
            time.sleep(timeout)  # stdin closed: keep showing until killed
            return ""
        return data.decode(errors="replace")

    return read
